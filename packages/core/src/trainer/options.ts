import type { GradientClipAlgorithm } from "../precision/plugins.js";
import { PrecisionPlugin } from "../precision/plugins.js";
import { checkBoolean, checkInteger, checkNumber, checkOneOf, InvalidArgumentError, isPlainObject } from "../validation.js";
import { checkBatchLimit, checkFastDevRun, checkValCheckInterval, parseDuration } from "./loop-limits.js";
import type { TrainerOptions } from "./trainer.js";

export { limitBatches } from "./loop-limits.js";

/** The Trainer's loop settings, validated, with Lightning's defaults filled in. */
export interface LoopSettings {
  /** Infinity when there is no epoch limit. */
  readonly maxEpochs: number;
  /** -1 when there is no step limit. */
  readonly maxSteps: number;
  readonly accumulateGradBatches: number;
  /** null: no clipping. */
  readonly gradientClipVal: number | null;
  readonly gradientClipAlgorithm: GradientClipAlgorithm;
  readonly logEveryNSteps: number;
  readonly checkValEveryNEpoch: number;
  readonly limitTrainBatches: number | undefined;
  readonly limitValBatches: number | undefined;
  readonly limitTestBatches: number | undefined;
  readonly limitPredictBatches: number | undefined;
  /** Batches per loop under fastDevRun; 0 when it is off. */
  readonly fastDevRun: number;
  /** An integer (every n training batches) or a fraction of the epoch; undefined: at the epoch's end. */
  readonly valCheckInterval: number | undefined;
  /** null when there is no time limit. */
  readonly maxTimeMs: number | null;
  readonly minEpochs: number;
  readonly minSteps: number;
  /** Infinity for -1 (all validation batches). */
  readonly numSanityValSteps: number;
}

const optional = <T>(value: T | undefined, check: (v: T) => unknown): void => {
  if (value !== undefined) check(value);
};

/**
 * Checks every TrainerOptions field against what it may hold (each error names the option, what
 * was expected and what was received) and resolves the loop settings. Loop limits follow
 * Lightning: maxEpochs -1 and maxSteps -1 mean no limit; with neither given, maxEpochs is 1000.
 */
