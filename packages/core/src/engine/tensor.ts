import { isFloatDType, isHalfDType, itemSize, promoteTypes, type DType, type HostArray } from "../dtype.js";
import { DTypeError, NbitError, ShapeError } from "../errors.js";
import { hostToNumbers, numbersToHost } from "../numerics/convert.js";
import { roundToBfloat16 } from "../numerics/bfloat16.js";
import { roundToFloat16 } from "../numerics/float16.js";
import { autocastCategory } from "./autocast-policy.js";
import { autocast, autocastDType, defaultRuntime, isGradEnabled, noGrad } from "./context.js";
import { LazyNode } from "./node.js";
import {
  broadcastShapes,
  checkExpand,
  checkReshape,
  isComparison,
  matmulShape,
  normalizeAxes,
  reducedShape,
  sameShape,
  sizeOf,
  transposeShape,
  type BinaryOp,
  type OpAttrs,
  type PrimitiveOp,
  type Shape,
  type UnaryOp,
} from "./primitives.js";

export type TensorOrScalar = Tensor | number;

interface GradFn {
  readonly inputs: readonly Tensor[];
  readonly backward: (grad: Tensor) => readonly (Tensor | null)[];
}

/** The value `value` takes once stored in `dtype`. */
export function roundScalar(value: number, dtype: DType): number {
  switch (dtype) {
    case "float32":
      return Math.fround(value);
    case "float16":
      return roundToFloat16(value);
    case "bfloat16":
      return roundToBfloat16(value);
    case "float64":
      return value;
    case "bool":
      return value !== 0 ? 1 : 0;
    default:
      return Math.trunc(value);
  }
}

/**
 * A lazily evaluated n-dimensional array with reverse-mode autograd. Ops only record a graph;
 * `data()`, `item()` or `realize()` run it on a backend, as one program.
 */
export class Tensor {
  /** The graph vertex holding this tensor's current value; `assign` swaps it. */
  node: LazyNode;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  gradFn: GradFn | null = null;

  constructor(node: LazyNode, requiresGrad = false) {
    this.node = node;
    this.requiresGrad = requiresGrad;
  }

  get shape(): Shape {
    return this.node.shape;
  }
  get dtype(): DType {
    return this.node.dtype;
  }
  get size(): number {
    return sizeOf(this.node.shape);
  }
  get rank(): number {
    return this.node.shape.length;
  }
  /** Bytes this tensor takes in its dtype. */
  get nbytes(): number {
    return this.size * itemSize(this.dtype);
  }

  static fromHost(host: HostArray, shape: Shape, dtype: DType, requiresGrad = false): Tensor {
    if (host.length !== sizeOf(shape))
      throw new ShapeError("tensor", [shape], `${host.length} values do not fill the shape`);
    return new Tensor(LazyNode.leaf(host, [...shape], dtype), requiresGrad);
  }

  // ---- data -------------------------------------------------------------------------------

  /** Computes this tensor (if needed) and returns its values: 16-bit floats decoded to float32. */
  async data(): Promise<Float64Array | Float32Array | Int32Array | Uint8Array | Int8Array> {
    const host = await this.toHost();
    if (isHalfDType(this.dtype)) return Float32Array.from(hostToNumbers(host, this.dtype));
    return host as Float64Array | Float32Array | Int32Array | Uint8Array | Int8Array;
  }

  /** Raw host storage in this dtype (16-bit floats as bit patterns). */
  async toHost(): Promise<HostArray> {
    const node = this.node;
    if (node.isLeaf && node.host) return node.host;
    return (node.device?.runtime ?? runtimeFor([node])).download(node);
  }

  async toArray(): Promise<number[]> {
    return Array.from(await this.data());
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new ShapeError("item", [this.shape], "only a tensor with one element can be read as a number");
    return (await this.data())[0]!;
  }

  // ---- autograd ---------------------------------------------------------------------------

  detach(): Tensor {
    return new Tensor(this.node);
  }

  /** Replaces this tensor's value in place (optimizers use it); shape and dtype must match. */
  assign(value: Tensor): this {
    if (!sameShape(value.shape, this.shape) || value.dtype !== this.dtype)
      throw new ShapeError("assign", [this.shape, value.shape], `expects the same shape and dtype (${this.dtype}, got ${value.dtype})`);
    this.node = value.node;
    return this;
  }

