import { isFloatDType, isHalfDType, type DType } from "../dtype.js";
import { DTypeError, NbitError, ShapeError } from "../errors.js";
import type { ValueInfo } from "./backend.js";
import {
  broadcastShapes,
  checkExpand,
  checkPair,
  checkReshape,
  matmulShape,
  normalizeAxis,
  reducedShape,
  sameShape,
  sizeOf,
  slidingOutputSize,
  transposeShape,
  type AttrName,
  type OpAttrs,
  type Pair,
  type Shape,
} from "./primitives.js";
import { apply, arange, full, rawCast, rawReshape, rawTranspose, scalarLike, sumTo, where, type Tensor } from "./tensor.js";

/**
 * One primitive. Core lowers every program to these; a backend registers one kernel per
 * primitive and dtype it runs. Adding a primitive is one row here plus one kernel per backend.
 */
export interface OpDef {
  /** Number of inputs; -1 for one or more (concat). */
  readonly arity: number;
  /** Attributes it takes; they enter the program cache key in this order. */
  readonly attrs: readonly AttrName[];
  /** The input whose dtype selects the kernel (the "operand dtype"). */
  readonly operand: number;
  /** Operand dtypes it takes: floating point only, numeric (not bool), or any. */
  readonly accepts: "float" | "numeric" | "any";
  /** Shape rule and output dtype; throws ShapeError / DTypeError for inputs it cannot take. */
  readonly infer: (inputs: readonly ValueInfo[], attrs: OpAttrs) => ValueInfo;
  /** Gradient with respect to each input, written with other ops (null: no gradient). */
  readonly grad?: (g: Tensor, inputs: readonly Tensor[], out: Tensor, attrs: OpAttrs) => readonly (Tensor | null)[];
  /** The float32 result of exactly-rounded narrow-float inputs is already exact in their format (no rounding needed). */
  readonly exact: boolean;
}

// ---- shape and dtype rules -----------------------------------------------------------------

const sameDType = (op: string, inputs: readonly ValueInfo[], from = 0): DType => {
  const dtype = inputs[from]!.dtype;
  for (let i = from + 1; i < inputs.length; i++)
    if (inputs[i]!.dtype !== dtype) throw new DTypeError(op, `operands differ in dtype (${dtype} and ${inputs[i]!.dtype})`);
  return dtype;
};

const requireRank = (op: string, v: ValueInfo, rank: number, what: string): void => {
  if (v.shape.length !== rank) throw new ShapeError(op, [v.shape], `expects ${what} of rank ${rank}`);
};

const requireInt32 = (op: string, v: ValueInfo, what: string): void => {
  if (v.dtype !== "int32") throw new DTypeError(op, `${what} must be int32, got ${v.dtype}`);
};

const sameAs = (inputs: readonly ValueInfo[]): ValueInfo => inputs[0]!;

const binaryRule =
  (op: string, comparison: boolean) =>
  (inputs: readonly ValueInfo[]): ValueInfo => {
    const dtype = sameDType(op, inputs);
    return { dtype: comparison ? "bool" : dtype, shape: broadcastShapes(op, inputs[0]!.shape, inputs[1]!.shape) };
  };

function reduceRule(op: string) {
  return ([x]: readonly ValueInfo[], { axes, keepDims }: OpAttrs): ValueInfo => {
    if (!axes || axes.length === 0) throw new ShapeError(op, [x!.shape], "needs at least one axis");
    axes.forEach((a, i) => {
      if (normalizeAxis(op, x!.shape, a) !== a || (i > 0 && a <= axes[i - 1]!))
        throw new ShapeError(op, [x!.shape], `axes [${axes.join(", ")}] must be sorted, distinct and non-negative`);
    });
    return { dtype: x!.dtype, shape: reducedShape(x!.shape, axes, keepDims ?? false) };
  };
}

