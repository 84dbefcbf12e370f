import { rejectUnknownOptions } from "../options.js";
import type { TrainerOptions } from "./trainer.js";

/** Every Trainer option; the type makes this list fail to compile when an option is added or removed. */
const TRAINER_OPTIONS: Readonly<Record<keyof TrainerOptions, true>> = {
  accelerator: true,
  registry: true,
  devices: true,
  precision: true,
  plugin: true,
  plugins: true,
  ampLevel: true,
  ampBackend: true,
  maxEpochs: true,
  maxSteps: true,
  accumulateGradBatches: true,
  gradientClipVal: true,
  gradientClipAlgorithm: true,
  callbacks: true,
  logger: true,
  enableProgressBar: true,
  enableCheckpointing: true,
  seed: true,
  deterministic: true,
  defaultRootDir: true,
  logEveryNSteps: true,
  limitTrainBatches: true,
  limitValBatches: true,
  checkValEveryNEpoch: true,
  limitTestBatches: true,
  limitPredictBatches: true,
  fastDevRun: true,
  valCheckInterval: true,
  maxTime: true,
  minEpochs: true,
  minSteps: true,
  numSanityValSteps: true,
  enableModelSummary: true,
  warn: true,
  programCacheSize: true,
  captureSteps: true,
};

const KNOWN = Object.keys(TRAINER_OPTIONS);

/** Rejects option keys the Trainer does not know (e.g. "max_epochs" from plain JavaScript). */
export function rejectUnknownTrainerOptions(options: TrainerOptions): void {
  rejectUnknownOptions("Trainer", options, KNOWN);
}
