import { OPS, type AutocastCategory, type PrimitiveOp } from "./ops.js";

export type { AutocastCategory };

/**
 * Autocast categories of the ops core writes from primitives (after PyTorch's autocast lists).
 * Primitives carry their category in their OPS row. Ops on `lowPrecision` run in the autocast
 * dtype; ops on `float32` run in float32 whatever their inputs; any other op runs in its inputs'
 * dtype.
 */
export const COMPOSITE_AUTOCAST: Readonly<Record<string, AutocastCategory>> = {
  linear: "lowPrecision",
  softmax: "float32",
  logSoftmax: "float32",
  mean: "float32",
  layerNorm: "float32",
  batchNorm: "float32",
  crossEntropy: "float32",
  mseLoss: "float32",
};

export const autocastCategory = (op: string): AutocastCategory | undefined =>
  Object.hasOwn(OPS, op) ? (OPS[op as PrimitiveOp].autocast ?? undefined) : COMPOSITE_AUTOCAST[op];

/** The autocast lists as data: every op by category (primitives from OPS, then composites). */
export function autocastPolicy(): Record<AutocastCategory, string[]> {
  const policy: Record<AutocastCategory, string[]> = { lowPrecision: [], float32: [] };
  for (const [op, row] of Object.entries(OPS)) if (row.autocast) policy[row.autocast].push(op);
  for (const [op, category] of Object.entries(COMPOSITE_AUTOCAST)) policy[category].push(op);
  return policy;
}
