import {
  crossEntropy,
  DataLoader,
  Generator,
  LightningModule,
  Linear,
  manualSeed,
  ReferenceBackend,
  referenceAccelerator,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  StepLR,
  TensorDataset,
  tensor,
  Trainer,
  type Accelerator,
  type Batch,
  type Precision,
  type Tensor,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { CpuAccelerator } from "../src/index.js";

class Net extends LightningModule {
  readonly net = new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 3));
  constructor(readonly schedule: "epoch" | "none") {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    const optimizer = new SGD(this.parameters(), { lr: 0.1 });
    if (this.schedule === "none") return optimizer;
    return { optimizer, lrScheduler: { scheduler: new StepLR(optimizer, 1, 0.9), interval: "epoch" as const } };
  }
}

const g = new Generator(9);
const data = new TensorDataset(
  { data: Array.from({ length: 32 * 8 }, () => g.normal()), sampleShape: [8] },
  { data: Array.from({ length: 32 }, (_, i) => i % 3), sampleShape: [], dtype: "int32" },
);

async function fit(accelerator: Accelerator, precision: Precision, schedule: "epoch" | "none", maxEpochs: number, maxSteps = -1) {
  manualSeed(4);
  const trainer = new Trainer({ accelerator, precision, maxEpochs, maxSteps, logger: false, enableProgressBar: false, enableCheckpointing: false });
  const model = trainer.initModule(() => new Net(schedule));
  await trainer.fit(model, new DataLoader(data, { batchSize: 8 }));
  const params = await Promise.all(model.parameters().map(async (p) => Array.from(await p.data())));
  return { trainer, losses: trainer.losses, params: params.flat() };
}

describe("step scalars are program inputs", () => {
  it("a StepLR on an epoch interval over 30 epochs compiles one training program", async () => {
    const { trainer } = await fit(new CpuAccelerator({ threads: 1 }), "32-true", "epoch", 30);
    expect(trainer.globalStep).toBe(120);
    // One training step program, plus the program reading the parameters back.
    expect(trainer.runtime.stats.programsCompiled).toBeLessThanOrEqual(2);
  });

  it("64-true on cpu follows the reference backend's 300-step SGD trajectory within 1e-12", async () => {
    const onCpu = await fit(new CpuAccelerator({ threads: 1 }), "64-true", "epoch", 1000, 300);
    const onReference = await fit(referenceAccelerator(), "64-true", "epoch", 1000, 300);
    expect(onCpu.losses.length).toBe(300);
    const relative = (a: readonly number[], b: readonly number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!) / Math.max(Math.abs(b[i]!), 1e-300)));
    const lossDiff = relative(onCpu.losses, onReference.losses);
    const paramDiff = Math.max(...onCpu.params.map((v, i) => Math.abs(v - onReference.params[i]!))) / Math.max(...onReference.params.map(Math.abs));
    console.info(
      `64-true cpu vs reference, 300 SGD steps: max relative loss difference ${lossDiff.toExponential(2)}, parameters ${paramDiff.toExponential(2)}`,
    );
    expect(lossDiff).toBeLessThanOrEqual(1e-12);
    expect(paramDiff).toBeLessThanOrEqual(1e-12);
  });

  it("a float64 constant scaling a matmul stays float64 (onnxruntime does not fold it into a float32 alpha)", async () => {
    const g = new Generator(1);
    const [a, b] = [Array.from({ length: 32 * 16 }, () => g.normal()), Array.from({ length: 16 * 8 }, () => g.normal())];
    const run = (runtime: Runtime) =>
      runtime.run(async () => {
        const [x, w] = [tensor(a, [32, 16], "float64"), tensor(b, [16, 8], "float64")];
        return Promise.all([x.matmul(w).mul(0.1), x.mul(0.1).matmul(w)].map(async (o) => Array.from(await o.data())));
      });
    const onCpu = await run(new Runtime(new CpuAccelerator({ threads: 1 }).createBackend()));
    const onReference = await run(new Runtime(new ReferenceBackend()));
    onCpu.forEach((values, k) => {
      const scale = Math.max(...onReference[k]!.map(Math.abs));
      // Rounding 0.1 to float32 would show as 1.5e-8; float64 summation order differs by about 1e-16.
      expect(Math.max(...values.map((v, i) => Math.abs(v - onReference[k]![i]!))) / scale).toBeLessThan(1e-13);
    });
  });
});