  backward(gradient?: Tensor, { retainGraph = false } = {}): void {
    if (!this.requiresGrad) throw new NbitError("NO_GRAD", "backward() on a tensor that does not require grad");
    if (!gradient && this.size !== 1)
      throw new ShapeError("backward", [this.shape], "grad can be created implicitly only for a tensor with one element");
    const order = topologicalOrder(this);
    const grads = new Map<Tensor, Tensor>([[this, gradient ?? full(this.shape, 1, this.dtype)]]);
    noGrad(() =>
      autocast(null, () => {
        for (let i = order.length - 1; i >= 0; i--) {
          const t = order[i]!;
          const g = grads.get(t);
          if (!g) continue;
          grads.delete(t);
          if (!t.gradFn) {
            t.grad = t.grad ? t.grad.add(g) : g;
            continue;
          }
          const inputGrads = t.gradFn.backward(g);
          t.gradFn.inputs.forEach((input, k) => {
            const ig = inputGrads[k];
            if (!ig || !input.requiresGrad) return;
            const prev = grads.get(input);
            grads.set(input, prev ? prev.add(ig) : ig);
          });
          if (!retainGraph) t.gradFn = null;
        }
      }),
    );
  }

  // ---- elementwise ------------------------------------------------------------------------

  add(other: TensorOrScalar): Tensor {
    return binary("add", this, other);
  }
  sub(other: TensorOrScalar): Tensor {
    return binary("sub", this, other);
  }
  mul(other: TensorOrScalar): Tensor {
    return binary("mul", this, other);
  }
  div(other: TensorOrScalar): Tensor {
    return binary("div", this, other);
  }
  maximum(other: TensorOrScalar): Tensor {
    return binary("maximum", this, other);
  }
  minimum(other: TensorOrScalar): Tensor {
    const [a, b] = prepareBinary("minimum", this, other);
    return rawBinary("maximum", a.neg(), b.neg()).neg();
  }
  less(other: TensorOrScalar): Tensor {
    return binary("less", this, other);
  }
  greater(other: TensorOrScalar): Tensor {
    const [a, b] = prepareBinary("less", this, other);
    return rawBinary("less", b, a);
  }
  equal(other: TensorOrScalar): Tensor {
    return binary("equal", this, other);
  }
  neg(): Tensor {
    return rawUnary("neg", this);
  }
  exp(): Tensor {
    return rawUnary("exp", castFor("exp", [this])[0]!);
  }
  log(): Tensor {
    return rawUnary("log", castFor("log", [this])[0]!);
  }
  sqrt(): Tensor {
    return rawUnary("sqrt", castFor("sqrt", [this])[0]!);
  }
  tanh(): Tensor {
    return rawUnary("tanh", this);
  }
  square(): Tensor {
    return rawBinary("mul", this, this);
  }
  abs(): Tensor {
    return where(rawBinary("less", this, scalarLike(0, this)), this.neg(), this);
  }
  relu(): Tensor {
    // One maximum forward; the gradient passes where the output is > 0 (zero at 0, as torch.relu).
    // Masking on the output leaves the pre-activation with one consumer, so graph engines can fuse it.
    const zero = scalarLike(0, this);
    return prim("maximum", [this, zero], {}, this.shape, this.dtype, (g, y) => [where(rawBinary("less", zero, y.detach()), g, 0), null]);
  }
  sigmoid(): Tensor {
    return rawBinary("div", scalarLike(1, this), rawBinary("add", scalarLike(1, this), rawUnary("exp", this.neg())));
  }
  /** GELU with the tanh approximation (PyTorch's approximate="tanh"). */
  gelu(): Tensor {
    const x = this;
    const inner = rawBinary("mul", x, rawBinary("add", scalarLike(1, x), rawBinary("mul", scalarLike(0.044715, x), x.square())));
    const t = rawUnary("tanh", rawBinary("mul", scalarLike(Math.sqrt(2 / Math.PI), x), inner));
    return rawBinary("mul", rawBinary("mul", scalarLike(0.5, x), x), rawBinary("add", scalarLike(1, x), t));
  }
  clamp(min: number, max: number): Tensor {
    return this.maximum(min).minimum(max);
  }
  cast(dtype: DType): Tensor {
    return rawCast(this, dtype);
  }

  // ---- reductions -------------------------------------------------------------------------

