// A minimal nbit backend: plain TypeScript loops over typed arrays, written only against
// @nbit/core's public API. It computes in float32 and keeps float16/bfloat16 values as float32
// numbers that are always exactly representable, so core inserts the rounding casts for it.
import {
  accelerators,
  broadcastStrides,
  FLOAT_FORMATS,
  hostToFloat32,
  isHalfDType,
  KernelRegistry,
  numbersToHost,
  OPS,
  ROUNDED_FLOAT_DTYPES,
  sizeOf,
  type Accelerator,
  type Backend,
  type BackendCapabilities,
  type DType,
  type HostArray,
  type Instruction,
  type KernelSpec,
  type PrimitiveOp,
  type Shape,
  type ValueInfo,
} from "@nbit/core";

/**
 * Float values live in Float32Arrays (so float32 results round as they are stored); int32 and bool
 * live in Float64Arrays, which hold every int32 exactly.
 */
type Values = Float32Array | Float64Array;
interface Buffer {
  readonly data: Values;
}

/** A new array for `n` values of `dtype`. */
const alloc = (dtype: DType, n: number): Values => (dtype === "int32" || dtype === "bool" ? new Float64Array(n) : new Float32Array(n));

/** A kernel: the instruction, its input arrays and their infos, to a new output array. */
type Kernel = (ins: Instruction, args: readonly Values[], infos: readonly ValueInfo[]) => Values;

/** Index into a source of `shape` for each element of `out`, following NumPy broadcasting. */
function sourceIndex(shape: Shape, out: Shape, strides = broadcastStrides(shape, out)): Int32Array {
  const index = new Int32Array(sizeOf(out));
  for (let i = 0; i < index.length; i++) {
    let rest = i;
    let at = 0;
    for (let d = out.length - 1; d >= 0; d--) {
      at += (rest % out[d]!) * strides[d]!;
      rest = Math.floor(rest / out[d]!);
    }
    index[i] = at;
  }
  return index;
}

/** Row-major strides of `shape`. */
const stridesOf = (shape: Shape): number[] => shape.map((_, i) => sizeOf(shape.slice(i + 1)));
/** Reads `x` (of `shape`) at `map`ped positions. */
const take = (x: Values, map: Int32Array): Values => {
  const out = x instanceof Float64Array ? new Float64Array(map.length) : new Float32Array(map.length);
  map.forEach((i, o) => (out[o] = x[i]!));
  return out;
};

const unary =
  (f: (x: number) => number): Kernel =>
  (_ins, [x]) =>
    x!.map(f);
const binary =
  (f: (x: number, y: number) => number): Kernel =>
  (ins, [a, b], [ia, ib]) => {
    const [sa, sb] = [sourceIndex(ia!.shape, ins.shape), sourceIndex(ib!.shape, ins.shape)];
    const out = alloc(ins.dtype, sizeOf(ins.shape));
    for (let i = 0; i < out.length; i++) out[i] = f(a![sa[i]!]!, b![sb[i]!]!);
    return out;
  };

function reduce(x: Values, shape: Shape, axes: readonly number[], sum: boolean, dtype: DType): Values {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const target = sourceIndex(kept, shape); // where each input element lands
  const acc = new Float64Array(sizeOf(kept)).fill(sum ? 0 : -Infinity);
  x.forEach((v, i) => {
    const o = target[i]!;
    acc[o] = sum ? acc[o]! + v : v > acc[o]! || v !== v ? v : acc[o]!;
  });
  const out = alloc(dtype, acc.length);
  out.set(acc);
  return out;
}

/** Batched matmul: each batch of the output reads its (broadcast) batches of a and b. */
const matmul: Kernel = (ins, [a, b], [ia, ib]) => {
  const [m, k] = ia!.shape.slice(-2) as [number, number];
  const n = ib!.shape.at(-1)!;
  const batch = ins.shape.slice(0, -2);
  const [ba, bb] = [sourceIndex(ia!.shape.slice(0, -2), batch), sourceIndex(ib!.shape.slice(0, -2), batch)];
  const out = new Float32Array(sizeOf(ins.shape));
  for (let t = 0; t < sizeOf(batch); t++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a![ba[t]! * m * k + i * k + p]! * b![bb[t]! * k * n + p * n + j]!;
        out[(t * m + i) * n + j] = s;
      }
  return out;
};

