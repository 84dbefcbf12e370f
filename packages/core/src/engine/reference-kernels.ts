import { allocHost, type DType, type HostArray } from "../dtype.js";
import { NbitError } from "../errors.js";
import { castHost } from "../numerics/convert.js";
import { ROUNDED_FLOAT_DTYPES } from "../numerics/formats.js";
import type { Accelerator } from "../accelerator.js";
import type { AutocastDeviceType, AutocastPolicy } from "./autocast-policy.js";
import { CANONICAL_PRECISIONS, type Precision } from "../precision/parse.js";
import type { Backend, BackendCapabilities, Instruction, ValueInfo } from "./backend.js";
import { KernelRegistry, type KernelSpec } from "./kernels.js";
import { OPS } from "./ops.js";
import { broadcastStrides, sizeOf, type Shape } from "./primitives.js";

/** Buffers hold core's host layout (bfloat16 as raw bits); they are never written after creation. */
export interface TypedBuffer {
  readonly data: HostArray;
}

/** A kernel over host typed arrays: the instruction, its input arrays and their infos, to a new output array. */
export type HostKernel = (ins: Instruction, inputs: readonly HostArray[], infos: readonly ValueInfo[]) => HostArray;

type FloatArray = Float32Array | Float64Array;

const UNARY_EXPR = {
  neg: "-x",
  exp: "Math.exp(x)",
  log: "Math.log(x)",
  sqrt: "Math.sqrt(x)",
  tanh: "Math.tanh(x)",
} as const;

const BINARY_EXPR = {
  add: "x + y",
  sub: "x - y",
  mul: "x * y",
  div: "x / y",
  // NaN propagates, as torch.maximum does.
  maximum: "x !== x || x > y ? x : y",
  less: "x < y ? 1 : 0",
  equal: "x === y ? 1 : 0",
} as const;

type UnaryLoop = (out: HostArray, x: HostArray, n: number) => void;
type BinaryLoop = (out: HostArray, a: HostArray, b: HostArray, ia: Int32Array | null, ib: Int32Array | null, n: number) => void;

// Generated once per op so each loop is monomorphic and the engine can optimise it.
const unaryLoop = (expr: string) => new Function("out", "a", "n", `for (let i = 0; i < n; i++) { const x = a[i]; out[i] = ${expr}; }`) as UnaryLoop;
const binaryLoop = (expr: string) =>
  new Function(
    "out",
    "a",
    "b",
    "ia",
    "ib",
    "n",
    `if (ia === null && ib === null) { for (let i = 0; i < n; i++) { const x = a[i], y = b[i]; out[i] = ${expr}; } return; }
     for (let i = 0; i < n; i++) { const x = a[ia === null ? i : ia[i]], y = b[ib === null ? i : ib[i]]; out[i] = ${expr}; }`,
  ) as BinaryLoop;

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

/** Batched matmul; products accumulate in the operands' own type (float32 rows for float32). */
function matmul(ins: Instruction, [a, b]: readonly HostArray[], [ia, ib]: readonly ValueInfo[]): HostArray {
  const [m, k] = ia!.shape.slice(-2) as [number, number];
  const n = ib!.shape.at(-1)!;
  const batchShape = ins.shape.slice(0, -2);
  const batches = sizeOf(batchShape);
  const aBatch = broadcastIndex(ia!.shape.slice(0, -2), batchShape);
  const bBatch = broadcastIndex(ib!.shape.slice(0, -2), batchShape);
  const out = allocHost(ins.dtype, batches * m * n) as FloatArray;
  const row = out instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
  for (let t = 0; t < batches; t++) {
    const ao = (aBatch ? aBatch[t]! : t) * m * k;
    const bo = (bBatch ? bBatch[t]! : t) * k * n;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const aip = a![ao + i * k + p]!;
        const off = bo + p * n;
        for (let j = 0; j < n; j++) row[j]! += aip * b![off + j]!;
      }
      out.set(row, (t * m + i) * n);
    }
  }
  return out;
}

