import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect } from "vitest";
import {
  Adam,
  ComplexDTypeError,
  ComplexParameter,
  ComplexTensor,
  DTypeError,
  DataLoader,
  Generator,
  LightningModule,
  Module,
  Parameter,
  ReferenceBackend,
  Runtime,
  SGD,
  TensorDataset,
  Trainer,
  complex,
  complexNormalParameter,
  complexTensor,
  complexZeros,
  decodeSafetensors,
  precisionPluginFor,
  referenceAccelerator,
  tensor,
  viewAsComplex,
  viewAsReal,
  withParamDType,
  type Batch,
  type Tensor,
} from "../src/index.js";
import { itOn } from "./scoped.js";

let runtime: Runtime;
beforeEach(() => {
  runtime = new Runtime(new ReferenceBackend());
});
const it = itOn(() => runtime);

type C = [number, number];
const values = async (z: ComplexTensor): Promise<C[]> => {
  const { real, imag } = await z.data();
  return Array.from(real, (r, i) => [r, imag[i]!]);
};
const c128 = (zs: readonly C[], shape?: number[]) =>
  complexTensor(
    zs.map((z) => z[0]),
    zs.map((z) => z[1]),
    shape ?? [zs.length],
    "complex128",
  );

/** Smith's division in double, in c10::complex's operation order. */
function smith([a, b]: C, [c, d]: C): C {
  if (Math.abs(c) >= Math.abs(d)) {
    if (c === 0 && d === 0) return [a / Math.abs(c), b / Math.abs(d)];
    const rat = d / c;
    const scl = 1 / (c + d * rat);
    return [(a + b * rat) * scl, (b - a * rat) * scl];
  }
  const rat = c / d;
  const scl = 1 / (d + c * rat);
  return [(a * rat + b) * scl, (b * rat - a) * scl];
}

describe("complex dtypes", () => {
  it("follow the precision's parameter dtype: complex128 under 64-true, complex64 under 32-true and mixed", () => {
    expect(precisionPluginFor("64-true").initContext(() => complexZeros([2]).dtype)).toBe("complex128");
    expect(precisionPluginFor("32-true").initContext(() => complexTensor([1], [2]).dtype)).toBe("complex64");
    for (const mixed of ["16-mixed", "bf16-mixed"] as const)
      expect(precisionPluginFor(mixed).initContext(() => complexNormalParameter([2], 1).dtype)).toBe("complex64");
    expect(complexZeros([1]).dtype).toBe("complex64");
    const w = precisionPluginFor("64-true").initContext(() => complexNormalParameter([3], 1));
    expect([w.real.dtype, w.imag.dtype]).toEqual(["float64", "float64"]);
    // An explicit dtype wins.
    expect(withParamDType("float64", () => complexZeros([1], "complex64").dtype)).toBe("complex64");
  });

  it("draw normal parameters with E|z|² = std², split evenly between the parts (torch.randn's convention)", async () => {
    const w = complexNormalParameter([20000], 2, { dtype: "complex128", generator: new Generator(7) });
    const { real, imag } = await w.data();
    const meanSq = (v: Float32Array | Float64Array) => Array.from(v).reduce((s, x) => s + x * x, 0) / v.length;
    expect(meanSq(real)).toBeCloseTo(2, 1);
    expect(meanSq(imag)).toBeCloseTo(2, 1);
    expect(meanSq(real) + meanSq(imag)).toBeCloseTo(4, 1);
  });

  it("refuse 16-bit precisions and 16-bit parts with a typed error", () => {
    for (const precision of ["16-true", "bf16-true"] as const) {
      expect(() => precisionPluginFor(precision).initContext(() => complexNormalParameter([2], 1))).toThrow(ComplexDTypeError);
    }
    expect(() => precisionPluginFor("16-true").initContext(() => complexZeros([1]))).toThrow(
      /parameter dtype, here "float16", which has no complex dtype.*"complex64" \(float32 parts\) or "complex128" \(float64 parts\), got "float16"/,
    );
    expect(() => complex(tensor([1], [1], "bfloat16"), tensor([1], [1], "bfloat16"))).toThrow(ComplexDTypeError);
    expect(() => complexZeros([1], "complex32" as never)).toThrow(/got "complex32"/);
    expect(() => complex(tensor([1], [1], "float32"), tensor([1], [1], "float64"))).toThrow(DTypeError);
  });
});

