import { NbitError } from "../errors.js";
import type { Pair } from "../engine/primitives.js";
import type { Tensor } from "../engine/tensor.js";
import { avgPool2d, conv2d, maxPool2d } from "./functional.js";
import { uniformParameter, type InitOptions } from "./init.js";
import { Module, type Parameter } from "./module.js";

const pairOf = (v: number | Pair): Pair => (typeof v === "number" ? [v, v] : v);

export interface Conv2dLayerOptions extends InitOptions {
  readonly stride?: number | Pair;
  readonly padding?: number | Pair;
  readonly dilation?: number | Pair;
  readonly groups?: number;
  readonly bias?: boolean;
}

/**
 * torch.nn.Conv2d over NCHW input: weight [out, in / groups, kH, kW], initialised as PyTorch does
 * (kaiming_uniform with a = sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias
 * from the same bound). Under autocast it runs in the low-precision dtype.
 */
export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly kernelSize: Pair;
  readonly stride: Pair;
  readonly padding: Pair;
  readonly dilation: Pair;
  readonly groups: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | Pair,
    { stride = 1, padding = 0, dilation = 1, groups = 1, bias = true, ...init }: Conv2dLayerOptions = {},
  ) {
    super();
    if (!Number.isInteger(groups) || groups < 1 || inChannels % groups !== 0 || outChannels % groups !== 0)
      throw new NbitError(
        "INVALID_ARGUMENT",
        `Conv2d: groups=${groups} must be a positive integer dividing inChannels (${inChannels}) and outChannels (${outChannels})`,
      );
    this.kernelSize = pairOf(kernelSize);
    this.stride = pairOf(stride);
    this.padding = pairOf(padding);
    this.dilation = pairOf(dilation);
    this.groups = groups;
    const fanIn = (inChannels / groups) * this.kernelSize[0] * this.kernelSize[1];
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = uniformParameter([outChannels, inChannels / groups, ...this.kernelSize], -bound, bound, init);
    this.bias = bias ? uniformParameter([outChannels], -bound, bound, init) : null;
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }
}

/** torch.nn.MaxPool2d (stride defaults to the kernel size). */
export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: number | Pair,
    readonly options: { readonly stride?: number | Pair; readonly padding?: number | Pair; readonly dilation?: number | Pair } = {},
  ) {
    super();
  }

  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernelSize, this.options);
  }
}

/** torch.nn.AvgPool2d (stride defaults to the kernel size; padding counts in the mean). */
export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: number | Pair,
    readonly options: { readonly stride?: number | Pair; readonly padding?: number | Pair } = {},
  ) {
    super();
  }

  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernelSize, this.options);
  }
}
