// A minimal nbit backend: plain TypeScript loops over Float32Array, written only against
// @nbit/core's public API. It computes in float32 and keeps float16/bfloat16 values as float32
// numbers that are always exactly representable, so core inserts the rounding casts for it.
import {
  accelerators,
  broadcastStrides,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  hostToFloat32,
  isHalfDType,
  numbersToHost,
  PRIMITIVE_OPS,
  roundFloat32ArrayToBfloat16,
  roundFloat32ArrayToFloat16,
  sizeOf,
  type Accelerator,
  type Backend,
  type BackendCapabilities,
  type DType,
  type HostArray,
  type Instruction,
  type Shape,
  type ValueInfo,
} from "@nbit/core";

/** Every buffer is a Float32Array (int32 and bool values included: they are small integers). */
interface Buffer {
  readonly data: Float32Array;
}

const STORED: DType[] = ["float32", "int32", "bool"];

// 1. Capabilities are data: what the backend holds and which dtypes each primitive runs in.
export const NAIVE_CAPABILITIES: BackendCapabilities = {
  execution: "eager",
  storage: { float32: "native", int32: "native", bool: "native", float16: "float32", bfloat16: "float32" },
  ops: Object.fromEntries(PRIMITIVE_OPS.map((op) => [op, op === "matmul" || op === "div" || op === "exp" || op === "log" || op === "sqrt" || op === "tanh" || op === "neg" ? ["float32"] : STORED])),
};

/** Index into a source of `shape` for each element of `out`, following NumPy broadcasting. */
function sourceIndex(shape: Shape, out: Shape): Int32Array {
  const strides = broadcastStrides(shape, out);
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

const UNARY: Record<string, (x: number) => number> = { neg: (x) => -x, exp: Math.exp, log: Math.log, sqrt: Math.sqrt, tanh: Math.tanh };
const BINARY: Record<string, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  maximum: (x, y) => (x !== x || x > y ? x : y),
  less: (x, y) => (x < y ? 1 : 0),
  equal: (x, y) => (x === y ? 1 : 0),
};

function reduce(x: Float32Array, shape: Shape, axes: readonly number[], sum: boolean): Float32Array {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const target = sourceIndex(kept, shape); // where each input element lands
  const acc = new Float64Array(sizeOf(kept)).fill(sum ? 0 : -Infinity);
  x.forEach((v, i) => {
    const o = target[i]!;
    acc[o] = sum ? acc[o]! + v : v > acc[o]! || v !== v ? v : acc[o]!;
  });
  return Float32Array.from(acc);
}

function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
      out[i * n + j] = s;
    }
  return out;
}

function cast(x: Float32Array, to: DType): Float32Array {
  if (to === "bfloat16") return roundFloat32ArrayToBfloat16(Float32Array.from(x));
  if (to === "float16") return roundFloat32ArrayToFloat16(Float32Array.from(x));
  if (to === "int32") return x.map(Math.trunc);
  if (to === "bool") return x.map((v) => (v !== 0 ? 1 : 0));
  return Float32Array.from(x);
}

// 2. The backend: upload/download in core's host layout, and one kernel per primitive.
export class NaiveBackend implements Backend {
  readonly name = "naive";
  readonly capabilities = NAIVE_CAPABILITIES;

  upload(data: HostArray, dtype: DType): Buffer {
    return { data: isHalfDType(dtype) ? hostToFloat32(data, dtype) : Float32Array.from(data) };
  }

  download(buffer: object, dtype: DType): HostArray {
    const { data } = buffer as Buffer;
    if (dtype === "float16") return float32ArrayToFloat16(data);
    if (dtype === "bfloat16") return float32ArrayToBfloat16(data);
    return numbersToHost(data, dtype);
  }

  execute(ins: Instruction, inputs: readonly object[], infos: readonly ValueInfo[]): Buffer {
    const args = (inputs as Buffer[]).map((b) => b.data);
    const size = sizeOf(ins.shape);
    const at = (k: number) => sourceIndex(infos[k]!.shape, ins.shape);
    switch (ins.op) {
      case "const":
        return { data: new Float32Array(size).fill(ins.value!) };
      case "matmul":
        return { data: matmul(args[0]!, args[1]!, infos[0]!.shape[0]!, infos[0]!.shape[1]!, infos[1]!.shape[1]!) };
      case "sum":
      case "max":
        return { data: reduce(args[0]!, infos[0]!.shape, ins.attrs.axes!, ins.op === "sum") };
      case "reshape":
        return { data: args[0]! };
      case "expand": {
        const index = at(0);
        return { data: Float32Array.from(index, (i) => args[0]![i]!) };
      }
      case "transpose": {
        const src = infos[0]!.shape;
        const strides = ins.attrs.perm!.map((p) => sizeOf(src.slice(p + 1)));
        const out = new Float32Array(size);
        for (let i = 0; i < size; i++) {
          let rest = i;
          let from = 0;
          for (let d = ins.shape.length - 1; d >= 0; d--) {
            from += (rest % ins.shape[d]!) * strides[d]!;
            rest = Math.floor(rest / ins.shape[d]!);
          }
          out[i] = args[0]![from]!;
        }
        return { data: out };
      }
      case "where": {
        const [c, a, b] = [at(0), at(1), at(2)];
        return { data: Float32Array.from({ length: size }, (_, i) => (args[0]![c[i]!] ? args[1]![a[i]!]! : args[2]![b[i]!]!)) };
      }
      case "cast":
        return { data: cast(args[0]!, ins.dtype) };
      default: {
        const unary = UNARY[ins.op];
        if (unary) return { data: args[0]!.map(unary) };
        const [a, b] = [at(0), at(1)];
        const f = BINARY[ins.op]!;
        return { data: Float32Array.from({ length: size }, (_, i) => f(args[0]![a[i]!]!, args[1]![b[i]!]!)) };
      }
    }
  }
}

// 3. The accelerator: what it supports, whether it is available, and how to make its backend.
export class NaiveAccelerator implements Accelerator {
  readonly name = "naive";
  readonly description = "plain TypeScript loops (the custom-backend example)";
  readonly supportedPrecisions = ["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"] as const;
  readonly legacyHalfPrecision = "16-mixed" as const;
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

// 4. Registration under its own name; priority 0 keeps "auto" on the real backends. Declaring the
// name lets `new Trainer({ accelerator: "naive" })` type-check wherever this package is imported.
declare module "@nbit/core" {
  interface AcceleratorNames {
    naive: true;
  }
}

export function registerNaive(priority = -10): void {
  accelerators.register("naive", () => new NaiveAccelerator(), { priority, override: true });
}