describe("complex arithmetic", () => {
  const x: C[] = [
    [1.5, -2.25],
    [0.1, 0.7],
    [-3, 0.5],
    [2, 0],
    [1e-3, 4],
  ];
  const y: C[] = [
    [0.3, 1.1],
    [-2, 0.25],
    [0.5, -7],
    [0, 0],
    [6, 1e-3],
  ];

  it("adds, subtracts, multiplies and conjugates exactly as in double arithmetic", async () => {
    const [a, b] = [c128(x), c128(y)];
    expect(await values(a.add(b))).toEqual(x.map(([p, q], i) => [p + y[i]![0], q + y[i]![1]]));
    expect(await values(a.sub(b))).toEqual(x.map(([p, q], i) => [p - y[i]![0], q - y[i]![1]]));
    expect(await values(a.mul(b))).toEqual(x.map(([p, q], i) => [p * y[i]![0] - q * y[i]![1], p * y[i]![1] + q * y[i]![0]]));
    expect(await values(a.conj())).toEqual(x.map(([p, q]) => [p, -q]));
    expect(await values(a.neg())).toEqual(x.map(([p, q]) => [-p, -q]));
    // Real operands have imaginary part zero, and a float64 real operand promotes complex64 to complex128.
    const t = tensor([2, 3, 4, 5, 6], [5], "float64");
    expect(await values(a.mul(t))).toEqual(x.map(([p, q], i) => [p * (i + 2), q * (i + 2)]));
    expect(await values(a.add(1))).toEqual(x.map(([p, q]) => [p + 1, q]));
    expect(complexZeros([5], "complex64").add(t).dtype).toBe("complex128");
  });

  it("divides by Smith's algorithm, both branches and by zero as c10::complex does", async () => {
    const got = await values(c128(x).div(c128(y)));
    got.forEach((z, i) => expect(z).toEqual(smith(x[i]!, y[i]!)));
    expect(got[3]).toEqual([Infinity, NaN]); // (2 + 0i) / 0
    // No overflow where c² + d² would overflow.
    expect(await values(c128([[1e300, 1e300]]).div(c128([[1e300, 1e300]])))).toEqual([[1, 0]]);
  });

  it("takes |z| as hypot, without overflow or underflow, in the parts' dtype", async () => {
    const z = complexTensor([3, 1e30, 1e-30, 0, -Infinity, 5e-39], [4, 1e30, 1e-30, 0, 1, 0], [6], "complex64");
    const abs = z.abs();
    expect(abs.dtype).toBe("float32");
    const got = Array.from(await abs.data());
    const want = [5, Math.hypot(1e30, 1e30), Math.hypot(1e-30, 1e-30), 0, Infinity, 5e-39].map(Math.fround);
    got.forEach((v, i) => (want[i] === Infinity ? expect(v).toBe(Infinity) : expect(Math.abs(v - want[i]!)).toBeLessThanOrEqual(want[i]! * 2 ** -23)));
    expect(Array.from(await c128(x).abs().data())).toEqual(x.map(([p, q]) => Math.sqrt(p * p + q * q)));
  });

  it("multiplies matrices, sums, averages, reshapes and transposes", async () => {
    const g = new Generator(3);
    const rnd = (n: number): C[] => Array.from({ length: n }, () => [g.normal(), g.normal()]);
    const [A, B] = [rnd(6), rnd(12)];
    const prod = await values(c128(A, [2, 3]).matmul(c128(B, [3, 4])));
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++) {
        let [re, im] = [0, 0];
        for (let k = 0; k < 3; k++) {
          const [a, b] = A[i * 3 + k]!;
          const [c, d] = B[k * 4 + j]!;
          re += a * c - b * d;
          im += a * d + b * c;
        }
        expect(prod[i * 4 + j]![0]).toBeCloseTo(re, 14);
        expect(prod[i * 4 + j]![1]).toBeCloseTo(im, 14);
      }
    const m = c128(A, [2, 3]);
    expect(await values(m.sum())).toEqual(
      [[A.reduce((s, z) => s + z[0], 0), A.reduce((s, z) => s + z[1], 0)]].map(([r, i]) => [expect.closeTo(r!, 14), expect.closeTo(i!, 14)]),
    );
    const colMean = await values(m.mean(0));
    colMean.forEach(([r, i], j) => {
      expect(r).toBeCloseTo((A[j]![0] + A[3 + j]![0]) / 2, 15);
      expect(i).toBeCloseTo((A[j]![1] + A[3 + j]![1]) / 2, 15);
    });
    expect(await values(m.T)).toEqual([0, 3, 1, 4, 2, 5].map((k) => A[k]));
    expect(await values(m.H)).toEqual([0, 3, 1, 4, 2, 5].map((k) => [A[k]![0], -A[k]![1]]));
    expect(m.reshape([3, 2]).shape).toEqual([3, 2]);
    expect(Array.from(await m.real.data())).toEqual(A.map((z) => z[0]));
    expect(Array.from(await m.imag.data())).toEqual(A.map((z) => z[1]));
    // view_as_real / view_as_complex round-trip.
    const asReal = viewAsReal(m);
    expect(asReal.shape).toEqual([2, 3, 2]);
    expect(Array.from(await asReal.data())).toEqual(A.flat());
    expect(await values(viewAsComplex(asReal))).toEqual(A);
  });

  it("leaves complex matmul out of autocast, as PyTorch autocasts only floating-point tensors", () => {
    const plugin = precisionPluginFor("16-mixed");
    const out = plugin.forwardContext(() => complexZeros([2, 2], "complex64").matmul(complexZeros([2, 2], "complex64")));
    expect(out.dtype).toBe("complex64");
  });
});

