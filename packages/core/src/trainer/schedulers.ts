import { NbitError } from "../errors.js";
import type { Optimizer } from "../optim/optimizer.js";

export interface LRSchedulerState {
  readonly lastEpoch: number;
  readonly baseLrs: readonly number[];
}

/** Base of learning-rate schedulers (torch.optim.lr_scheduler): `step()` advances one interval. */
export abstract class LRScheduler {
  lastEpoch = 0;
  readonly baseLrs: number[];

  constructor(readonly optimizer: Optimizer<{ lr: number }>) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
  }

  /** The learning rate of each parameter group at `lastEpoch`. */
  protected abstract lrAt(epoch: number, baseLr: number): number;

  /** Sets the initial rates; subclasses call it once their own fields are set. */
  protected apply(): void {
    this.optimizer.paramGroups.forEach((g, i) => (g.lr = this.lrAt(this.lastEpoch, this.baseLrs[i]!)));
  }

  step(): void {
    this.lastEpoch++;
    this.apply();
  }

  lastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  stateDict(): LRSchedulerState {
    return { lastEpoch: this.lastEpoch, baseLrs: [...this.baseLrs] };
  }

  loadStateDict(state: LRSchedulerState): void {
    if (state.baseLrs.length !== this.baseLrs.length)
      throw new NbitError("STATE_DICT_MISMATCH", `Scheduler state has ${state.baseLrs.length} groups, the optimizer ${this.baseLrs.length}`);
    this.lastEpoch = state.lastEpoch;
    this.baseLrs.splice(0, this.baseLrs.length, ...state.baseLrs);
    this.apply();
  }
}

/** Multiplies the learning rate by `gamma` every `stepSize` intervals. */
export class StepLR extends LRScheduler {
  constructor(
    optimizer: Optimizer<{ lr: number }>,
    readonly stepSize: number,
    readonly gamma = 0.1,
  ) {
    super(optimizer);
    this.apply();
  }
  protected lrAt(epoch: number, base: number): number {
    return base * this.gamma ** Math.floor(epoch / this.stepSize);
  }
}

/** Cosine annealing from the base rate to `etaMin` over `tMax` intervals. */
export class CosineAnnealingLR extends LRScheduler {
  constructor(
    optimizer: Optimizer<{ lr: number }>,
    readonly tMax: number,
    readonly etaMin = 0,
  ) {
    super(optimizer);
    this.apply();
  }
  protected lrAt(epoch: number, base: number): number {
    return this.etaMin + ((base - this.etaMin) * (1 + Math.cos((Math.PI * Math.min(epoch, this.tMax)) / this.tMax))) / 2;
  }
}

/** Linear ramp of the factor from `startFactor` to `endFactor` over `totalIters` intervals (warm-up). */
export class LinearLR extends LRScheduler {
  constructor(
    optimizer: Optimizer<{ lr: number }>,
    readonly startFactor = 1 / 3,
    readonly endFactor = 1,
    readonly totalIters = 5,
  ) {
    super(optimizer);
    this.apply();
  }
  protected lrAt(epoch: number, base: number): number {
    const t = Math.min(epoch, this.totalIters) / this.totalIters;
    return base * (this.startFactor + (this.endFactor - this.startFactor) * t);
  }
}
