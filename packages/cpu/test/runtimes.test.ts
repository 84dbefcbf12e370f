import {
  crossEntropy,
  DataLoader,
  Generator,
  LightningModule,
  Linear,
  manualSeed,
  referenceAccelerator,
  ReLU,
  Sequential,
  SGD,
  TensorDataset,
  Trainer,
  type Accelerator,
  type Batch,
  type Precision,
  type Tensor,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { CpuAccelerator } from "../src/index.js";

class Net extends LightningModule {
  readonly net = new Sequential(new Linear(8, 32), new ReLU(), new Linear(32, 3));
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return new SGD(this.parameters(), { lr: 0.1, momentum: 0.9 });
  }
}

const g = new Generator(5);
const data = new TensorDataset(
  { data: Array.from({ length: 64 * 8 }, () => g.normal()), sampleShape: [8] },
  { data: Array.from({ length: 64 }, (_, i) => i % 3), sampleShape: [], dtype: "int32" },
);
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function trainer(accelerator: Accelerator, precision: Precision) {
  // Every batch ends with an await, so two concurrent fits interleave step by step.
  const callbacks = [{ onTrainBatchEnd: tick }];
  return new Trainer({ accelerator, precision, maxEpochs: 3, logger: false, enableProgressBar: false, enableCheckpointing: false, callbacks });
}

describe("one runtime per Trainer", () => {
  it("trains a cpu and a reference Trainer concurrently, interleaved, to exactly their solo losses", async () => {
    const setups = [
      { make: () => trainer(new CpuAccelerator({ threads: 1 }), "bf16-mixed"), seed: 1 },
      { make: () => trainer(referenceAccelerator(), "32-true"), seed: 2 },
    ];
    const start = (t: Trainer, seed: number) => {
      manualSeed(seed);
      return t.fit(t.initModule(() => new Net()), new DataLoader(data, { batchSize: 8, shuffle: true, seed }));
    };
    const solo: number[][] = [];
    for (const { make, seed } of setups) {
      const t = make();
      await start(t, seed);
      solo.push([...t.losses]);
    }
    const together = setups.map(({ make }) => make());
    await Promise.all(together.map((t, i) => start(t, setups[i]!.seed)));
    expect(together.map((t) => t.losses)).toEqual(solo);
    // Different backends and precisions: training on the other Trainer's runtime would show in the losses.
    expect(solo[0]).not.toEqual(solo[1]);
  });
});