describe("complex autograd (PyTorch's convention: z.grad = dL/dx + i dL/dy)", () => {
  /** Central differences of the real loss `f` with respect to each real and imaginary part of W. */
  async function check(f: (w: ComplexTensor) => Tensor, w0: readonly C[], shape: number[]) {
    const w = c128(w0, shape).requireGrad();
    f(w).backward();
    const grad = await values(w.grad!);
    const h = 1e-6;
    const at = async (k: number, part: 0 | 1, delta: number) => {
      const moved = w0.map((z, i) => (i === k ? (part === 0 ? [z[0] + delta, z[1]] : [z[0], z[1] + delta]) : z)) as C[];
      return f(c128(moved, shape)).item();
    };
    for (let k = 0; k < w0.length; k++)
      for (const part of [0, 1] as const) {
        const fd = ((await at(k, part, h)) - (await at(k, part, -h))) / (2 * h);
        expect(Math.abs(grad[k]![part] - fd)).toBeLessThan(1e-7 * Math.max(1, Math.abs(fd)));
      }
    return grad;
  }

  const W: C[] = [
    [0.3, -1.2],
    [2.1, 0.4],
    [-0.7, 0.9],
    [1.5, 1.5],
    [-0.2, -2.2],
    [0.8, 0.05],
  ];
  const X = c128(
    [
      [1, 0.5],
      [-0.3, 2],
      [0.7, -1.1],
      [2, 0.2],
      [-1, -1],
      [0.4, 0.6],
    ],
    [3, 2],
  );
  // Divisors with |c| > |d| and |c| < |d|, so both of Smith's branches are differentiated.
  const D = c128(
    [
      [2, 0.5],
      [0.3, -1.7],
      [-0.4, 3],
      [1.9, -0.1],
    ],
    [2, 2],
  );
  const T = c128(
    [
      [1, 1],
      [0, -1],
      [2, 0],
      [-1, 0.5],
    ],
    [2, 2],
  );

  it("matches float64 finite differences through matmul, div, abs, conj, mean, sum and real/imag", async () => {
    await check((w) => w.matmul(X).div(D).sub(T).abs().square().mean(), W, [2, 3]);
    await check(
      (w) =>
        w
          .conj()
          .mul(w.T.matmul(D).mean(1).reshape([1, 3]))
          .real.sum()
          .add(w.sum().imag),
      W,
      [2, 3],
    );
    await check(
      (w) =>
        D.div(
          w
            .reshape([3, 2])
            .matmul(D)
            .sum(0, true)
            .add(complexTensor(3, 1, [], "complex128")),
        )
          .abs()
          .sum(),
      W,
      [2, 3],
    );
    await check((w) => viewAsReal(w.mul(w)).square().sum(), W, [2, 3]);
  });

  it("gives 2z for |z|², sgn(z) for |z| and 0 for |z| at 0", async () => {
    const zs: C[] = [
      [3, -4],
      [0, 0],
      [-1, 2],
    ];
    const z = c128(zs).requireGrad();
    z.mul(z.conj()).real.sum().backward();
    expect(await values(z.grad!)).toEqual(zs.map(([a, b]) => [2 * a, 2 * b]));
    const y = c128(zs).requireGrad();
    y.abs().sum().backward();
    expect(await values(y.grad!)).toEqual([
      [0.6, -0.8],
      [0, 0],
      [-1 / Math.sqrt(5), 2 / Math.sqrt(5)],
    ]);
  });

  it("backpropagates a complex gradient G of out = c z as G conj(c), and needs one for a complex output", async () => {
    const z = c128([
      [1, 2],
      [3, -1],
    ]).requireGrad();
    const c = c128([
      [0.5, -2],
      [1, 1],
    ]);
    const G = c128([
      [1, 0],
      [-2, 3],
    ]);
    z.mul(c).backward(G);
    const want = (await values(G.mul(c.conj()))) as C[];
    expect(await values(z.grad!)).toEqual(want);
    expect(() => z.mul(c).backward()).toThrow(/real scalar output/);
  });
});

