import { type Tensor, zerosLike } from "../engine/tensor.js";
import type { Parameter } from "../nn/module.js";
import { checkNumber, InvalidArgumentError } from "../validation.js";
import { Optimizer, type ParamUpdate } from "./optimizer.js";

export interface AdamOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

type OptimizerParams = ConstructorParameters<typeof Optimizer<AdamOptions>>[0];

/** torch.optim.Adam's rules: lr, eps and weight decay >= 0, each beta in [0, 1). */
export function checkAdamHyperparameters(o: AdamOptions, where: string): void {
  checkNumber(`${where} lr`, o.lr, { min: 0 });
  if (!Array.isArray(o.betas) || o.betas.length !== 2) throw new InvalidArgumentError(`${where} betas`, "a pair [beta1, beta2]", o.betas);
  o.betas.forEach((b, i) => checkNumber(`${where} betas[${i}]`, b, { min: 0, max: 1, maxOpen: true }));
  checkNumber(`${where} eps`, o.eps, { min: 0 });
  checkNumber(`${where} weightDecay`, o.weightDecay, { min: 0 });
}

/** Adam (torch.optim.Adam); weight decay is added to the gradient (L2). */
export class Adam extends Optimizer<AdamOptions> {
  protected readonly decoupled: boolean = false;

  constructor(params: OptimizerParams, options: Partial<AdamOptions> = {}, defaultWeightDecay = 0) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: defaultWeightDecay, ...options }, checkAdamHyperparameters);
  }

  protected initState(param: Parameter): Record<string, Tensor> {
    return { expAvg: zerosLike(param), expAvgSq: zerosLike(param) };
  }

  protected update(param: Tensor, grad: Tensor, state: Record<string, Tensor>, o: AdamOptions, step: number): ParamUpdate {
    const [beta1, beta2] = o.betas;
    let p = param;
    let g = grad;
    if (o.weightDecay) {
      if (this.decoupled) p = p.mul(this.scalar("decay", 1 - o.lr * o.weightDecay, p.dtype, (g) => 1 - g.lr * g.weightDecay));
      else g = g.add(p.mul(o.weightDecay));
    }
    const expAvg = state.expAvg!.mul(beta1).add(g.mul(1 - beta1));
    const expAvgSq = state.expAvgSq!.mul(beta2).add(g.square().mul(1 - beta2));
    // Step-dependent factors enter as program inputs, so every step reuses one compiled program.
    const stepSize = this.scalar("stepSize", o.lr / (1 - beta1 ** step), p.dtype, (g, t) => g.lr / (1 - g.betas[0] ** t));
    const bias2Sqrt = this.scalar("bias2Sqrt", Math.sqrt(1 - beta2 ** step), p.dtype, (g, t) => Math.sqrt(1 - g.betas[1] ** t));
    const denom = expAvgSq.sqrt().div(bias2Sqrt).add(o.eps);
    return { param: p.sub(expAvg.div(denom).mul(stepSize)), state: { expAvg, expAvgSq } };
  }
}

/** AdamW (torch.optim.AdamW): decoupled weight decay, 0.01 by default. */
export class AdamW extends Adam {
  protected override readonly decoupled: boolean = true;

  constructor(params: OptimizerParams, options: Partial<AdamOptions> = {}) {
    super(params, options, 0.01);
  }
}
