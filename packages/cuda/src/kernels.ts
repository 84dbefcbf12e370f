import { isHalfDType, KernelRegistry, sizeOf, type DType, type Instruction, type KernelSpec, type PrimitiveOp, type ValueInfo } from "@nbit/core";
import type * as tfc from "@tensorflow/tfjs-core";
import { roundToHalf } from "./rounding.js";

export type Tf = typeof tfc;
type T = tfc.Tensor;
type T4 = tfc.Tensor4D;

/** A kernel on tfjs tensors; it runs inside tf.tidy, so temporaries are freed. */
export type TfjsKernel = (tf: Tf, ins: Instruction, inputs: readonly T[], infos: readonly ValueInfo[]) => T;

export const physical = (d: DType): "float32" | "int32" | "bool" => (d === "int32" ? "int32" : d === "bool" ? "bool" : "float32");

const F32: DType[] = ["float32"];
const NUMERIC: DType[] = ["float32", "int32"];
const STORED: DType[] = ["float32", "int32", "bool"];

const toNHWC = (tf: Tf, x: T): T4 => tf.transpose(x, [0, 2, 3, 1]) as T4;
const toNCHW = (tf: Tf, x: T): T4 => tf.transpose(x, [0, 3, 1, 2]) as T4;
const mutable = (p: readonly [number, number]): [number, number] => [p[0], p[1]];
type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

/** Runs `run` per channel group (tfjs convolutions have no groups) and joins the outputs' channels. */
function grouped(tf: Tf, groups: number, x: T4, w: T4, run: (x: T4, w: T4) => T4): T4 {
  if (groups === 1) return run(x, w);
  const xs = tf.split(x, groups, 3) as T4[];
  const ws = tf.split(w, groups, 3) as T4[];
  return tf.concat(
    xs.map((xg, i) => run(xg, ws[i]!)),
    3,
  );
}

const conv2d: TfjsKernel = (tf, ins, [x, w]) => {
  const [s, p, d] = [ins.attrs.stride!, ins.attrs.padding!, ins.attrs.dilation!];
  const strided = s[0] > 1 || s[1] > 1;
  const dilated = d[0] > 1 || d[1] > 1;
  const pad: ExplicitPadding = [
    [0, 0],
    [p[0], p[0]],
    [p[1], p[1]],
    [0, 0],
  ];
  const filter = tf.transpose(w!, [2, 3, 1, 0]) as T4; // [kh, kw, in / groups, out]
  const y = grouped(tf, ins.attrs.groups!, toNHWC(tf, x!), filter, (xg, wg) => {
    // tfjs refuses stride and dilation together: convolve densely, then keep every stride-th output.
    if (!(strided && dilated)) return tf.conv2d(xg, wg, mutable(s), pad, "NHWC", mutable(d));
    const dense = tf.conv2d(xg, wg, 1, pad, "NHWC", mutable(d));
    return tf.stridedSlice(dense, [0, 0, 0, 0], dense.shape, [1, s[0], s[1], 1]) as T4;
  });
  return toNCHW(tf, y);
};

/**
 * The transposed convolution: tfjs's conv2dTranspose (no dilation, padding or groups) on a kernel
 * with explicit zeros between its taps, per group; then the padding is cut from the full output.
 */