function convRule([x, w]: readonly ValueInfo[], at: OpAttrs): ValueInfo {
  const op = "conv2d";
  const dtype = sameDType(op, [x!, w!]);
  requireRank(op, x!, 4, "an input [N, C, H, W]");
  requireRank(op, w!, 4, "a weight [out, in / groups, kH, kW]");
  const [s, p, d] = [checkPair(op, "stride", at.stride, 1), checkPair(op, "padding", at.padding, 0), checkPair(op, "dilation", at.dilation, 1)];
  const groups = checkGroups(op, at.groups);
  const [n, c, h, wd] = x!.shape as [number, number, number, number];
  const [o, cg, kh, kw] = w!.shape as [number, number, number, number];
  if (c !== cg * groups || o % groups !== 0)
    throw new ShapeError(op, [x!.shape, w!.shape], `with groups=${groups}, the input's ${c} channels need a weight of [k * ${groups}, ${c / groups}, kH, kW]`);
  const shapes = [x!.shape, w!.shape];
  return { dtype, shape: [n, o, slidingOutputSize(op, shapes, h, kh, s[0], p[0], d[0]), slidingOutputSize(op, shapes, wd, kw, s[1], p[1], d[1])] };
}

function convTransposeRule([x, w]: readonly ValueInfo[], at: OpAttrs): ValueInfo {
  const op = "convTranspose2d";
  const dtype = sameDType(op, [x!, w!]);
  requireRank(op, x!, 4, "an input [N, C, H, W]");
  requireRank(op, w!, 4, "a weight [in, out / groups, kH, kW]");
  const [s, p, d, op2] = [
    checkPair(op, "stride", at.stride, 1),
    checkPair(op, "padding", at.padding, 0),
    checkPair(op, "dilation", at.dilation, 1),
    checkPair(op, "outputPadding", at.outputPadding, 0),
  ];
  const groups = checkGroups(op, at.groups);
  const [n, c, h, wd] = x!.shape as [number, number, number, number];
  const [ci, og, kh, kw] = w!.shape as [number, number, number, number];
  if (c !== ci || c % groups !== 0)
    throw new ShapeError(op, [x!.shape, w!.shape], `the input's ${c} channels must match the weight's first dimension and divide by groups=${groups}`);
  if (op2[0] >= Math.max(s[0], d[0]) || op2[1] >= Math.max(s[1], d[1]))
    throw new NbitError("INVALID_ARGUMENT", `${op}: outputPadding must be smaller than stride or dilation, got ${JSON.stringify(op2)}`);
  const size = (i: number, k: number, j: 0 | 1) => (i - 1) * s[j] - 2 * p[j] + d[j] * (k - 1) + op2[j] + 1;
  const shape = [n, og * groups, size(h, kh, 0), size(wd, kw, 1)];
  if (shape[2]! < 1 || shape[3]! < 1) throw new ShapeError(op, [x!.shape, w!.shape], "the output would be empty");
  return { dtype, shape };
}

function poolRule(op: string, dilated: boolean, out?: DType) {
  return ([x]: readonly ValueInfo[], at: OpAttrs): ValueInfo => {
    requireRank(op, x!, 4, "an input [N, C, H, W]");
    const k = checkPair(op, "kernel", at.kernel, 1);
    const s = checkPair(op, "stride", at.stride, 1);
    const p = checkPair(op, "padding", at.padding, 0);
    const d = dilated ? checkPair(op, "dilation", at.dilation, 1) : ([1, 1] as const);
    if (p[0] * 2 > k[0] || p[1] * 2 > k[1])
      throw new NbitError("INVALID_ARGUMENT", `${op}: padding ${JSON.stringify(p)} must be at most half the kernel ${JSON.stringify(k)}`);
    const [n, c, h, w] = x!.shape as [number, number, number, number];
    const shapes = [x!.shape];
    return {
      dtype: out ?? x!.dtype,
      shape: [n, c, slidingOutputSize(op, shapes, h, k[0], s[0], p[0], d[0]), slidingOutputSize(op, shapes, w, k[1], s[1], p[1], d[1])],
    };
  };
}

