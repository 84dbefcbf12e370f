import type { DType } from "../dtype.js";
import { NbitError, ShapeError } from "../errors.js";

export type Shape = readonly number[];

/** A pair of spatial values (height, width). */
export type Pair = readonly [number, number];

/** Attributes of a primitive. Each op's row in OPS names the ones it takes. */
export interface OpAttrs {
  /** sum/max: axes reduced; keepDims keeps them as size 1. */
  readonly axes?: readonly number[];
  readonly keepDims?: boolean;
  /** transpose */
  readonly perm?: readonly number[];
  /** reshape/expand: target shape */
  readonly shape?: Shape;
  /** cast: target dtype */
  readonly to?: DType;
  /** conv2d, convTranspose2d, pooling: spatial stride, symmetric zero padding and dilation. */
  readonly stride?: Pair;
  readonly padding?: Pair;
  readonly dilation?: Pair;
  /** conv2d, convTranspose2d: channel groups. */
  readonly groups?: number;
  /** convTranspose2d: extra rows/columns added at the bottom/right of the output. */
  readonly outputPadding?: Pair;
  /** pooling: window size. */
  readonly kernel?: Pair;
  /** gather, indexAdd, concat: the axis. */
  readonly axis?: number;
  /** slice: per-axis start (inclusive) and end (exclusive), step 1. */
  readonly starts?: readonly number[];
  readonly ends?: readonly number[];
  /** pad: per-axis elements added before and after, filled with `fill`. */
  readonly before?: readonly number[];
  readonly after?: readonly number[];
  readonly fill?: number;
}

export type AttrName = keyof OpAttrs;

export const sizeOf = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);
export const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new ShapeError(op, [a, b], `shapes cannot be broadcast together at dim ${i}`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

export function normalizeAxis(op: string, shape: Shape, axis: number, rank = shape.length): number {
  const ax = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= rank) throw new ShapeError(op, [shape], `axis ${axis} is out of range for rank ${rank}`);
  return ax;
}

export function normalizeAxes(op: string, shape: Shape, axes: number | readonly number[] | undefined): number[] {
  if (axes === undefined) return shape.map((_, i) => i);
  const list = typeof axes === "number" ? [axes] : axes;
  return [...new Set(list.map((a) => normalizeAxis(op, shape, a)))].sort((x, y) => x - y);
}

export function reducedShape(shape: Shape, axes: readonly number[], keepDims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepDims) out.push(1);
  });
  return out;
}

/** [..., m, k] x [..., k, n] -> [...batch, m, n], batch dimensions broadcast as in NumPy. */
export function matmulShape(a: Shape, b: Shape): number[] {
  if (a.length < 2 || b.length < 2) throw new ShapeError("matmul", [a, b], "expects operands of rank 2 or more");
  const [m, k] = a.slice(-2) as [number, number];
  const [k2, n] = b.slice(-2) as [number, number];
  if (k !== k2) throw new ShapeError("matmul", [a, b], `inner dimensions differ (${k} vs ${k2})`);
  return [...broadcastShapes("matmul", a.slice(0, -2), b.slice(0, -2)), m, n];
}

export function transposeShape(shape: Shape, perm: readonly number[]): number[] {
  // Recorded for every transpose of every step: checked without sorting a copy.
  const out = new Array<number>(perm.length);
  let seen = 0;
  let valid = perm.length === shape.length;
  for (let i = 0; valid && i < perm.length; i++) {
    const p = perm[i]!;
    valid = Number.isInteger(p) && p >= 0 && p < perm.length && (p >= 30 || (seen & (1 << p)) === 0);
    if (p < 30) seen |= 1 << p;
    out[i] = shape[p]!;
  }
  // Ranks above 30 (no bit per axis): every axis must appear, as in a sorted comparison.
  if (valid && perm.length > 30) valid = [...perm].sort((x, y) => x - y).every((p, i) => p === i);
  if (!valid) throw new ShapeError("transpose", [shape], `perm [${perm.join(", ")}] is not a permutation of the axes`);
  return out;
}

export function checkReshape(from: Shape, to: Shape): void {
  if (sizeOf(from) !== sizeOf(to)) throw new ShapeError("reshape", [from, to], "sizes differ");
}

export function checkExpand(from: Shape, to: Shape): void {
  const ok = to.length >= from.length && from.every((d, i) => d === 1 || d === to[to.length - from.length + i]);
  if (!ok) throw new ShapeError("expand", [from, to], "cannot expand to the target shape");
}

/** Row-major strides, with 0 where a dim of size 1 is broadcast into `outShape`. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const strides = new Array<number>(outShape.length).fill(0);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const o = outShape.length - shape.length + i;
    strides[o] = shape[i] === 1 ? 0 : stride;
    stride *= shape[i]!;
  }
  return strides;
}

/** Output length of a convolution or pooling window sliding over `size` elements. */
export function slidingOutputSize(
  op: string,
  shapes: readonly Shape[],
  size: number,
  kernel: number,
  stride: number,
  padding: number,
  dilation: number,
): number {
  const out = Math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
  if (out < 1) throw new ShapeError(op, shapes, `the window (kernel ${kernel}, dilation ${dilation}) does not fit an input of ${size} with padding ${padding}`);
  return out;
}

export function checkPair(op: string, name: string, value: Pair | undefined, min: number): Pair {
  if (value?.length !== 2 || !value.every((v) => Number.isInteger(v) && v >= min))
    throw new NbitError("INVALID_ARGUMENT", `${op}: ${name} must be two integers >= ${min}, got ${JSON.stringify(value)}`);
  return value;
}
