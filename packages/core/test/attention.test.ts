import { describe, expect, it } from "vitest";
import {
  autocast,
  Embedding,
  FLOAT_FORMATS,
  GELU,
  Generator,
  type LazyNode,
  MultiheadAttention,
  ReferenceBackend,
  Runtime,
  roundToFormat,
  scaledDotProductAttention,
  Tensor,
  TransformerBlock,
  tensor,
  withRuntime,
} from "../src/index.js";

const run = <T>(fn: () => Promise<T>): Promise<T> => withRuntime(new Runtime(new ReferenceBackend()), fn);

const randomValues = (n: number, seed: number, scale = 1) => {
  const g = new Generator(seed);
  return Array.from({ length: n }, () => g.normal() * scale);
};

/** Plain float64 multi-head self-attention on the host, from the module's parameters. */
async function hostAttention(mha: MultiheadAttention, x: number[], n: number, l: number, causal: boolean): Promise<number[]> {
  const e = mha.embedDim;
  const [h, d] = [mha.numHeads, mha.headDim];
  const w = Array.from(await mha.in_proj_weight.data());
  const b = Array.from(await mha.in_proj_bias!.data());
  const wo = Array.from(await mha.out_proj.weight.data());
  const bo = Array.from(await mha.out_proj.bias!.data());
  const out = new Array<number>(n * l * e).fill(0);
  for (let s = 0; s < n; s++) {
    const proj = (t: number, row: number) => {
      let acc = b[row]!;
      for (let c = 0; c < e; c++) acc += x[(s * l + t) * e + c]! * w[row * e + c]!;
      return acc;
    };
    const concat = Array.from({ length: l }, () => new Array<number>(e).fill(0));
    for (let head = 0; head < h; head++)
      for (let i = 0; i < l; i++) {
        const q = Array.from({ length: d }, (_, c) => proj(i, head * d + c));
        const scores = Array.from({ length: l }, (_, j) => {
          if (causal && j > i) return Number.NEGATIVE_INFINITY;
          let dot = 0;
          for (let c = 0; c < d; c++) dot += q[c]! * proj(j, e + head * d + c);
          return dot / Math.sqrt(d);
        });
        const top = Math.max(...scores);
        const p = scores.map((v) => Math.exp(v - top));
        const total = p.reduce((a, v) => a + v, 0);
        for (let c = 0; c < d; c++) concat[i]![head * d + c] = p.reduce((a, pj, j) => a + (pj / total) * proj(j, 2 * e + head * d + c), 0);
      }
    for (let i = 0; i < l; i++)
      for (let r = 0; r < e; r++) {
        let acc = bo[r]!;
        for (let c = 0; c < e; c++) acc += concat[i]![c]! * wo[r * e + c]!;
        out[(s * l + i) * e + r] = acc;
      }
  }
  return out;
}

function opsIn(root: LazyNode): LazyNode[] {
  const seen = new Set<LazyNode>();
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push(...n.src);
  }
  return [...seen];
}