  sum(axes?: number | readonly number[], keepDims = false): Tensor {
    const [x] = castFor("sum", [this]);
    return rawSum(x!, normalizeAxes("sum", x!.shape, axes), keepDims);
  }
  mean(axes?: number | readonly number[], keepDims = false): Tensor {
    const [x] = castFor("mean", [this]);
    const ax = normalizeAxes("mean", x!.shape, axes);
    const count = ax.reduce((n, a) => n * x!.shape[a]!, 1);
    return rawBinary("mul", rawSum(x!, ax, keepDims), scalarLike(1 / count, x!));
  }
  max(axes?: number | readonly number[], keepDims = false): Tensor {
    return rawMax(this, normalizeAxes("max", this.shape, axes), keepDims);
  }
  softmax(axis = -1): Tensor {
    const [x] = castFor("softmax", [this]);
    const e = rawUnary("exp", shiftByMax(x!, axis));
    return rawBinary("div", e, rawSum(e, normalizeAxes("softmax", e.shape, axis), true));
  }
  logSoftmax(axis = -1): Tensor {
    const [x] = castFor("logSoftmax", [this]);
    const s = shiftByMax(x!, axis);
    return rawBinary("sub", s, rawUnary("log", rawSum(rawUnary("exp", s), normalizeAxes("logSoftmax", s.shape, axis), true)));
  }

  // ---- shape ------------------------------------------------------------------------------

  reshape(shape: readonly number[]): Tensor {
    return rawReshape(this, inferShape(this.shape, shape));
  }
  flatten(startAxis = 1): Tensor {
    return this.reshape([...this.shape.slice(0, startAxis), -1]);
  }
  transpose(perm?: readonly number[]): Tensor {
    return rawTranspose(this, perm ?? this.shape.map((_, i) => this.rank - 1 - i));
  }
  get T(): Tensor {
    return this.transpose();
  }
  expand(shape: readonly number[]): Tensor {
    return rawExpand(this, shape);
  }
  matmul(other: Tensor): Tensor {
    const [a, b] = castFor("matmul", [this, other]);
    return rawMatmul(a!, b!);
  }
}

// ---- factories ----------------------------------------------------------------------------

export function tensor(values: ArrayLike<number> | number, shape?: readonly number[], dtype: DType = "float32"): Tensor {
  const flat = typeof values === "number" ? [values] : values;
  return Tensor.fromHost(numbersToHost(flat, dtype), shape ?? (typeof values === "number" ? [] : [flat.length]), dtype);
}

/** A scalar that enters a program as an input, so changing it (a learning rate) reuses the compiled program. */
export const scalarInput = (value: number, dtype: DType = "float32"): Tensor => tensor([value], [], dtype);

export function full(shape: readonly number[], value: number, dtype: DType = "float32"): Tensor {
  const c = new Tensor(new LazyNode("const", [], {}, [], dtype, roundScalar(value, dtype)));
  return shape.length ? rawExpand(c, shape) : c;
}
export const zeros = (shape: readonly number[], dtype: DType = "float32"): Tensor => full(shape, 0, dtype);
export const ones = (shape: readonly number[], dtype: DType = "float32"): Tensor => full(shape, 1, dtype);
export const zerosLike = (t: Tensor): Tensor => zeros(t.shape, t.dtype);

export function arange(n: number, dtype: DType = "int32"): Tensor {
  return tensor(Array.from({ length: n }, (_, i) => i), [n], dtype);
}

/** where(cond, a, b): elementwise choice, broadcasting all three. */
export function where(cond: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  if (cond.dtype !== "bool") throw new DTypeError("where", `condition must be bool, got ${cond.dtype}`);
  const [x, y] = prepareBinary("where", a, b);
  const shape = broadcastShapes("where", broadcastShapes("where", cond.shape, x.shape), y.shape);
  return prim("where", [cond, x, y], {}, shape, x.dtype, (g) => [null, sumTo(where(cond, g, 0), x.shape), sumTo(where(cond, 0, g), y.shape)]);
}

/** Realizes several tensors as one program (one fused graph on a graph backend). */
export async function realize(tensors: readonly Tensor[]): Promise<void> {
  const nodes = tensors.map((t) => t.node).filter((n) => !n.isLeaf);
  if (nodes.length === 0) return;
  await runtimeFor(nodes).realize(nodes);
}

function runtimeFor(nodes: readonly LazyNode[]) {
  const seen = new Set<LazyNode>();
  const stack = [...nodes];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    if (n.device) return n.device.runtime;
    stack.push(...n.src);
  }
  return defaultRuntime();
}

// ---- primitives with gradients ------------------------------------------------------------

/**
 * Gives `out` a hand-written gradient with respect to `inputs` (like torch.autograd.Function):
 * compute `out` under noGrad, then attach `backward`, which maps the output's gradient to one
 * gradient (or null) per input.
 */
export function customGradient(out: Tensor, inputs: readonly Tensor[], backward: (grad: Tensor, out: Tensor) => readonly (Tensor | null)[]): Tensor {
  return withGrad(new Tensor(out.node), inputs, backward);
}

