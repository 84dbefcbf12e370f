import { Adam, crossEntropy, DataLoader, LightningModule, Linear, ReLU, Sequential, TensorDataset, Trainer, type Batch, type Tensor } from "@nbit/core";
import { describe, expect, it } from "vitest";
import { TpuAccelerator } from "../src/index.js";

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

describe("memory on tpu: bf16-true halves what the parameters take", () => {
  for (const [precision, bytes] of [
    ["bf16-true", 2],
    ["32-true", 4],
    ["bf16-mixed", 4],
  ] as const) {
    it(`${precision}: ${bytes} bytes per parameter, also once placed on the backend`, async () => {
      const trainer = new Trainer({
        accelerator: new TpuAccelerator(),
        precision,
        maxEpochs: 1,
        logger: false,
        enableProgressBar: false,
        enableCheckpointing: false,
      });
      const model = trainer.initModule(() => new Small());
      await trainer.fit(model, new DataLoader(data, { batchSize: 4 }));
      expect(model.parameterBytes()).toBe(67 * bytes);
      expect(model.net.parameterBytes()).toBe(67 * bytes);
      expect(trainer.optimizer!.stateBytes()).toBe(2 * 67 * bytes);
    });
  }
});
