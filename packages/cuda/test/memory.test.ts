import { DataLoader, ModelSummary, Trainer } from "@nbit/core";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { TinyClassifier, tinyClassification } from "@nbit/conformance";
import { beforeAll, describe, expect, it } from "vitest";
import { CudaAccelerator } from "../src/index.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});
const data = tinyClassification();

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
      const model = trainer.initModule(() => new TinyClassifier());
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
