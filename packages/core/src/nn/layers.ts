import { NbitError, ShapeError } from "../errors.js";
import { defaultGenerator, type Generator } from "../engine/random.js";
import { isHalfDType, promoteTypes } from "../dtype.js";
import { normalizeAxis, sizeOf } from "../engine/primitives.js";
import { Tensor, castFor, customGradient, rawBinary, rawCast, rawMatmul, rawReshape, rawTranspose, sumTo, tensor } from "../engine/tensor.js";
import { noGrad } from "../engine/context.js";
import { embedding } from "./functional.js";
import { constantParameter, normalParameter, uniformParameter, type InitOptions } from "./init.js";
import { Module, type Parameter } from "./module.js";

/** y = x W^T + b, with W of shape [out, in], initialised like torch.nn.Linear. */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    { bias = true, ...init }: InitOptions & { bias?: boolean } = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = uniformParameter([outFeatures, inFeatures], -bound, bound, init);
    this.bias = bias ? uniformParameter([outFeatures], -bound, bound, init) : null;
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** The linear map as a function; under autocast it runs in the low-precision dtype. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  const [input, w0, b] = castFor("linear", bias ? [x, weight, bias] : [x, weight]) as [Tensor, Tensor, Tensor | undefined];
  if (input.shape[input.rank - 1] !== w0.shape[1])
    throw new ShapeError("linear", [input.shape, w0.shape], `input features ${input.shape[input.rank - 1]} do not match the weight's ${w0.shape[1]}`);
  const dtype = promoteTypes(input.dtype, w0.dtype);
  const w = rawCast(w0, dtype);
  const lead = input.shape.slice(0, -1);
  const flat = rawReshape(rawCast(input, dtype), [sizeOf(lead), w.shape[1]!]);
  let y: Tensor;
  if (b && isHalfDType(dtype) && b.dtype === dtype) {
    // addmm semantics, as PyTorch's 16-bit linear: x W^T + b accumulates in float32 and rounds once.
    const wide = (t: Tensor) => rawCast(t, "float32");
    // Widening before transposing lets matmul's backward see the transpose, so the weight gradient
    // is rounded in the weight's own layout and no transposed copy of it is made.
    y = rawCast(rawBinary("add", rawMatmul(wide(flat), rawTranspose(wide(w), [1, 0])), wide(b)), dtype);
  } else {
    y = rawMatmul(flat, rawTranspose(w, [1, 0]));
    if (b) y = y.add(b);
  }
  return rawReshape(y, [...lead, w.shape[0]!]);
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return x.gelu();
  }
}
export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return x.tanh();
  }
}
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

/** torch.nn.Flatten: merges axes startDim..endDim (negative counts from the end) into one. */
export class Flatten extends Module {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }

  forward(x: Tensor): Tensor {
    const start = normalizeAxis("Flatten", x.shape, this.startDim);
    const end = normalizeAxis("Flatten", x.shape, this.endDim);
    if (start > end) throw new ShapeError("Flatten", [x.shape], `startDim ${this.startDim} comes after endDim ${this.endDim}`);
    return x.reshape([...x.shape.slice(0, start), sizeOf(x.shape.slice(start, end + 1)), ...x.shape.slice(end + 1)]);
  }
}

export class LayerNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(
    readonly normalizedShape: number,
    readonly eps = 1e-5,
    init: InitOptions = {},
  ) {
    super();
    this.weight = constantParameter([normalizedShape], 1, init);
    this.bias = constantParameter([normalizedShape], 0, init);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** Normalises over the last axis; under autocast it runs in float32. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const [input] = castFor("layerNorm", [x]);
  // A 16-bit input with float32 weight and bias keeps its dtype (PyTorch's mixed-dtype layer_norm,
  // which autocast on the CPU reaches); otherwise the dtypes promote.
  const mixed = isHalfDType(input!.dtype) && [weight.dtype, bias.dtype].every((d) => d === "float32" || d === input!.dtype);
  const out = mixed ? input!.dtype : promoteTypes(promoteTypes(input!.dtype, weight.dtype), bias.dtype);
  // 16-bit results are computed in float32 and rounded once, as PyTorch's layer_norm does.
  const wide = (t: Tensor) => (isHalfDType(out) ? rawCast(t, "float32") : t);
  const [h, w, b] = [wide(input!), wide(weight), wide(bias)];
  const { xhat, std, y } = noGrad(() => {
    const centered = h.sub(h.mean(-1, true));
    const std = centered.square().mean(-1, true).add(eps).sqrt();
    const xhat = centered.div(std);
    return { xhat, std, y: xhat.mul(w).add(b) };
  });
  // Closed form, as PyTorch's layer_norm_backward: dx = (gw - mean(gw) - xhat * mean(gw * xhat)) / sigma
  // with gw = g * w, one division by sigma instead of the decomposition's three.
  const normalized = customGradient(y, [h, w, b], (g) => {
    const gw = g.mul(w);
    const rowMean = (t: Tensor) => t.mean(-1, true);
    const dx = gw
      .sub(rowMean(gw))
      .sub(xhat.mul(rowMean(gw.mul(xhat))))
      .div(std);
    return [rawCast(dx, h.dtype), rawCast(sumTo(g.mul(xhat), w.shape), w.dtype), rawCast(sumTo(g, b.shape), b.dtype)];
  });
  return rawCast(normalized, out);
}

/** A lookup table: rows of the weight picked by int32 indices (a gather; its gradient is a scatter-add). */
export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    init: InitOptions = {},
  ) {
    super();
    this.weight = normalParameter([numEmbeddings, embeddingDim], 1, init);
  }

  forward(indices: Tensor): Tensor {
    return embedding(indices, this.weight);
  }
}

/** Inverted dropout with a seeded mask; the identity in eval mode. */
export class Dropout extends Module {
  constructor(
    readonly p = 0.5,
    readonly generator: Generator = defaultGenerator,
  ) {
    super();
    if (p < 0 || p >= 1) throw new NbitError("INVALID_ARGUMENT", `Dropout probability must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const keep = 1 - this.p;
    const mask = new Float32Array(x.size);
    for (let i = 0; i < mask.length; i++) mask[i] = this.generator.random() < keep ? 1 / keep : 0;
    return x.mul(tensor(mask, x.shape, x.dtype));
  }
}

export class Sequential extends Module {
  readonly layers: Module[];

  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
  }

  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, layer) => layer.forward(h), x);
  }

  /** Children are named by position ("0", "1", ...), as torch.nn.Sequential names them: `net.0.weight`. */
  override *namedChildren(): globalThis.Generator<[string, Module]> {
    for (const [i, layer] of this.layers.entries()) yield [String(i), layer];
  }
}
