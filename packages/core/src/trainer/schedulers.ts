import { NbitError } from "../errors.js";
import type { Optimizer } from "../optim/optimizer.js";
import { checkInteger, checkNumber, InvalidArgumentError, isPlainObject } from "../validation.js";

export interface LRSchedulerState {
  readonly lastEpoch: number;
  readonly baseLrs: readonly number[];
}

/** Base of learning-rate schedulers (torch.optim.lr_scheduler): `step()` advances one interval. */
export abstract class LRScheduler {
  lastEpoch = 0;
  readonly baseLrs: number[];

  constructor(readonly optimizer: Optimizer<{ lr: number }>) {
    if (!optimizer || !Array.isArray(optimizer.paramGroups)) throw new InvalidArgumentError(`${new.target.name} optimizer`, "an Optimizer", optimizer);
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

  /** Throws unless `loadStateDict(state)` would accept it: an integer lastEpoch >= 0 and one finite rate >= 0 per group. */
  validateStateDict(state: unknown): LRSchedulerState {
    const where = `${this.constructor.name} state`;
    if (!isPlainObject(state)) throw new InvalidArgumentError(where, "an object with lastEpoch and baseLrs", state);
    for (const key of Object.keys(state))
      if (key !== "lastEpoch" && key !== "baseLrs")
        throw new InvalidArgumentError(`${where} field ${JSON.stringify(key)}`, "absent (unknown field)", state[key]);
    const { lastEpoch, baseLrs } = state;
    if (!Array.isArray(baseLrs)) throw new InvalidArgumentError(`${where} baseLrs`, "a list of learning rates", baseLrs);
    if (baseLrs.length !== this.baseLrs.length)
      throw new NbitError("STATE_DICT_MISMATCH", `Scheduler state has ${baseLrs.length} groups, the optimizer ${this.baseLrs.length}`);
    return {
      lastEpoch: checkInteger(`${where} lastEpoch`, lastEpoch, 0),
      baseLrs: baseLrs.map((lr, i) => checkNumber(`${where} baseLrs[${i}]`, lr, { min: 0 })),
    };
  }

  loadStateDict(state: LRSchedulerState): void {
    const valid = this.validateStateDict(state);
    this.lastEpoch = valid.lastEpoch;
    this.baseLrs.splice(0, this.baseLrs.length, ...valid.baseLrs);
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
    checkInteger("StepLR stepSize", stepSize, 1);
    checkNumber("StepLR gamma", gamma, { min: 0, minOpen: true });
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
    checkInteger("CosineAnnealingLR tMax", tMax, 1);
    checkNumber("CosineAnnealingLR etaMin", etaMin, { min: 0 });
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
    // torch.optim.lr_scheduler.LinearLR's bounds.
    checkNumber("LinearLR startFactor", startFactor, { min: 0, max: 1, minOpen: true });
    checkNumber("LinearLR endFactor", endFactor, { min: 0, max: 1 });
    checkInteger("LinearLR totalIters", totalIters, 1);
    this.apply();
  }
  protected lrAt(epoch: number, base: number): number {
    const t = Math.min(epoch, this.totalIters) / this.totalIters;
    return base * (this.startFactor + (this.endFactor - this.startFactor) * t);
  }
}