/** Learns an elementwise complex gain g: pred = g ⊙ x, with the mean of |pred - y| as loss. */
class ComplexGain extends LightningModule {
  readonly g = complexNormalParameter([4], 1);

  /** x: [batch, 4, 2], the real view of complex inputs; returns the real view of g ⊙ x. */
  forward(x: Tensor): Tensor {
    return viewAsReal(viewAsComplex(x).mul(this.g));
  }
  trainingStep([x, y]: Batch) {
    return viewAsComplex(this.forward(x!)).sub(viewAsComplex(y!)).abs().mean();
  }
  configureOptimizers() {
    return new Adam(this.parameters(), { lr: 0.05 });
  }
}

/** Inputs x and targets y = g ⊙ x for g = (1 - 2i, 0.5 + 0.5i, -1, 3i), as real views [n, 4, 2]. */
const GAIN: C[] = [
  [1, -2],
  [0.5, 0.5],
  [-1, 0],
  [0, 3],
];

function gainData(n: number): TensorDataset {
  const gen = new Generator(11);
  const xs = Array.from({ length: n * 4 }, () => [gen.normal(), gen.normal()] as C);
  const ys = xs.map(([a, b], i) => {
    const [c, d] = GAIN[i % 4]!;
    return [a * c - b * d, a * d + b * c];
  });
  return new TensorDataset({ data: xs.flat(), sampleShape: [4, 2], dtype: "float64" }, { data: ys.flat(), sampleShape: [4, 2], dtype: "float64" });
}

