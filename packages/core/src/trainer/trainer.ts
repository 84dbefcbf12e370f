import { accelerators, type Accelerator, type AcceleratorName, type AcceleratorRegistry } from "../accelerator.js";
import { NbitError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import { defaultGenerator, manualSeed } from "../engine/random.js";
import { Runtime } from "../engine/runtime.js";
import { eventLoopTurnIfDue } from "../engine/event-loop.js";
import { realize, Tensor } from "../engine/tensor.js";
import { collectLabelChecks, LabelOutOfRangeError, verifyLabelChecks, type BatchLocation, type DeferredLabelCheck } from "../nn/labels.js";
import { Optimizer } from "../optim/optimizer.js";
import { defaultWarn, type PrecisionInput, type Precision, type Warn } from "../precision/parse.js";
import type { AmpLevel } from "../precision/apex.js";
import type { GradientClipAlgorithm, PrecisionPlugin } from "../precision/plugins.js";
import { describe } from "../validation.js";
import { ModelCheckpoint, ProgressBar, type BatchOutcome, type Callback, type CheckpointInfo, type TrainerStage } from "./callbacks.js";
import { loadCheckpoint, saveCheckpoint, type CheckpointTargets } from "./checkpoint.js";
import { resolveCheckpointPath, type CheckpointPath } from "./checkpoint-path.js";
import type { DataLoader } from "./data.js";
import { dataloaderOf, dataSource, type LightningDataModule } from "./datamodule.js";
import { valCheckBatch, type Duration } from "./loop-limits.js";
import { ModelSummary } from "./model-summary.js";
import { Timer } from "./timer.js";
import type { LightningModule, LoggedValue } from "./lightning-module.js";
import { CSVLogger, type Logger } from "./logger.js";
import { limitBatches, resolveLoopSettings, type LoopSettings } from "./options.js";
import { LRScheduler } from "./schedulers.js";
import { rejectUnknownTrainerOptions } from "./option-keys.js";
import { selectPrecisionPlugin, type AmpBackend } from "./precision-options.js";
import { configureModelOnce } from "./configure-model.js";
import { watchManualCasts } from "../engine/cast-watch.js";
import type { StepCapture } from "../precision/step-capture.js";
import { capturedTrainStep, checkCaptureStepsOption, trainerCaptureRefusal, trainerStepCapture, type CaptureStepsOption } from "./captured-steps.js";

/**
 * Where the accelerator comes from: a name declared by an imported backend package (see
 * `AcceleratorNames`), "auto" or an instance; or, with a registry of your own, any name in it.
 */
export type TrainerAcceleratorOptions =
  | { readonly accelerator?: string | Accelerator; readonly registry: AcceleratorRegistry }
  | {
      /** Accelerator name, "auto" (default: the best registered and available), or an instance. */
      readonly accelerator?: AcceleratorName | Accelerator;
      readonly registry?: undefined;
    };

export type TrainerOptions = TrainerSettings & TrainerAcceleratorOptions;

export interface TrainerSettings {
  /** Devices to use; nbit trains on one device. */
  readonly devices?: number | "auto";
  /** Canonical precision or a Lightning legacy alias (default "32-true"). */
  readonly precision?: PrecisionInput;
  /** Use this precision plugin instead of the one the precision names (an explicit `precision` must agree with it). */
  readonly plugin?: PrecisionPlugin;
  /** Plugins, as Lightning's `plugins=[...]`: at most one precision plugin, as `plugin`. */
  readonly plugins?: readonly PrecisionPlugin[];
  /** Apex-style optimization level ("O0".."O3"); with `precision`, only Lightning 1.x's `precision: 16` (or the level's own precision). */
  readonly ampLevel?: AmpLevel;
  /** Lightning 1.x's amp_backend: "apex" runs `ampLevel` (default "O2"); "native" (default) the autocast plugins. */
  readonly ampBackend?: AmpBackend;
  /** Stop after this many epochs (-1: no limit; default 1000, or no limit when maxSteps is set), as Lightning. */
  readonly maxEpochs?: number;
  /** Stop after this many optimizer steps (-1: no limit; 0 trains nothing), checked before each step. */
  readonly maxSteps?: number;
  readonly accumulateGradBatches?: number;
  /** Clip gradients to this norm or value (0 or unset: no clipping). */
  readonly gradientClipVal?: number;
  readonly gradientClipAlgorithm?: GradientClipAlgorithm;
  readonly callbacks?: readonly Callback[];
  /** A logger, true for a CSVLogger under `defaultRootDir`, false for none. */
  readonly logger?: Logger | boolean;
  readonly enableProgressBar?: boolean;
  /** Add a ModelCheckpoint saving the latest epoch when no callback is one (default true, as Lightning). */
  readonly enableCheckpointing?: boolean;
  /** Seeds the default generator once, when the Trainer is built (before the model, as seed_everything); an integer in [0, 2^32). */
  readonly seed?: number;
  /** Accepted for Lightning parity: nbit's backends are deterministic for a fixed thread count. */
  readonly deterministic?: boolean;
  readonly defaultRootDir?: string;
  /** Log training metrics every n optimizer steps (a positive integer; default 50). */
  readonly logEveryNSteps?: number;
  /** Train on this many batches per epoch (an integer; 0 trains none) or, as Lightning, this fraction in (0, 1) of them. */
  readonly limitTrainBatches?: number;
  /** Validate on this many batches (an integer) or this fraction in (0, 1) of them. */
  readonly limitValBatches?: number;
  /** Validate every n epochs (a positive integer; default 1). */
  readonly checkValEveryNEpoch?: number;
  /** Test on this many batches (an integer; 0 tests none) or this fraction in (0, 1) of them. */
  readonly limitTestBatches?: number;
  /** Predict on this many batches (an integer; 0 predicts none) or this fraction in (0, 1) of them. */
  readonly limitPredictBatches?: number;
  /** Runs n batches (true: 1) of each loop, one epoch, without sanity check, logger or checkpoints, as Lightning. */
  readonly fastDevRun?: boolean | number;
  /** Validate every n training batches (an integer) or this fraction in (0, 1) of an epoch (default: at its end). */
  readonly valCheckInterval?: number;
  /** Stop training after this long (ms, "DD:HH:MM:SS" or { days, hours, minutes, seconds }), checked after each batch by a Timer callback. */
  readonly maxTime?: Duration;
  /** Train at least this many epochs: EarlyStopping and other stop requests wait for it (default 0). */
  readonly minEpochs?: number;
  /** Train at least this many optimizer steps before a stop request is honoured (default 0). */
  readonly minSteps?: number;
  /** Validation batches run before training to catch bugs early (default 2; -1: all; 0: none). */
  readonly numSanityValSteps?: number;
  /** Print a summary of the module's layers, parameter counts, dtypes and bytes at fit start (default true). */
  readonly enableModelSummary?: boolean;
  readonly warn?: Warn;
  /** Compiled programs this Trainer's runtime keeps (an LRU; evicted sessions are released); default 16. */
  readonly programCacheSize?: number;
  /**
   * Capture training steps and replay them (as CUDA graphs / torch.compile's "reduce-overhead"):
   * once two steps build the same program, later steps with the same batch shapes run it directly,
   * without recording the forward pass, autograd or the update. Requires steps whose ops depend only
   * on the batch's shapes and dtypes; see StepCapture for the contract and what is refused.
   * `verifyEvery`: record a checking step every this many replays (default 200; 0: never).
   */
  readonly captureSteps?: CaptureStepsOption;
}

/** Options of fit(); validate() and test() take the same. */
export interface FitOptions {
  /** Resume from this checkpoint: a path, or "last" / "best" of the ModelCheckpoint callbacks. */
  readonly ckptPath?: CheckpointPath;
  /** Where the loaders come from, instead of passing them. */
  readonly datamodule?: LightningDataModule;
}

/** Options of validate() and test(): ckptPath loads only the module's weights. */
export type EvaluateOptions = FitOptions;

export interface PredictOptions {
  readonly datamodule?: LightningDataModule;
}

export class NonFiniteLossError extends NbitError {
  constructor(
    readonly value: number,
    readonly step: number,
    readonly epoch: number,
    readonly batchIdx: number,
    precision: Precision,
  ) {
    super(
      "NON_FINITE_LOSS",
      `The loss is ${value} at global step ${step} (epoch ${epoch}, batch ${batchIdx}) with precision "${precision}". ` +
        "Check the inputs and the learning rate; with 16-bit formats, consider a wider precision or gradient clipping.",
    );
  }
}

/** A LightningModule hook returned something the Trainer cannot use. */
export class InvalidReturnValueError extends NbitError {
  constructor(
    readonly hook: string,
    readonly expected: string,
    readonly received: unknown,
  ) {
    super("INVALID_RETURN_VALUE", `${hook} must return ${expected}; got ${describe(received)}`);
  }
}

/** Lightning's Trainer for nbit: fit/validate/test/predict with precision, callbacks, logging and checkpoints. */
export class Trainer {
  readonly accelerator: Accelerator;
  readonly precision: Precision;
  readonly precisionPlugin: PrecisionPlugin;
  readonly runtime: Runtime;
  readonly callbacks: Callback[];
  readonly logger: Logger | null;
  readonly maxEpochs: number;
  readonly maxSteps: number;
  readonly warnings: string[] = [];
  /** Batches per loop under fastDevRun (0: off); loggers and checkpointing are off while it is on. */
  readonly fastDevRun: number;
  /** True while the sanity check's validation batches run before training. */
  sanityChecking = false;
  /** The datamodule of the running (or last) call. */
  datamodule: LightningDataModule | null = null;

  stage: "train" | "validate" | "test" | "predict" | null = null;
  currentEpoch = 0;
  globalStep = 0;
  currentBatchSize = 0;
  numTrainingBatches = 0;
  shouldStop = false;
  /** Optimizer steps the gradient scaler skipped (Inf/NaN gradients). */
  skippedSteps = 0;
  /** Latest value of every logged metric (epoch means for epoch-level ones). */
  callbackMetrics: Record<string, number> = {};
  progressBarMetrics: Record<string, number> = {};
  optimizer: Optimizer<{ lr: number }> | null = null;
  scheduler: { scheduler: LRScheduler; interval: "step" | "epoch" } | null = null;
  /** Per-step training losses of the last fit (unscaled, one per batch). */
  readonly losses: number[] = [];

  private readonly options: TrainerOptions;
  private readonly loop: LoopSettings;
  private position = { epoch: 0, batch: 0 };
  private warnedSkip = false;
  private readonly captureOption: { verifyEvery?: number } | null;
  /** The step capture of the current fit when `captureSteps` is on (its `stats` say how many steps replayed, or why none). */
  stepCapture: StepCapture | null = null;

  constructor(options: TrainerOptions = {}) {
    rejectUnknownTrainerOptions(options);
    this.loop = resolveLoopSettings(options);
    this.captureOption = checkCaptureStepsOption(options.captureSteps);
    this.options = options;
    const warn = options.warn ?? defaultWarn;
    const emit = (m: string) => {
      this.warnings.push(m);
      warn(m);
    };
    const registry = options.registry ?? accelerators;
    this.accelerator = typeof options.accelerator === "object" ? options.accelerator : registry.resolve(options.accelerator ?? "auto");
    const devices = options.devices ?? "auto";
    if (devices !== "auto" && devices !== -1 && devices !== 1)
      throw new NbitError(
        "UNSUPPORTED_DEVICES",
        `devices=${devices}: nbit trains on one device; "${this.accelerator.name}" has ${this.accelerator.deviceCount()}.`,
      );
    const selected = selectPrecisionPlugin(options, this.accelerator, emit);
    this.precision = selected.precision;
    this.precisionPlugin = selected.plugin;
    this.runtime = new Runtime(this.accelerator.createBackend(), options.programCacheSize !== undefined ? { programCacheSize: options.programCacheSize } : {});
    // Seeded once, here, as seed_everything before building the model: later fit/test calls do not rewind it.
    if (options.seed !== undefined) manualSeed(options.seed);
    this.maxEpochs = this.loop.maxEpochs;
    this.maxSteps = this.loop.maxSteps;
    this.fastDevRun = this.loop.fastDevRun;
    const logger = this.fastDevRun > 0 ? false : (options.logger ?? true);
    this.logger = logger === true ? new CSVLogger(options.defaultRootDir ?? "nbit_logs") : logger === false ? null : logger;
    this.callbacks = [...(options.callbacks ?? [])];
    if ((options.enableModelSummary ?? true) && !this.callbacks.some((c) => c instanceof ModelSummary)) this.callbacks.push(new ModelSummary());
    if (this.loop.maxTimeMs !== null) {
      if (this.callbacks.some((c) => c instanceof Timer)) this.warn("maxTime is ignored: the callbacks already hold a Timer, which sets the time limit.");
      else this.callbacks.push(new Timer({ duration: this.loop.maxTimeMs }));
    }
    if ((options.enableProgressBar ?? true) && !this.callbacks.some((c) => c instanceof ProgressBar)) this.callbacks.push(new ProgressBar());
    if ((options.enableCheckpointing ?? true) && !this.callbacks.some((c) => c instanceof ModelCheckpoint)) this.callbacks.push(new ModelCheckpoint());
  }

  /** Where logs and default checkpoints go. */
  get logDir(): string {
    return this.logger?.logDir ?? this.options.defaultRootDir ?? "nbit_logs";
  }

  /** Runs `fn` so the parameters it creates are made directly in this precision's dtype. */
  initModule<T>(fn: () => T): T {
    return this.precisionPlugin.initContext(fn);
  }

  logMetrics(metrics: Readonly<Record<string, number>>): void {
    Object.assign(this.callbackMetrics, metrics);
    this.logger?.logMetrics({ ...metrics, epoch: this.currentEpoch }, this.globalStep);
  }

  /** Runs `fn` (and everything it awaits) on this Trainer's runtime; fit, validate, test and predict run this way. */
  run<T>(fn: () => T): T {
    return this.runtime.run(fn);
  }

  /**
   * Releases this Trainer's backend memory and compiled programs (onnxruntime sessions, tfjs
   * tensors). Its module's tensors cannot be read afterwards: save a checkpoint first if needed.
   * `await using trainer = new Trainer(...)` calls it at the end of the block.
   */
  dispose(): Promise<void> {
    return this.runtime.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private prepare(module: LightningModule): void {
    module.trainer = this;
    this.module = module;
    const plugin = this.precisionPlugin;
    configureModelOnce(module, plugin);
    if (plugin.autocastDType === null && module.parameters().some((p) => p.dtype !== plugin.paramDType)) plugin.convertModule(module);
  }

  private configureOptimizers(module: LightningModule): void {
    const config: unknown = module.configureOptimizers();
    const expected = "an Optimizer or { optimizer, lrScheduler? } with lrScheduler a scheduler or { scheduler, interval }";
    const invalid = () => new InvalidReturnValueError(`${module.constructor.name}.configureOptimizers()`, expected, config);
    if (config instanceof Optimizer) {
      this.optimizer = config;
      this.scheduler = null;
      return;
    }
    if (typeof config !== "object" || config === null || !((config as { optimizer?: unknown }).optimizer instanceof Optimizer)) throw invalid();
    const { optimizer, lrScheduler } = config as { optimizer: Optimizer<{ lr: number }>; lrScheduler?: unknown };
    let scheduler: { scheduler: LRScheduler; interval: "step" | "epoch" } | null = null;
    if (lrScheduler instanceof LRScheduler) scheduler = { scheduler: lrScheduler, interval: "epoch" };
    else if (lrScheduler !== undefined) {
      const { scheduler: s, interval = "epoch" } = (typeof lrScheduler === "object" && lrScheduler !== null ? lrScheduler : {}) as {
        scheduler?: unknown;
        interval?: unknown;
      };
      if (!(s instanceof LRScheduler) || (interval !== "step" && interval !== "epoch")) throw invalid();
      scheduler = { scheduler: s, interval };
    }
    if (scheduler && scheduler.scheduler.optimizer !== optimizer) throw invalid();
    this.optimizer = optimizer;
    this.scheduler = scheduler;
  }

  private async hook(name: keyof Callback, module: LightningModule, ...args: unknown[]): Promise<void> {
    for (const c of this.callbacks)
      await (c[name] as ((t: Trainer, m: LightningModule, ...a: unknown[]) => unknown) | undefined)?.call(c, this, module, ...args);
  }

  /**
   * Runs one Trainer call in Lightning's order: datamodule prepareData and setup, the callbacks'
   * setup, the call, then the datamodule's and callbacks' teardown. On an error, the callbacks'
   * onException runs and the error is rethrown (teardown is skipped, as in Lightning).
   */
  private runStage<T>(stage: TrainerStage, module: LightningModule, datamodule: LightningDataModule | null, body: () => Promise<T>): Promise<T> {
    return this.run(() => this.runStageInScope(stage, module, datamodule, body));
  }

  private async runStageInScope<T>(stage: TrainerStage, module: LightningModule, datamodule: LightningDataModule | null, body: () => Promise<T>): Promise<T> {
    this.prepare(module);
    this.datamodule = datamodule;
    if (datamodule) datamodule.trainer = this;
    try {
      await datamodule?.prepareData?.();
      await datamodule?.setup?.(stage);
      await this.hook("setup", module, stage);
      const result = await body();
      await datamodule?.teardown?.(stage);
      await this.hook("teardown", module, stage);
      return result;
    } catch (e) {
      await this.hook("onException", module, e);
      throw e;
    } finally {
      this.stage = null;
      this.logger?.flush?.();
    }
  }

  private async restoreFrom(path: string, module: LightningModule, weightsOnly: boolean): Promise<void> {
    const loop = loadCheckpoint(path, this.checkpointTargets(module), { weightsOnly });
    if (!weightsOnly) {
      this.position = { epoch: loop.epoch, batch: loop.batch };
      this.globalStep = loop.globalStep;
      this.skippedSteps = loop.skippedSteps;
    }
    const info: CheckpointInfo = { path, epoch: loop.epoch, globalStep: loop.globalStep };
    await this.hook("onLoadCheckpoint", module, info);
  }

  /** As Lightning's fit loop: a stop request waits until minEpochs epochs and minSteps steps have run. */
  private get canStopEarly(): boolean {
    return this.currentEpoch >= this.loop.minEpochs && this.globalStep >= this.loop.minSteps;
  }

  /** Runs up to numSanityValSteps validation batches before training; their metrics are discarded. */
  private async sanityCheck(module: LightningModule, val: DataLoader): Promise<void> {
    const steps = Math.min(this.loop.numSanityValSteps, limitBatches("Trainer limitValBatches", this.loop.limitValBatches, val.length));
    if (steps === 0) return;
    const metrics = { ...this.callbackMetrics };
    this.sanityChecking = true;
    try {
      await this.evaluationLoop(module, val, "validate", steps);
    } finally {
      this.sanityChecking = false;
      this.callbackMetrics = metrics;
    }
  }

  /** True once maxSteps optimizer steps have run (checked before a step, so maxSteps 0 trains nothing). */
  private get stepLimitReached(): boolean {
    return this.maxSteps >= 0 && this.globalStep >= this.maxSteps;
  }

  /**
   * Trains `module` on `train` (or the datamodule's loaders), validating on `val` every
   * valCheckInterval; `ckptPath` resumes from a checkpoint (a path, "last" or "best").
   */
  async fit(module: LightningModule, train?: DataLoader | LightningDataModule, val?: DataLoader, options: FitOptions = {}): Promise<void> {
    const source = dataSource("fit", train, options, ["ckptPath", "datamodule"]);
    const ckptPath = resolveCheckpointPath("fit", options.ckptPath, this, this.callbacks);
    if (source.datamodule && val !== undefined)
      throw new NbitError("INVALID_ARGUMENT", "fit() was given both a validation DataLoader and a datamodule: pass one of them.");
    await this.runStage("fit", module, source.datamodule, async () => {
      this.configureOptimizers(module);
      this.losses.length = 0;
      this.shouldStop = false;
      if (ckptPath !== undefined) await this.restoreFrom(ckptPath, module, false);
      const dm = source.datamodule;
      const trainLoader = dm ? dataloaderOf(dm, "trainDataloader", "fit", true)! : source.loader!;
      const valLoader = dm ? dataloaderOf(dm, "valDataloader", "fit", false) : (val ?? null);
      this.numTrainingBatches = limitBatches("Trainer limitTrainBatches", this.loop.limitTrainBatches, trainLoader.length);
      if (this.numTrainingBatches === 0) {
        this.warn("No training batches: the train loader is empty or limitTrainBatches is 0, so fit() trains nothing.");
        return;
      }
      const validating =
        valLoader !== null && module.validationStep !== undefined && limitBatches("Trainer limitValBatches", this.loop.limitValBatches, valLoader.length) > 0;
      const validation = validating ? { loader: valLoader, every: valCheckBatch(this.loop.valCheckInterval, this.numTrainingBatches) } : null;
      const accumulate = this.loop.accumulateGradBatches;
      this.stepCapture = this.captureOption
        ? trainerStepCapture(this.captureOption, this, module, this.optimizer!, trainerCaptureRefusal(this.callbacks, accumulate, this.optimizer!))
        : null;
      await this.hook("onFitStart", module);
      if (validation) await this.sanityCheck(module, validation.loader);
      for (
        this.currentEpoch = this.position.epoch;
        this.currentEpoch < this.maxEpochs && !this.stepLimitReached && !(this.shouldStop && this.canStopEarly);
        this.currentEpoch++
      ) {
        const skip = this.currentEpoch === this.position.epoch ? this.position.batch : 0;
        await this.trainEpoch(module, trainLoader, skip, accumulate, validation);
        this.position = { epoch: this.currentEpoch + 1, batch: 0 };
        if (this.scheduler?.interval === "epoch") this.scheduler.scheduler.step();
        this.logger?.flush?.();
        await this.hook("onTrainEpochEnd", module);
      }
      if (this.skippedSteps > 0)
        this.warn(
          `The gradient scaler skipped ${this.skippedSteps} optimizer step(s) with Inf/NaN gradients; the learning-rate scheduler was not advanced for them.`,
        );
      await this.hook("onFitEnd", module);
    });
  }

  private async trainEpoch(
    module: LightningModule,
    train: DataLoader,
    skip: number,
    accumulate: number,
    validation: { loader: DataLoader; every: number } | null,
  ): Promise<void> {
    module.train();
    train.setEpoch(this.currentEpoch);
    await this.hook("onTrainEpochStart", module);
    const epochSums = new Map<string, { sum: number; count: number }>();
    const plugin = this.precisionPlugin;
    const optimizer = this.optimizer!;
    let batchIdx = -1;
    for (const rawBatch of train) {
      batchIdx++;
      if (batchIdx < skip) continue;
      if (batchIdx >= this.numTrainingBatches || this.stepLimitReached || (this.shouldStop && this.canStopEarly)) break;
      const turn = eventLoopTurnIfDue();
      if (turn) await turn;
      for (const c of this.callbacks) {
        // Awaited only when a hook returns something: a promise per callback per step adds up on small steps.
        const started = c.onTrainBatchStart?.(this, module, rawBatch, batchIdx);
        if (started) await started;
      }
      this.stage = "train";
      this.currentBatchSize = rawBatch[0]?.shape[0] ?? 1;
      module.startLoggingStep();
      const location: BatchLocation = { stage: "train", epoch: this.currentEpoch, batchIdx };
      const boundary = (batchIdx + 1) % accumulate === 0 || batchIdx + 1 === this.numTrainingBatches;
      const recordStep = (raw: Tensor[]) => {
        const batch = raw.map((t) => plugin.convertInput(t));
        const userStep = () =>
          watchManualCasts(
            this,
            this.precision,
            plugin.autocastDType,
            (m) => this.warn(m),
            () => module.trainingStep(batch, batchIdx),
          );
        const { result, checks } = this.runStep(location, () => plugin.forwardContext(userStep));
        return { loss: this.lossOf(module, result), checks };
      };
      const capture = this.stepCapture;
      if (boundary && capture?.enabled) {
        const clipValue = this.loop.gradientClipVal;
        const stepOptions = clipValue !== null ? { clipValue, clipAlgorithm: this.loop.gradientClipAlgorithm, location } : { location };
        const outcome = await capturedTrainStep(capture, module, rawBatch, recordStep, stepOptions);
        const step = this.countOptimizerStep(outcome.skipped);
        // Spelled out, not `{ ...outcome, step }`: in V8 11 (Node 20) a spread with an added property
        // kept every step's result alive across scavenges until a full GC, which grew the young
        // generation (bench/rss.ts in @nbit/cpu).
        const result = { loss: outcome.loss, skipped: outcome.skipped, checks: outcome.checks, step };
        await this.afterTrainBatch(module, rawBatch, batchIdx, epochSums, result, true, location, validation);
        continue;
      }
      const { loss, checks } = recordStep(rawBatch);
      // Lightning divides the loss by the number of accumulated batches.
      const stepLoss = accumulate > 1 ? loss.div(accumulate) : loss;
      const logged = [...module.logged.values()].map((l) => l.value).filter((v): v is Tensor => v instanceof Tensor);
      // Buffers a training forward updated (batch norm's running statistics) are computed with the step.
      const extra = [...logged, ...checks.map((c) => c.validRows), ...module.buffers()];
      const step = this.globalStep;
      let lossValue: number;
      let skipped = false;
      const beforeBackward = (l: Tensor) => this.hook("onBeforeBackward", module, l);
      const afterBackward = () => this.hook("onAfterBackward", module);
      if (boundary) {
        const clipValue = this.loop.gradientClipVal;
        const outcome = await plugin.optimizerStep(optimizer, stepLoss, {
          ...(clipValue !== null ? { clipValue, clipAlgorithm: this.loop.gradientClipAlgorithm } : {}),
          extra,
          hooks: { beforeBackward, afterBackward, beforeOptimizerStep: () => this.hook("onBeforeOptimizerStep", module, optimizer) },
        });
        lossValue = outcome.loss * accumulate;
        skipped = outcome.skipped;
        this.countOptimizerStep(skipped);
      } else {
        const detached = loss.detach();
        await beforeBackward(stepLoss);
        plugin.backward(stepLoss);
        await afterBackward();
        await realize([detached, ...optimizer.params.flatMap((p) => (p.grad ? [p.grad] : [])), ...extra]);
        lossValue = await detached.item();
      }
      await this.afterTrainBatch(module, rawBatch, batchIdx, epochSums, { loss: lossValue, skipped, checks, step }, boundary, location, validation);
    }
    const epochMetrics: Record<string, number> = {};
    for (const [k, { sum, count }] of epochSums) epochMetrics[k] = sum / count;
    if (Object.keys(epochMetrics).length) this.logMetrics(epochMetrics);
  }

  /** Everything after a training batch's step: label checks, metrics, logging, callbacks, validation. */
  private async afterTrainBatch(
    module: LightningModule,
    rawBatch: Tensor[],
    batchIdx: number,
    epochSums: Map<string, { sum: number; count: number }>,
    result: { loss: number; skipped: boolean; checks: readonly DeferredLabelCheck[]; step: number },
    boundary: boolean,
    location: BatchLocation,
    validation: { loader: DataLoader; every: number } | null,
  ): Promise<void> {
    const plugin = this.precisionPlugin;
    const { loss: lossValue, skipped, checks, step } = result;
    if (checks.length > 0) await verifyLabelChecks(checks, location);
    if (!Number.isFinite(lossValue) && !skipped && plugin.autocastDType !== "float16")
      throw new NonFiniteLossError(lossValue, step, this.currentEpoch, batchIdx, this.precision);
    this.losses.push(lossValue);
    if (module.logged.size > 0) await this.collectLogged(module.logged, epochSums);
    this.progressBarMetrics = this.progressBarValues(module.logged);
    if (boundary && this.globalStep % this.loop.logEveryNSteps === 0)
      this.logger?.logMetrics({ train_loss: lossValue, epoch: this.currentEpoch, ...this.stepMetrics(module.logged) }, this.globalStep);
    this.position = { epoch: this.currentEpoch, batch: batchIdx + 1 };
    const outcome: BatchOutcome = { loss: lossValue, skipped, optimizerStep: boundary };
    for (const c of this.callbacks) {
      const ended = c.onTrainBatchEnd?.(this, module, outcome, rawBatch, batchIdx);
      if (ended) await ended;
    }
    // As Lightning: validate every `every` batches, and when a stop request can end training.
    const validateNow = (batchIdx + 1) % (validation?.every ?? 1) === 0 || (this.shouldStop && this.canStopEarly);
    if (validation && validateNow && (this.currentEpoch + 1) % this.loop.checkValEveryNEpoch === 0)
      await this.evaluationLoop(module, validation.loader, "validate");
  }

  /** Counts an optimizer step taken (the scheduler advances) or skipped by the scaler; returns the step's index. */
  private countOptimizerStep(skipped: boolean): number {
    const step = this.globalStep++;
    if (skipped) this.noteSkippedStep();
    else if (this.scheduler?.interval === "step") this.scheduler.scheduler.step();
    return step;
  }

  private noteSkippedStep(): void {
    this.skippedSteps++;
    if (!this.warnedSkip) {
      this.warnedSkip = true;
      this.warn(
        `Step ${this.globalStep}: the gradient scaler found Inf/NaN gradients and skipped the optimizer step; the learning-rate scheduler is not advanced on skipped steps.`,
      );
    }
  }

  /** Runs a step, collecting its deferred label checks; a label error names the batch. */
  private runStep<T>(location: BatchLocation, fn: () => T): { result: T; checks: DeferredLabelCheck[] } {
    try {
      return collectLabelChecks(fn);
    } catch (e) {
      throw e instanceof LabelOutOfRangeError ? e.at(location) : e;
    }
  }

  private lossOf(module: LightningModule, output: unknown): Tensor {
    const loss = output instanceof Tensor ? output : typeof output === "object" && output !== null ? (output as { loss?: unknown }).loss : undefined;
    if (!(loss instanceof Tensor) || loss.size !== 1)
      throw new InvalidReturnValueError(
        `${module.constructor.name}.trainingStep()`,
        "the loss: a one-element Tensor, or { loss: Tensor }",
        loss instanceof Tensor ? loss : output,
      );
    return loss;
  }

  /** Records a warning and passes it to the `warn` option (process warnings by default). */
  warn(message: string): void {
    this.warnings.push(message);
    (this.options.warn ?? ((m: string) => process.emitWarning(m)))(message);
  }

  private progressBarValues(logged: ReadonlyMap<string, LoggedValue>): Record<string, number> {
    if (logged.size === 0) return {};
    return Object.fromEntries([...logged].filter(([, l]) => l.options.progBar).map(([k]) => [k, this.callbackMetrics[k] ?? NaN]));
  }

  private stepMetrics(logged: ReadonlyMap<string, LoggedValue>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, l] of logged) if (l.options.onStep && this.callbackMetrics[k] !== undefined) out[k] = this.callbackMetrics[k]!;
    return out;
  }

  /** Reads this step's logged values (already computed with the step) into metrics and epoch sums. */
  private async collectLogged(logged: ReadonlyMap<string, LoggedValue>, epochSums: Map<string, { sum: number; count: number }>) {
    for (const [name, l] of logged) {
      const value = typeof l.value === "number" ? l.value : await l.value.item();
      if (l.options.onStep) this.callbackMetrics[name] = value;
      if (l.options.onEpoch) {
        const acc = epochSums.get(name) ?? { sum: 0, count: 0 };
        acc.sum += value * l.batchSize;
        acc.count += l.batchSize;
        epochSums.set(name, acc);
      }
    }
  }

  /** Runs a validation or test epoch; `sanitySteps` makes it the sanity check (no logging, no hooks). */
  private async evaluationLoop(module: LightningModule, loader: DataLoader, stage: "validate" | "test", sanitySteps?: number): Promise<Record<string, number>> {
    const step = stage === "validate" ? module.validationStep : module.testStep;
    if (!step) throw new NbitError("MISSING_STEP", `${module.constructor.name} does not define ${stage === "validate" ? "validationStep" : "testStep"}()`);
    const wasTraining = module.training;
    module.eval();
    const previousStage = this.stage;
    this.stage = stage;
    const sums = new Map<string, { sum: number; count: number }>();
    const limit =
      sanitySteps ??
      (stage === "validate"
        ? limitBatches("Trainer limitValBatches", this.loop.limitValBatches, loader.length)
        : limitBatches("Trainer limitTestBatches", this.loop.limitTestBatches, loader.length));
    let batchIdx = 0;
    for (const rawBatch of loader) {
      if (batchIdx >= limit) break;
      const batch = rawBatch.map((t) => this.precisionPlugin.convertInput(t));
      this.currentBatchSize = batch[0]?.shape[0] ?? 1;
      module.startLoggingStep();
      const location: BatchLocation = { stage, epoch: this.currentEpoch, batchIdx };
      const { checks } = this.runStep(location, () => noGrad(() => this.precisionPlugin.forwardContext(() => step.call(module, batch, batchIdx))));
      await realize([...[...module.logged.values()].map((l) => l.value).filter((v): v is Tensor => v instanceof Tensor), ...checks.map((c) => c.validRows)]);
      if (checks.length > 0) await verifyLabelChecks(checks, location);
      await this.collectLogged(module.logged, sums);
      batchIdx++;
    }
    const metrics: Record<string, number> = {};
    for (const [k, { sum, count }] of sums) metrics[k] = sum / count;
    if (sanitySteps === undefined && Object.keys(metrics).length) this.logMetrics(metrics);
    this.stage = previousStage;
    if (wasTraining) module.train();
    if (stage === "validate" && sanitySteps === undefined) await this.hook("onValidationEpochEnd", module);
    return metrics;
  }

  /** Runs validationStep over `loader` (or the datamodule's); returns the epoch means of what it logged. `ckptPath` loads weights first. */
  validate(module: LightningModule, loader?: DataLoader | LightningDataModule, options: EvaluateOptions = {}): Promise<Record<string, number>> {
    return this.evaluate(module, loader, "validate", options);
  }

  /** Runs testStep over `loader` (or the datamodule's); returns the epoch means of what it logged. `ckptPath` loads weights first. */
  test(module: LightningModule, loader?: DataLoader | LightningDataModule, options: EvaluateOptions = {}): Promise<Record<string, number>> {
    return this.evaluate(module, loader, "test", options);
  }

  private async evaluate(module: LightningModule, loader: DataLoader | LightningDataModule | undefined, stage: "validate" | "test", options: EvaluateOptions) {
    const source = dataSource(stage, loader, options, ["ckptPath", "datamodule"]);
    const ckptPath = resolveCheckpointPath(stage, options.ckptPath, this, this.callbacks);
    return this.runStage(stage, module, source.datamodule, async () => {
      if (ckptPath !== undefined) await this.restoreFrom(ckptPath, module, true);
      const dm = source.datamodule;
      const data = dm ? dataloaderOf(dm, stage === "validate" ? "valDataloader" : "testDataloader", stage, true)! : source.loader!;
      return this.evaluationLoop(module, data, stage);
    });
  }

  /** Runs predictStep (or forward on the first batch tensor) over the batches; outputs in float32. */
  async predict(module: LightningModule, loader?: DataLoader | LightningDataModule, options: PredictOptions = {}): Promise<Tensor[]> {
    const source = dataSource("predict", loader, options, ["datamodule"]);
    return this.runStage("predict", module, source.datamodule, async () => {
      const data = source.datamodule ? dataloaderOf(source.datamodule, "predictDataloader", "predict", true)! : source.loader!;
      module.eval();
      this.stage = "predict";
      const limit = limitBatches("Trainer limitPredictBatches", this.loop.limitPredictBatches, data.length);
      const outputs: Tensor[] = [];
      let batchIdx = 0;
      for (const rawBatch of data) {
        if (batchIdx >= limit) break;
        const batch = rawBatch.map((t) => this.precisionPlugin.convertInput(t));
        const out = noGrad(() =>
          this.precisionPlugin.forwardContext(() => (module.predictStep ? module.predictStep(batch, batchIdx) : module.forward(batch[0]!))),
        );
        const converted = this.precisionPlugin.convertOutput(out);
        await realize([converted]);
        outputs.push(converted);
        batchIdx++;
      }
      return outputs;
    });
  }

  // ---- checkpoints ------------------------------------------------------------------------

  /**
   * Writes weights (in their own dtypes), optimizer state, scaler, scheduler, callbacks, RNG and
   * loop position as one safetensors file with a SHA-256 per tensor, atomically (see checkpoint.ts).
   */
  async saveCheckpoint(path: string): Promise<void> {
    const { epoch, batch } = this.position;
    const module = this.moduleOf();
    await this.hook("onSaveCheckpoint", module, { path, epoch, globalStep: this.globalStep } satisfies CheckpointInfo);
    await this.run(() => saveCheckpoint(path, this.checkpointTargets(module), { epoch, batch, globalStep: this.globalStep, skippedSteps: this.skippedSteps }));
  }

  private module: LightningModule | null = null;
  private moduleOf(): LightningModule {
    if (!this.module) throw new NbitError("NO_MODULE", "saveCheckpoint() needs a module: call it during or after fit()");
    return this.module;
  }

  private checkpointTargets(module: LightningModule): CheckpointTargets {
    return {
      module,
      optimizer: this.optimizer,
      scheduler: this.scheduler?.scheduler ?? null,
      plugin: this.precisionPlugin,
      callbacks: this.callbacks,
      generator: defaultGenerator,
      hparams: module.hparams,
    };
  }
}
