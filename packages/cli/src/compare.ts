import { NbitError, resolvePrecision, type Accelerator, type Precision } from "@nbit/core";
import { accessSync, constants, statSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import type { RunResult } from "./run.js";

/** Precisions from the most to the least precise: the first one compared is the reference of the differences. */
export const PRECISION_RANK: readonly Precision[] = ["64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"];

/**
 * The precisions `--precisions` asks for (every precision the accelerator supports when absent),
 * each checked against the accelerator before anything trains.
 */
export function precisionsToCompare(accelerator: Accelerator, list: string | undefined): Precision[] {
  if (list === undefined) return [...accelerator.supportedPrecisions];
  const items = list.split(",").map((s) => s.trim());
  if (items.some((s) => s === ""))
    throw new NbitError("INVALID_ARGUMENT", `--precisions expects a comma-separated list such as "32-true,bf16-mixed", got ${JSON.stringify(list)}.`);
  const precisions: Precision[] = [];
  for (const item of items) {
    const precision = resolvePrecision(accelerator, item, null).precision;
    if (precisions.includes(precision)) throw new NbitError("INVALID_ARGUMENT", `--precisions names ${precision} twice (${JSON.stringify(list)}).`);
    precisions.push(precision);
  }
  return precisions;
}

/** Checks that the plot can be written (an .svg file name in an existing, writable folder) before anything trains. */
export function checkPlotPath(path: string): string {
  if (extname(path).toLowerCase() !== ".svg")
    throw new NbitError("INVALID_ARGUMENT", `--plot expects a file name ending in .svg, got ${JSON.stringify(path)}.`);
  const full = resolve(path);
  const folder = dirname(full);
  const kind = (p: string) => {
    try {
      const stat = statSync(p);
      return stat.isDirectory() ? "folder" : stat.isFile() ? "file" : "other";
    } catch {
      return "missing";
    }
  };
  if (kind(folder) !== "folder") throw new NbitError("INVALID_ARGUMENT", `--plot ${JSON.stringify(path)}: the folder ${folder} does not exist.`);
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new NbitError("INVALID_ARGUMENT", `--plot ${JSON.stringify(path)}: the folder ${folder} is not writable.`);
  }
  const existing = kind(full);
  if (existing !== "missing" && existing !== "file")
    throw new NbitError("INVALID_ARGUMENT", `--plot ${JSON.stringify(path)}: ${full} exists and is not a file.`);
  return full;
}

/** The comparison table: one row per run, columns aligned. */
export function compareTable(acceleratorName: string, runs: readonly RunResult[]): string {
  const header = ["precision", "final loss", "test acc", "time (s)", "param bytes", "optim bytes", "skipped"];
  const rows = runs.map((r) => [
    r.precision,
    r.finalLoss.toFixed(4),
    `${(r.testAccuracy * 100).toFixed(2)}%`,
    r.seconds.toFixed(1),
    String(r.parameterBytes),
    String(r.optimizerBytes),
    String(r.skippedSteps),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [`accelerator: ${acceleratorName}`, line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
