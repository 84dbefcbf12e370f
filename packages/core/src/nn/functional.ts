import { isHalfDType, promoteTypes } from "../dtype.js";
import { DTypeError, NbitError, ShapeError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import type { Pair } from "../engine/primitives.js";
import { apply, arange, castFor, customGradient, Tensor, rawBinary, rawCast, rawReshape, tensor } from "../engine/tensor.js";
import { checkClassIndices } from "./labels.js";

/** one_hot(indices, classes) as bool: compares each index against 0..classes-1. */
export function oneHot(indices: Tensor, classes: number): Tensor {
  if (indices.dtype !== "int32") throw new DTypeError("oneHot", `indices must be int32, got ${indices.dtype}`);
  return rawBinary("equal", rawReshape(indices, [...indices.shape, 1]), arange(classes, "int32"));
}

export type Reduction = "mean" | "sum" | "none";

/**
 * Cross-entropy of logits [N, C] against int32 class indices [N] (or class probabilities
 * [N, C]). Under autocast it runs in float32.
 */
export function crossEntropy(logits: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  const [x] = castFor("crossEntropy", [logits]);
  if (x!.rank !== 2) throw new ShapeError("crossEntropy", [logits.shape], "expects logits of shape [batch, classes]");
  const [n, c] = x!.shape as [number, number];
  const logProbs = noGrad(() => x!.logSoftmax(1));
  if (target.dtype === "int32") {
    if (target.rank !== 1 || target.shape[0] !== n) throw new ShapeError("crossEntropy", [logits.shape, target.shape], `expects ${n} class indices`);
    const checked = checkClassIndices("crossEntropy", target, c, () => oneHot(target, c));
    // Each row's log-probability of its label, picked by one gather from the flattened rows. Labels
    // not checked on the host are clamped, so a bad one reaches the in-graph check, not the gather.
    const rowStarts = tensor(
      Int32Array.from({ length: n }, (_, i) => i * c),
      [n],
      "int32",
    );
    const flatIndex = noGrad(() => rowStarts.add(checked ? target : target.maximum(0).minimum(c - 1)));
    const loss = noGrad(() =>
      reduce(
        logProbs
          .reshape([n * c])
          .indexSelect(0, flatIndex)
          .neg(),
        reduction,
      ),
    );
    // Fused gradient, as PyTorch's log_softmax + nll_loss backward: (softmax(x) - onehot(y)) * g, the
    // one-hot part a scatter-add of -g at each label.
    return customGradient(loss, [x!], (g) => {
      const rowGrad = rowGradient(g, n, reduction);
      const scaled = logProbs
        .exp()
        .mul(rowGrad)
        .reshape([n * c]);
      return [scaled.indexAdd(0, flatIndex, rowGrad.expand([n, 1]).reshape([n]).neg()).reshape([n, c])];
    });
  }
  if (target.shape[0] !== n || target.shape[1] !== c)
    throw new ShapeError("crossEntropy", [logits.shape, target.shape], "probability targets must match the logits' shape");
  const weights = rawCast(target, x!.dtype).detach();
  const perSample = noGrad(() => weights.mul(logProbs).sum(1).neg());
  const loss = noGrad(() => reduce(perSample, reduction));
  return customGradient(loss, [x!], (g) => [
    logProbs
      .exp()
      .mul(weights.sum(1, true))
      .sub(weights)
      .mul(rowGradient(g, n, reduction)),
  ]);
}

/** The loss gradient each row receives: g / n for a mean, g for a sum, one per row for none. */
function rowGradient(g: Tensor, n: number, reduction: Reduction): Tensor {
  return reduction === "mean" ? g.div(n).reshape([1, 1]) : reduction === "sum" ? g.reshape([1, 1]) : g.reshape([n, 1]);
}

/** Mean squared error; under autocast it runs in float32. */
export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  const [a, b] = castFor("mseLoss", [input, target]);
  if (a!.size !== b!.size) throw new ShapeError("mseLoss", [input.shape, target.shape], "input and target sizes differ");
  return reduce(a!.sub(b!.reshape([...a!.shape])).square(), reduction);
}

function reduce(t: Tensor, reduction: Reduction): Tensor {
  return reduction === "mean" ? t.mean() : reduction === "sum" ? t.sum() : t;
}

/** Fraction of rows whose arg-max equals the int32 label (computed on the host). */
export async function accuracy(logits: Tensor, labels: Tensor): Promise<number> {
  const [values, target] = await Promise.all([logits.data(), labels.data()]);
  const [n, c] = logits.shape as [number, number];
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (values[i * c + j]! > values[i * c + best]!) best = j;
    if (best === target[i]) correct++;
  }
  return n === 0 ? 0 : correct / n;
}

