import { isHalfDType } from "../dtype.js";
import { NbitError, ShapeError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import { castFor, full, rawCast, rawReshape, type Tensor } from "../engine/tensor.js";
import { constantParameter, type InitOptions } from "./init.js";
import { Module, ModuleBuffer, type Parameter } from "./module.js";

export interface BatchNormOptions extends InitOptions {
  readonly eps?: number;
  /** Weight of the newest batch in the running statistics (PyTorch's default 0.1). */
  readonly momentum?: number;
  /** Learnable per-channel scale and shift (default true). */
  readonly affine?: boolean;
  /** Keep running statistics for eval mode (default true); without them eval mode uses batch statistics. */
  readonly trackRunningStats?: boolean;
}

/**
 * Batch normalisation over the channel axis 1 (torch.nn.BatchNorm1d/2d). Statistics are computed
 * in float32 whatever the input dtype, and the running statistics are float32 buffers in every
 * precision: train mode normalises with the batch's (biased) variance and folds the batch mean and
 * unbiased variance into the running statistics; eval mode normalises with the running ones.
 */
abstract class BatchNorm extends Module {
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;
  readonly running_mean: ModuleBuffer | null;
  readonly running_var: ModuleBuffer | null;
  readonly num_batches_tracked: ModuleBuffer | null;
  readonly eps: number;
  readonly momentum: number;

  constructor(
    readonly numFeatures: number,
    { eps = 1e-5, momentum = 0.1, affine = true, trackRunningStats = true, ...init }: BatchNormOptions,
    private readonly ranks: readonly number[],
  ) {
    super();
    if (!Number.isInteger(numFeatures) || numFeatures < 1)
      throw new NbitError("INVALID_ARGUMENT", `${this.constructor.name}: numFeatures must be a positive integer, got ${numFeatures}`);
    if (!(momentum >= 0 && momentum <= 1)) throw new NbitError("INVALID_ARGUMENT", `${this.constructor.name}: momentum must be in [0, 1], got ${momentum}`);
    this.eps = eps;
    this.momentum = momentum;
    this.weight = affine ? constantParameter([numFeatures], 1, init) : null;
    this.bias = affine ? constantParameter([numFeatures], 0, init) : null;
    this.running_mean = trackRunningStats ? new ModuleBuffer(full([numFeatures], 0, "float32")) : null;
    this.running_var = trackRunningStats ? new ModuleBuffer(full([numFeatures], 1, "float32")) : null;
    this.num_batches_tracked = trackRunningStats ? new ModuleBuffer(full([], 0, "int32")) : null;
  }

  forward(x: Tensor): Tensor {
    const name = this.constructor.name;
    if (!this.ranks.includes(x.rank)) throw new ShapeError(name, [x.shape], `expects input of rank ${this.ranks.join(" or ")} with channels on axis 1`);
    if (x.shape[1] !== this.numFeatures) throw new ShapeError(name, [x.shape], `expects ${this.numFeatures} channels on axis 1, got ${x.shape[1]}`);
    const [cast] = castFor("batchNorm", [x]);
    const input = cast!;
    const xf = isHalfDType(input.dtype) ? rawCast(input, "float32") : input;
    const axes = xf.shape.map((_, i) => i).filter((i) => i !== 1);
    const channelShape = xf.shape.map((d, i) => (i === 1 ? d : 1));
    const perChannel = (t: Tensor) => rawReshape(rawCast(t, xf.dtype), channelShape);
    let mean: Tensor;
    let variance: Tensor;
    const useBatchStats = this.training || !this.running_mean;
    if (useBatchStats) {
      const count = axes.reduce((n, a) => n * xf.shape[a]!, 1);
      if (this.training && count < 2) throw new ShapeError(name, [x.shape], "expected more than 1 value per channel when training");
      mean = xf.mean(axes, true);
      variance = xf.sub(mean).square().mean(axes, true);
      if (this.training && this.running_mean && this.running_var && this.num_batches_tracked) {
        const m = this.momentum;
        const [runningMean, runningVar, tracked] = [this.running_mean, this.running_var, this.num_batches_tracked];
        noGrad(() => {
          const batchMean = rawReshape(rawCast(mean.detach(), "float32"), [this.numFeatures]);
          const unbiased = rawReshape(rawCast(variance.detach(), "float32"), [this.numFeatures]).mul(count / (count - 1));
          runningMean.assign(runningMean.mul(1 - m).add(batchMean.mul(m)));
          runningVar.assign(runningVar.mul(1 - m).add(unbiased.mul(m)));
          tracked.assign(tracked.add(1));
        });
      }
    } else {
      mean = perChannel(this.running_mean!);
      variance = perChannel(this.running_var!);
    }
    let y = xf.sub(mean).div(variance.add(this.eps).sqrt());
    if (this.weight && this.bias) y = y.mul(perChannel(this.weight)).add(perChannel(this.bias));
    return y.dtype === input.dtype ? y : rawCast(y, input.dtype);
  }
}

/** torch.nn.BatchNorm1d: input [N, C] or [N, C, L]. */
export class BatchNorm1d extends BatchNorm {
  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super(numFeatures, options, [2, 3]);
  }
}

/** torch.nn.BatchNorm2d: input [N, C, H, W]. */
export class BatchNorm2d extends BatchNorm {
  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super(numFeatures, options, [4]);
  }
}