/** NCHW convolution with stride, zero padding, dilation and groups; accumulates in the output's type. */
function conv2d(ins: Instruction, [x, w]: readonly HostArray[], [ix, iw]: readonly ValueInfo[]): HostArray {
  const [n, c, h, wd] = ix!.shape as [number, number, number, number];
  const [o, cg, kh, kw] = iw!.shape as [number, number, number, number];
  const [, , oh, ow] = ins.shape as [number, number, number, number];
  const [sh, sw] = ins.attrs.stride!;
  const [ph, pw] = ins.attrs.padding!;
  const [dh, dw] = ins.attrs.dilation!;
  const og = o / ins.attrs.groups!;
  const out = allocHost(ins.dtype, n * o * oh * ow) as FloatArray;
  const plane = out instanceof Float64Array ? new Float64Array(oh * ow) : new Float32Array(oh * ow);
  for (let b = 0; b < n; b++)
    for (let oc = 0; oc < o; oc++) {
      plane.fill(0);
      const group = Math.floor(oc / og);
      for (let icg = 0; icg < cg; icg++) {
        const xBase = (b * c + group * cg + icg) * h * wd;
        for (let u = 0; u < kh; u++)
          for (let v = 0; v < kw; v++) {
            const wv = w![((oc * cg + icg) * kh + u) * kw + v]!;
            for (let y = 0; y < oh; y++) {
              const iy = y * sh - ph + u * dh;
              if (iy < 0 || iy >= h) continue;
              const rowBase = xBase + iy * wd;
              for (let z = 0; z < ow; z++) {
                const iz = z * sw - pw + v * dw;
                if (iz >= 0 && iz < wd) plane[y * ow + z]! += wv * x![rowBase + iz]!;
              }
            }
          }
      }
      out.set(plane, (b * o + oc) * oh * ow);
    }
  return out;
}

/** The transpose (adjoint) of conv2d with respect to its input: scatters each input value through the kernel. */
function convTranspose2d(ins: Instruction, [x, w]: readonly HostArray[], [ix, iw]: readonly ValueInfo[]): HostArray {
  const [n, c, h, wd] = ix!.shape as [number, number, number, number];
  const [, ocg, kh, kw] = iw!.shape as [number, number, number, number];
  const [, o, oh, ow] = ins.shape as [number, number, number, number];
  const [sh, sw] = ins.attrs.stride!;
  const [ph, pw] = ins.attrs.padding!;
  const [dh, dw] = ins.attrs.dilation!;
  const cg = c / ins.attrs.groups!;
  const out = allocHost(ins.dtype, n * o * oh * ow) as FloatArray;
  const plane = out instanceof Float64Array ? new Float64Array(oh * ow) : new Float32Array(oh * ow);
  for (let b = 0; b < n; b++)
    for (let oc = 0; oc < o; oc++) {
      plane.fill(0);
      const group = Math.floor(oc / ocg);
      const ocl = oc - group * ocg;
      for (let icg = 0; icg < cg; icg++) {
        const ic = group * cg + icg;
        const xBase = (b * c + ic) * h * wd;
        for (let u = 0; u < kh; u++)
          for (let v = 0; v < kw; v++) {
            const wv = w![((ic * ocg + ocl) * kh + u) * kw + v]!;
            for (let y = 0; y < h; y++) {
              const ty = y * sh - ph + u * dh;
              if (ty < 0 || ty >= oh) continue;
              for (let z = 0; z < wd; z++) {
                const tz = z * sw - pw + v * dw;
                if (tz >= 0 && tz < ow) plane[ty * ow + tz]! += wv * x![xBase + y * wd + z]!;
              }
            }
          }
      }
      out.set(plane, (b * o + oc) * oh * ow);
    }
  return out;
}

/** Visits every pooling window: `visit(outIndex, planeBase, inputPositions)` with positions inside the input only. */
function pool(ins: Instruction, info: ValueInfo, visit: (outIndex: number, plane: number, positions: readonly number[]) => void): void {
  const [n, c, h, w] = info.shape as [number, number, number, number];
  const [, , oh, ow] = ins.shape as [number, number, number, number];
  const [kh, kw] = ins.attrs.kernel!;
  const [sh, sw] = ins.attrs.stride!;
  const [ph, pw] = ins.attrs.padding!;
  const [dh, dw] = ins.attrs.dilation ?? [1, 1];
  const positions: number[] = [];
  for (let p = 0; p < n * c; p++)
    for (let y = 0; y < oh; y++)
      for (let z = 0; z < ow; z++) {
        positions.length = 0;
        for (let u = 0; u < kh; u++) {
          const iy = y * sh - ph + u * dh;
          if (iy < 0 || iy >= h) continue;
          for (let v = 0; v < kw; v++) {
            const iz = z * sw - pw + v * dw;
            if (iz >= 0 && iz < w) positions.push(iy * w + iz);
          }
        }
        visit((p * oh + y) * ow + z, p * h * w, positions);
      }
}

