import { NbitError, ShapeError } from "../errors.js";
import { defaultGenerator, type Generator } from "../engine/random.js";
import { type Tensor, tensor } from "../engine/tensor.js";
import { constantParameter, uniformParameter, type InitOptions } from "./init.js";
import { Dropout, GELU, LayerNorm, Linear, linear, ReLU } from "./layers.js";
import { Module, type Parameter } from "./module.js";

export interface ScaledDotProductOptions {
  /** Mask out keys after each query's position (a decoder's causal mask). */
  readonly causal?: boolean;
  /** Dropout on the attention weights; only applied when `generator` draws the mask (training). */
  readonly dropout?: number;
  readonly generator?: Generator;
}

/**
 * softmax(q k^T / sqrt(d)) v over [..., L, d] queries and [..., S, d] keys and values, as
 * torch.nn.functional.scaled_dot_product_attention. The two batched matmuls follow matmul's
 * autocast category (the low dtype under autocast); the softmax runs in float32.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, options: ScaledDotProductOptions = {}): Tensor {
  const { causal = false, dropout = 0, generator } = options;
  if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank)
    throw new ShapeError("scaledDotProductAttention", [q.shape, k.shape, v.shape], "expects queries, keys and values of one rank of at least 2");
  const [l, d] = q.shape.slice(-2) as [number, number];
  const s = k.shape[k.rank - 2]!;
  if (k.shape[k.rank - 1] !== d || v.shape[v.rank - 2] !== s)
    throw new ShapeError("scaledDotProductAttention", [q.shape, k.shape, v.shape], `keys must have ${d} features and values ${s} positions`);
  const perm = [...q.shape.keys()];
  [perm[q.rank - 2], perm[q.rank - 1]] = [q.rank - 1, q.rank - 2];
  let scores = q.mul(1 / Math.sqrt(d)).matmul(k.transpose(perm));
  if (causal) {
    const mask = new Float32Array(l * s);
    // Query i sees keys 0..i (the upper-left aligned lower triangle, as PyTorch's is_causal).
    for (let i = 0; i < l; i++) mask.fill(Number.NEGATIVE_INFINITY, i * s + i + 1, (i + 1) * s);
    scores = scores.add(tensor(mask, [l, s], scores.dtype));
  }
  let weights = scores.softmax(-1);
  if (dropout > 0 && generator) weights = new Dropout(dropout, generator).forward(weights);
  return weights.matmul(v);
}

export interface MultiheadAttentionOptions extends InitOptions {
  /** Biases on the input and output projections (default true). */
  readonly bias?: boolean;
  /** Dropout probability on the attention weights in training (default 0). */
  readonly dropout?: number;
  /** Inputs and outputs are [batch, seq, embed] (true) or [seq, batch, embed] (false, PyTorch's default). */
  readonly batchFirst?: boolean;
  /** Each position attends to itself and earlier positions only. */
  readonly causal?: boolean;
}

/**
 * Multi-head self-attention as torch.nn.MultiheadAttention, with its parameter names
 * (in_proj_weight [3E, E], in_proj_bias, out_proj.weight, out_proj.bias) and initialisation
 * (Xavier-uniform packed projection, zero biases, out_proj.weight like a Linear).
 */
