import { type Tensor, zerosLike } from "../engine/tensor.js";
import type { Parameter } from "../nn/module.js";
import { checkBoolean, checkNumber, InvalidArgumentError } from "../validation.js";
import { Optimizer, type ParamUpdate } from "./optimizer.js";

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** torch.optim.SGD's rules: lr, momentum and weight decay >= 0; Nesterov needs momentum and no dampening. */
export function checkSGDHyperparameters(o: SGDOptions, where: string): void {
  checkNumber(`${where} lr`, o.lr, { min: 0 });
  checkNumber(`${where} momentum`, o.momentum, { min: 0 });
  checkNumber(`${where} dampening`, o.dampening);
  checkNumber(`${where} weightDecay`, o.weightDecay, { min: 0 });
  if (checkBoolean(`${where} nesterov`, o.nesterov) && (o.momentum <= 0 || o.dampening !== 0))
    throw new InvalidArgumentError(`${where} nesterov`, "used with momentum > 0 and dampening 0", `momentum ${o.momentum}, dampening ${o.dampening}`);
}

/** Stochastic gradient descent with momentum, as torch.optim.SGD. */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ConstructorParameters<typeof Optimizer<SGDOptions>>[0], options: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...options }, checkSGDHyperparameters);
  }

  protected initState(param: Parameter): Record<string, Tensor> {
    return this.paramGroups.find((g) => g.params.includes(param))!.momentum ? { momentumBuffer: zerosLike(param) } : {};
  }

  protected update(p: Tensor, grad: Tensor, state: Record<string, Tensor>, o: SGDOptions, step: number): ParamUpdate {
    let g = o.weightDecay ? grad.add(p.mul(o.weightDecay)) : grad;
    const next: Record<string, Tensor> = {};
    if (o.momentum) {
      const buf = step === 1 ? g : state.momentumBuffer!.mul(o.momentum).add(g.mul(1 - o.dampening));
      next.momentumBuffer = buf;
      g = o.nesterov ? g.add(buf.mul(o.momentum)) : buf;
    }
    return { param: p.sub(g.mul(this.scalar("lr", o.lr, p.dtype, (group) => group.lr))), state: next };
  }
}
