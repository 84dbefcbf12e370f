import { isFloatDType, isHalfDType, itemSize, promoteTypes, resultType, type DType, type HostArray } from "../dtype.js";
import { DTypeError, NbitError, ShapeError } from "../errors.js";
import { hostToNumbers, numbersToHost } from "../numerics/convert.js";
import { FLOAT_FORMATS } from "../numerics/formats.js";
import { autocastCategory } from "./autocast-policy.js";
import { autocast, autocastScope, currentRuntime, defaultParamDType, isGradEnabled, noGrad } from "./context.js";
import { LazyNode } from "./node.js";
import { noteManualCast } from "./cast-watch.js";
import { OPS, type OpDef, type PrimitiveOp } from "./ops.js";
import { checkExpand, checkReshape, normalizeAxes, normalizeAxis, sameShape, sizeOf, transposeShape, type OpAttrs, type Shape } from "./primitives.js";

type UnaryOp = "neg" | "exp" | "log" | "sqrt" | "tanh";
type BinaryOp = "add" | "sub" | "mul" | "div" | "maximum" | "less" | "equal";

export type TensorOrScalar = Tensor | number;

/**
 * How a recorded tensor's gradient reaches its inputs: its op's gradient rule with the op's
 * attributes, or a hand-written backward. One object per recorded node, with no closures: a
 * recorded step makes one of these for each of its nodes.
 */
class GradFn {
  constructor(
    readonly inputs: readonly Tensor[],
    private readonly out: Tensor,
    private readonly attrs: OpAttrs,
    private readonly rule: OpDef["grad"],
    private readonly custom: Backward | undefined,
  ) {}

  backward(grad: Tensor): readonly (Tensor | null)[] {
    return this.custom ? this.custom(grad, this.out) : this.rule!(grad, this.inputs, this.out, this.attrs);
  }
}

