export * from "./errors.js";
export { InvalidArgumentError } from "./validation.js";
export * from "./dtype.js";
export * from "./numerics/index.js";
export * from "./precision/parse.js";
export * from "./precision/plugins.js";
export * from "./precision/apex.js";
export * from "./accelerator.js";
export { CORE_VERSION } from "./accelerator-store.js";
export type * from "./engine/backend.js";
export * from "./engine/primitives.js";
export * from "./engine/ops.js";
export * from "./engine/kernels.js";
export { LazyNode } from "./engine/node.js";
export { DEFAULT_PROGRAM_CACHE_SIZE, Runtime, type ProgramCacheStats, type RealizedGraph, type RuntimeOptions, type RuntimeStats } from "./engine/runtime.js";
export * from "./engine/context.js";
// The public autocast also warns about a nested autocast inside a watched training step (it shadows context.js's).
export { autocast } from "./engine/cast-watch.js";
export * from "./engine/random.js";
export { heldBytes, type StorageMap } from "./engine/memory.js";
export * from "./engine/autocast-policy.js";
export {
  Tensor,
  tensor,
  scalarInput,
  full,
  zeros,
  ones,
  zerosLike,
  arange,
  where,
  cat,
  stack,
  pad,
  apply,
  realize,
  customGradient,
  roundScalar,
  type TensorOrScalar,
} from "./engine/tensor.js";
export * from "./nn/module.js";
export * from "./nn/init.js";
export * from "./nn/layers.js";
export * from "./nn/conv-layers.js";
export * from "./nn/batch-norm.js";
export * from "./nn/attention.js";
export * from "./nn/functional.js";
export * from "./complex/index.js";
export { LabelOutOfRangeError, type BatchLocation } from "./nn/labels.js";
export * from "./optim/optimizer.js";
export * from "./optim/sgd.js";
export * from "./optim/adam.js";
export * from "./optim/grad-scaler.js";
export * from "./optim/adam8bit.js";
export * from "./engine/reference-kernels.js";
export * from "./trainer/trainer.js";
export { AMP_BACKENDS, PrecisionConflictError, selectPrecisionPlugin, type AmpBackend, type PrecisionOptions } from "./trainer/precision-options.js";
export * from "./trainer/lightning-module.js";
export * from "./trainer/data.js";
export * from "./trainer/callbacks.js";
export * from "./trainer/schedulers.js";
export * from "./trainer/logger.js";
export * from "./trainer/safetensors.js";
export { CHECKPOINT_FORMAT, type LoopPosition } from "./trainer/checkpoint.js";
export { checkHyperparameters, type Hyperparameters, type HyperparameterValue } from "./trainer/hparams.js";
export type { LoadFromCheckpointOptions } from "./trainer/load-from-checkpoint.js";
export * from "./trainer/checkpoint-path.js";
export { LightningDataModule, MissingDataloaderError } from "./trainer/datamodule.js";
export { parseDuration, type Duration } from "./trainer/loop-limits.js";
export { formatSummary, ModelSummary, summarize, type LayerSummary, type ModelSummaryData, type ModelSummaryOptions } from "./trainer/model-summary.js";
export * from "./trainer/timer.js";
export {
  StepCapture,
  StepCaptureMismatchError,
  type CapturedForwardResult,
  type CapturedStepOutcome,
  type StepCaptureOptions,
  type StepCaptureStats,
} from "./precision/step-capture.js";
export { stepScalar, type StepScalarSource } from "./engine/step-scalars.js";
export { EVENT_LOOP_TURN_MS } from "./engine/event-loop.js";