describe("MultiheadAttention", () => {
  it("has PyTorch's parameter names, shapes and initialisation", async () => {
    const mha = new MultiheadAttention(8, 2, { generator: new Generator(3) });
    const params = Object.fromEntries([...mha.namedParameters()].map(([k, p]) => [k, p.shape]));
    expect(params).toEqual({ in_proj_weight: [24, 8], in_proj_bias: [24], "out_proj.weight": [8, 8], "out_proj.bias": [8] });
    await run(async () => {
      const w = await mha.in_proj_weight.data();
      const bound = Math.sqrt(6 / (8 + 24));
      expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.8 * bound);
      expect([...(await mha.in_proj_bias!.data())].every((v) => v === 0)).toBe(true);
      expect([...(await mha.out_proj.bias!.data())].every((v) => v === 0)).toBe(true);
    });
    expect([...new MultiheadAttention(4, 1, { bias: false }).namedParameters()].map(([k]) => k)).toEqual(["in_proj_weight", "out_proj.weight"]);
    expect(() => new MultiheadAttention(6, 4)).toThrow(/multiple of numHeads/);
  });

  it("matches float64 attention written out on the host, with and without the causal mask, in both layouts", async () => {
    const [n, l, e] = [2, 4, 6];
    const x = randomValues(n * l * e, 7);
    await run(async () => {
      for (const causal of [false, true]) {
        const mha = new MultiheadAttention(e, 3, { batchFirst: true, causal, dtype: "float64", generator: new Generator(11) });
        const got = await mha.forward(tensor(x, [n, l, e], "float64")).toArray();
        const want = await hostAttention(mha, x, n, l, causal);
        got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 12));
        // The same weights in PyTorch's default [seq, batch, embed] layout give the transposed result.
        const seqFirst = new MultiheadAttention(e, 3, { causal, dtype: "float64", generator: new Generator(11) });
        const swapped = seqFirst.forward(tensor(x, [n, l, e], "float64").transpose([1, 0, 2])).transpose([1, 0, 2]);
        (await swapped.toArray()).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 12));
      }
    });
  });

  it("keeps earlier positions blind to later ones under the causal mask", async () => {
    const [l, e] = [5, 4];
    const x = randomValues(l * e, 2);
    const changed = x.map((v, i) => (i >= 3 * e ? v + 1 : v));
    await run(async () => {
      for (const causal of [true, false]) {
        const mha = new MultiheadAttention(e, 2, { batchFirst: true, causal, dtype: "float64", generator: new Generator(5) });
        const a = await mha.forward(tensor(x, [1, l, e], "float64")).toArray();
        const b = await mha.forward(tensor(changed, [1, l, e], "float64")).toArray();
        const earlierSame = a.slice(0, 3 * e).every((v, i) => v === b[i]);
        expect(earlierSame).toBe(causal);
      }
    });
  });

  it("drops attention weights in training only, and draws the mask from its generator", async () => {
    const x = tensor(randomValues(2 * 6 * 8, 9), [2, 6, 8]);
    await run(async () => {
      const mha = new MultiheadAttention(8, 2, { batchFirst: true, dropout: 0.5, generator: new Generator(1) });
      mha.eval();
      const evalA = await mha.forward(x).toArray();
      expect(await mha.forward(x).toArray()).toEqual(evalA);
      mha.train();
      const trainA = await mha.forward(x).toArray();
      expect(trainA).not.toEqual(evalA);
      expect(await mha.forward(x).toArray()).not.toEqual(trainA);
    });
  });

  it("runs its batched matmuls in the low dtype under autocast, and the softmax in float32", () => {
    const mha = new MultiheadAttention(8, 2, { batchFirst: true, causal: true });
    const y = autocast("bfloat16", () => mha.forward(tensor(randomValues(2 * 3 * 8, 1), [2, 3, 8])));
    const matmuls = opsIn(y.node).filter((n) => n.op === "matmul");
    const batched = matmuls.filter((n) => n.shape.length === 4);
    expect(batched).toHaveLength(2);
    // The projections are 16-bit linears with biases: matmuls of 16-bit values accumulated in float32 (addmm), rounded once.
    for (const m of batched) expect(m.dtype).toBe("bfloat16");
    const exps = opsIn(y.node).filter((n) => n.op === "exp");
    expect(exps.map((n) => n.dtype)).toEqual(["float32"]);
    expect(y.dtype).toBe("bfloat16");
  });
});