const convTranspose2d: TfjsKernel = (tf, ins, [x, w]) => {
  const [s, p, d] = [ins.attrs.stride!, ins.attrs.padding!, ins.attrs.dilation!];
  const [n, , h, wd] = x!.shape as [number, number, number, number];
  const [ci, og, kh, kw] = w!.shape as [number, number, number, number];
  const [eh, ew] = [d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1];
  let kernel = w! as T4;
  if (d[0] > 1 || d[1] > 1) {
    const spread = tf.pad(tf.reshape(kernel, [ci, og, kh, 1, kw, 1]), [
      [0, 0],
      [0, 0],
      [0, 0],
      [0, d[0] - 1],
      [0, 0],
      [0, d[1] - 1],
    ]);
    kernel = tf.slice(tf.reshape(spread, [ci, og, kh * d[0], kw * d[1]]), [0, 0, 0, 0], [ci, og, eh, ew]) as T4;
  }
  const filter = tf.transpose(kernel, [2, 3, 1, 0]) as T4; // [eh, ew, out / groups, in]
  const [fh, fw] = [(h - 1) * s[0] + eh, (wd - 1) * s[1] + ew];
  const groups = ins.attrs.groups!;
  const xs = (groups === 1 ? [toNHWC(tf, x!)] : tf.split(toNHWC(tf, x!), groups, 3)) as T4[];
  const fs = (groups === 1 ? [filter] : tf.split(filter, groups, 3)) as T4[];
  const full = tf.concat(
    xs.map((xg, i) => tf.conv2dTranspose(xg, fs[i]!, [n, fh, fw, og], mutable(s), "valid")),
    3,
  );
  const [, , oh, ow] = ins.shape as [number, number, number, number];
  // Rows [p, p + out) of the full output; output padding beyond the full output is zeros.
  const keep = [Math.min(oh, fh - p[0]), Math.min(ow, fw - p[1])] as const;
  const cut = tf.slice(full, [0, p[0], p[1], 0], [n, keep[0], keep[1], og * groups]);
  const padded =
    keep[0] < oh || keep[1] < ow
      ? tf.pad(cut, [
          [0, 0],
          [0, oh - keep[0]],
          [0, ow - keep[1]],
          [0, 0],
        ])
      : cut;
  return toNCHW(tf, padded);
};

/** NCHW input padded by `fill` on both spatial sides. */
const padSpatial = (tf: Tf, x: T, p: readonly [number, number], fill: number): T =>
  p[0] || p[1]
    ? tf.pad(
        x,
        [
          [0, 0],
          [0, 0],
          [p[0], p[0]],
          [p[1], p[1]],
        ],
        fill,
      )
    : x;

/** For each output position of window tap (u, v): its index in the unpadded H x W plane, or -1 in the padding. */
function tapPositions(ins: Instruction, info: ValueInfo, u: number, v: number): Int32Array {
  const [, , h, w] = info.shape as [number, number, number, number];
  const [, , oh, ow] = ins.shape as [number, number, number, number];
  const [s, p, d] = [ins.attrs.stride!, ins.attrs.padding!, ins.attrs.dilation ?? [1, 1]];
  const out = new Int32Array(oh * ow);
  for (let y = 0; y < oh; y++)
    for (let z = 0; z < ow; z++) {
      const iy = y * s[0] - p[0] + u * d[0];
      const iz = z * s[1] - p[1] + v * d[1];
      out[y * ow + z] = iy >= 0 && iy < h && iz >= 0 && iz < w ? iy * w + iz : -1;
    }
  return out;
}

/**
 * First maximum of each window, PyTorch's rule (a NaN wins and stays), computed tap by tap on
 * strided slices of the -Infinity-padded input. Returns the values and plane indices.
 */
function windowArgmax(tf: Tf, ins: Instruction, x: T, info: ValueInfo): { values: T; index: T } {
  const [kh, kw] = ins.attrs.kernel!;
  const [s, d] = [ins.attrs.stride!, ins.attrs.dilation ?? [1, 1]];
  const [n, c] = info.shape as [number, number];
  const [, , oh, ow] = ins.shape as [number, number, number, number];
  const xp = padSpatial(tf, x, ins.attrs.padding!, -Infinity);
  let best: T = tf.fill([n, c, oh, ow], -Infinity);
  let index: T | null = null;
  const firstValid = new Int32Array(oh * ow).fill(-1);
  for (let u = 0; u < kh; u++)
    for (let v = 0; v < kw; v++) {
      const positions = tapPositions(ins, info, u, v);
      positions.forEach((q, i) => {
        if (firstValid[i] === -1 && q >= 0) firstValid[i] = q;
      });
      const tap = tf.stridedSlice(xp, [0, 0, u * d[0], v * d[1]], [n, c, u * d[0] + s[0] * (oh - 1) + 1, v * d[1] + s[1] * (ow - 1) + 1], [1, 1, s[0], s[1]]);
      const update = tf.logicalOr(tf.greater(tap, best), tf.logicalAnd(tf.isNaN(tap), tf.logicalNot(tf.isNaN(best))));
      const here = tf.tensor(positions, [1, 1, oh, ow], "int32");
      index = index ? tf.where(update, here, index) : tf.where(update, here, tf.tensor(firstValid, [1, 1, oh, ow], "int32"));
      best = tf.where(update, tap, best);
    }
  // Windows whose values are all -Infinity keep their first position inside the input.
  return { values: best, index: tf.where(tf.less(index!, 0), tf.broadcastTo(tf.tensor(firstValid, [1, 1, oh, ow], "int32"), [n, c, oh, ow]), index!) };
}