/** The value `value` takes once stored in `dtype`. */
export function roundScalar(value: number, dtype: DType): number {
  switch (dtype) {
    case "float32":
      return Math.fround(value);
    case "float64":
      return value;
    case "bool":
      return value !== 0 ? 1 : 0;
    case "int32":
    case "int8":
    case "uint8":
      return Math.trunc(value);
    default: {
      const format = FLOAT_FORMATS[dtype];
      return format.fromBits(format.toBits(value));
    }
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
    if (host.length !== sizeOf(shape)) throw new ShapeError("tensor", [shape], `${host.length} values do not fill the shape`);
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
    if (!gradient && this.size !== 1) throw new ShapeError("backward", [this.shape], "grad can be created implicitly only for a tensor with one element");
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
    // Floats negate around maximum so NaN propagates as in torch.minimum; integers have no NaN.
    if (!isFloatDType(a.dtype)) return where(rawBinary("less", b, a), b, a);
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
    return apply("relu", [this]);
  }
  sigmoid(): Tensor {
    return rawBinary("div", scalarLike(1, this), rawBinary("add", scalarLike(1, this), rawUnary("exp", this.neg())));
  }
  /** GELU with the tanh approximation (PyTorch's approximate="tanh"); 16-bit inputs compute in float32 and round once. */
  gelu(): Tensor {
    if (isHalfDType(this.dtype)) return rawCast(rawCast(this, "float32").gelu(), this.dtype);
    const x = this;
    const k = Math.sqrt(2 / Math.PI);
    const { squared, t, halfX, onePlusT, y } = noGrad(() => {
      const squared = x.square();
      const inner = rawBinary("mul", x, rawBinary("add", scalarLike(1, x), rawBinary("mul", scalarLike(0.044715, x), squared)));
      const t = rawUnary("tanh", rawBinary("mul", scalarLike(k, x), inner));
      const [halfX, onePlusT] = [rawBinary("mul", scalarLike(0.5, x), x), rawBinary("add", scalarLike(1, x), t)];
      return { squared, t, halfX, onePlusT, y: rawBinary("mul", halfX, onePlusT) };
    });
    // Closed form, as PyTorch's gelu_backward (tanh): 0.5(1 + t) + 0.5x(1 - t^2) k(1 + 3 * 0.044715 x^2),
    // reusing the forward's tanh instead of differentiating its decomposition.
    return customGradient(y, [x], (g) => {
      const sech2 = rawBinary("sub", scalarLike(1, x), rawBinary("mul", t, t));
      const innerSlope = rawBinary("add", scalarLike(k, x), rawBinary("mul", scalarLike(3 * 0.044715 * k, x), squared));
      const slope = rawBinary("add", rawBinary("mul", scalarLike(0.5, x), onePlusT), rawBinary("mul", halfX, rawBinary("mul", sech2, innerSlope)));
      return [rawBinary("mul", g, slope)];
    });
  }
  clamp(min: number, max: number): Tensor {
    return this.maximum(min).minimum(max);
  }
  /** This tensor in `dtype`. Inside a training step under a mixed precision, a float-to-float cast warns once (let autocast cast). */
  cast(dtype: DType): Tensor {
    noteManualCast(`Tensor.cast(${JSON.stringify(dtype)})`, this.dtype, dtype);
    return rawCast(this, dtype);
  }
  /** torch's `.to(dtype)`: as `cast`. */
  to(dtype: DType): Tensor {
    noteManualCast(`Tensor.to(${JSON.stringify(dtype)})`, this.dtype, dtype);
    return rawCast(this, dtype);
  }
  float(): Tensor {
    noteManualCast("Tensor.float()", this.dtype, "float32");
    return rawCast(this, "float32");
  }
  double(): Tensor {
    noteManualCast("Tensor.double()", this.dtype, "float64");
    return rawCast(this, "float64");
  }
  half(): Tensor {
    noteManualCast("Tensor.half()", this.dtype, "float16");
    return rawCast(this, "float16");
  }
  bfloat16(): Tensor {
    noteManualCast("Tensor.bfloat16()", this.dtype, "bfloat16");
    return rawCast(this, "bfloat16");
  }

  // ---- reductions -------------------------------------------------------------------------

  sum(axes?: number | readonly number[], keepDims = false): Tensor {
    const [x] = castFor("sum", [this]);
    return inFloat32(x!, (x) => rawSum(x, normalizeAxes("sum", x.shape, axes), keepDims));
  }
  mean(axes?: number | readonly number[], keepDims = false): Tensor {
    const [x] = castFor("mean", [this]);
    return inFloat32(x!, (x) => {
      const ax = normalizeAxes("mean", x.shape, axes);
      const count = ax.reduce((n, a) => n * x.shape[a]!, 1);
      return rawBinary("mul", rawSum(x, ax, keepDims), scalarLike(1 / count, x));
    });
  }
  max(axes?: number | readonly number[], keepDims = false): Tensor {
    return rawMax(this, normalizeAxes("max", this.shape, axes), keepDims);
  }
  softmax(axis = -1): Tensor {
    const [x] = castFor("softmax", [this]);
    return inFloat32(x!, (x) => {
      const ax = normalizeAxes("softmax", x.shape, axis);
      const y = noGrad(() => {
        const e = rawUnary("exp", shiftByMax(x, axis));
        return rawBinary("div", e, rawSum(e, ax, true));
      });
      // Closed form, as PyTorch's softmax_backward: y * (g - sum(g * y)), not the quotient rule's graph.
      return customGradient(y, [x], (g, y) => [rawBinary("mul", y, rawBinary("sub", g, rawSum(rawBinary("mul", g, y), ax, true)))]);
    });
  }
  logSoftmax(axis = -1): Tensor {
    const [x] = castFor("logSoftmax", [this]);
    return inFloat32(x!, (x) => {
      const s = shiftByMax(x, axis);
      return rawBinary("sub", s, rawUnary("log", rawSum(rawUnary("exp", s), normalizeAxes("logSoftmax", s.shape, axis), true)));
    });
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
  unsqueeze(axis: number): Tensor {
    const ax = normalizeAxis("unsqueeze", this.shape, axis, this.rank + 1);
    return rawReshape(this, [...this.shape.slice(0, ax), 1, ...this.shape.slice(ax)]);
  }
  /** Drops `axis` (or every axis) of size 1. */
  squeeze(axis?: number): Tensor {
    if (axis === undefined)
      return rawReshape(
        this,
        this.shape.filter((d) => d !== 1),
      );
    const ax = normalizeAxis("squeeze", this.shape, axis);
    return this.shape[ax] === 1
      ? rawReshape(
          this,
          this.shape.filter((_, i) => i !== ax),
        )
      : this;
  }

  /** torch.matmul: batch dimensions broadcast; a 1-D operand is a row (left) or a column (right) whose axis is dropped. */
  matmul(other: Tensor): Tensor {
    const [a, b] = castFor("matmul", [this, other]) as [Tensor, Tensor];
    const left = a.rank === 1 ? rawReshape(a, [1, a.shape[0]!]) : a;
    const right = b.rank === 1 ? rawReshape(b, [b.shape[0]!, 1]) : b;
    const out = rawMatmul(left, right);
    if (a.rank !== 1 && b.rank !== 1) return out;
    const shape = [...out.shape];
    if (b.rank === 1) shape.pop();
    if (a.rank === 1) shape.splice(shape.length - (b.rank === 1 ? 1 : 2), 1);
    return rawReshape(out, shape);
  }

  // ---- indexing ---------------------------------------------------------------------------

  /** Slices of this tensor along `axis` picked by int32 `index` of any shape (torch.index_select for a 1-D index). */
  indexSelect(axis: number, index: Tensor): Tensor {
    return apply("gather", [this, index], { axis: normalizeAxis("indexSelect", this.shape, axis) });
  }

  /** torch.gather: out[..., i, ...] = this[..., index[..., i, ...], ...] along `axis`; `index` has this tensor's rank. */
  gather(axis: number, index: Tensor): Tensor {
    const ax = normalizeAxis("gather", this.shape, axis);
    if (index.rank !== this.rank || index.shape.some((d, i) => i !== ax && d > this.shape[i]!))
      throw new ShapeError(
        "gather",
        [this.shape, index.shape],
        `index must have rank ${this.rank} and no dimension larger than the input's (but along axis ${ax})`,
      );
    if (index.dtype !== "int32") throw new DTypeError("gather", `index must be int32, got ${index.dtype}`);
    // Flat positions: the index along `axis`, each other axis's own position, times the row-major strides.
    let flat = rawBinary("mul", index, scalarLike(sizeOf(this.shape.slice(ax + 1)), index));
    index.shape.forEach((d, i) => {
      if (i === ax || d === 1) return;
      const position = arange(d).mul(sizeOf(this.shape.slice(i + 1)));
      flat = flat.add(
        rawReshape(
          position,
          index.shape.map((e, j) => (j === i ? e : 1)),
        ),
      );
    });
    return rawReshape(this, [this.size]).indexSelect(0, flat);
  }

  /** torch.index_add (out of place): adds the slices of `source` into this tensor at `index` along `axis`. */
  indexAdd(axis: number, index: Tensor, source: Tensor): Tensor {
    return apply("indexAdd", [this, index, rawCast(source, this.dtype)], { axis: normalizeAxis("indexAdd", this.shape, axis) });
  }

  /** this[start:end:step] along `axis`, with Python's rules for negative and out-of-range bounds. */
  slice(axis: number, start = 0, end = Infinity, step = 1): Tensor {
    const ax = normalizeAxis("slice", this.shape, axis);
    if (!Number.isInteger(step) || step < 1) throw new NbitError("INVALID_ARGUMENT", `slice: step must be a positive integer, got ${step}`);
    const size = this.shape[ax]!;
    const clampIndex = (i: number) => Math.min(Math.max(i < 0 ? i + size : i, 0), size);
    const [s, e] = [clampIndex(start), Math.max(clampIndex(start), clampIndex(end))];
    if (step > 1)
      return this.indexSelect(
        ax,
        arange(Math.ceil((e - s) / step))
          .mul(step)
          .add(s),
      );
    if (s === 0 && e === size) return this;
    return apply("slice", [this], { starts: this.shape.map((_, i) => (i === ax ? s : 0)), ends: this.shape.map((d, i) => (i === ax ? e : d)) });
  }

  /** `length` elements along `axis` from `start` (torch.narrow). */
  narrow(axis: number, start: number, length: number): Tensor {
    return this.slice(axis, start, start + length);
  }

  /** Splits along `axis` into pieces of `size` (the last may be smaller), or into the given sizes. */
  split(size: number | readonly number[], axis = 0): Tensor[] {
    const ax = normalizeAxis("split", this.shape, axis);
    const total = this.shape[ax]!;
    const sizes = typeof size === "number" ? Array.from({ length: Math.ceil(total / size) }, (_, i) => Math.min(size, total - i * size)) : size;
    if (sizes.reduce((a, b) => a + b, 0) !== total) throw new ShapeError("split", [this.shape], `sizes [${sizes.join(", ")}] do not add up to ${total}`);
    let offset = 0;
    return sizes.map((n) => this.slice(ax, offset, (offset += n)));
  }

  /** `chunks` pieces of equal size along `axis` (torch.chunk). */
  chunk(chunks: number, axis = 0): Tensor[] {
    return this.split(Math.ceil(this.shape[normalizeAxis("chunk", this.shape, axis)]! / chunks), axis);
  }
}

// ---- factories ----------------------------------------------------------------------------

/**
 * A tensor of `values`. Without a dtype it takes the default dtype: float32, or inside a precision's
 * init context (Trainer.initModule, configureModel) that precision's parameter dtype, as
 * torch.set_default_dtype does for Lightning's init_module.
 */
export function tensor(values: ArrayLike<number> | number, shape?: readonly number[], dtype: DType = defaultParamDType()): Tensor {
  const flat = typeof values === "number" ? [values] : values;
  return Tensor.fromHost(numbersToHost(flat, dtype), shape ?? (typeof values === "number" ? [] : [flat.length]), dtype);
}

/** A scalar that enters a program as an input, so changing it (a learning rate) reuses the compiled program. */
export const scalarInput = (value: number, dtype: DType = "float32"): Tensor => tensor([value], [], dtype);

/** A constant tensor; the dtype defaults as in `tensor()`. */
export function full(shape: readonly number[], value: number, dtype: DType = defaultParamDType()): Tensor {
  const c = new Tensor(new LazyNode("const", [], {}, [], dtype, roundScalar(value, dtype)));
  return shape.length ? rawExpand(c, shape) : c;
}
export const zeros = (shape: readonly number[], dtype: DType = defaultParamDType()): Tensor => full(shape, 0, dtype);
export const ones = (shape: readonly number[], dtype: DType = defaultParamDType()): Tensor => full(shape, 1, dtype);
export const zerosLike = (t: Tensor): Tensor => zeros(t.shape, t.dtype);

export function arange(n: number, dtype: DType = "int32"): Tensor {
  return tensor(
    Array.from({ length: n }, (_, i) => i),
    [n],
    dtype,
  );
}

/** Joins tensors along an existing axis (torch.cat); mixed dtypes promote. */
export function cat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new NbitError("INVALID_ARGUMENT", "cat needs at least one tensor");
  const dtype = tensors.map((t) => t.dtype).reduce(promoteTypes);
  const ax = normalizeAxis("cat", tensors[0]!.shape, axis);
  const parts = tensors.filter((t) => t.shape[ax] !== 0 || tensors.length === 1).map((t) => rawCast(t, dtype));
  return parts.length === 1 ? parts[0]! : apply("concat", parts, { axis: ax });
}

