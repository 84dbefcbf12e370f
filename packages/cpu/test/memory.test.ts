import { DataLoader, Linear, ReLU, realize, Runtime, Sequential, Trainer, withRuntime } from "@nbit/core";
import { TinyClassifier, tinyClassification } from "@nbit/conformance";
import { describe, expect, it } from "vitest";
import { CpuAccelerator } from "../src/index.js";

const data = tinyClassification();

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
    const model = trainer.initModule(() => new TinyClassifier());
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