const maxPool2d: TfjsKernel = (tf, ins, [x], [info]) => {
  const d = ins.attrs.dilation!;
  if (d[0] > 1 || d[1] > 1) return windowArgmax(tf, ins, x!, info!).values;
  const padded = padSpatial(tf, x!, ins.attrs.padding!, -Infinity);
  return toNCHW(tf, tf.maxPool(toNHWC(tf, padded), mutable(ins.attrs.kernel!), mutable(ins.attrs.stride!), "valid"));
};

const avgPool2d: TfjsKernel = (tf, ins, [x]) => {
  // Zero padding counted in the mean (count_include_pad=True), so pad first and pool the valid windows.
  const padded = padSpatial(tf, x!, ins.attrs.padding!, 0);
  return toNCHW(tf, tf.avgPool(toNHWC(tf, padded), mutable(ins.attrs.kernel!), mutable(ins.attrs.stride!), "valid"));
};

/**
 * index_add as a scatter of the updates (their axis moved first) that sums duplicate indices,
 * added to the base. scatterND is linear in the updates; tfjs's CPU unsortedSegmentSum is
 * O(segments x updates), which made max-pool gradients take seconds.
 */
const indexAdd: TfjsKernel = (tf, ins, [base, index, updates], infos) => {
  const axis = ins.attrs.axis!;
  const shape = infos[0]!.shape;
  const [pre, size, post] = [sizeOf(shape.slice(0, axis)), shape[axis]!, sizeOf(shape.slice(axis + 1))];
  const k = infos[1]!.shape[0]!;
  const moved = tf.transpose(tf.reshape(updates!, [pre, k, post]), [1, 0, 2]);
  const summed = tf.transpose(tf.scatterND(tf.reshape(index!, [k, 1]), moved, [size, pre, post]), [1, 0, 2]);
  return tf.add(base!, tf.reshape(summed, [...shape]));
};

const cast: TfjsKernel = (tf, ins, [a], [info]) => {
  const from = info!.dtype;
  if (isHalfDType(ins.dtype)) return roundToHalf(tf, physical(from) === "float32" ? a! : tf.cast(a!, "float32"), ins.dtype);
  // float -> int truncates toward zero, as core and PyTorch do.
  if (ins.dtype === "int32" && physical(from) === "float32") return tf.cast(tf.mul(tf.sign(a!), tf.floor(tf.abs(a!))), "int32");
  return tf.cast(a!, physical(ins.dtype));
};

const broadcast = (tf: Tf, t: T, ins: Instruction): T => tf.broadcastTo(t, [...ins.shape]);

/** Batched matmul; batch dimensions are broadcast explicitly (tfjs's own batch broadcasting is not reliable). */
const matmul: TfjsKernel = (tf, ins, [a, b], [ia, ib]) => {
  if (ia!.shape.length === 2 && ib!.shape.length === 2) return tf.matMul(a!, b!);
  const batch = ins.shape.slice(0, -2);
  const [m, k, n] = [ia!.shape.at(-2)!, ia!.shape.at(-1)!, ib!.shape.at(-1)!];
  const flat = (t: T, rows: number, cols: number) => tf.reshape(tf.broadcastTo(t, [...batch, rows, cols]), [sizeOf(batch), rows, cols]) as tfc.Tensor3D;
  return tf.reshape(tf.matMul(flat(a!, m, k), flat(b!, k, n)), [...ins.shape]);
};

