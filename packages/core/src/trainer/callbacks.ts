import { lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { NbitError } from "../errors.js";
import { checkBoolean, checkInteger, checkNumber, checkOneOf, InvalidArgumentError, isPlainObject } from "../validation.js";
import type { Tensor } from "../engine/tensor.js";
import type { Optimizer } from "../optim/optimizer.js";
import type { Batch, LightningModule } from "./lightning-module.js";
import type { Trainer } from "./trainer.js";

export interface BatchOutcome {
  readonly loss: number;
  /** True when the gradient scaler skipped this optimizer step. */
  readonly skipped: boolean;
  /** True when this batch ended an optimizer step (false inside gradient accumulation). */
  readonly optimizerStep: boolean;
}

type Hook = (trainer: Trainer, module: LightningModule) => void | Promise<void>;

/** What a Trainer call is doing, as Lightning's `stage` argument of setup and teardown. */
export type TrainerStage = "fit" | "validate" | "test" | "predict";

/** The checkpoint a save or load hook is about. */
export interface CheckpointInfo {
  readonly path: string;
  readonly epoch: number;
  readonly globalStep: number;
}

/** Hooks into the Trainer's loops, as Lightning's Callback. All hooks are optional and may be async. */
export interface Callback {
  /** Key of this callback's state in checkpoints (defaults to its class name). */
  readonly stateKey?: string;
  /** Called at the start of fit/validate/test/predict, after the datamodule's setup (as Lightning). */
  setup?(trainer: Trainer, module: LightningModule, stage: TrainerStage): void | Promise<void>;
  /** Called at the end of fit/validate/test/predict (not after an exception: onException runs then). */
  teardown?(trainer: Trainer, module: LightningModule, stage: TrainerStage): void | Promise<void>;
  onFitStart?: Hook;
  onFitEnd?: Hook;
  onTrainEpochStart?: Hook;
  /** Runs after the epoch's validation, so monitored validation metrics are available. */
  onTrainEpochEnd?: Hook;
  onTrainBatchStart?(trainer: Trainer, module: LightningModule, batch: Batch, batchIdx: number): void | Promise<void>;
  /** Before the backward pass, with the loss it differentiates (divided by accumulateGradBatches). */
  onBeforeBackward?(trainer: Trainer, module: LightningModule, loss: Tensor): void | Promise<void>;
  /** After the backward pass; gradients are lazy tensors (reading one runs the step so far). */
  onAfterBackward?: Hook;
  /** Before clipping and the optimizer update, with gradients unscaled (as Lightning). */
  onBeforeOptimizerStep?(trainer: Trainer, module: LightningModule, optimizer: Optimizer<{ lr: number }>): void | Promise<void>;
  onTrainBatchEnd?(trainer: Trainer, module: LightningModule, outcome: BatchOutcome, batch: Batch, batchIdx: number): void | Promise<void>;
  onValidationEpochEnd?: Hook;
  /** Before a checkpoint file is written. */
  onSaveCheckpoint?(trainer: Trainer, module: LightningModule, checkpoint: CheckpointInfo): void | Promise<void>;
  /** After a checkpoint was restored (nbit restores a checkpoint whole or not at all). */
  onLoadCheckpoint?(trainer: Trainer, module: LightningModule, checkpoint: CheckpointInfo): void | Promise<void>;
  /** A Trainer call failed with `error`; it is rethrown after this hook. */
  onException?(trainer: Trainer, module: LightningModule, error: unknown): void | Promise<void>;
  /** JSON-serialisable state saved in checkpoints (finite numbers only; no "__proto__"/"constructor" keys). */
  stateDict?(): unknown;
  /**
   * Throws (an NbitError) unless `loadStateDict(state)` would accept `state`, changing nothing. With it,
   * a checkpoint is validated whole before anything is restored; without it, the Trainer restores this
   * callback first and rolls it back (with its own earlier stateDict) if the rest of the checkpoint fails.
   */
  validateStateDict?(state: unknown): void;
  /** Restores state from a checkpoint: untrusted input, to be validated field by field before use. */
  loadStateDict?(state: unknown): void;
}

export type MonitorMode = "min" | "max";

function monitored(trainer: Trainer, monitor: string, who: string): number {
  const value = trainer.callbackMetrics[monitor];
  if (value === undefined)
    throw new NbitError(
      "MISSING_METRIC",
      `${who} is monitoring "${monitor}", which was not logged. Logged metrics: ${Object.keys(trainer.callbackMetrics).join(", ") || "(none)"}.`,
    );
  return value;
}

const better = (mode: MonitorMode, a: number, b: number, minDelta = 0) => (mode === "min" ? a < b - minDelta : a > b + minDelta);

const NON_FINITE = ["NaN", "Infinity", "-Infinity"] as const;
/** Scores are metric values; JSON has no NaN or Infinity, so those are saved as strings. */
const encodeScore = (score: number): number | string => (Number.isFinite(score) ? score : String(score));
function decodeScore(where: string, value: unknown): number {
  if (typeof value === "string" && (NON_FINITE as readonly string[]).includes(value)) return Number(value);
  return checkNumber(where, value);
}

/** Checks that `state` is an object with exactly `keys`, for a callback's validateStateDict. */
function stateObject(where: string, state: unknown, keys: readonly string[]): Record<string, unknown> {
  if (!isPlainObject(state)) throw new InvalidArgumentError(where, `an object with ${keys.join(", ")}`, state);
  for (const key of Object.keys(state))
    if (!keys.includes(key)) throw new InvalidArgumentError(`${where} field ${JSON.stringify(key)}`, "absent (unknown field)", state[key]);
  for (const key of keys) if (!Object.hasOwn(state, key)) throw new InvalidArgumentError(`${where} field ${JSON.stringify(key)}`, "present", undefined);
  return state;
}

function optionalString(where: string, value: unknown): void {
  if (value !== undefined && (typeof value !== "string" || value === "" || value.includes("\0")))
    throw new InvalidArgumentError(where, "a non-empty string", value);
}

/** True when `path` is a .safetensors file inside `dir` (never `dir` itself or anything outside it). */
function isCheckpointIn(dir: string, path: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return path.endsWith(".safetensors") && !path.includes("\0") && rel !== "" && rel.split(sep)[0] !== ".." && !isAbsolute(rel);
}

/** Removes a checkpoint this callback wrote and no longer keeps; only files inside its own directory. */
function removeCheckpoint(dir: string, path: string): void {
  if (!isCheckpointIn(dir, path)) return;
  try {
    const st = lstatSync(path);
    if (st.isFile() || st.isSymbolicLink()) unlinkSync(path);
  } catch {
    // already gone
  }
}

export interface ModelCheckpointOptions {
  /** Folder of the checkpoint files (default: `<trainer.logDir>/checkpoints`). */
  readonly dirpath?: string;
  /** File name template: {epoch}, {step} and any metric name in braces. */
  readonly filename?: string;
  readonly monitor?: string;
  readonly mode?: MonitorMode;
  /** Keep the k best (by `monitor`) or, without a monitor, the latest k. -1 keeps all. */
  readonly saveTopK?: number;
  /** Also write `last.safetensors` at every save. */
  readonly saveLast?: boolean;
  readonly everyNEpochs?: number;
}

interface ModelCheckpointState {
  readonly dirpath: string | null;
  readonly bestModelPath: string;
  readonly bestModelScore: number | null;
  readonly lastModelPath: string;
  readonly kept: { path: string; score: number }[];
}

/** Saves checkpoints at epoch ends (after validation), keeping the best k by a monitored metric. */
export class ModelCheckpoint implements Callback {
  bestModelPath = "";
  bestModelScore: number | null = null;
  lastModelPath = "";
  /** Saved paths with their scores, best first. */
  kept: { path: string; score: number }[] = [];
  /** The folder of `kept` and the model paths: set at a save or by a restored state. */
  private savedDir: string | null = null;

  constructor(readonly options: ModelCheckpointOptions = {}) {
    if (!isPlainObject(options)) throw new InvalidArgumentError("ModelCheckpoint options", "an object", options);
    optionalString("ModelCheckpoint dirpath", options.dirpath);
    optionalString("ModelCheckpoint filename", options.filename);
    optionalString("ModelCheckpoint monitor", options.monitor);
    if (options.mode !== undefined) checkOneOf("ModelCheckpoint mode", options.mode, ["min", "max"]);
    if (options.saveTopK !== undefined) checkInteger("ModelCheckpoint saveTopK", options.saveTopK, -1);
    if (options.saveLast !== undefined) checkBoolean("ModelCheckpoint saveLast", options.saveLast);
    if (options.everyNEpochs !== undefined) checkInteger("ModelCheckpoint everyNEpochs", options.everyNEpochs, 0);
  }

  /** As Lightning's: callbacks that monitor differently keep separate states in one checkpoint. */
  get stateKey(): string {
    const { monitor = null, mode = "min", everyNEpochs = 1 } = this.options;
    return `ModelCheckpoint${JSON.stringify({ monitor, mode, everyNEpochs })}`;
  }

  dirpath(trainer: Trainer): string {
    return this.options.dirpath ?? join(trainer.logDir, "checkpoints");
  }

  async onTrainEpochEnd(trainer: Trainer): Promise<void> {
    if (trainer.fastDevRun > 0) return;
    const every = this.options.everyNEpochs ?? 1;
    if (every === 0 || (trainer.currentEpoch + 1) % every !== 0) return;
    const { monitor, mode = "min", saveTopK = 1 } = this.options;
    const score = monitor ? monitored(trainer, monitor, "ModelCheckpoint") : trainer.globalStep;
    const dir = this.dirpath(trainer);
    if (this.savedDir !== null && resolve(this.savedDir) !== resolve(dir)) {
      trainer.warn(`ModelCheckpoint: the checkpoint folder changed from ${this.savedDir} to ${dir}; the restored best-k list is not reloaded.`);
      this.restore({ dirpath: null, bestModelPath: "", bestModelScore: null, lastModelPath: "", kept: [] });
    }
    mkdirSync(dir, { recursive: true });
    const name = (this.options.filename ?? (monitor ? `epoch={epoch}-step={step}-{${monitor}}` : "epoch={epoch}-step={step}"))
      .replace("{epoch}", String(trainer.currentEpoch))
      .replace("{step}", String(trainer.globalStep))
      .replace(/\{([^}]+)\}/g, (_, m: string) => (trainer.callbackMetrics[m] ?? NaN).toFixed(4));
    const path = join(dir, `${name}.safetensors`);
    const rank = (a: { score: number }, b: { score: number }) => (better(monitor ? mode : "max", a.score, b.score) ? -1 : 1);
    if (saveTopK !== 0) {
      const candidate = { path, score };
      const wouldKeep = saveTopK === -1 || this.kept.length < saveTopK || rank(candidate, this.kept.at(-1)!) < 0;
      if (wouldKeep) {
        // As Lightning: the saved state already lists the file being written.
        const before = this.state();
        this.kept = [...this.kept.filter((k) => k.path !== path), candidate].sort(rank);
        const dropped = saveTopK === -1 ? [] : this.kept.splice(saveTopK);
        this.bestModelPath = this.kept[0]!.path;
        this.bestModelScore = monitor ? this.kept[0]!.score : null;
        this.savedDir = dir;
        try {
          await trainer.saveCheckpoint(path);
        } catch (e) {
          this.restore(before);
          throw e;
        }
        for (const d of dropped) if (d.path !== path) removeCheckpoint(dir, d.path);
      }
    }
    if (this.options.saveLast) {
      this.lastModelPath = join(dir, "last.safetensors");
      this.savedDir = dir;
      await trainer.saveCheckpoint(this.lastModelPath);
    }
  }

  private state(): ModelCheckpointState {
    return {
      dirpath: this.savedDir,
      bestModelPath: this.bestModelPath,
      bestModelScore: this.bestModelScore,
      lastModelPath: this.lastModelPath,
      kept: this.kept.map((k) => ({ ...k })),
    };
  }

  private restore(state: ModelCheckpointState): void {
    this.savedDir = state.dirpath;
    this.bestModelPath = state.bestModelPath;
    this.bestModelScore = state.bestModelScore;
    this.lastModelPath = state.lastModelPath;
    this.kept = state.kept.map((k) => ({ ...k }));
  }

  stateDict(): unknown {
    const s = this.state();
    return {
      ...s,
      bestModelScore: s.bestModelScore === null ? null : encodeScore(s.bestModelScore),
      kept: s.kept.map((k) => ({ path: k.path, score: encodeScore(k.score) })),
    };
  }

  /**
   * Every path must be a .safetensors file inside the saved folder: a restored list decides which
   * files a later save deletes, so nothing outside that folder is ever accepted.
   */
  validateStateDict(state: unknown): ModelCheckpointState {
    const where = "ModelCheckpoint state";
    const s = stateObject(where, state, ["dirpath", "bestModelPath", "bestModelScore", "lastModelPath", "kept"]);
    const dirpath = s.dirpath;
    if (dirpath !== null && (typeof dirpath !== "string" || dirpath === "" || dirpath.includes("\0")))
      throw new InvalidArgumentError(`${where} dirpath`, "null or a folder path", dirpath);
    const inside = (field: string, path: unknown, optional: boolean): string => {
      if (optional && path === "") return "";
      if (typeof path !== "string" || dirpath === null || !isCheckpointIn(dirpath, path))
        throw new InvalidArgumentError(
          `${where} ${field}`,
          dirpath === null ? '"" (nothing was saved)' : `a .safetensors file inside ${JSON.stringify(dirpath)}`,
          path,
        );
      return path;
    };
    if (!Array.isArray(s.kept)) throw new InvalidArgumentError(`${where} kept`, "a list of { path, score }", s.kept);
    const kept = s.kept.map((k: unknown, i) => {
      const entry = stateObject(`${where} kept[${i}]`, k, ["path", "score"]);
      return { path: inside(`kept[${i}].path`, entry.path, false), score: decodeScore(`${where} kept[${i}].score`, entry.score) };
    });
    return {
      dirpath,
      bestModelPath: inside("bestModelPath", s.bestModelPath, true),
      bestModelScore: s.bestModelScore === null ? null : decodeScore(`${where} bestModelScore`, s.bestModelScore),
      lastModelPath: inside("lastModelPath", s.lastModelPath, true),
      kept,
    };
  }

  loadStateDict(state: unknown): void {
    this.restore(this.validateStateDict(state));
  }
}