/** Joins tensors along a new axis (torch.stack). */
export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new NbitError("INVALID_ARGUMENT", "stack needs at least one tensor");
  const ax = normalizeAxis("stack", tensors[0]!.shape, axis, tensors[0]!.rank + 1);
  return cat(
    tensors.map((t) => t.unsqueeze(ax)),
    ax,
  );
}

/**
 * Constant padding in torch.nn.functional.pad's order: `pads` holds (before, after) pairs for the
 * last dimension first, then the one before it, and so on.
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  if (pads.length % 2 !== 0 || pads.length / 2 > x.rank || !pads.every((p) => Number.isInteger(p) && p >= 0))
    throw new NbitError(
      "INVALID_ARGUMENT",
      `pad: expects (before, after) pairs of non-negative integers for at most ${x.rank} dimensions, got [${pads.join(", ")}]`,
    );
  if (pads.every((p) => p === 0)) return x;
  const before = x.shape.map(() => 0);
  const after = x.shape.map(() => 0);
  for (let k = 0; k < pads.length / 2; k++) {
    before[x.rank - 1 - k] = pads[2 * k]!;
    after[x.rank - 1 - k] = pads[2 * k + 1]!;
  }
  return apply("pad", [x], { before, after, fill: roundScalar(value, x.dtype) });
}

/** where(cond, a, b): elementwise choice, broadcasting all three. */
export function where(cond: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  if (cond.dtype !== "bool") throw new DTypeError("where", `condition must be bool, got ${cond.dtype}`);
  const [x, y] = prepareBinary("where", a, b);
  return apply("where", [cond, x, y]);
}

