import { Module } from "../nn/module.js";
import type { Tensor } from "../engine/tensor.js";
import type { Optimizer } from "../optim/optimizer.js";
import type { LRScheduler } from "./schedulers.js";
import type { Trainer } from "./trainer.js";
import { checkHyperparameters, type Hyperparameters } from "./hparams.js";
import { loadModuleFromCheckpoint, type LoadFromCheckpointOptions } from "./load-from-checkpoint.js";

export type Batch = Tensor[];

export interface LogOptions {
  /** Record the value at each step (default: true while training, false otherwise). */
  readonly onStep?: boolean;
  /** Record the mean over the epoch (default: false while training, true otherwise). */
  readonly onEpoch?: boolean;
  /** Show it on the progress bar. */
  readonly progBar?: boolean;
}

export interface OptimizerConfig {
  readonly optimizer: Optimizer<{ lr: number }>;
  readonly lrScheduler?: LRScheduler | { readonly scheduler: LRScheduler; readonly interval?: "step" | "epoch" };
}

export type TrainingStepOutput = Tensor | { readonly loss: Tensor };

export interface LoggedValue {
  readonly value: Tensor | number;
  readonly options: Required<LogOptions>;
  readonly batchSize: number;
}

/**
 * A model with its training logic, as Lightning's LightningModule: implement `trainingStep`
 * and `configureOptimizers`, optionally the validation, test and predict steps, and call
 * `log()` for metrics. Steps build lazy graphs; the Trainer runs each step as one program.
 */
export abstract class LightningModule extends Module {
  trainer: Trainer | null = null;
  private loggedThisStep = new Map<string, LoggedValue>();

  /** Values logged during the current step; the Trainer collects them. */
  get logged(): Map<string, LoggedValue> {
    return this.loggedThisStep;
  }

  /** Empties `logged` before a step (the Trainer calls this). */
  startLoggingStep(): void {
    // A new Map, not clear(): see Optimizer.step. An empty one is kept as it is.
    if (this.loggedThisStep.size > 0) this.loggedThisStep = new Map();
  }

  /** The hyperparameters given to `saveHyperparameters` (a frozen copy; `{}` until then). */
  hparams: Hyperparameters = Object.freeze({});

  /**
   * Records the constructor's hyperparameters, as Lightning's save_hyperparameters: they are kept in
   * `hparams` and written into every checkpoint, so `loadFromCheckpoint` can rebuild the module.
   * Values must be plain JSON (numbers, strings, booleans, null, arrays, plain objects); `ignore`
   * drops top-level keys (a dataset or a callback passed to the constructor, say).
   */
  saveHyperparameters(hparams: object, { ignore = [] }: { ignore?: readonly string[] } = {}): void {
    const kept = Object.fromEntries(Object.entries(hparams ?? {}).filter(([k]) => !ignore.includes(k)));
    this.hparams = checkHyperparameters(kept, `${this.constructor.name}.saveHyperparameters hparams`);
  }

  /**
   * Builds the module from a checkpoint: `new this(hparams)` with the saved hyperparameters (with
   * `options.hparams` laid over them), then `configureModel`, then the weights, cast to the
   * module's dtypes. The file is verified whole first (checksums, schema, hyperparameters as plain
   * JSON, every weight's name and shape); nothing is built from a file that fails.
   */
  static loadFromCheckpoint<M extends LightningModule, H extends object>(
    this: new (
      hparams: H,
    ) => M,
    path: string,
    options: LoadFromCheckpointOptions<H> = {},
  ): M {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the subclass being loaded, not LightningModule.
    return loadModuleFromCheckpoint(this, path, options);
  }

  abstract trainingStep(batch: Batch, batchIdx: number): TrainingStepOutput;
  abstract configureOptimizers(): Optimizer<{ lr: number }> | OptimizerConfig;
  /**
   * Creates layers when a Trainer first uses this module (fit, validate, test or predict), inside
   * the precision's init context: parameters and `tensor()`/`full`/`zeros`/`ones` made here take the
   * precision's dtype, as in `Trainer.initModule`. nbit calls it once per module (Lightning calls it
   * at every stage and asks that it be idempotent).
   */
  configureModel?(): void;
  validationStep?(batch: Batch, batchIdx: number): void | Tensor;
  testStep?(batch: Batch, batchIdx: number): void | Tensor;
  predictStep?(batch: Batch, batchIdx: number): Tensor;

  /** The accelerator's name once a Trainer has attached this module, else where its parameters live. */
  override get device(): string {
    return this.trainer ? this.trainer.accelerator.name : super.device;
  }

  /** As Module.parameterBytes; once a Trainer has attached the module, on the Trainer's backend. */
  override parameterBytes(storage = this.trainer?.runtime.backend.capabilities.storage): number {
    return super.parameterBytes(storage);
  }

  log(name: string, value: Tensor | number, options: LogOptions = {}): void {
    const training = this.trainer?.stage === "train";
    const batchSize = this.trainer?.currentBatchSize ?? 1;
    this.logged.set(name, {
      value: typeof value === "number" ? value : value.detach(),
      options: { onStep: options.onStep ?? training, onEpoch: options.onEpoch ?? !training, progBar: options.progBar ?? false },
      batchSize,
    });
  }
}