function checkGroups(op: string, groups: number | undefined): number {
  if (!Number.isInteger(groups) || groups! < 1) throw new NbitError("INVALID_ARGUMENT", `${op}: groups must be a positive integer, got ${groups}`);
  return groups!;
}

function checkIndexAxis(op: string, v: ValueInfo, axis: number | undefined): number {
  if (axis === undefined || normalizeAxis(op, v.shape, axis) !== axis)
    throw new ShapeError(op, [v.shape], `axis ${axis} must be a non-negative axis of the input`);
  return axis;
}

function checkInts(op: string, name: string, values: readonly number[] | undefined, rank: number, min = 0): readonly number[] {
  if (!values || values.length !== rank || !values.every((v) => Number.isInteger(v) && v >= min))
    throw new NbitError("INVALID_ARGUMENT", `${op}: ${name} must be ${rank} integers >= ${min}, got ${JSON.stringify(values)}`);
  return values;
}

// ---- gradients written with other ops ------------------------------------------------------

const ap = (op: PrimitiveOp, inputs: readonly Tensor[], attrs: OpAttrs = {}): Tensor => apply(op, inputs, attrs);
const swapLast = (rank: number): number[] => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
const mT = (t: Tensor): Tensor => rawTranspose(t, swapLast(t.rank));

/** Row-major offsets of each (n, c) plane in a flattened [N, C, H, W] tensor, shaped [N, C, 1, 1]. */
function planeOffsets(n: number, c: number, plane: number): Tensor {
  return rawReshape(ap("mul", [arange(n * c, "int32"), full([], plane, "int32")]), [n, c, 1, 1]);
}

/** The output padding that makes a transposed convolution give back exactly `size`. */
const outputPaddingFor = (size: number, out: number, k: number, s: number, p: number, d: number): number => size - ((out - 1) * s - 2 * p + d * (k - 1) + 1);

/**
 * d(loss)/d(weight) of conv2d as one conv2d: input and output gradient swap roles (channels and
 * batch trade places, stride and dilation trade places), then the spare rows and columns are cut.
 */
function convWeightGrad(x: Tensor, g: Tensor, weightShape: Shape, at: OpAttrs): Tensor {
  const [n, , h, w] = x.shape as [number, number, number, number];
  const [o, cg, kh, kw] = weightShape as [number, number, number, number];
  const groups = at.groups!;
  const og = o / groups;
  const [oh, ow] = [g.shape[2]!, g.shape[3]!];
  const input = rawReshape(rawTranspose(rawReshape(x, [n, groups, cg, h, w]), [2, 1, 0, 3, 4]), [cg, groups * n, h, w]);
  const kernel = rawReshape(rawTranspose(rawReshape(g, [n, groups, og, oh, ow]), [1, 2, 0, 3, 4]), [o, n, oh, ow]);
  let r = ap("conv2d", [input, kernel], { stride: at.dilation!, padding: at.padding!, dilation: at.stride!, groups });
  if (r.shape[2] !== kh || r.shape[3] !== kw) r = ap("slice", [r], { starts: [0, 0, 0, 0], ends: [cg, o, kh, kw] });
  return rawTranspose(r, [1, 0, 2, 3]);
}

/** Cuts or keeps `t`'s spatial size to `[h, w]` (a transposed convolution may give one extra row). */
const cropTo = (t: Tensor, h: number, w: number): Tensor =>
  t.shape[2] === h && t.shape[3] === w ? t : ap("slice", [t], { starts: [0, 0, 0, 0], ends: [t.shape[0]!, t.shape[1]!, h, w] });

