import { isFloatDType, type FloatDType } from "../dtype.js";
import { NbitError } from "../errors.js";
import { AUTOCAST_POLICIES, resolveAutocastPolicy, type AutocastDeviceType, type AutocastPolicy } from "../engine/autocast-policy.js";
import { autocast, noGrad, withParamDType } from "../engine/context.js";
import { full, realize, Tensor } from "../engine/tensor.js";
import type { Module } from "../nn/module.js";
import { GradScaler, type GradScalerOptions, type GradScalerState } from "../optim/grad-scaler.js";
import type { Optimizer } from "../optim/optimizer.js";
import { PRECISION_INFO, type Precision } from "./parse.js";

export type GradientClipAlgorithm = "norm" | "value";
type AnyOptimizer = Optimizer<{ lr: number }>;

export interface OptimizerStepOutcome {
  /** The loss value (unscaled), read back after the step ran. */
  readonly loss: number;
  /** True when the gradient scaler skipped the update because a gradient was Inf/NaN. */
  readonly skipped: boolean;
  /** The bool scalar `skipped` was read from (null without a scaler): a step capture reads it back on replay. */
  readonly applied?: Tensor | null;
}

/** Callbacks an optimizer step runs at Lightning's points (the Trainer's callback hooks). */
export interface OptimizerStepHooks {
  readonly beforeBackward?: (loss: Tensor) => void | Promise<void>;
  readonly afterBackward?: () => void | Promise<void>;
  /** Runs with the gradients unscaled, before clipping and the update. */
  readonly beforeOptimizerStep?: () => void | Promise<void>;
}

export interface PrecisionPluginState {
  readonly precision: Precision;
  readonly scaler?: GradScalerState;
}

/**
 * How a precision is applied to a training run, after Lightning's precision plugins: the
 * dtype parameters are created in, the autocast region around the forward pass, how loss and
 * gradients are scaled, clipped and stepped, and what state must be checkpointed.
 */
export abstract class PrecisionPlugin {
  abstract readonly precision: Precision;
  /** The op lists autocast uses in `forwardContext` (the device type's, as torch.autocast's device_type). */
  readonly autocastPolicy: AutocastPolicy = AUTOCAST_POLICIES.cuda;

  get paramDType(): FloatDType {
    return PRECISION_INFO[this.precision].paramDType;
  }

  get autocastDType(): FloatDType | null {
    return PRECISION_INFO[this.precision].autocastDType;
  }

  /** Casts a module built outside `initContext` to this precision's parameter dtype. */
  convertModule<M extends Module>(module: M): M {
    return module.to(this.paramDType);
  }

  /** Runs `fn` so that parameters it creates are made directly in the parameter dtype. */
  initContext<T>(fn: () => T): T {
    return withParamDType(this.paramDType, fn);
  }

  /** Runs the forward pass (training/validation/test/predict step) under this precision. */
  forwardContext<T>(fn: () => T): T {
    return autocast(this.autocastDType, fn, this.autocastPolicy);
  }

  /** True-precision plugins cast floating inputs to the parameter dtype; mixed ones leave them. */
  convertInput(t: Tensor): Tensor {
    return isFloatDType(t.dtype) && this.autocastDType === null ? t.cast(this.paramDType) : t;
  }

  /** Outputs go back to float32, the default dtype, as Lightning's plugins do (64-true included). */
  convertOutput(t: Tensor): Tensor {
    return isFloatDType(t.dtype) ? t.cast("float32") : t;
  }

  backward(loss: Tensor): void {
    loss.backward();
  }

  /** Makes the gradients true gradients (undoes loss scaling); a no-op without a scaler. */
  unscaleGradients(_optimizer: AnyOptimizer): void {}

  /** Clips gradients after unscaling them, by global norm or by value. */
  clipGradients(optimizer: AnyOptimizer, clipValue: number, algorithm: GradientClipAlgorithm = "norm"): void {
    if (!(clipValue > 0)) throw new NbitError("INVALID_ARGUMENT", `gradientClipVal must be > 0, got ${clipValue}`);
    this.unscaleGradients(optimizer);
    clipGradients(optimizer.params, clipValue, algorithm);
  }

  /** Unscales the gradients if needed and returns a bool scalar telling whether they are all finite, or null without a scaler. */
  protected gradientsFinite(_optimizer: AnyOptimizer): Tensor | null {
    return null;
  }

  /** Applies the outcome of a step once known (the scaler adjusts its scale). */
  protected afterStep(_skipped: boolean): void {}

  /**
   * One optimization step: backward, optional clipping, the update, all realized as a single
   * program together with the loss, then the scaler update. Returns the loss and whether the
   * update was skipped. Optimizers that update on the host (8-bit ones) get their gradients
   * computed first and update only when the step is not skipped.
   */
  async optimizerStep(
    optimizer: AnyOptimizer,
    loss: Tensor,
    options: { clipValue?: number; clipAlgorithm?: GradientClipAlgorithm; extra?: readonly Tensor[]; hooks?: OptimizerStepHooks } = {},
  ): Promise<OptimizerStepOutcome> {
    const lossValue = loss.detach();
    const hooks = options.hooks ?? {};
    await hooks.beforeBackward?.(loss);
    this.backward(loss);
    await hooks.afterBackward?.();
    if (hooks.beforeOptimizerStep) {
      // Unscaling is idempotent within a step: clipping and the finiteness check reuse it.
      this.unscaleGradients(optimizer);
      await hooks.beforeOptimizerStep();
    }
    if (options.clipValue !== undefined) this.clipGradients(optimizer, options.clipValue, options.clipAlgorithm);
    const applied = this.gradientsFinite(optimizer);
    const onHost = optimizer.updatesOnHost;
    if (!onHost) optimizer.step(applied ? { applyIf: applied } : {});
    // A lazy update is computed with the step; a host update needs the gradients first.
    const pending = onHost ? optimizer.params.flatMap((p) => (p.grad ? [p.grad] : [])) : optimizer.tensors();
    await realize([lossValue, ...(applied ? [applied] : []), ...pending, ...(options.extra ?? [])]);
    const skipped = applied ? (await applied.item()) === 0 : false;
    if (!onHost) optimizer.commit(!skipped);
    else if (!skipped) await optimizer.hostStep();
    this.afterStep(skipped);
    optimizer.zeroGrad();
    return { loss: await lossValue.item(), skipped, applied };
  }

