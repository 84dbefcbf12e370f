/**
 * Autocast op lists, as data (after PyTorch's autocast lists). Ops on `lowPrecision` run in the
 * autocast dtype; ops on `float32` run in float32 whatever their inputs; ops on `promote` run in
 * the widest dtype of their inputs. Ops on no list run in their inputs' dtype.
 */
export const AUTOCAST_POLICY = {
  lowPrecision: ["matmul", "linear"],
  float32: [
    "exp",
    "log",
    "sqrt",
    "softmax",
    "logSoftmax",
    "sum",
    "mean",
    "layerNorm",
    "crossEntropy",
    "mseLoss",
    "norm",
  ],
  promote: ["add", "sub", "mul", "div", "maximum", "minimum", "where", "less", "equal"],
} as const;

export type AutocastCategory = keyof typeof AUTOCAST_POLICY;

const CATEGORY = new Map<string, AutocastCategory>();
for (const [category, ops] of Object.entries(AUTOCAST_POLICY) as [AutocastCategory, readonly string[]][])
  for (const op of ops) CATEGORY.set(op, category);

export const autocastCategory = (op: string): AutocastCategory | undefined => CATEGORY.get(op);