function withGrad(out: Tensor, inputs: readonly Tensor[], backward: (grad: Tensor, out: Tensor) => readonly (Tensor | null)[]): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = { inputs, backward: (g) => backward(g, out) };
  }
  return out;
}

function prim(
  op: PrimitiveOp,
  inputs: readonly Tensor[],
  attrs: OpAttrs,
  shape: Shape,
  dtype: DType,
  backward?: (grad: Tensor, out: Tensor) => readonly (Tensor | null)[],
): Tensor {
  const out = new Tensor(new LazyNode(op, inputs.map((t) => t.node), attrs, shape, dtype));
  return backward ? withGrad(out, inputs, backward) : out;
}

const UNARY_GRADS: Record<UnaryOp, (g: Tensor, x: Tensor, out: Tensor) => Tensor> = {
  neg: (g) => g.neg(),
  exp: (g, _x, out) => rawBinary("mul", g, out),
  log: (g, x) => rawBinary("div", g, x),
  sqrt: (g, _x, out) => rawBinary("div", rawBinary("mul", g, scalarLike(0.5, g)), out),
  tanh: (g, _x, out) => rawBinary("mul", g, rawBinary("sub", scalarLike(1, out), rawBinary("mul", out, out))),
};

export function rawUnary(op: UnaryOp, x: Tensor): Tensor {
  requireFloat(op, x);
  return prim(op, [x], {}, x.shape, x.dtype, (g, out) => [UNARY_GRADS[op](g, x, out)]);
}

const BINARY_GRADS: Partial<Record<BinaryOp, (g: Tensor, a: Tensor, b: Tensor, out: Tensor) => [Tensor, Tensor]>> = {
  add: (g) => [g, g],
  sub: (g) => [g, g.neg()],
  mul: (g, a, b) => [rawBinary("mul", g, b), rawBinary("mul", g, a)],
  div: (g, _a, b, out) => [rawBinary("div", g, b), rawBinary("div", rawBinary("mul", g, out), b).neg()],
  maximum: (g, a, b) => {
    // Ties split the gradient evenly, as torch.maximum does.
    const wa = rawBinary(
      "add",
      rawCast(rawBinary("less", b, a), g.dtype),
      rawBinary("mul", rawCast(rawBinary("equal", a, b), g.dtype), scalarLike(0.5, g)),
    );
    return [rawBinary("mul", g, wa), rawBinary("mul", g, rawBinary("sub", scalarLike(1, wa), wa))];
  },
};

export function rawBinary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype) throw new DTypeError(op, `operands differ in dtype (${a.dtype} and ${b.dtype})`);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const rule = BINARY_GRADS[op];
  const outDType = isComparison(op) ? "bool" : a.dtype;
  if (!rule) return prim(op, [a, b], {}, shape, outDType);
  return prim(op, [a, b], {}, shape, outDType, (g, out) => {
    const [ga, gb] = rule(g, a, b, out);
    return [sumTo(ga, a.shape), sumTo(gb, b.shape)];
  });
}

export function rawSum(x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
  if (axes.length === 0) return x;
  return prim("sum", [x], { axes, keepDims }, reducedShape(x.shape, axes, keepDims), x.dtype, (g) => [
    rawExpand(rawReshape(g, reducedShape(x.shape, axes, true)), x.shape),
  ]);
}

export function rawMax(x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
  if (axes.length === 0) return x;
  const kept = reducedShape(x.shape, axes, true);
  return prim("max", [x], { axes, keepDims }, reducedShape(x.shape, axes, keepDims), x.dtype, (g, out) => {
    // The gradient is shared evenly among the positions that hold the maximum.
    const mask = rawCast(rawBinary("equal", x, rawReshape(out, kept)), g.dtype);
    const count = rawSum(mask, axes, true);
    return [rawBinary("mul", mask, rawBinary("div", rawReshape(g, kept), count))];
  });
}

export function rawReshape(x: Tensor, shape: readonly number[]): Tensor {
  checkReshape(x.shape, shape);
  if (sameShape(x.shape, shape)) return x;
  return prim("reshape", [x], { shape: [...shape] }, [...shape], x.dtype, (g) => [rawReshape(g, x.shape)]);
}

