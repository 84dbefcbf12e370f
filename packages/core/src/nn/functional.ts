import { DTypeError, ShapeError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import { arange, castFor, customGradient, Tensor, rawBinary, rawCast, rawReshape } from "../engine/tensor.js";
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
  let weights: Tensor;
  if (target.dtype === "int32") {
    if (target.rank !== 1 || target.shape[0] !== n)
      throw new ShapeError("crossEntropy", [logits.shape, target.shape], `expects ${n} class indices`);
    weights = rawCast(oneHot(target, c), x!.dtype);
    checkClassIndices("crossEntropy", target, c, () => weights);
  } else {
    if (target.shape[0] !== n || target.shape[1] !== c)
      throw new ShapeError("crossEntropy", [logits.shape, target.shape], "probability targets must match the logits' shape");
    weights = target.cast(x!.dtype).detach();
  }
  // Fused gradient, as PyTorch's log_softmax + nll_loss backward: d/dx = (softmax(x) * sum(w) - w) * g,
  // a handful of ops instead of differentiating the log-softmax graph op by op.
  const logProbs = noGrad(() => x!.logSoftmax(1));
  const perSample = noGrad(() => weights.mul(logProbs).sum(1).neg());
  const loss = noGrad(() => reduce(perSample, reduction));
  return customGradient(loss, [x!], (g) => {
    const rowGrad = reduction === "mean" ? g.div(n).reshape([1, 1]) : reduction === "sum" ? g.reshape([1, 1]) : g.reshape([n, 1]);
    const total = target.dtype === "int32" ? logProbs.exp() : logProbs.exp().mul(weights.sum(1, true));
    return [total.sub(weights).mul(rowGrad)];
  });
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
  const x = logits.cast("float32");
  const picked = rawCast(oneHot(labels, x.shape[1]!), "float32").mul(x).sum(1);
  const wrong = rawCast(picked.less(x.max(1)), "float32");
  return wrong.neg().add(1).mean();
}
