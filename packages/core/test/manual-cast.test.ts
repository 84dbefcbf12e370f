import { describe, expect, it } from "vitest";
import { autocast, crossEntropy, DataLoader, Trainer, type Batch, type Tensor } from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

/** A classifier whose training step applies `cast` to the logits (and validates with the same cast, unwatched). */
class Casting extends Classifier {
  constructor(readonly castLogits: (logits: Tensor, labels: Tensor) => Tensor) {
    super("adam");
  }
  override trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.castLogits(this.forward(x!), y!), y!);
  }
  override validationStep([x, y]: Batch): void {
    this.log("val_loss", crossEntropy(this.castLogits(this.forward(x!), y!), y!));
  }
}

async function warningsOf(
  precision: "16-mixed" | "bf16-mixed" | "32-true" | "16-true",
  castLogits: (logits: Tensor, labels: Tensor) => Tensor,
): Promise<string[]> {
  const warnings: string[] = [];
  const trainer = new Trainer(quiet({ precision, maxEpochs: 2, warn: (m) => warnings.push(m) }));
  const loader = new DataLoader(blobs(16), { batchSize: 4 });
  await trainer.fit(new Casting(castLogits), loader, loader);
  return warnings.filter((w) => w.includes("do not cast manually"));
}

describe("manual casts under a mixed precision", () => {
  it("warn once per call, naming it, however many steps cast", async () => {
    const warned = await warningsOf("16-mixed", (logits) => logits.float());
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/^Tensor\.float\(\) inside trainingStep under precision "16-mixed": Lightning's precision docs say: do not cast manually\./);
    const each = await warningsOf("bf16-mixed", (logits) => logits.to("float32").half().cast("float32").bfloat16().double());
    expect(each.map((w) => w.split(" inside")[0])).toEqual([
      'Tensor.to("float32")',
      "Tensor.half()",
      'Tensor.cast("float32")',
      "Tensor.bfloat16()",
      "Tensor.double()",
    ]);
  });

  it("warn for an autocast nested with another dtype, not for one with the precision's own", async () => {
    const nested = await warningsOf("16-mixed", (logits) => autocast("float32", () => logits.mul(2)));
    expect(nested.map((w) => w.split(" inside")[0])).toEqual(['autocast("float32")']);
    expect(await warningsOf("16-mixed", (logits) => autocast("float16", () => logits.mul(2)))).toEqual([]);
    expect((await warningsOf("bf16-mixed", (logits) => autocast(null, () => logits)))[0]).toMatch(/^autocast\(null\)/);
  });

  it("stay silent for the library's own casts, integer-to-float casts, and true precisions", async () => {
    expect(await warningsOf("16-mixed", (logits) => logits)).toEqual([]);
    expect(await warningsOf("bf16-mixed", (logits, labels) => logits.add(labels.cast("float32").mul(0).unsqueeze(1)))).toEqual([]);
    expect(await warningsOf("32-true", (logits) => logits.half().float())).toEqual([]);
    expect(await warningsOf("16-true", (logits) => logits.float())).toEqual([]);
  });
});
