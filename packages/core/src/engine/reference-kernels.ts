import { allocHost, type DType, type HostArray } from "../dtype.js";
import { roundFloat32ArrayToBfloat16 } from "../numerics/bfloat16.js";
import { castHost } from "../numerics/convert.js";
import type { Accelerator } from "../accelerator.js";
import { CANONICAL_PRECISIONS, type Precision } from "../precision/parse.js";
import type { Backend, BackendCapabilities, Instruction, ValueInfo } from "./backend.js";
import { broadcastStrides, PRIMITIVE_OPS, sizeOf, type BinaryOp, type PrimitiveOp, type Shape, type UnaryOp } from "./primitives.js";

/** Buffers hold core's host layout (bfloat16 as raw bits); they are never written after creation. */
export interface TypedBuffer {
  readonly data: HostArray;
}

const UNARY_EXPR: Record<UnaryOp, string> = {
  neg: "-x",
  exp: "Math.exp(x)",
  log: "Math.log(x)",
  sqrt: "Math.sqrt(x)",
  tanh: "Math.tanh(x)",
};

const BINARY_EXPR: Record<BinaryOp, string> = {
  add: "x + y",
  sub: "x - y",
  mul: "x * y",
  div: "x / y",
  // NaN propagates, as torch.maximum does.
  maximum: "x !== x || x > y ? x : y",
  less: "x < y ? 1 : 0",
  equal: "x === y ? 1 : 0",
};

type UnaryKernel = (out: HostArray, x: HostArray, n: number) => void;
type BinaryKernel = (out: HostArray, a: HostArray, b: HostArray, ia: Int32Array | null, ib: Int32Array | null, n: number) => void;

// Generated once per op so each loop is monomorphic and the engine can optimise it.
const unaryKernels = Object.fromEntries(
  Object.entries(UNARY_EXPR).map(([op, expr]) => [op, new Function("out", "a", "n", `for (let i = 0; i < n; i++) { const x = a[i]; out[i] = ${expr}; }`)]),
) as Record<UnaryOp, UnaryKernel>;

const binaryKernels = Object.fromEntries(
  Object.entries(BINARY_EXPR).map(([op, expr]) => [
    op,
    new Function(
      "out",
      "a",
      "b",
      "ia",
      "ib",
      "n",
      `if (ia === null && ib === null) { for (let i = 0; i < n; i++) { const x = a[i], y = b[i]; out[i] = ${expr}; } return; }
       for (let i = 0; i < n; i++) { const x = a[ia === null ? i : ia[i]], y = b[ib === null ? i : ib[i]]; out[i] = ${expr}; }`,
    ),
  ]),
) as Record<BinaryOp, BinaryKernel>;

const indexCache = new Map<string, Int32Array | null>();

/** For each element of `outShape`, the index of the element of `shape` it reads (null: the identity). */
function broadcastIndex(shape: Shape, outShape: Shape): Int32Array | null {
  if (shape.length === outShape.length && shape.every((d, i) => d === outShape[i])) return null;
  const key = `${shape.join(",")}>${outShape.join(",")}`;
  let map = indexCache.get(key);
  if (map !== undefined) return map;
  map = stridedIndex(outShape, broadcastStrides(shape, outShape));
  if (indexCache.size > 512) indexCache.clear();
  indexCache.set(key, map);
  return map;
}

/** The flat source index of each element of `outShape` when the source has `strides`. */
function stridedIndex(outShape: Shape, strides: readonly number[]): Int32Array {
  const size = sizeOf(outShape);
  const map = new Int32Array(size);
  const rank = outShape.length;
  const counter = new Array<number>(rank).fill(0);
  let offset = 0;
  for (let i = 0; i < size; i++) {
    map[i] = offset;
    for (let d = rank - 1; d >= 0; d--) {
      counter[d]!++;
      offset += strides[d]!;
      if (counter[d]! < outShape[d]!) break;
      offset -= strides[d]! * outShape[d]!;
      counter[d] = 0;
    }
  }
  return map;
}

