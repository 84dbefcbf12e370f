import {
  crossEntropy,
  DataLoader,
  Generator,
  LightningModule,
  Linear,
  manualSeed,
  ReLU,
  Sequential,
  SGD,
  TensorDataset,
  Trainer,
  type Batch,
  type Callback,
  type Tensor,
} from "@nbit/core";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { CudaAccelerator } from "../src/index.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

class Net extends LightningModule {
  readonly net = new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 3));
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

const g = new Generator(2);
const data = new TensorDataset(
  { data: Array.from({ length: 40 * 8 }, () => g.normal()), sampleShape: [8] },
  { data: Array.from({ length: 40 }, (_, i) => i % 3), sampleShape: [], dtype: "int32" },
);

async function fitOnTfjs(options: { captureSteps?: boolean; maxEpochs?: number; callbacks?: Callback[] } = {}): Promise<Trainer> {
  manualSeed(3);
  const trainer = new Trainer({
    accelerator: new CudaAccelerator("tfjs-cpu"),
    precision: "16-mixed",
    maxEpochs: 2,
    logger: false,
    enableProgressBar: false,
    enableCheckpointing: false,
    ...options,
  });
  await trainer.fit(
    trainer.initModule(() => new Net()),
    new DataLoader(data, { batchSize: 8 }),
  );
  return trainer;
}

async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("these tests need node --expose-gc (see vitest.config.ts)");
  // FinalizationRegistry callbacks run in tasks after a collection: give them a few turns.
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("disposing a Trainer on tfjs", () => {
  it("frees every tfjs tensor it placed: the count returns to its start value", async () => {
    const start = tf.memory().numTensors;
    const trainer = await fitOnTfjs();
    expect(tf.memory().numTensors).toBeGreaterThan(start);
    await trainer.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it("frees them with `await using` at the end of the block", async () => {
    const start = tf.memory().numTensors;
    {
      await using trainer = await fitOnTfjs();
      expect(trainer.losses.length).toBe(10);
    }
    expect(tf.memory().numTensors).toBe(start);
  });

  it("does not leak the tensors of Trainers dropped without dispose()", async () => {
    await collect();
    const start = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) await fitOnTfjs();
    await collect();
    // Before the registry outlived its runtime, each dropped Trainer leaked its last step's tensors (~90 here).
    expect(tf.memory().numTensors - start).toBeLessThanOrEqual(5);
  });

  it("frees every tensor of a Trainer with captured steps, and replays hold no more tensors from step to step", async () => {
    const start = tf.memory().numTensors;
    const counts: number[] = [];
    const count: Callback = {
      async onTrainBatchEnd() {
        await collect();
        counts.push(tf.memory().numTensors);
      },
    };
    const trainer = await fitOnTfjs({ captureSteps: true, maxEpochs: 6, callbacks: [count] });
    expect(trainer.stepCapture!.stats.replayed).toBeGreaterThanOrEqual(25);
    // Live tensors: parameters, momentum buffers, the scaler's inputs and the last step's outputs.
    expect(counts.at(-1)!).toBeLessThanOrEqual(counts[5]! + 2);
    await trainer.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });
});