export interface EarlyStoppingOptions {
  readonly monitor: string;
  readonly mode?: MonitorMode;
  readonly patience?: number;
  readonly minDelta?: number;
}

interface EarlyStoppingState {
  readonly best: number | null;
  readonly waitCount: number;
  readonly stoppedEpoch: number | null;
}

/** Stops training when a monitored metric has not improved for `patience` checks. */
export class EarlyStopping implements Callback {
  best: number | null = null;
  waitCount = 0;
  stoppedEpoch: number | null = null;

  constructor(readonly options: EarlyStoppingOptions) {
    if (!isPlainObject(options)) throw new InvalidArgumentError("EarlyStopping options", "an object with a monitor", options);
    if (typeof options.monitor !== "string" || options.monitor === "")
      throw new InvalidArgumentError("EarlyStopping monitor", "the name of a logged metric", options.monitor);
    if (options.mode !== undefined) checkOneOf("EarlyStopping mode", options.mode, ["min", "max"]);
    if (options.patience !== undefined) checkInteger("EarlyStopping patience", options.patience, 0);
    if (options.minDelta !== undefined) checkNumber("EarlyStopping minDelta", options.minDelta, { min: 0 });
  }

  get stateKey(): string {
    const { monitor, mode = "min" } = this.options;
    return `EarlyStopping${JSON.stringify({ monitor, mode })}`;
  }

