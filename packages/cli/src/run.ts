import { Trainer, type Accelerator, type Precision, type PrecisionInput } from "@nbit/core";
import { mnistLoaders } from "./mnist.js";
import { MnistClassifier } from "./models.js";

export interface RunOptions {
  readonly accelerator?: Accelerator;
  readonly precision?: PrecisionInput;
  /** -1 for no limit, as in Lightning. */
  readonly maxEpochs: number;
  /** -1 for no limit. */
  readonly maxSteps?: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly seed: number;
  readonly progressBar: boolean;
  readonly logDir?: string;
  readonly checkpoint?: boolean;
  readonly limitTrainBatches?: number;
  /** Where the Trainer's warnings go (default: process warnings). */
  readonly warn?: (message: string) => void;
}

export interface RunResult {
  readonly precision: Precision;
  readonly accelerator: string;
  readonly losses: readonly number[];
  readonly finalLoss: number;
  readonly testAccuracy: number;
  readonly testLoss: number;
  readonly seconds: number;
  readonly parameterBytes: number;
  readonly optimizerBytes: number;
  readonly skippedSteps: number;
}

/** Trains the MNIST classifier once and evaluates it on the held-out digits. */
export async function trainMnist(options: RunOptions): Promise<RunResult> {
  const trainer = new Trainer({
    ...(options.accelerator !== undefined ? { accelerator: options.accelerator } : {}),
    ...(options.precision !== undefined ? { precision: options.precision } : {}),
    maxEpochs: options.maxEpochs,
    ...(options.maxSteps !== undefined ? { maxSteps: options.maxSteps } : {}),
    enableProgressBar: options.progressBar,
    // The layer table goes with the interactive display; piped output stays one line per run.
    enableModelSummary: options.progressBar,
    enableCheckpointing: options.checkpoint ?? false,
    logger: options.logDir !== undefined,
    ...(options.logDir !== undefined ? { defaultRootDir: options.logDir } : {}),
    seed: options.seed,
    ...(options.limitTrainBatches !== undefined ? { limitTrainBatches: options.limitTrainBatches } : {}),
    ...(options.warn ? { warn: options.warn } : {}),
  });
  const { train, test } = mnistLoaders(options.batchSize, options.seed);
  const model = trainer.initModule(() => new MnistClassifier(options.lr));
  const started = performance.now();
  await trainer.fit(model, train);
  const seconds = (performance.now() - started) / 1000;
  const metrics = await trainer.test(model, test);
  const tail = trainer.losses.slice(-20);
  return {
    precision: trainer.precision,
    accelerator: trainer.accelerator.name,
    losses: trainer.losses,
    finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
    testAccuracy: metrics.test_acc!,
    testLoss: metrics.test_loss!,
    seconds,
    parameterBytes: model.parameterBytes(),
    optimizerBytes: trainer.optimizer!.stateBytes(),
    skippedSteps: trainer.skippedSteps,
  };
}