/** Realizes several tensors as one program (one fused graph on a graph backend). */
export async function realize(tensors: readonly Tensor[]): Promise<void> {
  const nodes = tensors.map((t) => t.node).filter((n) => !n.isLeaf);
  if (nodes.length === 0) return;
  await runtimeFor(nodes).realize(nodes);
}

/** The runtime a graph runs on: the one its placed tensors live on, else the enclosing scope's. */
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
  return currentRuntime();
}

// ---- primitives with gradients ------------------------------------------------------------

type Backward = (grad: Tensor, out: Tensor) => readonly (Tensor | null)[];

/**
 * Gives `out` a hand-written gradient with respect to `inputs` (like torch.autograd.Function):
 * compute `out` under noGrad, then attach `backward`, which maps the output's gradient to one
 * gradient (or null) per input.
 */
export function customGradient(out: Tensor, inputs: readonly Tensor[], backward: Backward): Tensor {
  return withGrad(new Tensor(out.node), inputs, NO_ATTRS, undefined, backward);
}

const NO_ATTRS: OpAttrs = {};

function withGrad(out: Tensor, inputs: readonly Tensor[], attrs: OpAttrs, rule: OpDef["grad"], custom: Backward | undefined): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = new GradFn(inputs, out, attrs, rule, custom);
  }
  return out;
}