/** The gradient of a window reduction that averages, as a transposed depthwise convolution. */
function avgPoolGrad(g: Tensor, x: Tensor, at: OpAttrs): Tensor {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [kh, kw] = at.kernel!;
  const [s, p] = [at.stride!, at.padding!];
  const opmath = isHalfDType(g.dtype) ? "float32" : g.dtype;
  const wide = rawCast(g, opmath);
  let dx: Tensor;
  if (kh === s[0] && kw === s[1] && p[0] === 0 && p[1] === 0) {
    // Non-overlapping windows: each output's share is spread over its window by broadcasting.
    const [oh, ow] = [g.shape[2]!, g.shape[3]!];
    const spread = ap("expand", [rawReshape(wide, [n, c, oh, 1, ow, 1])], { shape: [n, c, oh, kh, ow, kw] });
    dx = ap("mul", [rawReshape(spread, [n, c, oh * kh, ow * kw]), scalarLike(1 / (kh * kw), wide)]);
    if (oh * kh !== h || ow * kw !== w) dx = ap("pad", [dx], { before: [0, 0, 0, 0], after: [0, 0, h - oh * kh, w - ow * kw], fill: 0 });
  } else {
    const weight = full([c, 1, kh, kw], 1 / (kh * kw), opmath);
    const outputPadding: Pair = [outputPaddingFor(h, g.shape[2]!, kh, s[0], p[0], 1), outputPaddingFor(w, g.shape[3]!, kw, s[1], p[1], 1)];
    dx = ap("convTranspose2d", [wide, weight], { stride: s, padding: p, dilation: [1, 1], groups: c, outputPadding });
  }
  return rawCast(dx, g.dtype);
}

const UNARY = (grad: OpDef["grad"], exact = false): OpDef => ({
  arity: 1,
  attrs: [],
  operand: 0,
  accepts: "float",
  infer: sameAs,
  grad,
  exact,
});

const BINARY = (
  op: string,
  grad: ((g: Tensor, a: Tensor, b: Tensor, out: Tensor) => [Tensor, Tensor]) | undefined,
  options: { exact?: boolean; comparison?: boolean; accepts?: OpDef["accepts"] } = {},
): OpDef => ({
  arity: 2,
  attrs: [],
  operand: 0,
  accepts: options.accepts ?? "numeric",
  infer: binaryRule(op, options.comparison ?? false),
  ...(grad
    ? {
        grad: (g: Tensor, [a, b]: readonly Tensor[], out: Tensor) => {
          const [ga, gb] = grad(g, a!, b!, out);
          return [sumTo(ga, a!.shape), sumTo(gb, b!.shape)];
        },
      }
    : {}),
  exact: options.exact ?? false,
});

/** Every primitive, named once; OPS holds the row of each. */
export const PRIMITIVE_OPS = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "tanh",
  "relu",
  "add",
  "sub",
  "mul",
  "div",
  "maximum",
  "less",
  "equal",
  "where",
  "sum",
  "max",
  "reshape",
  "transpose",
  "expand",
  "matmul",
  "cast",
  "conv2d",
  "convTranspose2d",
  "maxPool2d",
  "maxPool2dIndices",
  "avgPool2d",
  "gather",
  "indexAdd",
  "slice",
  "pad",
  "concat",
] as const;
export type PrimitiveOp = (typeof PRIMITIVE_OPS)[number];

