import { type Tensor, zerosLike } from "../engine/tensor.js";
import type { Parameter } from "../nn/module.js";
import { Optimizer, type ParamUpdate } from "./optimizer.js";

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** Stochastic gradient descent with momentum, as torch.optim.SGD. */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ConstructorParameters<typeof Optimizer<SGDOptions>>[0], options: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...options });
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
    return { param: p.sub(g.mul(this.scalar("lr", o.lr, p.dtype))), state: next };
  }
}
