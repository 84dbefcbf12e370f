import {
  Adam,
  crossEntropy,
  DataLoader,
  LightningModule,
  Linear,
  ReLU,
  realize,
  Runtime,
  Sequential,
  TensorDataset,
  Trainer,
  withRuntime,
  type Batch,
  type Tensor,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { CpuAccelerator } from "../src/index.js";

/** 67 parameters: Linear(4, 8) and Linear(8, 3). */
class Small extends LightningModule {
  readonly net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return new Adam(this.parameters(), { lr: 0.01 });
  }
}
const data = new TensorDataset(
  { data: Array.from({ length: 32 }, (_, i) => Math.sin(i)), sampleShape: [4] },
  { data: [0, 1, 2, 0, 1, 2, 0, 1], sampleShape: [], dtype: "int32" },
);

describe("memory on cpu (onnxruntime): 16-bit floats are held as float32", () => {
  it("bf16-mixed keeps float32 parameters: 4 bytes each", async () => {
    const trainer = new Trainer({
      accelerator: new CpuAccelerator({ threads: 1 }),
      precision: "bf16-mixed",
      maxEpochs: 1,
      logger: false,
      enableProgressBar: false,
      enableCheckpointing: false,
    });
    const model = trainer.initModule(() => new Small());
    await trainer.fit(model, new DataLoader(data, { batchSize: 4 }));
    expect(model.parameterBytes()).toBe(67 * 4);
    expect(trainer.optimizer!.stateBytes()).toBe(2 * 67 * 4);
  });

  it("bfloat16 parameters placed on the backend take 4 bytes each, not 2", async () => {
    const net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3)).to("bfloat16");
    expect(net.parameterBytes()).toBe(67 * 2);
    const backend = new CpuAccelerator({ threads: 1 }).createBackend();
    expect(net.parameterBytes(backend.capabilities.storage)).toBe(67 * 4);
    await withRuntime(new Runtime(backend), () => realize(net.parameters()));
    expect(net.device).toBe(backend.name);
    expect(net.parameterBytes()).toBe(67 * 4);
  });
});