function reduce(op: "sum" | "max", x: HostArray, shape: Shape, axes: readonly number[], outDType: DType): HostArray {
  const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outSize = sizeOf(outShape);
  // Float64 accumulators: the result is rounded once, into the output dtype.
  const acc = new Float64Array(outSize).fill(op === "sum" ? 0 : -Infinity);
  const map = stridedIndex(shape, broadcastStrides(outShape, shape));
  if (op === "sum") for (let i = 0; i < x.length; i++) acc[map[i]!]! += x[i]!;
  else
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      const o = map[i]!;
      if (v > acc[o]! || v !== v) acc[o] = v;
    }
  const out = allocHost(outDType, outSize);
  out.set(acc);
  return out;
}

function matmul(a: Float32Array | Float64Array, b: Float32Array | Float64Array, m: number, k: number, n: number, roundInputs: boolean) {
  if (roundInputs && a instanceof Float32Array && b instanceof Float32Array) {
    // MXU semantics: inputs are rounded to bfloat16, products accumulate in float32.
    a = roundFloat32ArrayToBfloat16(Float32Array.from(a));
    b = roundFloat32ArrayToBfloat16(Float32Array.from(b));
  }
  // Accumulates in the operands' own type: float32 rows for float32, float64 for float64.
  const out = a instanceof Float64Array ? new Float64Array(m * n) : new Float32Array(m * n);
  const row = a instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p]!;
      const off = p * n;
      for (let j = 0; j < n; j++) row[j]! += aip * b[off + j]!;
    }
    out.set(row, i * n);
  }
  return out;
}

export interface KernelOptions {
  /** Round float32 matmul inputs to bfloat16 (TPU MXU behaviour). */
  readonly roundMatmulInputsToBfloat16?: boolean;
}

/** Runs one instruction of a core program on host typed arrays. */
export function executeInstruction(
  ins: Instruction,
  inputs: readonly TypedBuffer[],
  infos: readonly ValueInfo[],
  options: KernelOptions,
): TypedBuffer {
  const size = sizeOf(ins.shape);
  const arg = (i: number) => inputs[i]!.data;
  switch (ins.op) {
    case "const":
      return { data: fill(ins, size) };
    case "neg":
    case "exp":
    case "log":
    case "sqrt":
    case "tanh": {
      const out = allocHost(ins.dtype, size);
      unaryKernels[ins.op](out, arg(0), size);
      return { data: out };
    }
    case "add":
    case "sub":
    case "mul":
    case "div":
    case "maximum":
    case "less":
    case "equal": {
      const out = allocHost(ins.dtype, size);
      binaryKernels[ins.op](out, arg(0), arg(1), broadcastIndex(infos[0]!.shape, ins.shape), broadcastIndex(infos[1]!.shape, ins.shape), size);
      return { data: out };
    }
    case "where": {
      const out = allocHost(ins.dtype, size);
      const [c, a, b] = [arg(0), arg(1), arg(2)];
      const [ic, ia, ib] = [0, 1, 2].map((i) => broadcastIndex(infos[i]!.shape, ins.shape));
      for (let i = 0; i < size; i++) out[i] = c[ic ? ic[i]! : i] ? a[ia ? ia[i]! : i]! : b[ib ? ib[i]! : i]!;
      return { data: out };
    }
    case "sum":
    case "max":
      return { data: reduce(ins.op, arg(0), infos[0]!.shape, ins.attrs.axes!, ins.dtype) };
    case "reshape":
      return inputs[0]!;
    case "expand":
    case "transpose": {
      const src = infos[0]!.shape;
      const map =
        ins.op === "expand"
          ? broadcastIndex(src, ins.shape)!
          : stridedIndex(ins.shape, ins.attrs.perm!.map((p) => sizeOf(src.slice(p + 1))));
      const x = arg(0);
      const out = allocHost(ins.dtype, size);
      for (let i = 0; i < size; i++) out[i] = x[map[i]!]!;
      return { data: out };
    }
    case "matmul": {
      const [m, k] = infos[0]!.shape as [number, number];
      const n = infos[1]!.shape[1]!;
      return { data: matmul(arg(0) as Float32Array, arg(1) as Float32Array, m, k, n, options.roundMatmulInputsToBfloat16 ?? false) };
    }
    case "cast":
      return { data: castHost(arg(0), infos[0]!.dtype, ins.dtype) };
  }
}

