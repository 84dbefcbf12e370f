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

interface LoggedMeta {
  readonly name: string;
  readonly options: LoggedValue["options"];
  readonly batchSize: number;
}

/**
 * One optimizer step of the Trainer through its StepCapture: `record` runs the training step
 * (forward, label checks, logging) when the step is recorded; a replayed step refills
 * `module.logged` with the values logged when it was captured, recomputed.
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
    const logged = [...module.logged];
    const outputs: Tensor[] = [];
    const meta: LoggedMeta[] = [];
    let uncapturable: string | undefined;
    for (const [name, l] of logged) {
      if (!(l.value instanceof Tensor)) uncapturable ??= `module.log(${JSON.stringify(name)}) was given a number, which a replay cannot recompute`;
      else {
        outputs.push(l.value);
        meta.push({ name, options: l.options, batchSize: l.batchSize });
      }
    }
    if (checks.length) uncapturable ??= "labels that are not host data are checked inside the step";
    // The checks' counts are computed with the step (meta covers only the logged values before them).
    outputs.push(...checks.map((c) => c.validRows));
    return { loss: step.loss, outputs, meta, ...(uncapturable ? { uncapturable } : {}) };
  };
  const { clipValue, clipAlgorithm, location } = options;
  try {
    const outcome = await capture.step(rawBatch, forward, clipValue !== undefined ? { clipValue, ...(clipAlgorithm ? { clipAlgorithm } : {}) } : {});
    if (outcome.replayed)
      (outcome.meta as LoggedMeta[]).forEach(({ name, options, batchSize }, i) => module.logged.set(name, { value: outcome.outputs[i]!, options, batchSize }));
    return { loss: outcome.loss, skipped: outcome.skipped, checks };
  } catch (e) {
    throw e instanceof LabelOutOfRangeError && e.location === null ? e.at(location) : e;
  }
}
