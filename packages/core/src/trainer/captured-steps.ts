import { Tensor } from "../engine/tensor.js";
import { LabelOutOfRangeError, type BatchLocation, type DeferredLabelCheck } from "../nn/labels.js";
import type { Optimizer } from "../optim/optimizer.js";
import type { GradientClipAlgorithm } from "../precision/plugins.js";
import { StepCapture } from "../precision/step-capture.js";
import { checkInteger, InvalidArgumentError, isPlainObject } from "../validation.js";
import type { Callback } from "./callbacks.js";
import type { Batch, LightningModule, LoggedValue } from "./lightning-module.js";

/** The Trainer's `captureSteps` option: true, or the StepCapture settings. */
export type CaptureStepsOption = boolean | { readonly verifyEvery?: number };

export function checkCaptureStepsOption(value: unknown): { verifyEvery?: number } | null {
  if (value === undefined || value === false) return null;
  if (value === true) return {};
  if (!isPlainObject(value) || Object.keys(value).some((k) => k !== "verifyEvery"))
    throw new InvalidArgumentError("Trainer captureSteps", "a boolean or { verifyEvery?: number }", value);
  return value.verifyEvery === undefined ? {} : { verifyEvery: checkInteger("Trainer captureSteps.verifyEvery", value.verifyEvery, 0) };
}

const IN_STEP_HOOKS = ["onBeforeBackward", "onAfterBackward", "onBeforeOptimizerStep"] as const;

/** Why the Trainer cannot capture this run's steps (the in-step hooks would not run on replay), or null. */
export function trainerCaptureRefusal(callbacks: readonly Callback[], accumulate: number, optimizer: Optimizer<{ lr: number }>): string | null {
  if (accumulate > 1) return "gradient accumulation (accumulateGradBatches > 1) is not captured";
  if (optimizer.updatesOnHost) return `${optimizer.constructor.name} updates on the host`;
  for (const c of callbacks)
    for (const hook of IN_STEP_HOOKS) if (c[hook]) return `callback ${c.constructor.name} implements ${hook}, which runs inside the step`;
  return null;
}

export function trainerStepCapture(
  option: { verifyEvery?: number },
  trainer: { precisionPlugin: StepCapture["plugin"]; warn(message: string): void },
  module: LightningModule,
  optimizer: Optimizer<{ lr: number }>,
  refusal: string | null,
): StepCapture {
  const capture = new StepCapture(trainer.precisionPlugin, optimizer, { module, ...option, warn: (m) => trainer.warn(m) });
  if (refusal) capture.refuse(refusal);
  return capture;
}

const NO_CLIP = Object.freeze({});

interface LoggedMeta {
  readonly name: string;
  readonly options: LoggedValue["options"];
  readonly batchSize: number;
}

/** What a replay needs to rebuild the captured step's logged values and in-step label checks from its outputs. */
interface StepMeta {
  readonly logged: readonly LoggedMeta[];
  readonly checks: readonly Omit<DeferredLabelCheck, "validRows">[];
}

/**
 * One optimizer step of the Trainer through its StepCapture: `record` runs the training step
 * (forward, label checks, logging) when the step is recorded; a replayed step refills
 * `module.logged` with the values logged when it was captured, recomputed, and repeats the
 * in-step label checks on the counts the program computed for the new batch.
 */
export async function capturedTrainStep(
  capture: StepCapture,
  module: LightningModule,
  rawBatch: Batch,
  record: (batch: Batch) => { loss: Tensor; checks: DeferredLabelCheck[] },
  options: { clipValue?: number; clipAlgorithm?: GradientClipAlgorithm; location: BatchLocation },
): Promise<{ loss: number; skipped: boolean; checks: DeferredLabelCheck[] }> {
  let checks: DeferredLabelCheck[] = [];
  const forward = (batch: readonly Tensor[]) => {
    const step = record([...batch]);
    checks = step.checks;
    const outputs: Tensor[] = [];
    const logged: LoggedMeta[] = [];
    let uncapturable: string | undefined;
    for (const [name, l] of module.logged) {
      if (!(l.value instanceof Tensor)) uncapturable ??= `module.log(${JSON.stringify(name)}) was given a number, which a replay cannot recompute`;
      else {
        outputs.push(l.value);
        logged.push({ name, options: l.options, batchSize: l.batchSize });
      }
    }
    // The checks' counts of in-range rows are computed with the step, after the logged values.
    outputs.push(...checks.map((c) => c.validRows));
    const meta: StepMeta = { logged, checks: checks.map(({ rows, classes, op }) => ({ rows, classes, op })) };
    return { loss: step.loss, outputs, meta, ...(uncapturable ? { uncapturable } : {}) };
  };
  const { clipValue, clipAlgorithm, location } = options;
  try {
    const outcome = await capture.step(rawBatch, forward, clipValue !== undefined ? { clipValue, ...(clipAlgorithm ? { clipAlgorithm } : {}) } : NO_CLIP);
    if (outcome.replayed) {
      const meta = outcome.meta as StepMeta;
      meta.logged.forEach(({ name, options, batchSize }, i) => module.logged.set(name, { value: outcome.outputs[i]!, options, batchSize }));
      // Spelled out, not `{ ...c, validRows }`: see afterTrainBatch's call in trainer.ts.
      checks = meta.checks.map(({ rows, classes, op }, j) => ({ rows, classes, op, validRows: outcome.outputs[meta.logged.length + j]! }));
    }
    return { loss: outcome.loss, skipped: outcome.skipped, checks };
  } catch (e) {
    throw e instanceof LabelOutOfRangeError && e.location === null ? e.at(location) : e;
  }
}
