import { beforeEach, describe, expect } from "vitest";
import {
  Generator,
  GradScaler,
  Parameter,
  ReferenceBackend,
  Runtime,
  clipGradients,
  layerNorm,
  ones,
  roundScalar,
  tensor,
  type HalfDType,
} from "../src/index.js";
import { itOn } from "./scoped.js";

let runtime: Runtime;
beforeEach(() => {
  runtime = new Runtime(new ReferenceBackend());
});
const it = itOn(() => runtime);

describe("GradScaler keeps its scale as PyTorch does", () => {
  it("rounds the scale to float32 on every update (_amp_update_scale_)", () => {
    const scaler = new GradScaler({ growthFactor: 1.1, backoffFactor: 0.7, growthInterval: 1 });
    // The CUDA kernel stores into a float: the product is taken in double, then rounded to float32.
    const stored = new Float32Array([65536]);
    let kept = 65536; // what a scale kept in double would be
    const outcomes = [true, false, true, false, false, true, false, true, false, false, true, false];
    for (const foundInf of outcomes) {
      scaler.update(foundInf);
      stored[0] = stored[0]! * (foundInf ? 0.7 : 1.1);
      kept *= foundInf ? 0.7 : 1.1;
      expect(scaler.scale).toBe(stored[0]);
    }
    expect(scaler.scale).not.toBe(kept);
  });

  it("scales a float16 loss to a finite float32, as loss * float32 scale tensor in PyTorch", async () => {
    const scaler = new GradScaler();
    const scaled = scaler.scaleLoss(tensor(3.5, [], "float16"));
    expect(scaled.dtype).toBe("float32");
    expect(await scaled.item()).toBe(3.5 * 65536);
    // A float64 loss stays float64 (float64 wins the promotion).
    expect(scaler.scaleLoss(tensor(0.1, [], "float64")).dtype).toBe("float64");
  });
});

describe("clipGradients by norm", () => {
  it("takes the norm of float64 gradients in float64", async () => {
    const values = [Array.from({ length: 7 }, (_, i) => 1 / 3 + i * 0.1234567891), Array.from({ length: 5 }, (_, i) => -Math.PI / (i + 1))];
    const params = values.map((v) => {
      const p = new Parameter(
        tensor(
          v.map(() => 0),
          [v.length],
          "float64",
        ),
      );
      p.grad = tensor(v, [v.length], "float64");
      return p;
    });
    clipGradients(params, 0.5, "norm");
    const norm = Math.sqrt(values.flat().reduce((s, g) => s + g * g, 0));
    const coef = Math.min(1, 0.5 / (norm + 1e-6));
    for (const [i, p] of params.entries()) {
      expect(p.grad!.dtype).toBe("float64");
      const clipped = Array.from(await p.grad!.data());
      // A norm taken in float32 is off by ~1e-8 relative; float64 agrees to a few ulps.
      clipped.forEach((g, k) => expect(Math.abs(g - values[i]![k]! * coef)).toBeLessThanOrEqual(4e-16 * Math.abs(values[i]![k]! * coef)));
    }
  });

  it("keeps float32 gradients in float32", () => {
    const p = new Parameter(tensor([0, 0], [2]));
    p.grad = tensor([3, 4], [2]);
    clipGradients([p], 1, "norm");
    expect(p.grad.dtype).toBe("float32");
  });
});

