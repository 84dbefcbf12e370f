import type { DType } from "../dtype.js";
import type { LazyNode } from "./node.js";
import { scalarInput, type Tensor } from "./tensor.js";

/**
 * How a captured step gets the next value of a per-step scalar input (a learning rate, a bias
 * correction, a loss scale) without recording the step: `next` computes it in plain JS from the
 * owner's state as it stands before the step. `next` null: the scalar has no such formula, and a
 * step using it cannot be captured.
 */
export interface StepScalarSource {
  /** Who made it and what it is, for messages ("SGD lr"). */
  readonly label: string;
  readonly next: (() => number) | null;
}

const sources = new WeakMap<LazyNode, StepScalarSource>();

/** A scalar program input (as `scalarInput`) that a step capture can refill on replay. */
export function stepScalar(value: number, dtype: DType, source: StepScalarSource): Tensor {
  const t = scalarInput(value, dtype);
  sources.set(t.node, source);
  return t;
}

/** The source of a step scalar's leaf, or undefined for any other node. */
export const stepScalarSource = (node: LazyNode): StepScalarSource | undefined => sources.get(node);