describe("gradients of attention match float64 finite differences", () => {
  /** Directional derivative check: <grad f, v> against (f(p + hv) - f(p - hv)) / 2h, for each parameter and the input. */
  async function check(model: MultiheadAttention | TransformerBlock, x: number[], shape: number[]) {
    const params = model.parameters();
    const input = new Tensor(tensor(x, shape, "float64").node, true);
    const target = tensor(randomValues(x.length, 99), shape, "float64");
    const loss = () => model.forward(input).mul(target).sum().add(model.forward(input).square().mean());
    loss().backward();
    const h = 1e-6;
    for (const [k, p] of [...params.map((q, i) => [i, q] as const), [-1, input] as const]) {
      const base = Array.from(await p.data());
      const direction = randomValues(base.length, 100 + k);
      const analytic = Array.from(await p.grad!.data()).reduce((a, g, i) => a + g * direction[i]!, 0);
      const at = async (sign: number) => {
        p.node = tensor(
          base.map((v, i) => v + sign * h * direction[i]!),
          p.shape,
          "float64",
        ).node;
        return loss().item();
      };
      const numeric = ((await at(1)) - (await at(-1))) / (2 * h);
      p.node = tensor(base, p.shape, "float64").node;
      expect(Math.abs(analytic - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));
    }
  }

  it("through causal multi-head attention (input, in_proj and out_proj)", async () => {
    const mha = new MultiheadAttention(6, 2, { batchFirst: true, causal: true, dtype: "float64", generator: new Generator(4) });
    await run(() => check(mha, randomValues(2 * 4 * 6, 12), [2, 4, 6]));
  });

  it("through a pre-norm transformer block (attention, layer norms, GELU MLP, residuals)", async () => {
    const block = new TransformerBlock(8, 2, { causal: true, dimFeedforward: 16, dtype: "float64", generator: new Generator(6) });
    expect([...block.namedParameters()].map(([k]) => k)).toEqual([
      "self_attn.in_proj_weight",
      "self_attn.in_proj_bias",
      "self_attn.out_proj.weight",
      "self_attn.out_proj.bias",
      "linear1.weight",
      "linear1.bias",
      "linear2.weight",
      "linear2.bias",
      "norm1.weight",
      "norm1.bias",
      "norm2.weight",
      "norm2.bias",
    ]);
    await run(() => check(block, randomValues(2 * 3 * 8, 13), [2, 3, 8]));
  });
});

describe("attention pieces", () => {
  it("scaledDotProductAttention checks shapes and needs no module", async () => {
    const q = tensor(randomValues(2 * 3 * 4, 1), [2, 3, 4]);
    expect(() => scaledDotProductAttention(q, tensor(randomValues(2 * 3 * 5, 2), [2, 3, 5]), q)).toThrow(/keys must have 4 features/);
    await run(async () => {
      // One key: every query copies its value row whatever the scores.
      const k = tensor([1, 2, 3, 4], [1, 1, 4]);
      const v = tensor([5, -6], [1, 1, 2]);
      expect(await scaledDotProductAttention(tensor(randomValues(3 * 4, 3), [1, 3, 4]), k, v).toArray()).toEqual([5, -6, 5, -6, 5, -6]);
    });
  });

  it("GELU on 16-bit inputs computes in float32 and rounds once", async () => {
    const x = randomValues(2000, 21, 3);
    await run(async () => {
      for (const dtype of ["bfloat16", "float16"] as const) {
        const xs = tensor(x, [x.length], dtype);
        const wide = await new GELU().forward(xs.cast("float32")).toArray();
        const got = await new GELU().forward(xs).toArray();
        expect(got).toEqual(wide.map((v) => roundToFormat(v, FLOAT_FORMATS[dtype])));
      }
    });
  });

  it("Embedding is named weight and initialised N(0, 1)", async () => {
    const emb = new Embedding(200, 50, { generator: new Generator(8) });
    expect([...emb.namedParameters()].map(([k, p]) => [k, p.shape])).toEqual([["weight", [200, 50]]]);
    await run(async () => {
      const w = Array.from(await emb.weight.data());
      const mean = w.reduce((a, v) => a + v, 0) / w.length;
      const variance = w.reduce((a, v) => a + (v - mean) ** 2, 0) / w.length;
      expect(Math.abs(mean)).toBeLessThan(0.05);
      expect(Math.abs(variance - 1)).toBeLessThan(0.05);
      expect(await emb.forward(tensor([3, 3], [2], "int32")).toArray()).toEqual([...w.slice(150, 200), ...w.slice(150, 200)]);
    });
  });
});
