import { describe, expect, it } from "vitest";
import { DataLoader, heldBytes, Linear, realize, ReferenceBackend, Runtime, Sequential, tensor, Trainer, withRuntime } from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

describe("module.device and module.dtype", () => {
  it("dtype is the floating parameters' dtype: float32 by default, the precision's inside initModule, the target after to()", () => {
    expect(new Classifier().dtype).toBe("float32");
    expect(new Trainer(quiet({ precision: "bf16-true" })).initModule(() => new Classifier()).dtype).toBe("bfloat16");
    expect(new Trainer(quiet({ precision: "64-true" })).initModule(() => new Classifier()).dtype).toBe("float64");
    expect(new Trainer(quiet({ precision: "16-mixed" })).initModule(() => new Classifier()).dtype).toBe("float32");
    expect(new Sequential(new Linear(2, 2)).to("float16").dtype).toBe("float16");
  });

  it("device is host until parameters are placed, then the backend's name; a LightningModule reports its Trainer's accelerator", async () => {
    const net = new Sequential(new Linear(2, 2));
    expect(net.device).toBe("host");
    await withRuntime(new Runtime(new ReferenceBackend()), () => realize(net.parameters().map((p) => p.add(0))));
    expect(net.device).toBe("reference");

    const trainer = new Trainer(quiet({ maxEpochs: 1 }));
    const model = trainer.initModule(() => new Classifier());
    expect(model.device).toBe("host");
    await trainer.fit(model, new DataLoader(blobs(8), { batchSize: 4 }));
    expect(model.device).toBe("ref");
    expect(model.trainer).toBe(trainer);
  });
});

describe("parameterBytes: the bytes actually held", () => {
  // Classifier: Linear(4, 16) and Linear(16, 3), 131 parameters.
  it("on the reference backend 16-bit parameters take 2 bytes each, before and after the run places them", async () => {
    for (const [precision, bytes] of [
      ["16-true", 2],
      ["bf16-true", 2],
      ["32-true", 4],
      ["64-true", 8],
      ["16-mixed", 4],
    ] as const) {
      const trainer = new Trainer(quiet({ precision, maxEpochs: 1 }));
      const model = trainer.initModule(() => new Classifier());
      expect(model.parameterCount()).toBe(131);
      expect(model.parameterBytes()).toBe(131 * bytes);
      await trainer.fit(model, new DataLoader(blobs(8), { batchSize: 4 }));
      expect(model.net.device).toBe("reference");
      expect([model.parameterBytes(), model.net.parameterBytes()]).toEqual([131 * bytes, 131 * bytes]);
    }
  });

  it("follows the storage a backend declares: a 16-bit value held as float32 takes 4 bytes", () => {
    const half = tensor([1, 2, 3], [3], "float16");
    expect(heldBytes(half)).toBe(6);
    expect(heldBytes(half, { float16: "float32" })).toBe(12);
    expect(heldBytes(half, { float16: "native" })).toBe(6);
    expect(new Sequential(new Linear(2, 2)).to("bfloat16").parameterBytes({ bfloat16: "float32" })).toBe(6 * 4);
  });
});
