import { NbitError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import type { FloatDType } from "../dtype.js";
import type { Tensor } from "../engine/tensor.js";
import { Parameter } from "../nn/module.js";
import { GradScaler, type GradScalerOptions } from "../optim/grad-scaler.js";
import type { Optimizer } from "../optim/optimizer.js";
import { FloatPrecision, HalfPrecision, MixedPrecision, PrecisionPlugin } from "./plugins.js";

export const AMP_LEVELS = ["O0", "O1", "O2", "O3"] as const;
export type AmpLevel = (typeof AMP_LEVELS)[number];

type AnyOptimizer = Optimizer<{ lr: number }>;

/**
 * Apex O2: float16 model weights (forward and backward in float16), float32 master weights the
 * optimizer updates, and dynamic loss scaling. After each step the model weights are the masters
 * rounded to float16. Checkpoints hold the float16 weights; masters are rebuilt from them on resume.
 */
export class MasterWeightsPrecision extends PrecisionPlugin {
  readonly precision = "16-mixed" as const;
  readonly scaler: GradScaler;
  private readonly masters = new Map<Parameter, Parameter>();
  private optimizer: AnyOptimizer | null = null;

  constructor(scaler?: GradScaler | Partial<GradScalerOptions>) {
    super();
    this.scaler = scaler instanceof GradScaler ? scaler : new GradScaler(scaler);
  }

  override get paramDType(): FloatDType {
    return "float16";
  }

  override get autocastDType(): FloatDType | null {
    return null;
  }

  /** Points the optimizer at float32 masters of its float16 parameters (once). */
  private attach(optimizer: AnyOptimizer): void {
    if (this.optimizer === optimizer) return;
    if (this.optimizer) throw new NbitError("INVALID_ARGUMENT", "MasterWeightsPrecision drives one optimizer");
    this.optimizer = optimizer;
    noGrad(() => {
      for (const group of optimizer.paramGroups)
        group.params = group.params.map((p) => {
          const master = new Parameter(p.cast("float32"));
          this.masters.set(master, p);
          return master;
        });
    });
  }

  override backward(loss: Tensor): void {
    this.scaler.scaleLoss(loss).backward();
  }

  override unscaleGradients(optimizer: AnyOptimizer): void {
    this.moveGradients(optimizer);
    this.scaler.unscale(optimizer);
  }

  /** Float16 gradients of the model become float32 gradients of the masters. */
  private moveGradients(optimizer: AnyOptimizer): void {
    this.attach(optimizer);
    noGrad(() => {
      for (const [master, model] of this.masters) {
        if (!model.grad) continue;
        master.grad = model.grad.cast("float32");
        model.grad = null;
      }
    });
  }

  protected override gradientsFinite(optimizer: AnyOptimizer): Tensor | null {
    this.moveGradients(optimizer);
    return this.scaler.unscale(optimizer);
  }

  protected override afterStep(skipped: boolean): void {
    this.scaler.update(skipped);
    noGrad(() => {
      for (const [master, model] of this.masters) model.assign(master.cast("float16").detach());
    });
  }

  override stateDict() {
    return { precision: this.precision, scaler: this.scaler.stateDict() };
  }

  override loadStateDict(state: ReturnType<PrecisionPlugin["stateDict"]>): void {
    super.loadStateDict(state);
    if (state.scaler) this.scaler.loadStateDict(state.scaler);
  }
}

export class InvalidAmpLevelError extends NbitError {
  constructor(readonly received: unknown) {
    super("INVALID_AMP_LEVEL", `ampLevel ${JSON.stringify(received)} is not supported. Expected one of: ${AMP_LEVELS.map((l) => `"${l}"`).join(", ")}.`);
  }
}

/**
 * Apex's optimization levels on nbit's plugins: O0 float32; O1 autocast with float32 weights and
 * dynamic scaling (16-mixed); O2 float16 weights with float32 masters and dynamic scaling; O3
 * pure float16 (16-true).
 */
export function precisionPluginForAmpLevel(level: unknown): PrecisionPlugin {
  switch (level) {
    case "O0":
      return new FloatPrecision();
    case "O1":
      return new MixedPrecision("16-mixed");
    case "O2":
      return new MasterWeightsPrecision();
    case "O3":
      return new HalfPrecision("16-true");
    default:
      throw new InvalidAmpLevelError(level);
  }
}