describe("type promotion with 0-dim tensors, as torch.result_type", () => {
  it("gives a dimensioned tensor priority over a 0-dim tensor of the same category", async () => {
    const x = tensor([1.5, 2.5], [2], "bfloat16");
    const s = tensor(1.01, [], "float32");
    expect(x.add(s).dtype).toBe("bfloat16");
    expect(s.mul(x).dtype).toBe("bfloat16");
    expect(tensor([1, 2], [2], "float16").sub(tensor(1, [], "float64")).dtype).toBe("float16");
    expect(tensor([1, 2], [2], "int8").add(tensor(3, [], "int32")).dtype).toBe("int8");
    // The 0-dim operand is cast to the tensor's dtype first: 1.5 + bf16(1.01) = 2.5078125, exact in bf16.
    expect(Array.from(await x.add(s).data())).toEqual([2.5, 3.5]);
  });

  it("lets a 0-dim tensor of a higher category win: a 0-dim float with an integer tensor gives the float", () => {
    expect(tensor([1, 2], [2], "int32").add(tensor(0.5, [], "float32")).dtype).toBe("float32");
    expect(tensor([1, 2], [2], "int32").mul(tensor(0.5, [], "float16")).dtype).toBe("float16");
    expect(tensor([1, 0], [2], "bool").add(tensor(3, [], "int32")).dtype).toBe("int32");
  });

  it("promotes as before when both or neither operand has dimensions", () => {
    expect(tensor([1, 2], [2], "bfloat16").add(tensor([1, 2], [2], "float32")).dtype).toBe("float32");
    expect(tensor(1, [], "bfloat16").add(tensor(1, [], "float16")).dtype).toBe("float32");
  });
});

describe("16-bit reductions and softmax accumulate in float32 and round once", () => {
  const g = new Generator(15);
  const rows = Array.from({ length: 4 * 16 }, () => g.normal() * 3);
  /** Exact (float64) per-row results, rounded once into `dtype`. */
  const rounded = (dtype: HalfDType, f: (row: number[]) => number[]) => {
    const input = rows.map((v) => roundScalar(v, dtype));
    return Array.from({ length: 4 }, (_, r) => f(input.slice(r * 16, r * 16 + 16)))
      .flat()
      .map((v) => roundScalar(v, dtype));
  };
  const softmax = (row: number[]) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  };

  it("float16 mean of 70,000 ones is 1, not Inf (a float16 sum of them is Inf, as in PyTorch)", async () => {
    expect(await ones([70_000], "float16").mean().item()).toBe(1);
    expect(await ones([70_000], "float16").sum().item()).toBe(Infinity);
    expect(ones([70_000], "float16").mean().dtype).toBe("float16");
  });

  it("bfloat16 mean of three 1.01 values is 1.0078125", async () => {
    const x = tensor([1.01, 1.01, 1.01], [3], "bfloat16");
    expect(await x.mean().item()).toBe(1.0078125);
    expect(Array.from(await tensor([1.01, 1.01, 1.01, 1.01, 1.01, 1.01], [2, 3], "bfloat16").mean(1).data())).toEqual([1.0078125, 1.0078125]);
  });

  it("bfloat16 sum adds 1 and four 2^-8 to 1.015625 (a bfloat16 running sum stays at 1)", async () => {
    expect(
      await tensor([1, 2 ** -8, 2 ** -8, 2 ** -8, 2 ** -8], [5], "bfloat16")
        .sum()
        .item(),
    ).toBe(1.015625);
  });

  for (const dtype of ["float16", "bfloat16"] as const) {
    it(`${dtype} softmax, logSoftmax and layerNorm match the exact result rounded once`, async () => {
      const x = tensor(rows, [4, 16], dtype);
      expect(Array.from(await x.softmax(1).data())).toEqual(rounded(dtype, softmax));
      expect(Array.from(await x.logSoftmax(1).data())).toEqual(rounded(dtype, (row) => softmax(row).map(Math.log)));
      const norm = (row: number[]) => {
        const mu = row.reduce((a, b) => a + b, 0) / row.length;
        const variance = row.reduce((a, v) => a + (v - mu) ** 2, 0) / row.length;
        return row.map((v) => ((v - mu) / Math.sqrt(variance + 1e-5)) * 0.5 + 0.25);
      };
      const y = layerNorm(x, tensor(Array(16).fill(0.5), [16], dtype), tensor(Array(16).fill(0.25), [16], dtype));
      expect(y.dtype).toBe(dtype);
      expect(Array.from(await y.data())).toEqual(rounded(dtype, norm));
    });
  }
});