describe("complex parameters", () => {
  it("are listed as <name>.real and <name>.imag, and state dicts round-trip", async () => {
    const model = withParamDType("float64", () => new ComplexGain());
    expect([...model.namedParameters()].map(([n, p]) => `${n}:${p.dtype}`)).toEqual(["g.real:float64", "g.imag:float64"]);
    expect(model.parameterCount()).toBe(8);
    const copy = withParamDType("float64", () => new ComplexGain());
    const state = Object.fromEntries(
      await Promise.all(Object.entries(model.stateDict()).map(async ([k, t]) => [k, { data: await t.toHost(), shape: t.shape, dtype: t.dtype }] as const)),
    );
    copy.loadStateDict(state);
    expect(await values(copy.g)).toEqual(await values(model.g));
  });

  it("take the same optimizer steps as their real view would (PyTorch's optimizers use view_as_real)", async () => {
    const zs: C[] = [
      [0.5, -1],
      [2, 0.25],
      [-0.75, 1.5],
    ];
    const grads: C[] = [
      [0.1, 0.2],
      [-0.3, 0.05],
      [1, -2],
    ];
    const w = new ComplexParameter(c128(zs));
    const v = new Parameter(tensor(zs.flat(), [3, 2], "float64"));
    const [opt1, opt2] = [new Adam([w.real, w.imag], { lr: 0.1, weightDecay: 0.01 }), new Adam([v], { lr: 0.1, weightDecay: 0.01 })];
    for (let step = 0; step < 3; step++) {
      w.real.grad = tensor(
        grads.map((z) => z[0] * (step + 1)),
        [3],
        "float64",
      );
      w.imag.grad = tensor(
        grads.map((z) => z[1] * (step + 1)),
        [3],
        "float64",
      );
      v.grad = tensor(
        grads.flat().map((g) => g * (step + 1)),
        [3, 2],
        "float64",
      );
      opt1.step();
      opt2.step();
    }
    expect((await values(w)).flat()).toEqual(Array.from(await v.data()));
  });

  it("refuse 16-bit casts of their module, so 16-true and bf16-true refuse a complex model", () => {
    const model = new ComplexGain();
    expect(() => model.to("bfloat16")).toThrow(ComplexDTypeError);
    expect(() => precisionPluginFor("16-true").convertModule(model)).toThrow(/Module.to\("float16"\): the module holds complex parameters/);
    expect(model.g.dtype).toBe("complex64");
    expect(model.to("float64").g.dtype).toBe("complex128");
  });
});

describe("a complex model trained in 64-true on the reference backend", () => {
  it("learns g (loss down 100-fold, g within 0.05), and its checkpoint stores the parts as g.real / g.imag (F64) and restores them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-complex-"));
    const options = {
      accelerator: referenceAccelerator(),
      precision: "64-true" as const,
      logger: false as const,
      enableProgressBar: false,
      enableCheckpointing: false,
      seed: 5,
    };
    const trainer = new Trainer({ ...options, maxEpochs: 30 });
    const model = trainer.initModule(() => new ComplexGain());
    expect(model.g.dtype).toBe("complex128");
    await trainer.fit(model, new DataLoader(gainData(32), { batchSize: 8, shuffle: true, seed: 2 }));
    expect(trainer.losses.at(-1)!).toBeLessThan(trainer.losses[0]! / 100);
    const learned = await values(model.g);
    learned.forEach(([re, im], i) => expect(Math.hypot(re - GAIN[i]![0], im - GAIN[i]![1])).toBeLessThan(0.05));

    const path = join(dir, "complex.safetensors");
    await trainer.saveCheckpoint(path);
    const { tensors } = decodeSafetensors(readFileSync(path));
    expect([tensors["g.real"]!.dtype, tensors["g.imag"]!.dtype]).toEqual(["float64", "float64"]);
    expect(Array.from(tensors["g.imag"]!.data as Float64Array)).toEqual(learned.map((z) => z[1]));
    const resumedTrainer = new Trainer({ ...options, maxEpochs: 30 });
    const resumed = resumedTrainer.initModule(() => new ComplexGain());
    await resumedTrainer.fit(resumed, new DataLoader(gainData(32), { batchSize: 8 }), undefined, { ckptPath: path });
    expect(await values(resumed.g)).toEqual(learned);
  });
});

it("Module keeps finding complex parameters of submodules", () => {
  class Outer extends Module {
    readonly inner = new ComplexGain();
    forward(x: Tensor) {
      return this.inner.forward(x);
    }
  }
  expect([...new Outer().namedParameters()].map(([n]) => n)).toEqual(["inner.g.real", "inner.g.imag"]);
  const opt = new SGD(new Outer().parameters(), { lr: 0.1 });
  expect(opt.params).toHaveLength(2);
});
