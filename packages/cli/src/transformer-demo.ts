import { accelerators, type Accelerator, type Precision } from "@nbit/core";
import type { DemoOutcome } from "./demos.js";
import type { RunOptions } from "./run.js";
import { trainNames, type NamesRunResult } from "./transformer.js";

/** The precision each accelerator's transformer demo trains in: 16-mixed where supported (a GPU, as the cuda run), else bf16-mixed (cpu, tpu). */
export function transformerDemoPrecision(accelerator: Accelerator): Precision {
  return accelerator.supportedPrecisions.includes("16-mixed") ? "16-mixed" : "bf16-mixed";
}

/** Steps a demo run takes when --max-steps is not given. */
export const TRANSFORMER_DEMO_STEPS = 300;

export function namesSummary(r: NamesRunResult): string {
  return [
    `${r.accelerator} ${r.precision}: ${r.steps} steps (${r.replayedSteps} replayed) in ${r.seconds.toFixed(1)} s, ${r.parameterCount} parameters (${r.parameterBytes} bytes)`,
    `validation loss ${r.valLoss.toFixed(4)} nats/char (bigram baseline ${r.bigramLoss.toFixed(4)}, ${r.valNames} held-out names)`,
    `samples: ${r.samples.join(", ")}`,
  ].join("\n");
}

/** `nbit demo --model transformer`: trains, reports against the bigram baseline and samples; it fails when the bigram wins. */
export async function runNamesDemo(options: RunOptions): Promise<DemoOutcome> {
  const accelerator = options.accelerator ?? accelerators.resolve("auto");
  const result = await trainNames({
    accelerator,
    precision: transformerDemoPrecision(accelerator),
    maxSteps: options.maxSteps !== undefined && options.maxSteps > 0 ? options.maxSteps : TRANSFORMER_DEMO_STEPS,
    batchSize: options.batchSize,
    lr: options.lr,
    seed: options.seed,
    progressBar: options.progressBar,
    ...(options.warn ? { warn: options.warn } : {}),
    ...(options.captureSteps ? { captureSteps: true } : {}),
  });
  const beaten = result.valLoss < result.bigramLoss;
  return {
    summary: namesSummary(result),
    failure: beaten ? null : `Validation loss ${result.valLoss.toFixed(4)} does not beat the bigram baseline ${result.bigramLoss.toFixed(4)}.`,
  };
}