function fill(ins: Instruction, size: number): HostArray {
  const one = castHost(new Float64Array([ins.value!]), "float64", ins.dtype);
  const out = allocHost(ins.dtype, size);
  out.fill(one[0]!);
  return out;
}

const ALL_STORED: DType[] = ["float64", "float32", "float16", "bfloat16", "int32", "bool", "uint8", "int8"];
const FLOAT_OPS: PrimitiveOp[] = ["neg", "exp", "log", "sqrt", "tanh", "div", "matmul"];
const NUMERIC_OPS: PrimitiveOp[] = ["add", "sub", "mul", "maximum", "less", "sum", "max"];

/** Capabilities of host kernels over `stored` dtypes, computing in `compute` float types. */
export function referenceCapabilities(stored: readonly DType[], compute: readonly DType[]): BackendCapabilities {
  return {
    execution: "eager",
    storage: Object.fromEntries(stored.map((d) => [d, "native"])),
    ops: Object.fromEntries(
      PRIMITIVE_OPS.map((op) => {
        if (FLOAT_OPS.includes(op)) return [op, compute];
        if (NUMERIC_OPS.includes(op)) return [op, [...compute, "int32"]];
        return [op, op === "equal" ? [...compute, "int32", "bool"] : stored];
      }),
    ),
  };
}

/**
 * Core's reference backend: plain TypeScript kernels over typed arrays, float64 and float32
 * compute, every dtype stored. It is the oracle of the conformance kit and the base that
 * TypeScript backends build on; it is not registered as an accelerator.
 */
export class ReferenceBackend implements Backend {
  readonly name: string = "reference";
  readonly capabilities: BackendCapabilities = referenceCapabilities(ALL_STORED, ["float64", "float32"]);
  protected readonly kernelOptions: KernelOptions = {};

  upload(data: HostArray): TypedBuffer {
    return { data: data.slice() };
  }

  download(buffer: object): HostArray {
    return (buffer as TypedBuffer).data.slice();
  }

  execute(ins: Instruction, inputs: readonly object[], infos: readonly ValueInfo[]): TypedBuffer {
    return executeInstruction(ins, inputs as TypedBuffer[], infos, this.kernelOptions);
  }
}

export interface ReferenceAcceleratorOptions {
  readonly name?: string;
  readonly supportedPrecisions?: readonly Precision[];
  readonly legacyHalfPrecision?: Precision;
  /** A reason makes the accelerator unavailable (for testing "auto" and error messages). */
  readonly unavailableReason?: string;
  /** The backend it creates (default: a new ReferenceBackend). */
  readonly backend?: () => Backend;
}

/**
 * An accelerator over the reference kernels (every precision by default). For tests, examples
 * and conformance runs; not registered anywhere.
 */
export function referenceAccelerator(options: ReferenceAcceleratorOptions = {}): Accelerator {
  const name = options.name ?? "reference";
  return {
    name,
    description: `core's TypeScript reference kernels (${name})`,
    supportedPrecisions: options.supportedPrecisions ?? CANONICAL_PRECISIONS,
    legacyHalfPrecision: options.legacyHalfPrecision ?? "16-mixed",
    isAvailable: () => (options.unavailableReason ? { available: false, reason: options.unavailableReason } : { available: true }),
    deviceCount: () => (options.unavailableReason ? 0 : 1),
    createBackend: options.backend ?? (() => new ReferenceBackend()),
  };
}
