import { DataLoader, Trainer } from "@nbit/core";
import { TinyClassifier, tinyClassification } from "@nbit/conformance";
import { describe, expect, it } from "vitest";
import { TpuAccelerator } from "../src/index.js";

const data = tinyClassification();

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
      const model = trainer.initModule(() => new TinyClassifier());
      await trainer.fit(model, new DataLoader(data, { batchSize: 4 }));
      expect(model.parameterBytes()).toBe(67 * bytes);
      expect(model.net.parameterBytes()).toBe(67 * bytes);
      expect(trainer.optimizer!.stateBytes()).toBe(2 * 67 * bytes);
    });
  }
});