/** Index (within its H x W plane) of each window's first maximum; NaN wins, as in PyTorch. */
function argmaxPool(ins: Instruction, x: HostArray, info: ValueInfo): Int32Array {
  const out = new Int32Array(sizeOf(ins.shape));
  pool(ins, info, (o, plane, positions) => {
    let best = -Infinity;
    let at = positions[0]!;
    for (const q of positions) {
      const v = x[plane + q]!;
      if (v > best || v !== v) {
        best = v;
        at = q;
        if (v !== v) break;
      }
    }
    out[o] = at;
  });
  return out;
}

/** [pre, size, post] view of `shape` around `axis`. */
const around = (shape: Shape, axis: number): [number, number, number] => [sizeOf(shape.slice(0, axis)), shape[axis]!, sizeOf(shape.slice(axis + 1))];

function checkIndex(op: string, i: number, size: number): number {
  if (!(i >= 0 && i < size)) throw new NbitError("INDEX_OUT_OF_RANGE", `${op}: index ${i} is out of range for an axis of size ${size}`);
  return i;
}

function gather(ins: Instruction, [data, index]: readonly HostArray[], [info]: readonly ValueInfo[]): HostArray {
  const [pre, size, post] = around(info!.shape, ins.attrs.axis!);
  const k = index!.length;
  const out = allocHost(ins.dtype, pre * k * post);
  for (let p = 0; p < pre; p++)
    for (let j = 0; j < k; j++) {
      const from = (p * size + checkIndex("gather", index![j]!, size)) * post;
      out.set(data!.subarray(from, from + post), (p * k + j) * post);
    }
  return out;
}

function indexAdd(ins: Instruction, [base, index, updates]: readonly HostArray[], [info]: readonly ValueInfo[]): HostArray {
  const [pre, size, post] = around(info!.shape, ins.attrs.axis!);
  const k = index!.length;
  const out = base!.slice();
  for (let p = 0; p < pre; p++)
    for (let j = 0; j < k; j++) {
      const to = (p * size + checkIndex("indexAdd", index![j]!, size)) * post;
      const from = (p * k + j) * post;
      for (let q = 0; q < post; q++) out[to + q]! += updates![from + q]!;
    }
  return out;
}

/** Copies a box of `src` (shape `from`, box starting at `start` with shape `box`) into `dst` (shape `to`) at `at`. */
function copyBox(src: HostArray, from: Shape, start: readonly number[], dst: HostArray, to: Shape, at: readonly number[], box: Shape): void {
  if (sizeOf(box) === 0) return;
  const rank = box.length;
  const srcStrides = from.map((_, i) => sizeOf(from.slice(i + 1)));
  const dstStrides = to.map((_, i) => sizeOf(to.slice(i + 1)));
  const inner = box[rank - 1] ?? 1;
  const rows = sizeOf(box.slice(0, -1));
  const counter = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    let d = 0;
    for (let i = 0; i < rank; i++) {
      const c = i < rank - 1 ? counter[i]! : 0;
      s += (start[i]! + c) * srcStrides[i]!;
      d += (at[i]! + c) * dstStrides[i]!;
    }
    dst.set(src.subarray(s, s + inner), d);
    for (let i = rank - 2; i >= 0; i--) {
      if (++counter[i]! < box[i]!) break;
      counter[i] = 0;
    }
  }
}

const zerosAt = (rank: number): number[] => new Array<number>(rank).fill(0);

const elementwiseDTypes = (compute: readonly DType[]) => ({
  float: compute,
  numeric: [...compute, "int32"] as DType[],
});

/**
 * Core's host kernels over float64 and float32 (and int32/bool where an op takes them). They are
 * the reference backend's kernels and the base that TypeScript backends register or wrap.
 */
