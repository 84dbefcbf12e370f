import { checkGradScalerOptions, checkGradScalerState } from "./grad-scaler-checks.js";
import { noGrad } from "../engine/context.js";
import { stepScalar } from "../engine/step-scalars.js";
import { full, Tensor } from "../engine/tensor.js";
import type { Optimizer } from "./optimizer.js";

export interface GradScalerOptions {
  initScale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  enabled: boolean;
}

export interface GradScalerState {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  growthTracker: number;
}

/**
 * Dynamic loss scaling with torch.amp.GradScaler's semantics: the loss is multiplied by the
 * scale; gradients are unscaled before clipping and stepping; a step with any Inf/NaN gradient
 * is skipped and halves the scale; 2000 clean steps in a row double it (never to Infinity).
 * The finiteness check and the skip run inside the step's program; only the outcome is read back.
 */
export class GradScaler {
  scale: number;
  growthTracker = 0;
  readonly options: GradScalerOptions;
  private finite: Tensor | null = null;
  private unscaled = new WeakSet<Optimizer<{ lr: number }>>();

  constructor(options: Partial<GradScalerOptions> = {}) {
    this.options = { initScale: 2 ** 16, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, enabled: true, ...options };
    checkGradScalerOptions(this.options);
    this.scale = this.options.initScale;
  }

  /** loss * scale, with the scale a float32 scalar as in PyTorch: a float16 loss scales to float32, never to Inf. */
  scaleLoss(loss: Tensor): Tensor {
    if (!this.options.enabled) return loss;
    return loss.mul(stepScalar(this.scale, "float32", { label: "GradScaler scale", next: () => this.scale }));
  }

  /**
   * Divides the gradients by the scale (once per step) and returns a bool scalar that is true
   * when every gradient is finite (null when the scaler is disabled).
   */
  unscale(optimizer: Optimizer<{ lr: number }>): Tensor | null {
    if (!this.options.enabled) return null;
    if (this.unscaled.has(optimizer)) return this.finite;
    noGrad(() => {
      // PyTorch computes the inverse in double and rounds it to float32.
      const inverse = () => Math.fround(1 / Math.fround(this.scale));
      const inv = stepScalar(inverse(), "float32", { label: "GradScaler inverse scale", next: inverse });
      let probe: Tensor = full([], 0, "float32");
      for (const p of optimizer.params) {
        if (!p.grad) continue;
        const g = p.grad.mul(inv.cast(p.grad.dtype === "float64" ? "float64" : p.grad.dtype));
        p.grad = g;
        // Inf * 0 and NaN * 0 are NaN, and NaN poisons the sum: one scalar says "all finite".
        probe = probe.add(g.mul(0).sum().cast("float32"));
      }
      this.finite = probe.equal(0);
    });
    this.unscaled.add(optimizer);
    return this.finite;
  }

  /**
   * Adjusts the scale once the step's outcome is known. As PyTorch's `_amp_update_scale_`, the
   * scale is a float32: each product is taken in double and rounded to float32.
   */
  update(foundInf: boolean): void {
    this.finite = null;
    this.unscaled = new WeakSet();
    if (!this.options.enabled) return;
    if (foundInf) {
      this.scale = Math.fround(Math.fround(this.scale) * this.options.backoffFactor);
      this.growthTracker = 0;
      return;
    }
    this.growthTracker++;
    if (this.growthTracker === this.options.growthInterval) {
      const grown = Math.fround(Math.fround(this.scale) * this.options.growthFactor);
      if (Number.isFinite(grown)) this.scale = grown;
      this.growthTracker = 0;
    }
  }

  stateDict(): GradScalerState {
    const { growthFactor, backoffFactor, growthInterval } = this.options;
    return { scale: this.scale, growthFactor, backoffFactor, growthInterval, growthTracker: this.growthTracker };
  }

  /** Restores a saved state after validating every field as strictly as the constructor's options. */
  loadStateDict(state: GradScalerState): void {
    const valid = checkGradScalerState(state);
    this.scale = valid.scale;
    this.growthTracker = valid.growthTracker;
    this.options.growthFactor = valid.growthFactor;
    this.options.backoffFactor = valid.backoffFactor;
    this.options.growthInterval = valid.growthInterval;
  }
}
