import type { HostArray } from "../dtype.js";
import { NbitError } from "../errors.js";
import type { LazyNode } from "../engine/node.js";
import { noGrad } from "../engine/context.js";
import { rawCast, type Tensor } from "../engine/tensor.js";

/** Where a batch sits in a run, for errors about its data. */
export interface BatchLocation {
  readonly stage: "train" | "validate" | "test" | "predict";
  readonly epoch: number;
  readonly batchIdx: number;
}

/** A class index outside [0, classes): the loss would silently ignore that sample. */
export class LabelOutOfRangeError extends NbitError {
  constructor(
    readonly op: string,
    readonly classes: number,
    /** The first offending label and its position in the batch, when they were read on the host. */
    readonly label: number | null,
    readonly index: number | null,
    readonly location: BatchLocation | null = null,
  ) {
    const what = label === null ? "a class index" : `class index ${label} at position ${index}`;
    const where = location ? ` in ${location.stage} batch ${location.batchIdx} of epoch ${location.epoch}` : "";
    super("LABEL_OUT_OF_RANGE", `${op}: ${what}${where} is outside [0, ${classes}); labels must be integers from 0 to ${classes - 1}.`);
  }

  /** The same error, naming the batch. */
  at(location: BatchLocation): LabelOutOfRangeError {
    return new LabelOutOfRangeError(this.op, this.classes, this.label, this.index, location);
  }
}

/** A label check that runs inside the step's program, for labels that were not on the host. */
export interface DeferredLabelCheck {
  /** float32 scalar: the number of rows whose label is in range. */
  readonly validRows: Tensor;
  readonly rows: number;
  readonly classes: number;
  readonly op: string;
}

let collecting: DeferredLabelCheck[] | null = null;

/** A label check made on the host while a step was recorded: a step capture repeats it on each replayed batch. */
export interface HostLabelCheck {
  readonly node: LazyNode;
  readonly classes: number;
  readonly op: string;
}

let collectingHost: HostLabelCheck[] | null = null;

/** Runs `fn` and returns the host label checks it made. */
export function collectHostLabelChecks<T>(fn: () => T): { result: T; hostChecks: HostLabelCheck[] } {
  const previous = collectingHost;
  const hostChecks: HostLabelCheck[] = [];
  collectingHost = hostChecks;
  try {
    return { result: fn(), hostChecks };
  } finally {
    collectingHost = previous;
  }
}

/** Throws for the first label of `host` outside [0, classes). */
export function checkHostLabels(op: string, host: HostArray, classes: number): void {
  for (let i = 0; i < host.length; i++) if (host[i]! < 0 || host[i]! >= classes) throw new LabelOutOfRangeError(op, classes, host[i]!, i, null);
}

/** Runs `fn` and returns the deferred label checks it recorded (the Trainer reads them after the step). */
export function collectLabelChecks<T>(fn: () => T): { result: T; checks: DeferredLabelCheck[] } {
  const previous = collecting;
  const checks: DeferredLabelCheck[] = [];
  collecting = checks;
  try {
    return { result: fn(), checks };
  } finally {
    collecting = previous;
  }
}

/**
 * Checks int32 class indices against [0, classes). Labels on the host (the usual case: batches
 * come from host arrays) are scanned at once. Lazy labels get an in-graph count of valid rows,
 * computed with the step, when a Trainer collects checks; `oneHotRows` gives the one-hot rows.
 * Returns whether the labels were checked now (on the host).
 */
export function checkClassIndices(op: string, target: Tensor, classes: number, oneHotRows: () => Tensor): boolean {
  const node = target.node;
  if (node.isLeaf && node.host) {
    checkHostLabels(op, node.host, classes);
    collectingHost?.push({ node, classes, op });
    return true;
  }
  if (collecting) collecting.push({ validRows: noGrad(() => rawCast(oneHotRows(), "float32").sum()), rows: target.size, classes, op });
  return false;
}

/** Reads the deferred checks (already computed with the step) and throws for the first that failed. */
export async function verifyLabelChecks(checks: readonly DeferredLabelCheck[], location: BatchLocation): Promise<void> {
  for (const c of checks) if ((await c.validRows.item()) !== c.rows) throw new LabelOutOfRangeError(c.op, c.classes, null, null, location);
}
