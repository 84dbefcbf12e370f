import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { NbitError } from "../errors.js";
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

/** Hooks into the Trainer's loops, as Lightning's Callback. All hooks are optional and may be async. */
export interface Callback {
  /** Key of this callback's state in checkpoints (defaults to its class name). */
  readonly stateKey?: string;
  onFitStart?: Hook;
  onFitEnd?: Hook;
  onTrainEpochStart?: Hook;
  /** Runs after the epoch's validation, so monitored validation metrics are available. */
  onTrainEpochEnd?: Hook;
  onTrainBatchEnd?(trainer: Trainer, module: LightningModule, outcome: BatchOutcome, batch: Batch, batchIdx: number): void | Promise<void>;
  onValidationEpochEnd?: Hook;
  stateDict?(): unknown;
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

/** Saves checkpoints at epoch ends (after validation), keeping the best k by a monitored metric. */
export class ModelCheckpoint implements Callback {
  readonly stateKey = "ModelCheckpoint";
  bestModelPath = "";
  bestModelScore: number | null = null;
  lastModelPath = "";
  /** Saved paths with their scores, best first. */
  kept: { path: string; score: number }[] = [];

  constructor(readonly options: ModelCheckpointOptions = {}) {
    if (options.saveTopK !== undefined && options.saveTopK < -1) throw new NbitError("INVALID_ARGUMENT", "saveTopK must be >= -1");
  }

  dirpath(trainer: Trainer): string {
    return this.options.dirpath ?? join(trainer.logDir, "checkpoints");
  }

  async onTrainEpochEnd(trainer: Trainer): Promise<void> {
    const every = this.options.everyNEpochs ?? 1;
    if ((trainer.currentEpoch + 1) % every !== 0) return;
    const { monitor, mode = "min", saveTopK = 1 } = this.options;
    const score = monitor ? monitored(trainer, monitor, "ModelCheckpoint") : trainer.globalStep;
    const dir = this.dirpath(trainer);
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
        await trainer.saveCheckpoint(path);
        this.kept = [...this.kept.filter((k) => k.path !== path), candidate].sort(rank);
        if (saveTopK !== -1)
          for (const dropped of this.kept.splice(saveTopK)) if (dropped.path !== path && existsSync(dropped.path)) rmSync(dropped.path);
        this.bestModelPath = this.kept[0]!.path;
        this.bestModelScore = monitor ? this.kept[0]!.score : null;
      }
    }
    if (this.options.saveLast) {
      this.lastModelPath = join(dir, "last.safetensors");
      await trainer.saveCheckpoint(this.lastModelPath);
    }
  }

  stateDict(): unknown {
    return { bestModelPath: this.bestModelPath, bestModelScore: this.bestModelScore, kept: this.kept, lastModelPath: this.lastModelPath };
  }

  loadStateDict(state: unknown): void {
    Object.assign(this, state as object);
  }
}

export interface EarlyStoppingOptions {
  readonly monitor: string;
  readonly mode?: MonitorMode;
  readonly patience?: number;
  readonly minDelta?: number;
}

/** Stops training when a monitored metric has not improved for `patience` checks. */
export class EarlyStopping implements Callback {
  readonly stateKey = "EarlyStopping";
  best: number | null = null;
  waitCount = 0;
  stoppedEpoch: number | null = null;

  constructor(readonly options: EarlyStoppingOptions) {}

  onTrainEpochEnd(trainer: Trainer): void {
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
    return { best: this.best, waitCount: this.waitCount, stoppedEpoch: this.stoppedEpoch };
  }

  loadStateDict(state: unknown): void {
    Object.assign(this, state as object);
  }
}

/** Logs each optimizer's learning rate as `lr-<OptimizerName>` per step or per epoch. */
export class LearningRateMonitor implements Callback {
  constructor(readonly loggingInterval: "step" | "epoch" = "epoch") {}

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
