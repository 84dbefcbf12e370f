import type { HostArray } from "../dtype.js";
import type { Program, ValueInfo } from "../engine/backend.js";
import type { LazyNode } from "../engine/node.js";
import type { RealizedGraph, Runtime } from "../engine/runtime.js";
import { stepScalarSource, type StepScalarSource } from "../engine/step-scalars.js";
import type { Tensor } from "../engine/tensor.js";
import type { HostLabelCheck } from "../nn/labels.js";
import type { Parameter } from "../nn/module.js";

/** A tensor that carries state from step to step: a parameter, an optimizer state tensor, a module buffer. */
export interface StateSlot {
  /** Stable across steps ("param:3", "state:3:expAvg", "buffer:0"). */
  readonly key: string;
  readonly tensor: Tensor;
  /** Reads the slot's tensor again (a checkpoint load may put another one there). */
  readonly read: () => Tensor | undefined;
  /** The parameter, for slots that are one. */
  readonly param?: Parameter;
}

/** What one program input of a recorded step is. */
export type StepInput =
  | { readonly kind: "state"; readonly key: string }
  | { readonly kind: "batch"; readonly index: number }
  | { readonly kind: "scalar"; readonly source: StepScalarSource; readonly node: LazyNode }
  | { readonly kind: "other"; readonly node: LazyNode; readonly host: HostArray | undefined };

/** A recorded step, reduced to what a capture compares and replays. */
export interface ObservedStep {
  readonly runtime: Runtime;
  readonly signature: readonly number[];
  readonly program: Program;
  readonly inputs: readonly StepInput[];
  readonly roots: readonly LazyNode[];
  readonly slotsAfter: readonly StateSlot[];
  /** Each slot's node before the step. */
  readonly nodesBefore: ReadonlyMap<string, LazyNode>;
  readonly batch: readonly Tensor[];
  readonly loss: LazyNode;
  readonly applied: LazyNode | null;
  readonly outputs: readonly LazyNode[];
  readonly hostChecks: readonly HostLabelCheck[];
}

/** What the next step is compared with (no more, so the step's old state buffers are freed). */
export type PreviousStep = Pick<ObservedStep, "signature" | "inputs">;

/** The replay of a captured step: where each input comes from and where each output goes. */
export interface StepRecord {
  readonly runtime: Runtime;
  readonly program: Program;
  readonly signature: readonly number[];
  readonly outputInfo: readonly ValueInfo[];
  readonly inputs: readonly ReplayInput[];
  readonly slots: ReplaySlot[];
  readonly batch: readonly { readonly dtype: string; readonly shape: readonly number[] }[];
  readonly loss: number;
  readonly applied: number;
  readonly outputs: readonly number[];
  readonly updatedParams: readonly Parameter[];
  readonly hostChecks: readonly { readonly index: number; readonly classes: number; readonly op: string }[];
  /** The step this record was built from, as the previous step of a verification compares it. */
  readonly observed: PreviousStep;
}

export type ReplayInput =
  | { readonly kind: "state"; readonly slot: number }
  | { readonly kind: "batch"; readonly index: number }
  | { readonly kind: "scalar"; readonly next: () => number; readonly dtype: LazyNode["dtype"]; last: { value: number; node: LazyNode } }
  | { readonly kind: "constant"; readonly node: LazyNode };

export interface ReplaySlot {
  readonly key: string;
  /** The tensor whose node a replay replaces (read again to notice a replaced state). */
  tensor: Tensor;
  readonly read: () => Tensor | undefined;
  /** The output that becomes its value, or -1 when the step leaves it unchanged. */
  readonly output: number;
  /** Its node after the last step: anything else means it was replaced from outside. */
  expected: LazyNode;
}

/** Why a step cannot be captured; `permanent` when the step breaks the capture contract (not just a first-step difference). */
export class CaptureRefusal {
  constructor(
    readonly reason: string,
    readonly permanent: boolean,
  ) {}
}

/** Classifies each program input of a realized step. */
export function classifyInputs(graph: RealizedGraph, nodesBefore: ReadonlyMap<string, LazyNode>, batch: readonly Tensor[]): StepInput[] {
  const stateOf = new Map<LazyNode, string>();
  for (const [key, node] of nodesBefore) if (!stateOf.has(node)) stateOf.set(node, key);
  return graph.leaves.map((leaf): StepInput => {
    const key = stateOf.get(leaf);
    if (key !== undefined) return { kind: "state", key };
    const index = batch.findIndex((t) => t.node === leaf || (leaf.host !== undefined && t.node.host === leaf.host));
    if (index >= 0) return { kind: "batch", index };
    const source = stepScalarSource(leaf);
    if (source) return { kind: "scalar", source, node: leaf };
    return { kind: "other", node: leaf, host: leaf.host };
  });
}