/** The primitive op table. */
export const OPS: Readonly<Record<PrimitiveOp, OpDef>> = {
  neg: UNARY((g) => [ap("neg", [g])], true),
  exp: UNARY((g, _, out) => [ap("mul", [g, out])]),
  log: UNARY((g, [x]) => [ap("div", [g, x!])]),
  sqrt: UNARY((g, _, out) => [ap("div", [ap("mul", [g, scalarLike(0.5, g)]), out])]),
  tanh: UNARY((g, _, out) => [ap("mul", [g, ap("sub", [scalarLike(1, out), ap("mul", [out, out])])])]),
  // max(x, 0) with +0 for x = -0 on every backend and NaN kept, as torch.relu; the gradient passes where the output is > 0.
  relu: {
    ...UNARY((g, _, out) => [where(ap("less", [scalarLike(0, out), out]), g, 0)], true),
    accepts: "numeric",
  },

  add: BINARY("add", (g) => [g, g]),
  sub: BINARY("sub", (g) => [g, ap("neg", [g])]),
  mul: BINARY("mul", (g, a, b) => [ap("mul", [g, b]), ap("mul", [g, a])]),
  div: BINARY("div", (g, _a, b, out) => [ap("div", [g, b]), ap("neg", [ap("div", [ap("mul", [g, out]), b])])], { accepts: "float" }),
  maximum: BINARY(
    "maximum",
    (g, a, b) => {
      // Ties split the gradient evenly, as torch.maximum does.
      const wa = ap("add", [rawCast(ap("less", [b, a]), g.dtype), ap("mul", [rawCast(ap("equal", [a, b]), g.dtype), scalarLike(0.5, g)])]);
      return [ap("mul", [g, wa]), ap("mul", [g, ap("sub", [scalarLike(1, wa), wa])])];
    },
    { exact: true },
  ),
  less: BINARY("less", undefined, { comparison: true }),
  equal: BINARY("equal", undefined, { comparison: true, accepts: "any" }),

  where: {
    arity: 3,
    attrs: [],
    operand: 1,
    accepts: "any",
    infer: ([c, a, b]) => {
      if (c!.dtype !== "bool") throw new DTypeError("where", `condition must be bool, got ${c!.dtype}`);
      const dtype = sameDType("where", [a!, b!]);
      return { dtype, shape: broadcastShapes("where", broadcastShapes("where", c!.shape, a!.shape), b!.shape) };
    },
    grad: (g, [c, a, b]) => [null, sumTo(where(c!, g, 0), a!.shape), sumTo(where(c!, 0, g), b!.shape)],
    exact: true,
  },

  sum: {
    arity: 1,
    attrs: ["axes", "keepDims"],
    operand: 0,
    accepts: "numeric",
    infer: reduceRule("sum"),
    grad: (g, [x], _out, { axes }) => [ap("expand", [rawReshape(g, reducedShape(x!.shape, axes!, true))], { shape: x!.shape })],
    exact: false,
  },
  max: {
    arity: 1,
    attrs: ["axes", "keepDims"],
    operand: 0,
    accepts: "numeric",
    infer: reduceRule("max"),
    grad: (g, [x], out, { axes }) => {
      // The gradient is shared evenly among the positions that hold the maximum.
      const kept = reducedShape(x!.shape, axes!, true);
      const mask = rawCast(ap("equal", [x!, rawReshape(out, kept)]), g.dtype);
      const count = ap("sum", [mask], { axes: axes!, keepDims: true });
      return [ap("mul", [mask, ap("div", [rawReshape(g, kept), count])])];
    },
    exact: true,
  },

  reshape: {
    arity: 1,
    attrs: ["shape"],
    operand: 0,
    accepts: "any",
    infer: ([x], { shape }) => {
      if (!shape?.every((d) => Number.isInteger(d) && d >= 0)) throw new ShapeError("reshape", [x!.shape], `invalid target shape ${JSON.stringify(shape)}`);
      checkReshape(x!.shape, shape);
      return { dtype: x!.dtype, shape };
    },
    grad: (g, [x]) => [rawReshape(g, x!.shape)],
    exact: true,
  },
  transpose: {
    arity: 1,
    attrs: ["perm"],
    operand: 0,
    accepts: "any",
    infer: ([x], { perm }) => ({ dtype: x!.dtype, shape: transposeShape(x!.shape, perm ?? []) }),
    grad: (g, _, __, { perm }) => [
      rawTranspose(
        g,
        perm!.map((_, i) => perm!.indexOf(i)),
      ),
    ],
    exact: true,
  },
  expand: {
    arity: 1,
    attrs: ["shape"],
    operand: 0,
    accepts: "any",
    infer: ([x], { shape }) => {
      checkExpand(x!.shape, shape ?? []);
      return { dtype: x!.dtype, shape: shape! };
    },
    grad: (g, [x]) => [sumTo(g, x!.shape)],
    exact: true,
  },

  matmul: {
    arity: 2,
    attrs: [],
    operand: 0,
    accepts: "float",
    infer: ([a, b]) => ({ dtype: sameDType("matmul", [a!, b!]), shape: matmulShape(a!.shape, b!.shape) }),
    grad: (g, [a, b]) => {
      const ga = sumTo(ap("matmul", [g, mT(b!)]), a!.shape);
      let gb: Tensor;
      if (a!.rank === 2 && b!.rank === 2 && b!.node.op === "transpose") {
        // When b is a transposed weight (x W^T), (g^T a)^T lets the weight's own transpose-back cancel,
        // so its gradient is one matmul of g^T and a, with no transposed copy of the result.
        gb = mT(ap("matmul", [mT(g), a!]));
      } else if (b!.rank === 2 && a!.rank > 2) {
        // A shared 2-D weight: fold the batch dimensions into rows, one matmul instead of a batch and a sum.
        const k = a!.shape.at(-1)!;
        gb = ap("matmul", [mT(rawReshape(a!, [sizeOf(a!.shape) / k, k])), rawReshape(g, [sizeOf(g.shape) / g.shape.at(-1)!, g.shape.at(-1)!])]);
      } else gb = sumTo(ap("matmul", [mT(a!), g]), b!.shape);
      return [ga, gb];
    },
    exact: false,
  },

  cast: {
    arity: 1,
    attrs: ["to"],
    operand: 0,
    accepts: "any",
    infer: ([x], { to }) => ({ dtype: to!, shape: x!.shape }),
    grad: (g, [x]) => [isFloatDType(x!.dtype) && isFloatDType(g.dtype) ? rawCast(g, x!.dtype) : null],
    exact: false,
  },

  conv2d: {
    arity: 2,
    attrs: ["stride", "padding", "dilation", "groups"],
    operand: 0,
    accepts: "float",
    infer: convRule,
    grad: (g, [x, w], _out, at) => {
      const [s, p, d] = [at.stride!, at.padding!, at.dilation!];
      const [h, wd] = [x!.shape[2]!, x!.shape[3]!];
      const [kh, kw] = [w!.shape[2]!, w!.shape[3]!];
      const outputPadding: Pair = [outputPaddingFor(h, g.shape[2]!, kh, s[0], p[0], d[0]), outputPaddingFor(wd, g.shape[3]!, kw, s[1], p[1], d[1])];
      return [ap("convTranspose2d", [g, w!], { stride: s, padding: p, dilation: d, groups: at.groups!, outputPadding }), convWeightGrad(x!, g, w!.shape, at)];
    },
    exact: false,
  },
  convTranspose2d: {
    arity: 2,
    attrs: ["stride", "padding", "dilation", "groups", "outputPadding"],
    operand: 0,
    accepts: "float",
    infer: convTransposeRule,
    grad: (g, [x, w], _out, at) => {
      const dx = cropTo(
        ap("conv2d", [g, w!], { stride: at.stride!, padding: at.padding!, dilation: at.dilation!, groups: at.groups! }),
        x!.shape[2]!,
        x!.shape[3]!,
      );
      return [dx, convWeightGrad(g, x!, w!.shape, at)];
    },
    exact: false,
  },

  maxPool2d: {
    arity: 1,
    attrs: ["kernel", "stride", "padding", "dilation"],
    operand: 0,
    accepts: "numeric",
    infer: poolRule("maxPool2d", true),
    grad: (g, [x], _out, at) => {
      // The gradient goes to the first maximum of each window, as PyTorch's max_pool2d does.
      const [n, c, h, w] = x!.shape as [number, number, number, number];
      const local = ap("maxPool2dIndices", [x!.detach()], at);
      const flat = rawReshape(ap("add", [local, planeOffsets(n, c, h * w)]), [g.size]);
      const dx = ap("indexAdd", [full([n * c * h * w], 0, g.dtype), flat, rawReshape(g, [g.size])], { axis: 0 });
      return [rawReshape(dx, x!.shape)];
    },
    exact: true,
  },
  maxPool2dIndices: {
    arity: 1,
    attrs: ["kernel", "stride", "padding", "dilation"],
    operand: 0,
    accepts: "numeric",
    infer: poolRule("maxPool2dIndices", true, "int32"),
    exact: true,
  },
  avgPool2d: {
    arity: 1,
    attrs: ["kernel", "stride", "padding"],
    operand: 0,
    accepts: "float",
    infer: poolRule("avgPool2d", false),
    grad: (g, [x], _out, at) => [avgPoolGrad(g, x!, at)],
    exact: false,
  },

  gather: {
    arity: 2,
    attrs: ["axis"],
    operand: 0,
    accepts: "any",
    infer: ([data, index], { axis }) => {
      requireInt32("gather", index!, "indices");
      const ax = checkIndexAxis("gather", data!, axis);
      return { dtype: data!.dtype, shape: [...data!.shape.slice(0, ax), ...index!.shape, ...data!.shape.slice(ax + 1)] };
    },
    grad: (g, [data, index], _out, { axis }) => {
      // Scatter-add: every gathered row sends its gradient back to the row it came from.
      const k = index!.size;
      const updates = rawReshape(g, [...data!.shape.slice(0, axis!), k, ...data!.shape.slice(axis! + 1)]);
      return [ap("indexAdd", [full(data!.shape, 0, g.dtype), rawReshape(index!, [k]), updates], { axis: axis! }), null];
    },
    exact: true,
  },
  indexAdd: {
    arity: 3,
    attrs: ["axis"],
    operand: 0,
    accepts: "numeric",
    infer: ([base, index, updates], { axis }) => {
      requireInt32("indexAdd", index!, "indices");
      const dtype = sameDType("indexAdd", [base!, updates!]);
      const ax = checkIndexAxis("indexAdd", base!, axis);
      if (index!.shape.length !== 1) throw new ShapeError("indexAdd", [index!.shape], "expects a 1-D index");
      const expected = base!.shape.map((d, i) => (i === ax ? index!.shape[0]! : d));
      if (!sameShape(expected, updates!.shape))
        throw new ShapeError("indexAdd", [base!.shape, index!.shape, updates!.shape], `updates must have shape [${expected.join(", ")}]`);
      return { dtype, shape: base!.shape };
    },
    grad: (g, [, index], _out, { axis }) => [g, null, ap("gather", [g, index!], { axis: axis! })],
    exact: false,
  },

  slice: {
    arity: 1,
    attrs: ["starts", "ends"],
    operand: 0,
    accepts: "any",
    infer: ([x], { starts, ends }) => {
      const rank = x!.shape.length;
      const s = checkInts("slice", "starts", starts, rank);
      const e = checkInts("slice", "ends", ends, rank);
      x!.shape.forEach((d, i) => {
        if (s[i]! > e[i]! || e[i]! > d) throw new ShapeError("slice", [x!.shape], `range ${s[i]}:${e[i]} is outside axis ${i} of size ${d}`);
      });
      return { dtype: x!.dtype, shape: e.map((v, i) => v - s[i]!) };
    },
    grad: (g, [x], _out, { starts, ends }) => [ap("pad", [g], { before: starts!, after: ends!.map((e, i) => x!.shape[i]! - e), fill: 0 })],
    exact: true,
  },
  pad: {
    arity: 1,
    attrs: ["before", "after", "fill"],
    operand: 0,
    accepts: "any",
    infer: ([x], { before, after, fill }) => {
      const rank = x!.shape.length;
      const b = checkInts("pad", "before", before, rank);
      const a = checkInts("pad", "after", after, rank);
      if (typeof fill !== "number") throw new NbitError("INVALID_ARGUMENT", `pad: fill must be a number, got ${JSON.stringify(fill)}`);
      return { dtype: x!.dtype, shape: x!.shape.map((d, i) => d + b[i]! + a[i]!) };
    },
    grad: (g, [x], _out, { before }) => [ap("slice", [g], { starts: before!, ends: before!.map((b, i) => b + x!.shape[i]!) })],
    exact: true,
  },
  concat: {
    arity: -1,
    attrs: ["axis"],
    operand: 0,
    accepts: "any",
    infer: (inputs, { axis }) => {
      const dtype = sameDType("concat", inputs);
      const first = inputs[0]!.shape;
      const ax = checkIndexAxis("concat", inputs[0]!, axis);
      let total = 0;
      for (const v of inputs) {
        if (v.shape.length !== first.length || v.shape.some((d, i) => i !== ax && d !== first[i]))
          throw new ShapeError(
            "concat",
            inputs.map((i) => i.shape),
            `shapes must match except along axis ${ax}`,
          );
        total += v.shape[ax]!;
      }
      return { dtype, shape: first.map((d, i) => (i === ax ? total : d)) };
    },
    grad: (g, inputs, _out, { axis }) => {
      let offset = 0;
      return inputs.map((x) => {
        const starts = g.shape.map((_, i) => (i === axis ? offset : 0));
        offset += x.shape[axis!]!;
        return ap("slice", [g], { starts, ends: g.shape.map((d, i) => (i === axis ? offset : d)) });
      });
    },
    exact: true,
  },
};

