import { checkNumber, checkOneOf, InvalidArgumentError, isPlainObject } from "../validation.js";
import type { BatchOutcome, Callback, TrainerStage } from "./callbacks.js";
import type { LightningModule } from "./lightning-module.js";
import { parseDuration, type Duration } from "./loop-limits.js";
import type { Trainer } from "./trainer.js";

export interface TimerOptions {
  /** Stop fit once this much training time has passed (null: only measure). */
  readonly duration?: Duration | null;
  /** Check after every training batch ("step", default) or at each epoch's end. */
  readonly interval?: "step" | "epoch";
  /** Milliseconds since some fixed point (default performance.now); for tests and simulations. */
  readonly clock?: () => number;
}

const STAGES: readonly TrainerStage[] = ["fit", "validate", "test", "predict"];

/**
 * Lightning's Timer: measures each stage's time and stops fit (via `trainer.shouldStop`) once
 * `duration` of training has passed. The Trainer adds one for `maxTime`. Its elapsed fit time is
 * saved in checkpoints, so a resumed run keeps counting from where it was.
 */
export class Timer implements Callback {
  readonly durationMs: number | null;
  readonly interval: "step" | "epoch";
  private readonly clock: () => number;
  private readonly startTimes: Partial<Record<TrainerStage, number>> = {};
  private readonly endTimes: Partial<Record<TrainerStage, number>> = {};
  /** Fit time restored from a checkpoint. */
  private offsetMs = 0;

  constructor(options: TimerOptions = {}) {
    if (!isPlainObject(options)) throw new InvalidArgumentError("Timer options", "an object", options);
    this.durationMs = options.duration === undefined || options.duration === null ? null : parseDuration("Timer duration", options.duration);
    this.interval = checkOneOf("Timer interval", options.interval ?? "step", ["step", "epoch"]);
    const clock: unknown = options.clock ?? (() => performance.now());
    if (typeof clock !== "function") throw new InvalidArgumentError("Timer clock", "a function", clock);
    this.clock = clock as () => number;
  }

  /** Milliseconds spent in `stage` (the running one up to now), including restored fit time. */
  timeElapsed(stage: TrainerStage = "fit"): number {
    const start = this.startTimes[stage];
    const offset = stage === "fit" ? this.offsetMs : 0;
    if (start === undefined) return offset;
    return offset + (this.endTimes[stage] ?? this.clock()) - start;
  }

  /** Milliseconds left of `duration` (null without one). */
  timeRemaining(stage: TrainerStage = "fit"): number | null {
    return this.durationMs === null ? null : this.durationMs - this.timeElapsed(stage);
  }

  setup(_trainer: Trainer, _module: LightningModule, stage: TrainerStage): void {
    this.startTimes[stage] = this.clock();
    delete this.endTimes[stage];
  }

  teardown(_trainer: Trainer, _module: LightningModule, stage: TrainerStage): void {
    this.endTimes[stage] = this.clock();
  }

  onTrainBatchEnd(trainer: Trainer, _module: LightningModule, _outcome: BatchOutcome): void {
    if (this.interval === "step") this.check(trainer);
  }

  onTrainEpochEnd(trainer: Trainer): void {
    if (this.interval === "epoch") this.check(trainer);
  }

  private check(trainer: Trainer): void {
    if (this.durationMs !== null && this.timeElapsed("fit") >= this.durationMs) trainer.shouldStop = true;
  }

  stateDict(): unknown {
    return { timeElapsed: Object.fromEntries(STAGES.map((s) => [s, this.timeElapsed(s)])) };
  }

  validateStateDict(state: unknown): { fit: number } {
    const where = "Timer state";
    if (!isPlainObject(state) || Object.keys(state).length !== 1 || !isPlainObject(state.timeElapsed))
      throw new InvalidArgumentError(where, "an object { timeElapsed: { fit, validate, test, predict } }", state);
    const elapsed = state.timeElapsed;
    for (const key of Object.keys(elapsed))
      if (!(STAGES as readonly string[]).includes(key))
        throw new InvalidArgumentError(`${where} timeElapsed field ${JSON.stringify(key)}`, `one of ${STAGES.join(", ")}`, key);
    for (const stage of STAGES) checkNumber(`${where} timeElapsed.${stage}`, elapsed[stage], { min: 0 });
    return { fit: elapsed.fit as number };
  }

  loadStateDict(state: unknown): void {
    const { fit } = this.validateStateDict(state);
    // The fit stage has already started: what ran before this restore is replaced by the saved time.
    this.offsetMs = fit;
    if (this.startTimes.fit !== undefined) this.startTimes.fit = this.clock();
  }
}