export function referenceKernels(
  compute: readonly DType[] = ["float64", "float32"],
  stored: readonly DType[] = ["float64", "float32", "int32", "bool", "uint8", "int8"],
): KernelSpec<HostKernel>[] {
  const { float, numeric } = elementwiseDTypes(compute);
  const specs: KernelSpec<HostKernel>[] = [];
  for (const [op, expr] of Object.entries(UNARY_EXPR) as [keyof typeof UNARY_EXPR, string][]) {
    const loop = unaryLoop(expr);
    specs.push({
      op,
      dtypes: float,
      kernel: (ins, [x]) => {
        const out = allocHost(ins.dtype, x!.length);
        loop(out, x!, x!.length);
        return out;
      },
    });
  }
  // relu takes integers too; -0 and everything not above 0 give +0, NaN stays NaN.
  const reluLoop = unaryLoop("x > 0 || x !== x ? x : 0");
  specs.push({
    op: "relu",
    dtypes: numeric,
    kernel: (ins, [x]) => {
      const out = allocHost(ins.dtype, x!.length);
      reluLoop(out, x!, x!.length);
      return out;
    },
  });
  for (const [op, expr] of Object.entries(BINARY_EXPR) as [keyof typeof BINARY_EXPR, string][]) {
    const loop = binaryLoop(expr);
    specs.push({
      op,
      dtypes: op === "div" ? float : op === "equal" ? [...numeric, "bool"] : numeric,
      kernel: (ins, [a, b], [ia, ib]) => {
        const size = sizeOf(ins.shape);
        const out = allocHost(ins.dtype, size);
        loop(out, a!, b!, broadcastIndex(ia!.shape, ins.shape), broadcastIndex(ib!.shape, ins.shape), size);
        return out;
      },
    });
  }
  const moveIndex = (ins: Instruction, info: ValueInfo) =>
    ins.op === "expand"
      ? broadcastIndex(info.shape, ins.shape)!
      : stridedIndex(
          ins.shape,
          ins.attrs.perm!.map((p) => sizeOf(info.shape.slice(p + 1))),
        );
  const move: HostKernel = (ins, [x], [info]) => {
    const map = moveIndex(ins, info!);
    const out = allocHost(ins.dtype, map.length);
    for (let i = 0; i < map.length; i++) out[i] = x![map[i]!]!;
    return out;
  };
  specs.push(
    {
      op: "where",
      dtypes: stored,
      kernel: (ins, [c, a, b], infos) => {
        const size = sizeOf(ins.shape);
        const out = allocHost(ins.dtype, size);
        const [ic, ia, ib] = infos.map((info) => broadcastIndex(info.shape, ins.shape));
        for (let i = 0; i < size; i++) out[i] = c![ic ? ic[i]! : i] ? a![ia ? ia[i]! : i]! : b![ib ? ib[i]! : i]!;
        return out;
      },
    },
    { op: "sum", dtypes: numeric, kernel: (ins, [x], [info]) => reduce("sum", x!, info!.shape, ins.attrs.axes!, ins.dtype) },
    { op: "max", dtypes: numeric, kernel: (ins, [x], [info]) => reduce("max", x!, info!.shape, ins.attrs.axes!, ins.dtype) },
    { op: "reshape", dtypes: stored, kernel: (_ins, [x]) => x! },
    { op: "expand", dtypes: stored, kernel: move },
    { op: "transpose", dtypes: stored, kernel: move },
    { op: "matmul", dtypes: float, kernel: matmul },
    { op: "cast", dtypes: stored, kernel: (ins, [x], [info]) => castHost(x!, info!.dtype, ins.dtype) },
    { op: "conv2d", dtypes: float, kernel: conv2d },
    { op: "convTranspose2d", dtypes: float, kernel: convTranspose2d },
    {
      op: "maxPool2d",
      dtypes: numeric,
      kernel: (ins, [x], [info]) => {
        const index = argmaxPool(ins, x!, info!);
        const out = allocHost(ins.dtype, index.length);
        const plane = info!.shape[2]! * info!.shape[3]!;
        const perPlane = ins.shape[2]! * ins.shape[3]!;
        for (let i = 0; i < index.length; i++) out[i] = x![Math.floor(i / perPlane) * plane + index[i]!]!;
        return out;
      },
    },
    { op: "maxPool2dIndices", dtypes: numeric, kernel: (ins, [x], [info]) => argmaxPool(ins, x!, info!) },
    {
      op: "avgPool2d",
      dtypes: float,
      kernel: (ins, [x], [info]) => {
        const out = allocHost(ins.dtype, sizeOf(ins.shape));
        const count = ins.attrs.kernel![0] * ins.attrs.kernel![1];
        // Padding counts as zeros in the mean (count_include_pad=True, PyTorch's default).
        pool(ins, info!, (o, plane, positions) => {
          let s = 0;
          for (const q of positions) s += x![plane + q]!;
          out[o] = s / count;
        });
        return out;
      },
    },
    { op: "gather", dtypes: stored, kernel: gather },
    { op: "indexAdd", dtypes: numeric, kernel: indexAdd },
    {
      op: "slice",
      dtypes: stored,
      kernel: (ins, [x], [info]) => {
        const out = allocHost(ins.dtype, sizeOf(ins.shape));
        copyBox(x!, info!.shape, ins.attrs.starts!, out, ins.shape, zerosAt(ins.shape.length), ins.shape);
        return out;
      },
    },
    {
      op: "pad",
      dtypes: stored,
      kernel: (ins, [x], [info]) => {
        const out = allocHost(ins.dtype, sizeOf(ins.shape));
        out.fill(castHost(new Float64Array([ins.attrs.fill!]), "float64", ins.dtype)[0]!);
        copyBox(x!, info!.shape, zerosAt(info!.shape.length), out, ins.shape, ins.attrs.before!, info!.shape);
        return out;
      },
    },
    {
      op: "concat",
      dtypes: stored,
      kernel: (ins, inputs, infos) => {
        const out = allocHost(ins.dtype, sizeOf(ins.shape));
        const axis = ins.attrs.axis!;
        let offset = 0;
        inputs.forEach((x, i) => {
          const shape = infos[i]!.shape;
          copyBox(
            x,
            shape,
            zerosAt(shape.length),
            out,
            ins.shape,
            ins.shape.map((_, j) => (j === axis ? offset : 0)),
            shape,
          );
          offset += shape[axis]!;
        });
        return out;
      },
    },
  );
  return specs;
}

