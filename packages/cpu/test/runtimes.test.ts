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
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { CpuAccelerator } from "../src/index.js";

interface NativeSession {
  loadModel(...args: unknown[]): void;
  dispose(): void;
}
// Every onnxruntime session, the ones onnxruntime-node's InferenceSession.create makes and the ones
// nbit's backend makes through the binding directly, is one of the binding's native sessions.
const bindingModule = createRequire(import.meta.url)("onnxruntime-node/dist/binding.js") as { binding: { InferenceSession: new () => NativeSession } };

/** Counts onnxruntime sessions loaded and not yet disposed, by subclassing the binding's native session. */
function countSessions() {
  const counts = { open: 0, created: 0 };
  const Native = bindingModule.binding.InferenceSession;
  bindingModule.binding.InferenceSession = class extends Native {
    override loadModel(...args: unknown[]) {
      super.loadModel(...args);
      counts.open++;
      counts.created++;
    }
    override dispose() {
      super.dispose();
      counts.open--;
    }
  };
  return { counts, restore: () => void (bindingModule.binding.InferenceSession = Native) };
}

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
      return t.fit(
        t.initModule(() => new Net()),
        new DataLoader(data, { batchSize: 8, shuffle: true, seed }),
      );
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

  it("releases every onnxruntime session on dispose(), and refuses to read its tensors afterwards", async () => {
    const { counts, restore } = countSessions();
    try {
      const t = trainer(new CpuAccelerator({ threads: 1 }), "bf16-mixed");
      manualSeed(1);
      const model = t.initModule(() => new Net());
      await t.fit(model, new DataLoader(data, { batchSize: 8 }));
      expect(counts.created).toBeGreaterThan(0);
      expect(counts.open).toBe(counts.created);
      await t.dispose();
      expect(counts.open).toBe(0);
      expect(t.runtime.cacheStats().size).toBe(0);
      await expect(model.parameters()[0]!.data()).rejects.toMatchObject({ code: "RUNTIME_DISPOSED" });
      await t.dispose(); // a second call does nothing
    } finally {
      restore();
    }
  });

  it("releases the sessions of Trainers dropped without dispose() once they are collected", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const { counts, restore } = countSessions();
    try {
      // A helper, so no frame of this test keeps the last Trainer reachable.
      const fitAndDrop = async (seed: number) => {
        const t = trainer(new CpuAccelerator({ threads: 1 }), "32-true");
        manualSeed(seed);
        await t.fit(
          t.initModule(() => new Net()),
          new DataLoader(data, { batchSize: 8 }),
        );
      };
      for (let i = 0; i < 3; i++) await fitAndDrop(i);
      expect(counts.open).toBeGreaterThanOrEqual(3);
      for (let i = 0; i < 20 && counts.open > 0; i++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(counts.open).toBe(0);
    } finally {
      restore();
    }
  });
});