const describeInput = (i: number, node: LazyNode) => `program input ${i} (${node.dtype}[${node.shape.join(", ")}])`;

/**
 * Builds the replay of `current` from two consecutive recorded steps with equal signatures, or
 * says why it cannot be replayed.
 */
export function buildRecord(previous: PreviousStep, current: ObservedStep): StepRecord | CaptureRefusal {
  const slotIndex = new Map(current.slotsAfter.map((s, i) => [s.key, i]));
  const inputs: ReplayInput[] = [];
  for (let i = 0; i < current.inputs.length; i++) {
    const now = current.inputs[i]!;
    const before = previous.inputs[i]!;
    if (now.kind !== before.kind) return new CaptureRefusal(`program input ${i} changed role between two steps`, false);
    switch (now.kind) {
      case "state": {
        const slot = slotIndex.get(now.key);
        if (slot === undefined || (before as typeof now).key !== now.key)
          return new CaptureRefusal(`program input ${i} is a different state tensor in two steps`, false);
        inputs.push({ kind: "state", slot });
        break;
      }
      case "batch":
        if ((before as typeof now).index !== now.index) return new CaptureRefusal(`program input ${i} is a different batch tensor in two steps`, false);
        inputs.push({ kind: "batch", index: now.index });
        break;
      case "scalar": {
        const next = now.source.next;
        if (!next) return new CaptureRefusal(`${now.source.label} has no formula for the next step's value`, true);
        inputs.push({ kind: "scalar", next, dtype: now.node.dtype, last: { value: Number.NaN, node: now.node } });
        break;
      }
      case "other": {
        const was = before as typeof now;
        const same = was.node === now.node || (now.host !== undefined && was.host !== undefined && sameBytes(was.host, now.host));
        if (!same)
          return new CaptureRefusal(
            `${describeInput(i, now.node)} is made on the host inside the step and changed between two steps (a dropout mask or other random numbers?)`,
            true,
          );
        inputs.push({ kind: "constant", node: now.node });
      }
    }
  }
  const position = new Map(current.roots.map((n, i) => [n, i]));
  const slots: ReplaySlot[] = [];
  const updatedParams: Parameter[] = [];
  for (const slot of current.slotsAfter) {
    const node = slot.tensor.node;
    const output = position.get(node);
    if (output === undefined && node !== current.nodesBefore.get(slot.key))
      return new CaptureRefusal(`state tensor ${slot.key} was given a value computed outside the step's program`, true);
    if (output !== undefined && slot.param) updatedParams.push(slot.param);
    slots.push({ key: slot.key, tensor: slot.tensor, read: slot.read, output: output ?? -1, expected: node });
  }
  const outputOf = (node: LazyNode, what: string): number | CaptureRefusal =>
    position.get(node) ?? new CaptureRefusal(`${what} is not computed by the step's program`, true);
  const loss = outputOf(current.loss, "the loss");
  if (loss instanceof CaptureRefusal) return loss;
  const applied = current.applied ? outputOf(current.applied, "the finite-gradients flag") : -1;
  if (applied instanceof CaptureRefusal) return applied;
  const outputs: number[] = [];
  for (const node of current.outputs) {
    const o = outputOf(node, "a step output");
    if (o instanceof CaptureRefusal) return o;
    outputs.push(o);
  }
  const hostChecks = [];
  for (const check of current.hostChecks) {
    const index = current.batch.findIndex((t) => t.node === check.node);
    if (index < 0) return new CaptureRefusal(`${check.op} checked labels that are not a batch tensor`, true);
    hostChecks.push({ index, classes: check.classes, op: check.op });
  }
  return {
    runtime: current.runtime,
    program: current.program,
    signature: current.signature,
    outputInfo: current.roots.map((n) => ({ dtype: n.dtype, shape: n.shape })),
    inputs,
    slots,
    batch: current.batch.map((t) => ({ dtype: t.dtype, shape: [...t.shape] })),
    loss,
    applied,
    outputs,
    updatedParams,
    hostChecks,
    observed: { signature: current.signature, inputs: current.inputs },
  };
}

function sameBytes(a: HostArray, b: HostArray): boolean {
  if (a === b) return true;
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
