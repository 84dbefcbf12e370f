import type { DType } from "../dtype.js";
import type { StorageMap } from "../engine/memory.js";
import type { Module } from "../nn/module.js";
import { checkInteger, InvalidArgumentError, isPlainObject } from "../validation.js";
import type { Callback } from "./callbacks.js";
import type { LightningModule } from "./lightning-module.js";
import type { Trainer } from "./trainer.js";

export interface LayerSummary {
  /** Dotted path of the layer in the module, e.g. "net.0". */
  readonly name: string;
  /** The layer's class name. */
  readonly type: string;
  readonly params: number;
  readonly trainableParams: number;
  /** The dtypes of its parameters (empty when it has none). */
  readonly dtypes: readonly DType[];
  /** Bytes its parameters hold (as `parameterBytes()`). */
  readonly bytes: number;
}

export interface ModelSummaryData {
  readonly layers: readonly LayerSummary[];
  readonly trainableParams: number;
  readonly nonTrainableParams: number;
  readonly totalParams: number;
  readonly totalBytes: number;
}

/**
 * The layers of `module` down to `maxDepth` levels (1: its direct children, as Lightning's
 * default; -1: every level), with parameter counts, dtypes and bytes, and the module's totals.
 * Bytes are as held on a backend with `storage` (the Trainer's, at fit start), else where they are.
 */
export function summarize(module: Module, { maxDepth = 1, storage }: { maxDepth?: number; storage?: StorageMap } = {}): ModelSummaryData {
  checkInteger("summarize maxDepth", maxDepth, -1);
  const layers: LayerSummary[] = [];
  const visit = (m: Module, prefix: string, depth: number) => {
    for (const [name, child] of m.namedChildren()) {
      const path = prefix + name;
      const params = child.parameters();
      layers.push({
        name: path,
        type: child.constructor.name,
        params: params.reduce((n, p) => n + p.size, 0),
        trainableParams: params.reduce((n, p) => n + (p.requiresGrad ? p.size : 0), 0),
        dtypes: [...new Set(params.map((p) => p.dtype))],
        bytes: child.parameterBytes(storage),
      });
      if (maxDepth === -1 || depth < maxDepth) visit(child, `${path}.`, depth + 1);
    }
  };
  if (maxDepth !== 0) visit(module, "", 1);
  const params = module.parameters();
  const trainableParams = params.reduce((n, p) => n + (p.requiresGrad ? p.size : 0), 0);
  const totalParams = params.reduce((n, p) => n + p.size, 0);
  return { layers, trainableParams, nonTrainableParams: totalParams - trainableParams, totalParams, totalBytes: module.parameterBytes(storage) };
}

/** Lightning's readable counts: 950, 1.2 K, 3.4 M, 5.0 B. */
export function readableCount(n: number): string {
  const units = ["", " K", " M", " B", " T"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? String(n) : `${v.toFixed(1)}${units[i]}`;
}

function readableBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The summary as Lightning prints it: a table of layers, then the totals. */
export function formatSummary(summary: ModelSummaryData): string {
  const header = ["", "Name", "Type", "Params", "DType", "Bytes"];
  const rows = summary.layers.map((l, i) => [String(i), l.name, l.type, readableCount(l.params), l.dtypes.join(", ") || "-", readableBytes(l.bytes)]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join(" | ")
      .trimEnd();
  const rule = "-".repeat(line(header).length);
  const totals: [string, string][] = [
    [readableCount(summary.trainableParams), "Trainable params"],
    [readableCount(summary.nonTrainableParams), "Non-trainable params"],
    [readableCount(summary.totalParams), "Total params"],
    [readableBytes(summary.totalBytes), "Total parameter bytes (as held)"],
  ];
  const first = Math.max(...totals.map(([v]) => v.length));
  return [line(header), rule, ...rows.map(line), rule, ...totals.map(([v, label]) => `${v.padEnd(first)}   ${label}`)].join("\n");
}

export interface ModelSummaryOptions {
  /** Layer depth to list (default 1; -1: all). */
  readonly maxDepth?: number;
  /** Where the table goes (default: standard output). */
  readonly write?: (text: string) => void;
}

/** Prints `summarize(module)` at fit start; the Trainer adds one unless enableModelSummary is false. */
export class ModelSummary implements Callback {
  readonly maxDepth: number;
  private readonly write: (text: string) => void;

  constructor(options: ModelSummaryOptions = {}) {
    if (!isPlainObject(options)) throw new InvalidArgumentError("ModelSummary options", "an object", options);
    this.maxDepth = checkInteger("ModelSummary maxDepth", options.maxDepth ?? 1, -1);
    const write: unknown = options.write ?? ((text: string) => process.stdout.write(`${text}\n`));
    if (typeof write !== "function") throw new InvalidArgumentError("ModelSummary write", "a function", write);
    this.write = write as (text: string) => void;
  }

  onFitStart(trainer: Trainer, module: LightningModule): void {
    this.write(formatSummary(summarize(module, { maxDepth: this.maxDepth, storage: trainer.runtime.backend.capabilities.storage })));
  }
}
