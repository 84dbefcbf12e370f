import { describe, expect, it } from "vitest";
import {
  Adam,
  crossEntropy,
  DataLoader,
  full,
  LightningModule,
  Linear,
  ones,
  ReLU,
  Sequential,
  tensor,
  Trainer,
  zeros,
  type Batch,
  type Tensor,
} from "../src/index.js";
import { blobs, quiet } from "./helpers.js";

/** Builds its layers in configureModel, as Lightning's large-model recipe does. */
class Deferred extends LightningModule {
  net: Sequential | null = null;
  scale: Tensor | null = null;
  calls = 0;
  override configureModel(): void {
    this.calls++;
    this.net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
    this.scale = tensor([0.5]);
  }
  forward(x: Tensor): Tensor {
    return this.net!.forward(x).mul(this.scale!);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  override testStep([x]: Batch): void {
    this.forward(x!);
  }
  configureOptimizers() {
    return new Adam(this.parameters(), { lr: 0.01 });
  }
}

const loader = () => new DataLoader(blobs(12), { batchSize: 4 });

describe("configureModel", () => {
  it("creates parameters and tensor() constants in the precision's dtype, once per module", async () => {
    for (const [precision, dtype] of [
      ["bf16-true", "bfloat16"],
      ["16-true", "float16"],
      ["64-true", "float64"],
      ["16-mixed", "float32"],
    ] as const) {
      const trainer = new Trainer(quiet({ precision, maxEpochs: 1 }));
      const model = new Deferred();
      expect(model.parameters()).toEqual([]);
      await trainer.fit(model, loader());
      expect(model.parameters().map((p) => p.dtype)).toEqual(Array(4).fill(dtype));
      expect(model.scale!.dtype).toBe(dtype);
      await trainer.test(model, loader());
      expect(model.calls).toBe(1);
      expect(trainer.losses.every(Number.isFinite)).toBe(true);
    }
  });

  it("tensor(), full, zeros and ones take the precision's dtype inside initModule and float32 outside", () => {
    const trainer = new Trainer(quiet({ precision: "16-true" }));
    const made = trainer.initModule(() => [tensor([1, 2]), full([2], 3), zeros([2]), ones([2]), tensor([1], [1], "int32")]);
    expect(made.map((t) => t.dtype)).toEqual(["float16", "float16", "float16", "float16", "int32"]);
    expect([tensor([1]), full([1], 1), zeros([1]), ones([1])].map((t) => t.dtype)).toEqual(Array(4).fill("float32"));
    expect(new Trainer(quiet({ precision: "bf16-mixed" })).initModule(() => tensor([1]).dtype)).toBe("float32");
  });
});