  onTrainEpochEnd(trainer: Trainer): void {
    if (trainer.fastDevRun > 0) return;
    const { monitor, mode = "min", patience = 3, minDelta = 0 } = this.options;
    const value = monitored(trainer, monitor, "EarlyStopping");
    if (this.best === null || better(mode, value, this.best, minDelta)) {
      this.best = value;
      this.waitCount = 0;
      return;
    }
    this.waitCount++;
    if (this.waitCount >= patience) {
      this.stoppedEpoch = trainer.currentEpoch;
      trainer.shouldStop = true;
    }
  }

  stateDict(): unknown {
    return { best: this.best === null ? null : encodeScore(this.best), waitCount: this.waitCount, stoppedEpoch: this.stoppedEpoch };
  }

  validateStateDict(state: unknown): EarlyStoppingState {
    const where = "EarlyStopping state";
    const s = stateObject(where, state, ["best", "waitCount", "stoppedEpoch"]);
    return {
      best: s.best === null ? null : decodeScore(`${where} best`, s.best),
      waitCount: checkInteger(`${where} waitCount`, s.waitCount, 0),
      stoppedEpoch: s.stoppedEpoch === null ? null : checkInteger(`${where} stoppedEpoch`, s.stoppedEpoch, 0),
    };
  }

  loadStateDict(state: unknown): void {
    const valid = this.validateStateDict(state);
    this.best = valid.best;
    this.waitCount = valid.waitCount;
    this.stoppedEpoch = valid.stoppedEpoch;
  }
}

/** Logs each optimizer's learning rate as `lr-<OptimizerName>` per step or per epoch. */
export class LearningRateMonitor implements Callback {
  constructor(readonly loggingInterval: "step" | "epoch" = "epoch") {
    checkOneOf("LearningRateMonitor loggingInterval", loggingInterval, ["step", "epoch"]);
  }

  private record(trainer: Trainer): void {
    const opt = trainer.optimizer;
    if (!opt) return;
    const name = `lr-${opt.constructor.name}`;
    const metrics: Record<string, number> = {};
    opt.paramGroups.forEach((g, i) => (metrics[opt.paramGroups.length > 1 ? `${name}/pg${i + 1}` : name] = g.lr));
    trainer.logMetrics(metrics);
  }

  onTrainBatchEnd(trainer: Trainer, _m: LightningModule, outcome: BatchOutcome): void {
    if (this.loggingInterval === "step" && outcome.optimizerStep) this.record(trainer);
  }

  onTrainEpochStart(trainer: Trainer): void {
    if (this.loggingInterval === "epoch") this.record(trainer);
  }
}

export { ProgressBar, type ProgressBarOptions } from "./progress-bar.js";
