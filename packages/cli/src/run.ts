import { Trainer, type Accelerator, type LightningModule, type Precision, type PrecisionInput } from "@nbit/core";
import { mnistLoaders } from "./mnist.js";
import { MnistClassifier, MnistCnn } from "./models.js";

/** The MNIST models a run can train, by name. */
export const MNIST_MODELS = {
  mlp: (lr: number): LightningModule => new MnistClassifier(lr),
  cnn: (lr: number, steps: number | null): LightningModule => new MnistCnn(lr, steps),
} as const;
export type MnistModelName = keyof typeof MNIST_MODELS;

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
  /** Shifted copies of each training digit to add (augmentation; default none). */
  readonly shiftedCopies?: number;
  /** Which classifier to train (default: the MLP). */
  readonly model?: MnistModelName;
  /** Where the Trainer's warnings go (default: process warnings). */
  readonly warn?: (message: string) => void;
  /** Replay the captured training step instead of recording each one (the Trainer's `captureSteps`). */
  readonly captureSteps?: boolean;
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
  /** Training steps replayed from the captured program (0 without `captureSteps`). */
  readonly replayedSteps: number;
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
    ...(options.captureSteps ? { captureSteps: true } : {}),
  });
  const { train, test } = mnistLoaders(options.batchSize, options.seed, options.shiftedCopies ?? 0);
  const perEpoch = Math.min(train.length, options.limitTrainBatches ?? Infinity);
  const plannedSteps = options.maxEpochs > 0 ? options.maxEpochs * perEpoch : null;
  const steps = options.maxSteps !== undefined && options.maxSteps > 0 ? Math.min(options.maxSteps, plannedSteps ?? Infinity) : plannedSteps;
  const model = trainer.initModule(() => MNIST_MODELS[options.model ?? "mlp"](options.lr, steps));
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
    replayedSteps: trainer.stepCapture?.stats.replayed ?? 0,
  };
}