const spec = (op: PrimitiveOp, dtypes: readonly DType[], kernel: TfjsKernel): KernelSpec<TfjsKernel> => ({ op, dtypes, kernel });

/** The CUDA backend's kernels: tfjs ops (CUDA with tfjs-node-gpu; tfjs's CPU kernels otherwise). */
export const CUDA_KERNELS = new KernelRegistry<TfjsKernel>("cuda", [
  spec("neg", F32, (tf, _i, [a]) => tf.neg(a!)),
  spec("exp", F32, (tf, _i, [a]) => tf.exp(a!)),
  spec("log", F32, (tf, _i, [a]) => tf.log(a!)),
  spec("sqrt", F32, (tf, _i, [a]) => tf.sqrt(a!)),
  spec("tanh", F32, (tf, _i, [a]) => tf.tanh(a!)),
  // tf.relu gives +0 for -0 and keeps NaN, as the other backends.
  spec("relu", NUMERIC, (tf, _i, [a]) => tf.relu(a!)),
  spec("add", NUMERIC, (tf, _i, [a, b]) => tf.add(a!, b!)),
  spec("sub", NUMERIC, (tf, _i, [a, b]) => tf.sub(a!, b!)),
  spec("mul", NUMERIC, (tf, _i, [a, b]) => tf.mul(a!, b!)),
  spec("div", F32, (tf, _i, [a, b]) => tf.div(a!, b!)),
  // tf.maximum drops NaN; keep it, as torch.maximum does.
  spec("maximum", NUMERIC, (tf, ins, [a, b]) => {
    const [x, y] = [broadcast(tf, a!, ins), broadcast(tf, b!, ins)];
    return tf.where(tf.isNaN(x), x, tf.where(tf.isNaN(y), y, tf.maximum(x, y)));
  }),
  spec("less", NUMERIC, (tf, _i, [a, b]) => tf.less(a!, b!)),
  spec("equal", STORED, (tf, _i, [a, b]) => tf.equal(a!, b!)),
  spec("where", STORED, (tf, ins, [c, a, b]) => tf.where(broadcast(tf, c!, ins), broadcast(tf, a!, ins), broadcast(tf, b!, ins))),
  spec("sum", NUMERIC, (tf, ins, [a]) => tf.sum(a!, [...ins.attrs.axes!], ins.attrs.keepDims)),
  spec("max", NUMERIC, (tf, ins, [a]) => tf.max(a!, [...ins.attrs.axes!], ins.attrs.keepDims)),
  spec("reshape", STORED, (tf, ins, [a]) => tf.reshape(a!, [...ins.shape])),
  spec("transpose", STORED, (tf, ins, [a]) => tf.transpose(a!, [...ins.attrs.perm!])),
  spec("expand", STORED, (tf, ins, [a]) => broadcast(tf, a!, ins)),
  spec("matmul", F32, matmul),
  spec("cast", STORED, cast),
  spec("conv2d", F32, conv2d),
  spec("convTranspose2d", F32, convTranspose2d),
  spec("maxPool2d", F32, maxPool2d),
  spec("maxPool2dIndices", F32, (tf, ins, [x], [info]) => windowArgmax(tf, ins, x!, info!).index),
  spec("avgPool2d", F32, avgPool2d),
  spec("gather", STORED, (tf, ins, [x, index]) => tf.gather(x!, index!, ins.attrs.axis!)),
  spec("indexAdd", NUMERIC, indexAdd),
  spec("slice", STORED, (tf, ins, [x]) =>
    tf.slice(
      x!,
      [...ins.attrs.starts!],
      ins.shape.map((d) => d),
    ),
  ),
  spec("pad", STORED, (tf, ins, [x]) =>
    tf.pad(
      x!,
      ins.attrs.before!.map((b, i) => [b, ins.attrs.after![i]!] as [number, number]),
      ins.attrs.fill!,
    ),
  ),
  spec("concat", STORED, (tf, ins, inputs) => tf.concat([...inputs], ins.attrs.axis!)),
]);
