import {
  DataLoader,
  Generator,
  LightningModule,
  ReferenceBackend,
  Runtime,
  SGD,
  TensorDataset,
  Trainer,
  complexNormalParameter,
  complexTensor,
  referenceAccelerator,
  viewAsComplex,
  viewAsReal,
  withRuntime,
  type Accelerator,
  type Batch,
  type Tensor,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { CpuAccelerator } from "../src/index.js";

class ComplexMap extends LightningModule {
  readonly w = complexNormalParameter([2, 3], 1);
  forward(x: Tensor): Tensor {
    return viewAsReal(viewAsComplex(x).matmul(this.w.T));
  }
  trainingStep([x, y]: Batch) {
    return this.forward(x!).sub(y!).square().mean();
  }
  configureOptimizers() {
    return new SGD(this.parameters(), { lr: 0.05, momentum: 0.9 });
  }
}

/** Samples of y = W x for a fixed complex W (2x3), as real views [n, 3, 2] and [n, 2, 2]. */
function linearMapData(trueW: readonly (readonly [number, number])[], n: number): TensorDataset {
  const g = new Generator(11);
  const xs: number[] = [];
  const ys: number[] = [];
  for (let s = 0; s < n; s++) {
    const x = Array.from({ length: 3 }, () => [g.normal(), g.normal()] as const);
    xs.push(...x.flat());
    for (let o = 0; o < 2; o++) {
      const terms = x.map(([xr, xi], k) => [trueW[o * 3 + k]![0], trueW[o * 3 + k]![1], xr, xi] as const);
      ys.push(
        terms.reduce((acc, [a, b, c, d]) => acc + a * c - b * d, 0),
        terms.reduce((acc, [a, b, c, d]) => acc + a * d + b * c, 0),
      );
    }
  }
  return new TensorDataset({ data: xs, sampleShape: [3, 2], dtype: "float64" }, { data: ys, sampleShape: [2, 2], dtype: "float64" });
}

describe("complex numbers on the cpu backend", () => {
  it("fit a complex linear map y = W x in 64-true as on the reference backend: loss down a million-fold, W within 1e-3", async () => {
    const trueW = [
      [1, -0.5],
      [0.25, 2],
      [-1.5, 0.75],
      [0.5, 0.5],
      [-1, 0],
      [2, -1],
    ] as const;
    const train = async (accelerator: Accelerator) => {
      const trainer = new Trainer({
        accelerator,
        precision: "64-true",
        maxEpochs: 40,
        seed: 5,
        logger: false,
        enableProgressBar: false,
        enableCheckpointing: false,
      });
      const model = trainer.initModule(() => new ComplexMap());
      expect(model.w.dtype).toBe("complex128");
      await trainer.fit(model, new DataLoader(linearMapData(trueW, 64), { batchSize: 16, shuffle: true, seed: 2 }));
      return { losses: trainer.losses, w: await model.w.data() };
    };
    const onCpu = await train(new CpuAccelerator({ threads: 2 }));
    const onReference = await train(referenceAccelerator());
    for (const { losses, w } of [onCpu, onReference]) {
      expect(losses.at(-1)!).toBeLessThan(losses[0]! * 1e-6);
      expect(w.real).toBeInstanceOf(Float64Array);
      trueW.forEach(([re, im], i) => expect(Math.hypot(w.real[i]! - re, w.imag[i]! - im)).toBeLessThan(1e-3));
    }
    onCpu.losses.forEach((l, i) => expect(Math.abs(l - onReference.losses[i]!)).toBeLessThanOrEqual(1e-9 * onReference.losses[i]!));
  });

  it("run division and |z| as real ops with the reference backend's bits (complex64)", async () => {
    const backend = new CpuAccelerator({ threads: 2 }).createBackend();
    const cpu = new Runtime(backend);
    const ref = new Runtime(new ReferenceBackend());
    const run = async (runtime: Runtime) => {
      const a = complexTensor([1.5, -2, 1e30, 0.1, 3], [0.25, 7, 1e30, -0.7, 0], [5], "complex64");
      const b = complexTensor([0.3, -0.5, 2e-30, 0, 4], [1.1, 0.25, 1e-30, 0, -2], [5], "complex64");
      const q = a.div(b);
      const parts = [q.real, q.imag, a.abs(), b.abs()];
      return withRuntime(runtime, async () => Promise.all(parts.map(async (t) => Array.from(await t.data()))));
    };
    const [onCpu, onRef] = [await run(cpu), await run(ref)];
    expect(backend.sessionsCreated).toBeGreaterThan(0);
    expect(onCpu).toEqual(onRef);
    expect(onRef[0]![3]).toBe(Infinity); // 0.1 / (0 + 0i): real part 0.1 / 0
  });
});
