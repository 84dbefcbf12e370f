import { createHash } from "node:crypto";
import {
  Adam,
  accuracyOf,
  CANONICAL_PRECISIONS,
  crossEntropy,
  Dropout,
  Generator,
  LightningModule,
  Linear,
  ReLU,
  referenceAccelerator,
  Sequential,
  SGD,
  StepLR,
  TensorDataset,
  type Batch,
  type Precision,
  type Tensor,
  type TrainerOptions,
} from "../src/index.js";

/** Shared fixtures of the trainer and checkpoint tests: a 3-class blob data set and a small classifier on the reference backend. */

export const reference = (name = "ref", supportedPrecisions: readonly Precision[] = CANONICAL_PRECISIONS, available = true) =>
  referenceAccelerator({ name, supportedPrecisions, ...(available ? {} : { unavailableReason: "no such device here" }) });

export function blobs(n: number, seed = 1, label = (i: number) => i % 3) {
  const g = new Generator(seed);
  const centers = [
    [2, 0, 1, -1],
    [-2, 1, 0, 1],
    [0, -2, -1, 0],
  ];
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    y.push(label(i));
    for (let f = 0; f < 4; f++) x.push(centers[i % 3]![f]! + g.normal() * 0.8);
  }
  return new TensorDataset({ data: x, sampleShape: [4] }, { data: y, sampleShape: [], dtype: "int32" });
}

export class Classifier extends LightningModule {
  readonly net = new Sequential(new Linear(4, 16), new ReLU(), new Dropout(0.1), new Linear(16, 3));
  constructor(
    readonly opt: "sgd" | "adam" = "adam",
    readonly scheduled = false,
    readonly lossHook: (loss: Tensor, batchIdx: number) => Tensor = (l) => l,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch, batchIdx: number): Tensor {
    const loss = this.lossHook(crossEntropy(this.forward(x!), y!), batchIdx);
    this.log("train_loss", loss, { progBar: true });
    return loss;
  }
  override validationStep([x, y]: Batch): void {
    const logits = this.forward(x!);
    this.log("val_loss", crossEntropy(logits, y!));
    this.log("val_acc", accuracyOf(logits, y!));
  }
  override testStep([x, y]: Batch): void {
    this.log("test_acc", accuracyOf(this.forward(x!), y!));
  }
  configureOptimizers() {
    const optimizer = this.opt === "sgd" ? new SGD(this.parameters(), { lr: 0.05, momentum: 0.9 }) : new Adam(this.parameters(), { lr: 0.01 });
    return this.scheduled ? { optimizer, lrScheduler: { scheduler: new StepLR(optimizer, 3, 0.5), interval: "step" as const } } : optimizer;
  }
}

export const quiet = (extra: TrainerOptions = {}): TrainerOptions => ({
  accelerator: reference(),
  enableProgressBar: false,
  enableCheckpointing: false,
  enableModelSummary: false,
  logger: false,
  warn: () => {},
  ...extra,
});

/** A Classifier whose configureOptimizers returns the same optimizer and scheduler every time, so their state outlives a fit. */
export class ResumableClassifier extends Classifier {
  private config: ReturnType<Classifier["configureOptimizers"]> | null = null;
  override configureOptimizers() {
    return (this.config ??= super.configureOptimizers());
  }
}

/**
 * A minimal safetensors reader written from the published format, independent of nbit's decoder:
 * an 8-byte little-endian header length N, N bytes of UTF-8 JSON (`__metadata__` maps strings to
 * strings; every other key is a tensor with dtype, shape and data_offsets relative to the data
 * section), then the data section, which the tensors cover exactly.
 */
export function readSafetensorsIndependently(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const data = bytes.subarray(8 + n);
  const sizes: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
  const metadata = (header.__metadata__ ?? {}) as Record<string, unknown>;
  for (const v of Object.values(metadata)) if (typeof v !== "string") throw new Error("metadata values must be strings");
  const tensors = Object.entries(header)
    .filter(([k]) => k !== "__metadata__")
    .map(([name, e]) => {
      const { dtype, shape, data_offsets } = e as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const [begin, end] = data_offsets;
      if (end - begin !== shape.reduce((a, b) => a * b, 1) * sizes[dtype]!) throw new Error(`${name}: size does not match`);
      return { name, dtype, shape, begin, end, bytes: data.subarray(begin, end) };
    })
    .sort((a, b) => a.begin - b.begin);
  let covered = 0;
  for (const t of tensors) {
    if (t.begin !== covered) throw new Error(`${t.name}: hole or overlap`);
    covered = t.end;
  }
  if (covered !== data.length) throw new Error("data section not covered exactly");
  return { headerLength: n, metadata: metadata as Record<string, string>, tensors };
}

/** The file with its header JSON replaced by `mutate`'s result (or the mutated header), data section kept. */
export function withHeader(bytes: Uint8Array, mutate: (header: Record<string, unknown>) => unknown): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const replaced = mutate(header);
  const json = new TextEncoder().encode(typeof replaced === "string" ? replaced : JSON.stringify(replaced ?? header));
  const out = new Uint8Array(8 + json.length + (bytes.length - 8 - n));
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(bytes.subarray(8 + n), 8 + json.length);
  return out;
}

export const sha256Hex = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

/** The file with its nbit metadata JSON rewritten by `mutate`; its checksum is recomputed unless `resign` is false. */
// biome-ignore lint/suspicious/noExplicitAny: crafted metadata is edited field by field, whatever its shape
export function withMeta(bytes: Uint8Array, mutate: (meta: Record<string, any>) => unknown, resign = true): Uint8Array {
  return withHeader(bytes, (header) => {
    const metadata = header.__metadata__ as Record<string, string>;
    // biome-ignore lint/suspicious/noExplicitAny: as above
    const meta = JSON.parse(metadata.nbit!) as Record<string, any>;
    const replaced = mutate(meta);
    metadata.nbit = typeof replaced === "string" ? replaced : JSON.stringify(replaced ?? meta);
    if (resign) metadata["sha256:nbit"] = sha256Hex(metadata.nbit);
    return header;
  });
}