/** Runs one instruction with a host kernel from `kernels`, or fills a constant. */
export function executeHost(kernels: KernelRegistry<HostKernel>, ins: Instruction, inputs: readonly TypedBuffer[], infos: readonly ValueInfo[]): TypedBuffer {
  if (ins.op === "const") {
    const out = allocHost(ins.dtype, sizeOf(ins.shape));
    out.fill(castHost(new Float64Array([ins.value!]), "float64", ins.dtype)[0]!);
    return { data: out };
  }
  const operand = infos[OPS[ins.op].operand]!.dtype;
  return {
    data: kernels.get(ins.op, operand)(
      ins,
      inputs.map((b) => b.data),
      infos,
    ),
  };
}

const ALL_STORED: DType[] = ["float64", "float32", ...ROUNDED_FLOAT_DTYPES, "int32", "bool", "uint8", "int8"];

/** The kernels of core's reference backend: float64 and float32 compute; data movement in every dtype. */
export const REFERENCE_KERNELS = new KernelRegistry<HostKernel>("reference", referenceKernels(["float64", "float32"], ALL_STORED));

/** Runs one instruction of a core program with the reference kernels. */
export const executeInstruction = (ins: Instruction, inputs: readonly TypedBuffer[], infos: readonly ValueInfo[]): TypedBuffer =>
  executeHost(REFERENCE_KERNELS, ins, inputs, infos);

/**
 * Core's reference backend: plain TypeScript kernels over typed arrays, float64 and float32
 * compute, every dtype stored. It is the oracle of the conformance kit and the base that
 * TypeScript backends build on; it is not registered as an accelerator.
 */
export class ReferenceBackend implements Backend {
  readonly name: string = "reference";
  protected readonly kernels: KernelRegistry<HostKernel> = REFERENCE_KERNELS;
  readonly capabilities: BackendCapabilities = REFERENCE_KERNELS.capabilities("eager", Object.fromEntries(ALL_STORED.map((d) => [d, "native"])));

  upload(data: HostArray): TypedBuffer {
    return { data: data.slice() };
  }

  download(buffer: object): HostArray {
    return (buffer as TypedBuffer).data.slice();
  }

  execute(ins: Instruction, inputs: readonly object[], infos: readonly ValueInfo[]): TypedBuffer {
    return executeHost(this.kernels, ins, inputs as TypedBuffer[], infos);
  }
}

export interface ReferenceAcceleratorOptions {
  readonly name?: string;
  readonly supportedPrecisions?: readonly Precision[];
  readonly legacyHalfPrecision?: Precision;
  /** A reason makes the accelerator unavailable (for testing "auto" and error messages). */
  readonly unavailableReason?: string;
  /** Whose autocast lists its mixed precisions use (default "cuda"). */
  readonly autocastPolicy?: AutocastDeviceType | AutocastPolicy;
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
    autocastPolicy: options.autocastPolicy ?? "cuda",
    isAvailable: () => (options.unavailableReason ? { available: false, reason: options.unavailableReason } : { available: true }),
    deviceCount: () => (options.unavailableReason ? 0 : 1),
    createBackend: options.backend ?? (() => new ReferenceBackend()),
  };
}