function cast(x: Values, to: DType): Values {
  if (isHalfDType(to)) return FLOAT_FORMATS[to].roundInPlace(Float32Array.from(x));
  if (to === "int32") return Float64Array.from(x, Math.trunc);
  if (to === "bool") return Float64Array.from(x, (v) => (v !== 0 ? 1 : 0));
  return Float32Array.from(x);
}

/** The box of `x` that starts at `starts` and has the output's shape. */
const slice: Kernel = (ins, [x], [info]) => {
  const strides = stridesOf(info!.shape);
  const offset = ins.attrs.starts!.reduce((o, s, d) => o + s * strides[d]!, 0);
  return take(
    x!,
    sourceIndex(ins.shape, ins.shape, strides).map((i) => i + offset),
  );
};

/** `x` written into a box of the output (pad, and each part of concat), the rest left as it is. */
function place(out: Values, outShape: Shape, x: Values, shape: Shape, at: readonly number[]): Values {
  const offset = at.reduce((o, a, d) => o + a * stridesOf(outShape)[d]!, 0);
  sourceIndex(shape, shape, stridesOf(outShape)).forEach((o, i) => (out[offset + o] = x[i]!));
  return out;
}

/** [pre, size, post] around `axis`, for gather and indexAdd. */
const around = (shape: Shape, axis: number) => [sizeOf(shape.slice(0, axis)), shape[axis]!, sizeOf(shape.slice(axis + 1))] as const;

const STORED: DType[] = ["float32", "int32", "bool"];
const NUMERIC: DType[] = ["float32", "int32"];
const F32: DType[] = ["float32"];
const k = (op: PrimitiveOp, dtypes: readonly DType[], kernel: Kernel): KernelSpec<Kernel> => ({ op, dtypes, kernel });

// 1. Kernels, registered per op and dtype. Capabilities are derived from them, so an op left out
// (here the convolutions and pooling) is declared unsupported by not being registered.
export const NAIVE_KERNELS = new KernelRegistry<Kernel>("naive", [
  k(
    "neg",
    F32,
    unary((x) => -x),
  ),
  k("exp", F32, unary(Math.exp)),
  k("log", F32, unary(Math.log)),
  k("sqrt", F32, unary(Math.sqrt)),
  k("tanh", F32, unary(Math.tanh)),
  k(
    "relu",
    NUMERIC,
    unary((x) => (x > 0 || x !== x ? x : 0)),
  ),
  k(
    "add",
    NUMERIC,
    binary((x, y) => x + y),
  ),
  k(
    "sub",
    NUMERIC,
    binary((x, y) => x - y),
  ),
  k(
    "mul",
    NUMERIC,
    binary((x, y) => x * y),
  ),
  k(
    "div",
    F32,
    binary((x, y) => x / y),
  ),
  k(
    "maximum",
    NUMERIC,
    binary((x, y) => (x !== x || x > y ? x : y)),
  ),
  k(
    "less",
    NUMERIC,
    binary((x, y) => (x < y ? 1 : 0)),
  ),
  k(
    "equal",
    STORED,
    binary((x, y) => (x === y ? 1 : 0)),
  ),
  k("where", STORED, (ins, [c, a, b], infos) => {
    const [ic, ia, ib] = infos.map((info) => sourceIndex(info.shape, ins.shape));
    const out = alloc(ins.dtype, sizeOf(ins.shape));
    for (let i = 0; i < out.length; i++) out[i] = c![ic![i]!] ? a![ia![i]!]! : b![ib![i]!]!;
    return out;
  }),
  k("sum", NUMERIC, (ins, [x], [info]) => reduce(x!, info!.shape, ins.attrs.axes!, true, ins.dtype)),
  k("max", NUMERIC, (ins, [x], [info]) => reduce(x!, info!.shape, ins.attrs.axes!, false, ins.dtype)),
  k("reshape", STORED, (_ins, [x]) => x!),
  k("expand", STORED, (ins, [x], [info]) => take(x!, sourceIndex(info!.shape, ins.shape))),
  k("transpose", STORED, (ins, [x], [info]) =>
    take(
      x!,
      sourceIndex(
        ins.shape,
        ins.shape,
        ins.attrs.perm!.map((p) => stridesOf(info!.shape)[p]!),
      ),
    ),
  ),
  k("matmul", F32, matmul),
  k("cast", STORED, (ins, [x]) => cast(x!, ins.dtype)),
  k("gather", STORED, (ins, [x, index], [info]) => {
    const [pre, size, post] = around(info!.shape, ins.attrs.axis!);
    const out = alloc(ins.dtype, sizeOf(ins.shape));
    for (let p = 0; p < pre; p++)
      index!.forEach((j, i) => out.set(x!.subarray((p * size + j) * post, (p * size + j + 1) * post), (p * index!.length + i) * post));
    return out;
  }),
  k("indexAdd", NUMERIC, (ins, [base, index, updates], [info]) => {
    const [pre, size, post] = around(info!.shape, ins.attrs.axis!);
    const out = base!.slice();
    for (let p = 0; p < pre; p++)
      index!.forEach((j, i) =>
        updates!.subarray((p * index!.length + i) * post, (p * index!.length + i + 1) * post).forEach((u, q) => (out[(p * size + j) * post + q]! += u)),
      );
    return out;
  }),
  k("slice", STORED, slice),
  k("pad", STORED, (ins, [x], [info]) => place(alloc(ins.dtype, sizeOf(ins.shape)).fill(ins.attrs.fill!), ins.shape, x!, info!.shape, ins.attrs.before!)),
  k("concat", STORED, (ins, args, infos) => {
    let offset = 0;
    return args.reduce(
      (out, x, i) => {
        const at = ins.shape.map((_, d) => (d === ins.attrs.axis ? offset : 0));
        offset += infos[i]!.shape[ins.attrs.axis!]!;
        return place(out, ins.shape, x, infos[i]!.shape, at);
      },
      alloc(ins.dtype, sizeOf(ins.shape)),
    );
  }),
]);

