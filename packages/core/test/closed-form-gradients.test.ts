import { describe, expect, it } from "vitest";
import { FLOAT_FORMATS, Generator, layerNorm, ReferenceBackend, Runtime, roundToFormat, Tensor, tensor, withRuntime } from "../src/index.js";

// Softmax, layer norm and GELU have hand-written (closed-form) backward passes; these check them
// against float64 central differences, and check that 16-bit inputs still differentiate in float32
// and round once.

const run = <T>(fn: () => Promise<T>): Promise<T> => withRuntime(new Runtime(new ReferenceBackend()), fn);

const randomValues = (n: number, seed: number, scale = 1, shift = 0) => {
  const g = new Generator(seed);
  return Array.from({ length: n }, () => g.normal() * scale + shift);
};

const leaf = (values: number[], shape: number[]) => new Tensor(tensor(values, shape, "float64").node, true);

/**
 * Checks every partial derivative of a float64 function of several leaves against a central
 * difference (L(p + h e_i) - L(p - h e_i)) / 2h, where L = sum(f * target) + mean(f^2).
 */
async function checkGradients(f: (...inputs: Tensor[]) => Tensor, leaves: Tensor[]) {
  const out = f(...leaves);
  const target = tensor(randomValues(out.size, 99), [...out.shape], "float64");
  const loss = () => {
    const y = f(...leaves);
    return y.mul(target).sum().add(y.square().mean());
  };
  loss().backward();
  const h = 1e-6;
  for (const p of leaves) {
    const base = Array.from(await p.data());
    const analytic = Array.from(await p.grad!.data());
    const at = async (i: number, delta: number) => {
      p.node = tensor(
        base.map((v, j) => (j === i ? v + delta : v)),
        p.shape,
        "float64",
      ).node;
      return loss().item();
    };
    const numeric: number[] = [];
    for (let i = 0; i < base.length; i++) numeric.push(((await at(i, h)) - (await at(i, -h))) / (2 * h));
    p.node = tensor(base, p.shape, "float64").node;
    expect(Math.max(...numeric.map(Math.abs))).toBeGreaterThan(1e-2);
    for (let i = 0; i < base.length; i++) expect(Math.abs(analytic[i]! - numeric[i]!)).toBeLessThan(1e-7 * Math.max(1, Math.abs(numeric[i]!)));
  }
}

describe("closed-form gradients match float64 finite differences", () => {
  it("softmax over the innermost axis", async () => {
    await run(() => checkGradients((x) => x.softmax(-1), [leaf(randomValues(3 * 4 * 5, 1, 2), [3, 4, 5])]));
  });

  it("softmax over an outer and a middle axis", async () => {
    await run(async () => {
      await checkGradients((x) => x.softmax(0), [leaf(randomValues(3 * 4 * 5, 2, 2), [3, 4, 5])]);
      await checkGradients((x) => x.softmax(1), [leaf(randomValues(3 * 4 * 5, 3, 2), [3, 4, 5])]);
    });
  });

  it("layer norm with weight and bias (input, weight and bias)", async () => {
    const d = 6;
    await run(() =>
      checkGradients(
        (x, w, b) => layerNorm(x, w, b),
        [leaf(randomValues(2 * 3 * d, 4, 3, 1), [2, 3, d]), leaf(randomValues(d, 5, 0.5, 1), [d]), leaf(randomValues(d, 6), [d])],
      ),
    );
  });

  it("GELU (tanh approximation), across its curved range", async () => {
    await run(() => checkGradients((x) => x.gelu(), [leaf(randomValues(40, 7, 2), [40])]));
  });
});

describe("16-bit inputs differentiate in float32 and round once", () => {
  // With an upstream gradient exactly representable in the 16-bit format, the 16-bit input's
  // gradient is the float32 input's gradient rounded once.
  async function gradient(f: (x: Tensor) => Tensor, values: number[], shape: number[], dtype: "float32" | "bfloat16" | "float16", upstream: number[]) {
    const x = new Tensor(tensor(values, shape, dtype).node, true);
    f(x)
      .mul(tensor(upstream, shape, dtype))
      .sum()
      .backward();
    return Array.from(await x.grad!.data());
  }

  for (const dtype of ["bfloat16", "float16"] as const)
    it(`softmax, layer norm and GELU in ${dtype}`, async () => {
      const format = FLOAT_FORMATS[dtype];
      const shape = [4, 8];
      const values = randomValues(32, 11, 2).map((v) => roundToFormat(v, format));
      const upstream = randomValues(32, 12).map((v) => roundToFormat(v, format));
      const ones = tensor(new Array(8).fill(1), [8], "float32");
      const zeros = tensor(new Array(8).fill(0), [8], "float32");
      const ops: [string, (x: Tensor) => Tensor][] = [
        ["softmax", (x) => x.softmax(-1)],
        ["softmax axis 0", (x) => x.softmax(0)],
        ["layerNorm", (x) => layerNorm(x, ones, zeros)],
        ["gelu", (x) => x.gelu()],
      ];
      await run(async () => {
        for (const [name, f] of ops) {
          const wide = await gradient(f, values, shape, "float32", upstream);
          const narrow = await gradient(f, values, shape, dtype, upstream);
          expect({ name, grad: narrow }).toEqual({ name, grad: wide.map((v) => roundToFormat(v, format)) });
        }
      });
    });
});
