import { afterEach, describe, expect, it } from "vitest";
import { DataLoader, Linear, realize, ReferenceBackend, Runtime, Sequential, setDefaultRuntime, Trainer, withRuntime } from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

afterEach(() => setDefaultRuntime(null));

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
