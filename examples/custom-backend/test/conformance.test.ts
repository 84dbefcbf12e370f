import { describeBackendConformance } from "@nbit/conformance";
import { accelerators, crossEntropy, DataLoader, LightningModule, Linear, SGD, TensorDataset, Trainer, type Batch, type Tensor } from "@nbit/core";
import { describe, expect, it } from "vitest";
import { NaiveAccelerator, registerNaive } from "../src/index.js";

describeBackendConformance("naive", () => new NaiveAccelerator());

class Tiny extends LightningModule {
  readonly layer = new Linear(2, 2);
  forward(x: Tensor): Tensor {
    return this.layer.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return new SGD(this.parameters(), { lr: 0.5 });
  }
}

describe("the naive backend in a Trainer", () => {
  it("is registered under its own name and trains by name", async () => {
    registerNaive();
    expect(accelerators.get("naive")).toBeInstanceOf(NaiveAccelerator);
    const data = new TensorDataset({ data: [1, 0, 0, 1, 1, 0.2, 0.1, 1], sampleShape: [2] }, { data: [0, 1, 0, 1], sampleShape: [], dtype: "int32" });
    const trainer = new Trainer({
      accelerator: "naive",
      precision: "bf16-mixed",
      maxEpochs: 20,
      logger: false,
      enableProgressBar: false,
      enableCheckpointing: false,
    });
    await trainer.fit(new Tiny(), new DataLoader(data, { batchSize: 4 }));
    expect(trainer.accelerator.name).toBe("naive");
    expect(trainer.losses.at(-1)!).toBeLessThan(trainer.losses[0]! / 2);
  });
});