export function resolveLoopSettings(options: TrainerOptions): LoopSettings {
  const o: unknown = options;
  if (!isPlainObject(o)) throw new InvalidArgumentError("Trainer options", "an object", o);
  const acc = o.accelerator;
  if (
    acc !== undefined &&
    !(typeof acc === "string" && acc !== "") &&
    !(typeof acc === "object" && acc !== null && typeof (acc as { createBackend?: unknown }).createBackend === "function")
  )
    throw new InvalidArgumentError("Trainer accelerator", 'a registered name, "auto" or an Accelerator instance', acc);
  const devices = o.devices;
  if (devices !== undefined && devices !== "auto" && devices !== -1) checkInteger("Trainer devices", devices, 1);
  if (o.plugin !== undefined && !(o.plugin instanceof PrecisionPlugin))
    throw new InvalidArgumentError("Trainer plugin", "a PrecisionPlugin instance", o.plugin);
  optional(o.maxEpochs, (v) => checkInteger("Trainer maxEpochs", v, -1));
  optional(o.maxSteps, (v) => checkInteger("Trainer maxSteps", v, -1));
  optional(o.accumulateGradBatches, (v) => checkInteger("Trainer accumulateGradBatches", v, 1));
  optional(o.gradientClipVal, (v) => checkNumber("Trainer gradientClipVal", v, { min: 0 }));
  optional(o.gradientClipAlgorithm, (v) => checkOneOf("Trainer gradientClipAlgorithm", v, ["norm", "value"]));
  if (o.callbacks !== undefined && (!Array.isArray(o.callbacks) || !o.callbacks.every((c) => typeof c === "object" && c !== null)))
    throw new InvalidArgumentError("Trainer callbacks", "a list of callback objects", o.callbacks);
  const logger = o.logger;
  if (
    logger !== undefined &&
    typeof logger !== "boolean" &&
    !(typeof logger === "object" && logger !== null && typeof (logger as { logMetrics?: unknown }).logMetrics === "function")
  )
    throw new InvalidArgumentError("Trainer logger", "true, false or a Logger", logger);
  for (const flag of ["enableProgressBar", "enableCheckpointing", "deterministic"]) optional(o[flag], (v) => checkBoolean(`Trainer ${flag}`, v));
  // As seed_everything: a seed is an unsigned 32-bit integer.
  optional(o.seed, (v) => checkInteger("Trainer seed", v, 0, 0xffffffff));
  optional(o.defaultRootDir, (v) => {
    if (typeof v !== "string" || v === "") throw new InvalidArgumentError("Trainer defaultRootDir", "a non-empty path", v);
  });
  optional(o.logEveryNSteps, (v) => checkInteger("Trainer logEveryNSteps", v, 1));
  optional(o.checkValEveryNEpoch, (v) => checkInteger("Trainer checkValEveryNEpoch", v, 1));
  optional(o.programCacheSize, (v) => checkInteger("Trainer programCacheSize", v, 1));
  optional(o.limitTrainBatches, (v) => checkBatchLimit("Trainer limitTrainBatches", v));
  optional(o.limitValBatches, (v) => checkBatchLimit("Trainer limitValBatches", v));
  optional(o.limitTestBatches, (v) => checkBatchLimit("Trainer limitTestBatches", v));
  optional(o.limitPredictBatches, (v) => checkBatchLimit("Trainer limitPredictBatches", v));
  const fastDevRun = o.fastDevRun === undefined ? 0 : checkFastDevRun(o.fastDevRun);
  optional(o.valCheckInterval, checkValCheckInterval);
  const maxTimeMs = o.maxTime === undefined ? null : parseDuration("Trainer maxTime", o.maxTime);
  optional(o.minEpochs, (v) => checkInteger("Trainer minEpochs", v, 0));
  optional(o.minSteps, (v) => checkInteger("Trainer minSteps", v, 0));
  optional(o.numSanityValSteps, (v) => checkInteger("Trainer numSanityValSteps", v, -1));
  optional(o.enableModelSummary, (v) => checkBoolean("Trainer enableModelSummary", v));
  if (
    o.registry !== undefined &&
    !(typeof o.registry === "object" && o.registry !== null && typeof (o.registry as { resolve?: unknown }).resolve === "function")
  )
    throw new InvalidArgumentError("Trainer registry", "an AcceleratorRegistry", o.registry);
  if (o.warn !== undefined && typeof o.warn !== "function") throw new InvalidArgumentError("Trainer warn", "a function", o.warn);

  const maxSteps = options.maxSteps ?? -1;
  // As Lightning: with a step or time limit and no epoch limit, epochs are unlimited.
  const maxEpochs = options.maxEpochs ?? (maxSteps === -1 && maxTimeMs === null ? 1000 : -1);
  const numSanityValSteps = options.numSanityValSteps ?? 2;
  const loop: LoopSettings = {
    maxEpochs: maxEpochs === -1 ? Infinity : maxEpochs,
    maxSteps,
    accumulateGradBatches: options.accumulateGradBatches ?? 1,
    gradientClipVal: options.gradientClipVal ? options.gradientClipVal : null,
    gradientClipAlgorithm: options.gradientClipAlgorithm ?? "norm",
    logEveryNSteps: options.logEveryNSteps ?? 50,
    checkValEveryNEpoch: options.checkValEveryNEpoch ?? 1,
    limitTrainBatches: options.limitTrainBatches,
    limitValBatches: options.limitValBatches,
    limitTestBatches: options.limitTestBatches,
    limitPredictBatches: options.limitPredictBatches,
    fastDevRun,
    valCheckInterval: options.valCheckInterval,
    maxTimeMs,
    minEpochs: options.minEpochs ?? 0,
    minSteps: options.minSteps ?? 0,
    numSanityValSteps: numSanityValSteps === -1 ? Infinity : numSanityValSteps,
  };
  if (fastDevRun === 0) return loop;
  // As Lightning's fast_dev_run: n batches of each loop, one epoch, no sanity check, validation at its end.
  return {
    ...loop,
    maxEpochs: 1,
    maxSteps: fastDevRun,
    limitTrainBatches: fastDevRun,
    limitValBatches: fastDevRun,
    limitTestBatches: fastDevRun,
    limitPredictBatches: fastDevRun,
    valCheckInterval: undefined,
    checkValEveryNEpoch: 1,
    numSanityValSteps: 0,
  };
}