export function rawTranspose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = transposeShape(x.shape, perm);
  if (perm.every((p, i) => p === i)) return x;
  const inverse = perm.map((_, i) => perm.indexOf(i));
  const backward = (g: Tensor) => [rawTranspose(g, inverse)];
  const inner = x.node;
  if (inner.op === "transpose") {
    // Fold transpose(transpose(y)) into one transpose of y (or y itself), keeping x's gradient path.
    const innerPerm = inner.attrs.perm!;
    const composed = perm.map((p) => innerPerm[p]!);
    const source = inner.src[0]!;
    const node = composed.every((p, i) => p === i) ? source : new LazyNode("transpose", [source], { perm: composed }, shape, x.dtype);
    return withGrad(new Tensor(node), [x], backward);
  }
  return prim("transpose", [x], { perm: [...perm] }, shape, x.dtype, backward);
}

export function rawExpand(x: Tensor, shape: readonly number[]): Tensor {
  checkExpand(x.shape, shape);
  if (sameShape(x.shape, shape)) return x;
  return prim("expand", [x], { shape: [...shape] }, [...shape], x.dtype, (g) => [sumTo(g, x.shape)]);
}

export function rawMatmul(a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype) throw new DTypeError("matmul", `operands differ in dtype (${a.dtype} and ${b.dtype})`);
  requireFloat("matmul", a);
  return prim("matmul", [a, b], {}, matmulShape(a.shape, b.shape), a.dtype, (g) => [
    rawMatmul(g, rawTranspose(b, [1, 0])),
    // When b is a transposed weight (x W^T), (g^T a)^T lets the weight's own transpose-back cancel,
    // so its gradient is one matmul of g^T and a, with no transposed copy of the result.
    b.node.op === "transpose" ? rawTranspose(rawMatmul(rawTranspose(g, [1, 0]), a), [1, 0]) : rawMatmul(rawTranspose(a, [1, 0]), g),
  ]);
}

export function rawCast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const differentiable = isFloatDType(x.dtype) && isFloatDType(dtype);
  return prim("cast", [x], { to: dtype }, x.shape, dtype, differentiable ? (g) => [rawCast(g, x.dtype)] : undefined);
}

/** Sums `g` down to `shape`, undoing a broadcast. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  // Only leading axes summed away (a bias gradient): the reduction alone has the target shape.
  if (axes.length === lead) return rawSum(g, axes, false);
  return rawReshape(rawSum(g, axes, true), shape);
}

// ---- dtype handling -----------------------------------------------------------------------

function requireFloat(op: string, x: Tensor): void {
  if (!isFloatDType(x.dtype)) throw new DTypeError(op, `expects a floating-point tensor, got ${x.dtype}`);
}

/** A scalar constant in `like`'s dtype (scalars never promote a tensor, as in PyTorch). */
export const scalarLike = (value: number, like: Tensor): Tensor =>
  new Tensor(new LazyNode("const", [], {}, [], like.dtype, roundScalar(value, like.dtype)));

/** Applies the autocast policy for `op` to its tensor inputs. */
export function castFor(op: string, inputs: readonly Tensor[]): Tensor[] {
  const target = autocastDType();
  const category = autocastCategory(op);
  if (target && category === "lowPrecision")
    return inputs.map((t) => (isFloatDType(t.dtype) && t.dtype !== "float64" ? rawCast(t, target) : t));
  if (target && category === "float32") return inputs.map((t) => (isHalfDType(t.dtype) ? rawCast(t, "float32") : t));
  return [...inputs];
}

function prepareBinary(op: string, a: TensorOrScalar, b: TensorOrScalar): [Tensor, Tensor] {
  if (typeof a === "number" && typeof b === "number") throw new DTypeError(op, "needs at least one tensor");
  const x = typeof a === "number" ? scalarLike(a, b as Tensor) : a;
  const y = typeof b === "number" ? scalarLike(b, x) : b;
  const dtype = promoteTypes(x.dtype, y.dtype);
  return [rawCast(x, dtype), rawCast(y, dtype)];
}

function binary(op: BinaryOp, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  const [x, y] = prepareBinary(op, a, b);
  return rawBinary(op, x, y);
}

function shiftByMax(x: Tensor, axis: number): Tensor {
  const ax = normalizeAxes("softmax", x.shape, axis);
  return rawBinary("sub", x, rawMax(x.detach(), ax, true));
}

function inferShape(from: Shape, to: readonly number[]): number[] {
  const known = to.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const unknown = to.filter((d) => d === -1).length;
  if (unknown > 1) throw new ShapeError("reshape", [from, to], "only one dimension can be -1");
  const out = to.map((d) => (d === -1 ? sizeOf(from) / known : d));
  if (!out.every(Number.isInteger)) throw new ShapeError("reshape", [from, to], "sizes differ");
  return out;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    stack.push([t, true]);
    for (const input of t.gradFn?.inputs ?? []) if (input.requiresGrad && !visited.has(input)) stack.push([input, false]);
  }
  return order;
}
