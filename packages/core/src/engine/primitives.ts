import type { DType } from "../dtype.js";
import { ShapeError } from "../errors.js";

/**
 * The primitive op set every backend implements. Everything else (softmax, losses, layers,
 * optimizers, gradients) is written in core in terms of these.
 */
export const UNARY_OPS = ["neg", "exp", "log", "sqrt", "tanh"] as const;
/** Binary ops broadcast their inputs with NumPy rules; both inputs share one dtype. */
export const BINARY_OPS = ["add", "sub", "mul", "div", "maximum", "less", "equal"] as const;
export const COMPARISON_OPS = ["less", "equal"] as const;
export const REDUCE_OPS = ["sum", "max"] as const;
export const MOVEMENT_OPS = ["reshape", "transpose", "expand"] as const;
export const PRIMITIVE_OPS = [...UNARY_OPS, ...BINARY_OPS, "where", ...REDUCE_OPS, ...MOVEMENT_OPS, "matmul", "cast"] as const;

export type UnaryOp = (typeof UNARY_OPS)[number];
export type BinaryOp = (typeof BINARY_OPS)[number];
export type ReduceOp = (typeof REDUCE_OPS)[number];
export type MovementOp = (typeof MOVEMENT_OPS)[number];
export type PrimitiveOp = (typeof PRIMITIVE_OPS)[number];

export type Shape = readonly number[];

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
}

export const isUnary = (op: string): op is UnaryOp => (UNARY_OPS as readonly string[]).includes(op);
export const isBinary = (op: string): op is BinaryOp => (BINARY_OPS as readonly string[]).includes(op);
export const isComparison = (op: string): boolean => (COMPARISON_OPS as readonly string[]).includes(op);

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

export function normalizeAxes(op: string, shape: Shape, axes: number | readonly number[] | undefined): number[] {
  if (axes === undefined) return shape.map((_, i) => i);
  const list = typeof axes === "number" ? [axes] : axes;
  const out = list.map((a) => {
    const ax = a < 0 ? a + shape.length : a;
    if (ax < 0 || ax >= shape.length) throw new ShapeError(op, [shape], `axis ${a} is out of range for rank ${shape.length}`);
    return ax;
  });
  return [...new Set(out)].sort((x, y) => x - y);
}

export function reducedShape(shape: Shape, axes: readonly number[], keepDims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepDims) out.push(1);
  });
  return out;
}

export function matmulShape(a: Shape, b: Shape): number[] {
  if (a.length !== 2 || b.length !== 2) throw new ShapeError("matmul", [a, b], "expects two matrices");
  if (a[1] !== b[0]) throw new ShapeError("matmul", [a, b], `inner dimensions differ (${a[1]} vs ${b[0]})`);
  return [a[0]!, b[1]!];
}

export function transposeShape(shape: Shape, perm: readonly number[]): number[] {
  if (perm.length !== shape.length || [...perm].sort((x, y) => x - y).some((p, i) => p !== i))
    throw new ShapeError("transpose", [shape], `perm [${perm.join(", ")}] is not a permutation of the axes`);
  return perm.map((p) => shape[p]!);
}

export function checkReshape(from: Shape, to: Shape): void {
  if (sizeOf(from) !== sizeOf(to)) throw new ShapeError("reshape", [from, to], "sizes differ");
}

export function checkExpand(from: Shape, to: Shape): void {
  const ok =
    to.length >= from.length && from.every((d, i) => d === 1 || d === to[to.length - from.length + i]);
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
