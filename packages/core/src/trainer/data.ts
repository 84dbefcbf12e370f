import { allocHost, DTYPES, type DType, type HostArray } from "../dtype.js";
import { NbitError } from "../errors.js";
import { Generator } from "../engine/random.js";
import { Tensor } from "../engine/tensor.js";
import { numbersToHost } from "../numerics/convert.js";
import { checkBoolean, checkInteger, checkOneOf, InvalidArgumentError, isPlainObject } from "../validation.js";

export interface ArrayField {
  /** Row-major values of every sample, back to back. */
  readonly data: ArrayLike<number>;
  /** Shape of one sample ([] for a scalar such as a class label). */
  readonly sampleShape: readonly number[];
  readonly dtype?: DType;
}

/** Samples held in flat host arrays, one array per field (e.g. images and labels). */
export class TensorDataset {
  readonly length: number;
  private readonly fields: { host: HostArray; sampleShape: readonly number[]; dtype: DType; sampleSize: number }[];

  constructor(...fields: ArrayField[]) {
    if (fields.length === 0) throw new NbitError("INVALID_ARGUMENT", "TensorDataset needs at least one field");
    this.fields = fields.map((f, i) => {
      const where = `TensorDataset field ${i}`;
      if (!isPlainObject(f)) throw new InvalidArgumentError(where, "an object with data and sampleShape", f);
      const dtype = checkOneOf(`${where} dtype`, f.dtype ?? "float32", DTYPES);
      if (!Array.isArray(f.sampleShape)) throw new InvalidArgumentError(`${where} sampleShape`, "a list of non-negative integers", f.sampleShape);
      f.sampleShape.forEach((d, j) => checkInteger(`${where} sampleShape[${j}]`, d, 0));
      if (typeof f.data !== "object" || f.data === null || typeof f.data.length !== "number")
        throw new InvalidArgumentError(`${where} data`, "an array or typed array of numbers", f.data);
      const sampleSize = f.sampleShape.reduce((a, b) => a * b, 1);
      return { host: numbersToHost(f.data, dtype), sampleShape: f.sampleShape, dtype, sampleSize };
    });
    const lengths = this.fields.map((f) => (f.sampleSize === 0 ? (f.host.length === 0 ? 0 : NaN) : f.host.length / f.sampleSize));
    if (lengths.some((l) => l !== lengths[0] || !Number.isInteger(l)))
      throw new NbitError("INVALID_ARGUMENT", `TensorDataset fields hold different numbers of samples: ${lengths.join(", ")}`);
    this.length = lengths[0]!;
  }

  /** The samples at `indices`, stacked into one host tensor per field. */
  batch(indices: ArrayLike<number>): Tensor[] {
    return this.fields.map((f) => {
      const out = allocHost(f.dtype, indices.length * f.sampleSize);
      for (let row = 0; row < indices.length; row++) {
        const idx = indices[row]!;
        out.set(f.host.subarray(idx * f.sampleSize, (idx + 1) * f.sampleSize), row * f.sampleSize);
      }
      return Tensor.fromHost(out, [indices.length, ...f.sampleShape], f.dtype);
    });
  }
}

export interface DataLoaderOptions {
  readonly batchSize?: number;
  readonly shuffle?: boolean;
  /** Seed of the shuffle; each epoch's order depends only on (seed, epoch), so a resumed run sees the same batches. */
  readonly seed?: number;
  readonly dropLast?: boolean;
}

/** Batches a TensorDataset, with seeded per-epoch shuffling and optional drop-last. */
export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  private epoch = 0;

  constructor(
    readonly dataset: TensorDataset,
    options: DataLoaderOptions = {},
  ) {
    if (!(dataset instanceof TensorDataset)) throw new InvalidArgumentError("DataLoader dataset", "a TensorDataset", dataset);
    if (!isPlainObject(options)) throw new InvalidArgumentError("DataLoader options", "an object", options);
    this.batchSize = checkInteger("DataLoader batchSize", options.batchSize ?? 1, 1);
    this.shuffle = checkBoolean("DataLoader shuffle", options.shuffle ?? false);
    this.seed = checkInteger("DataLoader seed", options.seed ?? 0, 0, 0xffffffff);
    this.dropLast = checkBoolean("DataLoader dropLast", options.dropLast ?? false);
  }

  get length(): number {
    const n = this.dataset.length / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /** Selects the epoch whose order the next iteration follows (the Trainer calls this). */
  setEpoch(epoch: number): void {
    this.epoch = epoch;
  }

  order(epoch = this.epoch): number[] {
    return Array.from(this.sampleOrder(epoch));
  }

  // A typed array: its elements live outside V8's heap, so an epoch's order (alive for the whole
  // epoch) adds nothing to what each young-generation collection copies (bench/rss.ts in @nbit/cpu).
  private sampleOrder(epoch: number): Uint32Array {
    const idx = new Uint32Array(this.dataset.length);
    for (let i = 0; i < idx.length; i++) idx[i] = i;
    if (!this.shuffle) return idx;
    const g = new Generator((this.seed * 1_000_003 + epoch) >>> 0);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = g.int(i + 1);
      const held = idx[i]!;
      idx[i] = idx[j]!;
      idx[j] = held;
    }
    return idx;
  }

  *[Symbol.iterator](): Iterator<Tensor[]> {
    const order = this.sampleOrder(this.epoch);
    for (let b = 0; b < this.length; b++) yield this.dataset.batch(order.subarray(b * this.batchSize, (b + 1) * this.batchSize));
  }
}