export class MultiheadAttention extends Module {
  readonly in_proj_weight: Parameter;
  readonly in_proj_bias: Parameter | null;
  readonly out_proj: Linear;
  readonly headDim: number;
  readonly batchFirst: boolean;
  readonly causal: boolean;
  readonly dropoutP: number;
  private readonly dropoutGenerator: Generator;

  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    { bias = true, dropout = 0, batchFirst = false, causal = false, ...init }: MultiheadAttentionOptions = {},
  ) {
    super();
    if (!Number.isInteger(embedDim) || !Number.isInteger(numHeads) || numHeads < 1 || embedDim % numHeads !== 0)
      throw new NbitError("INVALID_ARGUMENT", `MultiheadAttention: embedDim (${embedDim}) must be a multiple of numHeads (${numHeads})`);
    if (dropout < 0 || dropout >= 1) throw new NbitError("INVALID_ARGUMENT", `MultiheadAttention dropout must be in [0, 1), got ${dropout}`);
    const bound = Math.sqrt(6 / (embedDim + 3 * embedDim));
    this.in_proj_weight = uniformParameter([3 * embedDim, embedDim], -bound, bound, init);
    this.in_proj_bias = bias ? constantParameter([3 * embedDim], 0, init) : null;
    this.out_proj = new Linear(embedDim, embedDim, { bias, ...init });
    // As PyTorch: out_proj draws its Linear initialisation, then its bias is reset to zero.
    if (this.out_proj.bias) this.out_proj.bias.node = constantParameter([embedDim], 0, init).node;
    this.headDim = embedDim / numHeads;
    this.batchFirst = batchFirst;
    this.causal = causal;
    this.dropoutP = dropout;
    this.dropoutGenerator = init.generator ?? defaultGenerator;
  }

  /** Self-attention over `x`: [batch, seq, embed] with batchFirst, else [seq, batch, embed]. */
  forward(x: Tensor): Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.embedDim)
      throw new ShapeError("MultiheadAttention", [x.shape], `expects a rank-3 input with ${this.embedDim} features last`);
    const input = this.batchFirst ? x : x.transpose([1, 0, 2]);
    const [n, l] = input.shape as [number, number, number];
    const [h, d] = [this.numHeads, this.headDim];
    const heads = (t: Tensor) => t.reshape([n, l, h, d]).transpose([0, 2, 1, 3]);
    const [q, k, v] = linear(input, this.in_proj_weight, this.in_proj_bias).split(this.embedDim, 2).map(heads) as [Tensor, Tensor, Tensor];
    const attended = scaledDotProductAttention(q, k, v, {
      causal: this.causal,
      dropout: this.dropoutP,
      ...(this.training ? { generator: this.dropoutGenerator } : {}),
    });
    const out = this.out_proj.forward(attended.transpose([0, 2, 1, 3]).reshape([n, l, this.embedDim]));
    return this.batchFirst ? out : out.transpose([1, 0, 2]);
  }
}

export interface TransformerBlockOptions extends InitOptions {
  /** Width of the feed-forward layer (default 4 * dModel). */
  readonly dimFeedforward?: number;
  /** Dropout after attention, inside and after the feed-forward layer, and on the attention weights (default 0). */
  readonly dropout?: number;
  readonly activation?: "gelu" | "relu";
  readonly causal?: boolean;
  /** As MultiheadAttention's; default true here (a block usually sits in a [batch, seq, embed] model). */
  readonly batchFirst?: boolean;
  readonly layerNormEps?: number;
}

/**
 * A pre-norm transformer layer: x + attn(norm1(x)), then x + linear2(act(linear1(norm2(x)))).
 * The parameter names are those of torch.nn.TransformerEncoderLayer(norm_first=True):
 * self_attn.*, linear1.*, linear2.*, norm1.*, norm2.*.
 */
export class TransformerBlock extends Module {
  readonly self_attn: MultiheadAttention;
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;
  readonly activation: Module;
  readonly dropout: Dropout;
  readonly dropout1: Dropout;
  readonly dropout2: Dropout;

  constructor(
    readonly dModel: number,
    readonly numHeads: number,
    {
      dimFeedforward = 4 * dModel,
      dropout = 0,
      activation = "gelu",
      causal = false,
      batchFirst = true,
      layerNormEps = 1e-5,
      ...init
    }: TransformerBlockOptions = {},
  ) {
    super();
    this.self_attn = new MultiheadAttention(dModel, numHeads, { dropout, batchFirst, causal, ...init });
    this.linear1 = new Linear(dModel, dimFeedforward, init);
    this.linear2 = new Linear(dimFeedforward, dModel, init);
    this.norm1 = new LayerNorm(dModel, layerNormEps, init);
    this.norm2 = new LayerNorm(dModel, layerNormEps, init);
    this.activation = activation === "gelu" ? new GELU() : new ReLU();
    const generator = init.generator ?? defaultGenerator;
    this.dropout = new Dropout(dropout, generator);
    this.dropout1 = new Dropout(dropout, generator);
    this.dropout2 = new Dropout(dropout, generator);
  }

  forward(x: Tensor): Tensor {
    const h = x.add(this.dropout1.forward(this.self_attn.forward(this.norm1.forward(x))));
    const mlp = this.linear2.forward(this.dropout.forward(this.activation.forward(this.linear1.forward(this.norm2.forward(h)))));
    return h.add(this.dropout2.forward(mlp));
  }
}