/**
 * Records primitive `op` over `inputs`: the op's row in OPS checks the inputs and gives the
 * output's shape and dtype, and its gradient unless `backward` replaces it.
 */
export function apply(op: PrimitiveOp, inputs: readonly Tensor[], attrs: OpAttrs = {}, backward?: Backward): Tensor {
  const row: OpDef = OPS[op];
  if (row.arity >= 0 ? inputs.length !== row.arity : inputs.length === 0)
    throw new NbitError("INVALID_ARGUMENT", `${op} takes ${row.arity >= 0 ? row.arity : "one or more"} inputs, got ${inputs.length}`);
  const operand = inputs[row.operand]!.dtype;
  if (row.accepts === "float" && !isFloatDType(operand)) throw new DTypeError(op, `expects a floating-point tensor, got ${operand}`);
  if (row.accepts === "numeric" && operand === "bool") throw new DTypeError(op, "does not take bool tensors");
  const nodes = inputs.map((t) => t.node);
  const { shape, dtype } = row.infer(nodes, attrs);
  const out = new Tensor(new LazyNode(op, nodes, attrs, shape, dtype));
  return backward || row.grad ? withGrad(out, inputs, attrs, row.grad, backward) : out;
}

export const rawUnary = (op: UnaryOp, x: Tensor): Tensor => apply(op, [x]);
export const rawBinary = (op: BinaryOp, a: Tensor, b: Tensor): Tensor => apply(op, [a, b]);