const ATTR_KIND: Readonly<Record<AttrName, "ints" | "int" | "bool" | "text" | "number">> = {
  axes: "ints",
  keepDims: "bool",
  perm: "ints",
  shape: "ints",
  to: "text",
  stride: "ints",
  padding: "ints",
  dilation: "ints",
  groups: "int",
  outputPadding: "ints",
  kernel: "ints",
  axis: "int",
  starts: "ints",
  ends: "ints",
  before: "ints",
  after: "ints",
  fill: "number",
};

/** The attributes of an instruction as they enter the program cache key, derived from the op's row. */
export function attrKey(op: PrimitiveOp, attrs: OpAttrs): string {
  let key = "";
  for (const name of OPS[op].attrs) {
    const value: unknown = attrs[name];
    switch (ATTR_KIND[name]) {
      case "ints":
        key += `|${(value as readonly number[]).join(",")}`;
        break;
      case "bool":
        key += value ? "|1" : "|0";
        break;
      case "number":
        // -0 and 0 fill differently; NaN is one value.
        key += `|${Object.is(value, -0) ? "-0" : String(value)}`;
        break;
      default:
        key += `|${String(value)}`;
    }
  }
  return key;
}

const TEXT_IDS = new Map<string, number>();

/**
 * Appends the attributes of `op` to `out` as numbers, for comparing graph signatures without
 * building strings: equal sequences mean equal attributes (lengths are included, -0 and NaN marked).
 */
export function pushAttrNumbers(op: PrimitiveOp, attrs: OpAttrs, out: number[]): void {
  const names = OPS[op].attrs;
  for (let n = 0; n < names.length; n++) {
    const name = names[n]!;
    const value: unknown = attrs[name];
    switch (ATTR_KIND[name]) {
      case "ints": {
        const ints = value as readonly number[];
        out.push(ints.length);
        for (let i = 0; i < ints.length; i++) out.push(ints[i]!);
        break;
      }
      case "int":
        out.push(value as number);
        break;
      case "bool":
        out.push(value ? 1 : 0);
        break;
      case "number":
        pushScalarNumber(value as number, out);
        break;
      default: {
        const text = String(value);
        let id = TEXT_IDS.get(text);
        if (id === undefined) TEXT_IDS.set(text, (id = TEXT_IDS.size));
        out.push(id);
      }
    }
  }
}

/** A scalar as two numbers that compare equal exactly when the scalars are the same value (-0 and NaN included). */
export function pushScalarNumber(value: number, out: number[]): void {
  if (Number.isNaN(value)) out.push(2, 0);
  else if (Object.is(value, -0)) out.push(1, 0);
  else out.push(0, value);
}
