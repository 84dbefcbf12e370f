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
export { Runtime, type RuntimeStats } from "./engine/runtime.js";
export * from "./engine/context.js";
export * from "./engine/random.js";
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
export * from "./trainer/lightning-module.js";
export * from "./trainer/data.js";
export * from "./trainer/callbacks.js";
export * from "./trainer/schedulers.js";
export * from "./trainer/logger.js";
export * from "./trainer/safetensors.js";
export { CHECKPOINT_FORMAT, type LoopPosition } from "./trainer/checkpoint.js";