export const NAIVE_CAPABILITIES: BackendCapabilities = NAIVE_KERNELS.capabilities("eager", {
  float32: "native",
  int32: "native",
  bool: "native",
  ...Object.fromEntries(ROUNDED_FLOAT_DTYPES.map((d) => [d, "float32"])),
});

// 2. The backend: upload/download in core's host layout, and dispatch to the registered kernel.
export class NaiveBackend implements Backend {
  readonly name = "naive";
  readonly capabilities = NAIVE_CAPABILITIES;

  upload(data: HostArray, dtype: DType): Buffer {
    return { data: isHalfDType(dtype) ? hostToFloat32(data, dtype) : dtype === "float32" ? Float32Array.from(data) : Float64Array.from(data) };
  }

  download(buffer: object, dtype: DType): HostArray {
    return numbersToHost((buffer as Buffer).data, dtype);
  }

  execute(ins: Instruction, inputs: readonly object[], infos: readonly ValueInfo[]): Buffer {
    if (ins.op === "const") return { data: alloc(ins.dtype, sizeOf(ins.shape)).fill(ins.value!) };
    // Narrow floats are float32 numbers here, so they run float32 kernels.
    const operand = infos[OPS[ins.op].operand]!.dtype;
    const kernel = NAIVE_KERNELS.get(ins.op, isHalfDType(operand) ? "float32" : operand);
    return {
      data: kernel(
        ins,
        (inputs as Buffer[]).map((b) => b.data),
        infos,
      ),
    };
  }
}

// 3. The accelerator: what it supports, whether it is available, and how to make its backend.
export class NaiveAccelerator implements Accelerator {
  readonly name = "naive";
  readonly description = "plain TypeScript loops (the custom-backend example)";
  readonly supportedPrecisions = ["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"] as const;
  readonly legacyHalfPrecision = "16-mixed" as const;
  // A CPU backend: PyTorch's CPU autocast lists (a table of its own would do too).
  readonly autocastPolicy = "cpu" as const;
  readonly precisionHints = { "64-true": "The naive backend computes in float32 only." };
  isAvailable() {
    return { available: true } as const;
  }
  deviceCount() {
    return 1;
  }
  createBackend() {
    return new NaiveBackend();
  }
}

// 4. Registration under its own name; priority -10 keeps "auto" on the real backends. Declaring the
// name lets `new Trainer({ accelerator: "naive" })` type-check wherever this package is imported.
declare module "@nbit/core" {
  interface AcceleratorNames {
    naive: true;
  }
}

export function registerNaive(priority = -10): void {
  accelerators.register("naive", () => new NaiveAccelerator(), { priority, override: true });
}
