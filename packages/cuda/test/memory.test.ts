import {
  Adam,
  crossEntropy,
  DataLoader,
  LightningModule,
  Linear,
  ModelSummary,
  ReLU,
  Sequential,
  TensorDataset,
  Trainer,
  type Batch,
  type Tensor,
} from "@nbit/core";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { CudaAccelerator } from "../src/index.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});
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

describe("memory on cuda (tfjs kernels): what 16-bit parameters really take", () => {
  for (const precision of ["16-true", "bf16-true"] as const) {
    it(`${precision}: parameters and Adam state are held as float32, 4 bytes each, and parameterBytes says so`, async () => {
      const summaries: string[] = [];
      const callbacks = [new ModelSummary({ write: (text) => summaries.push(text) })];
      const trainer = new Trainer({
        accelerator: new CudaAccelerator("tfjs-cpu"),
        precision,
        maxEpochs: 1,
        logger: false,
        enableProgressBar: false,
        enableCheckpointing: false,
        callbacks,
      });
      const model = trainer.initModule(() => new Small());
      // In host memory, before the run places them, the 16-bit values take 2 bytes each.
      expect(model.parameterBytes()).toBe(67 * 2);
      await trainer.fit(model, new DataLoader(data, { batchSize: 4 }));
      expect(model.dtype).toBe(precision === "16-true" ? "float16" : "bfloat16");
      expect(model.parameterBytes()).toBe(67 * 4);
      expect(model.net.parameterBytes()).toBe(67 * 4);
      expect(trainer.optimizer!.stateBytes()).toBe(2 * 67 * 4);
      // The summary printed at fit start, before the parameters were placed, already says what cuda holds.
      expect(summaries[0]).toMatch(/268 B\s+Total parameter bytes \(as held\)/);
      expect(summaries[0]).toMatch(/\|\s*net\s*\|\s*Sequential\s*\|\s*67\s*\|[^|]*\|\s*268 B/);
    });
  }
});