/** Fraction of rows whose largest logit is the labelled class, as a lazy float32 scalar (ties count as correct). */
export function accuracyOf(logits: Tensor, labels: Tensor): Tensor {
  const x = rawCast(logits, "float32");
  const picked = x.gather(1, labels.reshape([labels.size, 1])).reshape([labels.size]);
  const wrong = rawCast(picked.less(x.max(1)), "float32");
  return wrong.neg().add(1).mean();
}

export interface Conv2dOptions {
  readonly stride?: number | Pair;
  readonly padding?: number | Pair;
  readonly dilation?: number | Pair;
  readonly groups?: number;
}

const pair = (name: string, value: number | Pair | undefined, fallback: number): Pair => {
  const p: Pair = value === undefined ? [fallback, fallback] : typeof value === "number" ? [value, value] : value;
  if (p.length !== 2 || !p.every(Number.isInteger))
    throw new NbitError("INVALID_ARGUMENT", `${name} must be an integer or a pair of integers, got ${JSON.stringify(value)}`);
  return p;
};

/**
 * 2-D convolution over NCHW input with a [out, in / groups, kH, kW] weight, as
 * torch.nn.functional.conv2d. Under autocast it runs in the low-precision dtype; with a 16-bit
 * bias the bias is added before the single rounding, as PyTorch's fused kernels do.
 */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null = null, options: Conv2dOptions = {}): Tensor {
  const [input, w0, b] = castFor("conv2d", bias ? [x, weight, bias] : [x, weight]) as [Tensor, Tensor, Tensor | undefined];
  const dtype = promoteTypes(input.dtype, w0.dtype);
  const attrs = {
    stride: pair("conv2d stride", options.stride, 1),
    padding: pair("conv2d padding", options.padding, 0),
    dilation: pair("conv2d dilation", options.dilation, 1),
    groups: options.groups ?? 1,
  };
  const channels = (t: Tensor) => rawReshape(t, [1, t.size, 1, 1]);
  if (b && isHalfDType(dtype) && b.dtype === dtype) {
    const wide = (t: Tensor) => rawCast(t, "float32");
    const y = apply("conv2d", [wide(rawCast(input, dtype)), wide(rawCast(w0, dtype))], attrs);
    return rawCast(rawBinary("add", y, channels(wide(b))), dtype);
  }
  const y = apply("conv2d", [rawCast(input, dtype), rawCast(w0, dtype)], attrs);
  return b ? y.add(channels(b)) : y;
}

export interface PoolOptions {
  /** Window step (default: the kernel size). */
  readonly stride?: number | Pair;
  /** Implicit padding on both sides: -Infinity for max pooling, zeros (counted in the mean) for average pooling. */
  readonly padding?: number | Pair;
}

/** torch.nn.functional.max_pool2d over NCHW input; the gradient goes to each window's first maximum. */
export function maxPool2d(x: Tensor, kernel: number | Pair, options: PoolOptions & { readonly dilation?: number | Pair } = {}): Tensor {
  return apply("maxPool2d", [x], poolAttrs("maxPool2d", kernel, options, true));
}

/** Each window's first maximum as an index into its H x W plane (max_pool2d's return_indices). */
export function maxPool2dIndices(x: Tensor, kernel: number | Pair, options: PoolOptions & { readonly dilation?: number | Pair } = {}): Tensor {
  return apply("maxPool2dIndices", [x], poolAttrs("maxPool2dIndices", kernel, options, true));
}

/** torch.nn.functional.avg_pool2d over NCHW input (count_include_pad=True, ceil_mode=False). */
export function avgPool2d(x: Tensor, kernel: number | Pair, options: PoolOptions = {}): Tensor {
  return apply("avgPool2d", [x], poolAttrs("avgPool2d", kernel, options, false));
}

function poolAttrs(op: string, kernel: number | Pair, options: PoolOptions & { readonly dilation?: number | Pair }, dilated: boolean) {
  const k = pair(`${op} kernel`, kernel, 1);
  return {
    kernel: k,
    stride: options.stride === undefined ? k : pair(`${op} stride`, options.stride, 1),
    padding: pair(`${op} padding`, options.padding, 0),
    ...(dilated ? { dilation: pair(`${op} dilation`, options.dilation, 1) } : {}),
  };
}

/** Rows of `weight` picked by int32 `indices` of any shape (torch.nn.functional.embedding). */
export function embedding(indices: Tensor, weight: Tensor): Tensor {
  if (indices.dtype !== "int32") throw new DTypeError("embedding", `indices must be int32, got ${indices.dtype}`);
  return weight.indexSelect(0, indices);
}