  /** Finishes a step a StepCapture replayed, as `optimizerStep` finishes a recorded one (the scaler update). */
  finishReplayedStep(skipped: boolean): void {
    this.afterStep(skipped);
  }

  stateDict(): PrecisionPluginState {
    return { precision: this.precision };
  }

  loadStateDict(state: PrecisionPluginState): void {
    if (state.precision !== this.precision)
      throw new NbitError("STATE_DICT_MISMATCH", `Checkpoint was written with precision "${state.precision}", this run uses "${this.precision}"`);
  }
}

/**
 * Clips gradients in place, lazily: by global L2 norm or elementwise by value. The norm is taken
 * in float64 when any gradient is float64 (as torch.nn.utils.clip_grad_norm_ promotes), else in float32.
 */
export function clipGradients(params: readonly Tensor[], clipValue: number, algorithm: GradientClipAlgorithm): void {
  noGrad(() => {
    const grads = params.filter((p) => p.grad);
    if (algorithm === "value") {
      for (const p of grads) p.grad = p.grad!.clamp(-clipValue, clipValue);
      return;
    }
    if (algorithm !== "norm") throw new NbitError("INVALID_ARGUMENT", `gradientClipAlgorithm must be "norm" or "value", got "${algorithm}"`);
    const opmath = grads.some((p) => p.grad!.dtype === "float64") ? "float64" : "float32";
    let sq: Tensor = full([], 0, opmath);
    for (const p of grads)
      sq = sq.add(
        p
          .grad!.cast(p.grad!.dtype === "float64" ? "float64" : "float32")
          .square()
          .sum(),
      );
    // As torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)).
    const coef = full([], clipValue, opmath).div(sq.sqrt().add(1e-6)).minimum(1);
    for (const p of grads) p.grad = p.grad!.mul(coef.cast(p.grad!.dtype));
  });
}

/** 64-true: float64 parameters, inputs and math. */
export class DoublePrecision extends PrecisionPlugin {
  readonly precision = "64-true" as const;
}

/** 32-true: float32 everywhere (no autocast, no scaling). */
export class FloatPrecision extends PrecisionPlugin {
  readonly precision = "32-true" as const;
}

/** 16-true / bf16-true: parameters, inputs and math in the 16-bit type; half the parameter memory. */
export class HalfPrecision extends PrecisionPlugin {
  constructor(readonly precision: "16-true" | "bf16-true") {
    super();
  }
}

/**
 * 16-mixed / bf16-mixed: float32 parameters with autocast around the forward pass. 16-mixed
 * adds a dynamic gradient scaler; bf16 has float32's range and needs none.
 */
export class MixedPrecision extends PrecisionPlugin {
  readonly scaler: GradScaler | null;
  override readonly autocastPolicy: AutocastPolicy;

  /** `autocastPolicy` names the device type whose autocast lists apply (Lightning's `device`). */
  constructor(
    readonly precision: "16-mixed" | "bf16-mixed",
    scaler?: GradScaler | Partial<GradScalerOptions>,
    autocastPolicy: AutocastDeviceType | AutocastPolicy = "cuda",
  ) {
    super();
    this.autocastPolicy = resolveAutocastPolicy(autocastPolicy);
    if (precision === "bf16-mixed") {
      if (scaler) throw new NbitError("INVALID_ARGUMENT", "bf16-mixed does not use a gradient scaler");
      this.scaler = null;
    } else {
      this.scaler = scaler instanceof GradScaler ? scaler : new GradScaler(scaler);
    }
  }

  override backward(loss: Tensor): void {
    (this.scaler ? this.scaler.scaleLoss(loss) : loss).backward();
  }

  override unscaleGradients(optimizer: AnyOptimizer): void {
    this.scaler?.unscale(optimizer);
  }

  protected override gradientsFinite(optimizer: AnyOptimizer): Tensor | null {
    return this.scaler ? this.scaler.unscale(optimizer) : null;
  }

  protected override afterStep(skipped: boolean): void {
    this.scaler?.update(skipped);
  }

  override stateDict(): PrecisionPluginState {
    return this.scaler ? { precision: this.precision, scaler: this.scaler.stateDict() } : super.stateDict();
  }

  override loadStateDict(state: PrecisionPluginState): void {
    super.loadStateDict(state);
    if (this.scaler && state.scaler) this.scaler.loadStateDict(state.scaler);
  }
}

/** The plugin Lightning would pick for a canonical precision; mixed ones autocast with `autocastPolicy`'s lists. */
export function precisionPluginFor(precision: Precision, autocastPolicy: AutocastDeviceType | AutocastPolicy = "cuda"): PrecisionPlugin {
  switch (precision) {
    case "64-true":
      return new DoublePrecision();
    case "32-true":
      return new FloatPrecision();
    case "16-true":
    case "bf16-true":
      return new HalfPrecision(precision);
    case "16-mixed":
    case "bf16-mixed":
      return new MixedPrecision(precision, undefined, autocastPolicy);
  }
}