export function rawSum(x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
  return axes.length === 0 ? x : apply("sum", [x], { axes, keepDims });
}

export function rawMax(x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
  return axes.length === 0 ? x : apply("max", [x], { axes, keepDims });
}

export function rawReshape(x: Tensor, shape: readonly number[]): Tensor {
  checkReshape(x.shape, shape);
  return sameShape(x.shape, shape) ? x : apply("reshape", [x], { shape: [...shape] });
}

export function rawTranspose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = transposeShape(x.shape, perm);
  if (perm.every((p, i) => p === i)) return x;
  const inner = x.node;
  if (inner.op === "transpose") {
    // Fold transpose(transpose(y)) into one transpose of y (or y itself), keeping x's gradient path.
    const innerPerm = inner.attrs.perm!;
    const composed = perm.map((p) => innerPerm[p]!);
    const source = inner.src[0]!;
    const node = composed.every((p, i) => p === i) ? source : new LazyNode("transpose", [source], { perm: composed }, shape, x.dtype);
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return withGrad(new Tensor(node), [x], NO_ATTRS, undefined, (g) => [rawTranspose(g, inverse)]);
  }
  return apply("transpose", [x], { perm: [...perm] });
}

export function rawExpand(x: Tensor, shape: readonly number[]): Tensor {
  checkExpand(x.shape, shape);
  return sameShape(x.shape, shape) ? x : apply("expand", [x], { shape: [...shape] });
}

export function rawMatmul(a: Tensor, b: Tensor): Tensor {
  return apply("matmul", [a, b]);
}

export function rawCast(x: Tensor, dtype: DType): Tensor {
  return x.dtype === dtype ? x : apply("cast", [x], { to: dtype });
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

/** A scalar constant in `like`'s dtype (scalars never promote a tensor, as in PyTorch). */
export const scalarLike = (value: number, like: Tensor): Tensor => new Tensor(new LazyNode("const", [], {}, [], like.dtype, roundScalar(value, like.dtype)));

/**
 * Runs `fn` on `x` widened to float32 when `x` is 16-bit and rounds its result once into `x`'s
 * dtype, as PyTorch's reductions and softmax accumulate 16-bit inputs in float32 (its acc_type).
 */
export function inFloat32(x: Tensor, fn: (x: Tensor) => Tensor): Tensor {
  return isHalfDType(x.dtype) ? rawCast(fn(rawCast(x, "float32")), x.dtype) : fn(x);
}

/** Applies the autocast policy for `op` to its tensor inputs. */
export function castFor(op: string, inputs: readonly Tensor[]): Tensor[] {
  const scope = autocastScope();
  if (!scope) return [...inputs];
  const category = autocastCategory(scope.policy, op);
  if (category === "lowPrecision") return inputs.map((t) => (isFloatDType(t.dtype) && t.dtype !== "float64" ? rawCast(t, scope.dtype) : t));
  if (category === "float32") return inputs.map((t) => (isHalfDType(t.dtype) ? rawCast(t, "float32") : t));
  return [...inputs];
}

function prepareBinary(op: string, a: TensorOrScalar, b: TensorOrScalar): [Tensor, Tensor] {
  if (typeof a === "number" && typeof b === "number") throw new DTypeError(op, "needs at least one tensor");
  const x = typeof a === "number" ? scalarLike(a, b as Tensor) : a;
  const y = typeof b === "number" ? scalarLike(b, x) : b;
  const dtype = resultType(x, y);
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
  // Parallel stacks instead of a [tensor, done] pair per push: this runs on every backward.
  const stack: Tensor[] = [root];
  const done: boolean[] = [false];
  while (stack.length) {
    const t = stack.pop()!;
    if (done.pop()) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    stack.push(t);
    done.push(true);
    const inputs = t.gradFn?.inputs;
    if (!inputs) continue;
    for (const input of inputs)
      if (input.requiresGrad && !visited.has(input)) {
        stack.push(input);
        done.push(false);
      }
  }
  return order;
}
