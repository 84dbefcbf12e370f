import { defaultGenerator, type Generator } from "../engine/random.js";
import { Tensor } from "../engine/tensor.js";
import { numbersToHost } from "../numerics/convert.js";
import { Parameter } from "../nn/module.js";
import { COMPLEX_PART_DTYPE, resolveComplexDType, type ComplexDType } from "./dtype.js";
import { ComplexTensor } from "./tensor.js";

/**
 * A trainable complex tensor. It trains as two real Parameters, `real` and `imag`, which is what
 * PyTorch's optimizers do through view_as_real: a Module lists them as `<name>.real` and
 * `<name>.imag`, optimizers update them elementwise, and checkpoints store them as two real tensors.
 */
export class ComplexParameter extends ComplexTensor {
  declare readonly real: Parameter;
  declare readonly imag: Parameter;

  constructor(value: ComplexTensor, requiresGrad = true) {
    super(new Parameter(value.real.detach(), requiresGrad), new Parameter(value.imag.detach(), requiresGrad));
  }
}

export interface ComplexInitOptions {
  /** Defaults to the active precision's: complex128 under 64-true, complex64 under 32-true. */
  dtype?: ComplexDType;
  generator?: Generator;
}

/**
 * A complex parameter drawn from the circular normal distribution with E|z|² = std²: each part is
 * normal with standard deviation std/√2, torch.randn's convention for complex dtypes. Both parts
 * of an element are drawn in turn, in float64, and rounded once to the part dtype.
 */
export function complexNormalParameter(shape: readonly number[], std: number, options: ComplexInitOptions = {}): ComplexParameter {
  const part = COMPLEX_PART_DTYPE[resolveComplexDType(options.dtype)];
  const g = options.generator ?? defaultGenerator;
  const size = shape.reduce((a, b) => a * b, 1);
  const [re, im] = [new Float64Array(size), new Float64Array(size)];
  for (let i = 0; i < size; i++) {
    re[i] = (g.normal() * std) / Math.SQRT2;
    im[i] = (g.normal() * std) / Math.SQRT2;
  }
  const leaf = (v: Float64Array) => Tensor.fromHost(numbersToHost(part === "float64" ? v : Float32Array.from(v), part), shape, part);
  return new ComplexParameter(new ComplexTensor(leaf(re), leaf(im)));
}
