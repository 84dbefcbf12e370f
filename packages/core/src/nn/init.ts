import type { FloatDType } from "../dtype.js";
import { defaultParamDType } from "../engine/context.js";
import { defaultGenerator, type Generator } from "../engine/random.js";
import { Tensor } from "../engine/tensor.js";
import { numbersToHost } from "../numerics/convert.js";
import { Parameter } from "./module.js";

export interface InitOptions {
  /** dtype of the parameter; defaults to the one the active precision's init context sets. */
  dtype?: FloatDType;
  generator?: Generator;
}

function makeParameter(shape: readonly number[], sample: (g: Generator) => number, options: InitOptions): Parameter {
  const g = options.generator ?? defaultGenerator;
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float64Array(size);
  for (let i = 0; i < size; i++) values[i] = sample(g);
  const dtype = options.dtype ?? defaultParamDType();
  // Drawn in float64 and rounded once, so every precision starts from the same model.
  return new Parameter(Tensor.fromHost(numbersToHost(dtype === "float64" ? values : Float32Array.from(values), dtype), shape, dtype));
}

export const uniformParameter = (shape: readonly number[], low: number, high: number, options: InitOptions = {}): Parameter =>
  makeParameter(shape, (g) => g.uniform(low, high), options);

export const normalParameter = (shape: readonly number[], std: number, options: InitOptions = {}): Parameter =>
  makeParameter(shape, (g) => g.normal() * std, options);

export const constantParameter = (shape: readonly number[], value: number, options: InitOptions = {}): Parameter => makeParameter(shape, () => value, options);
