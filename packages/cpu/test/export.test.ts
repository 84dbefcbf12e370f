import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BatchNorm1d,
  BatchNorm2d,
  Conv2d,
  crossEntropy,
  Dropout,
  Flatten,
  Generator,
  Linear,
  MaxPool2d,
  AvgPool2d,
  Module,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  tensor,
  withRuntime,
  type Tensor,
} from "@nbit/core";
import type * as Ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { CpuBackend, ExportError, exportOnnx } from "../src/index.js";

const ort = createRequire(import.meta.url)("onnxruntime-node") as typeof Ort;
const dir = mkdtempSync(join(tmpdir(), "nbit-export-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const randomInput = (shape: number[], seed: number) => {
  const g = new Generator(seed);
  return tensor(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => g.normal()),
    shape,
  );
};

/** Largest absolute difference over the largest reference magnitude. */
function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

/** Trains a few SGD steps in train mode (so batch norm's running statistics move), then compares eval outputs. */
async function exportAndCompare(model: Module, inputShape: number[], classes: number, dtype: "float32" | "float16") {
  const runtime = new Runtime(new CpuBackend(ort, { threads: 1 }));
  return withRuntime(runtime, async () => {
    const optimizer = new SGD(model.parameters(), { lr: 0.05 });
    for (let step = 0; step < 3; step++) {
      const x = randomInput(inputShape, 10 + step);
      const labels = tensor(
        Array.from({ length: inputShape[0]! }, (_, i) => i % classes),
        [inputShape[0]!],
        "int32",
      );
      const loss = crossEntropy(model.forward(x), labels);
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      await loss.item();
    }
    const path = join(dir, `${model.constructor.name}-${dtype}-${Math.random().toString(36).slice(2)}.onnx`);
    await exportOnnx(model, randomInput(inputShape, 1), path, { dtype });
    // Another batch size than the example's: the exported batch dim is symbolic.
    const evalShape = [inputShape[0]! + 3, ...inputShape.slice(1)];
    const x = randomInput(evalShape, 99);
    model.eval();
    const expected = (await model.forward(x).data()) as Float32Array;
    model.train();
    const session = await ort.InferenceSession.create(readFileSync(path));
    expect(session.inputNames).toEqual(["input"]);
    expect(session.outputNames).toEqual(["output"]);
    const result = await session.run({ input: new ort.Tensor("float32", (await x.data()) as Float32Array, evalShape) });
    const output = result.output!;
    expect(output.dims).toEqual([evalShape[0], classes]);
    await session.release();
    return { error: relativeError(output.data as Float32Array, expected), bytes: readFileSync(path).length };
  });
}

const mlp = () => new Sequential(new Linear(12, 32), new ReLU(), new Dropout(0.2), new Linear(32, 5));
const cnn = () =>
  new Sequential(
    new Conv2d(1, 4, 3, { padding: 1 }),
    new BatchNorm2d(4),
    new ReLU(),
    new MaxPool2d(2),
    new Conv2d(4, 8, 3, { padding: 1, groups: 2 }),
    new ReLU(),
    new AvgPool2d(2),
    new Flatten(),
    new Linear(8 * 2 * 2, 16),
    new BatchNorm1d(16),
    new ReLU(),
    new Linear(16, 3),
  );

describe("exportOnnx", () => {
  it("an MLP runs in a fresh onnxruntime session with the eval-mode outputs (relative error <= 1e-5 in float32)", async () => {
    const { error } = await exportAndCompare(mlp(), [6, 12], 5, "float32");
    expect(error).toBeLessThanOrEqual(1e-5);
  }, 180_000);

  it("a CNN with convolutions, pooling and batch norm (running statistics) matches in float32 and float16 weights", async () => {
    const f32 = await exportAndCompare(cnn(), [4, 1, 8, 8], 3, "float32");
    expect(f32.error).toBeLessThanOrEqual(1e-5);
    const f16 = await exportAndCompare(cnn(), [4, 1, 8, 8], 3, "float16");
    // float16 weights round each weight by up to 2^-11 relative.
    expect(f16.error).toBeLessThanOrEqual(1e-2);
    expect(f16.error).toBeGreaterThan(0);
    console.log(`exportOnnx CNN relative error: float32 ${f32.error.toExponential(2)}, float16 weights ${f16.error.toExponential(2)}`);
  }, 300_000);

  it("refuses, with an ExportError, a forward whose graph depends on the batch size, and float64 convolutions", async () => {
    class BatchCentered extends Module {
      readonly linear = new Linear(4, 2);
      forward(x: Tensor): Tensor {
        return this.linear.forward(x.sub(x.mean(0, true)));
      }
    }
    const path = join(dir, "refused.onnx");
    await expect(exportOnnx(new BatchCentered(), randomInput([3, 4], 1), path)).rejects.toThrow(ExportError);
    await expect(exportOnnx(new BatchCentered(), randomInput([3, 4], 1), path)).rejects.toThrow(/changes with the batch size/);
    // With a fixed batch it exports.
    await exportOnnx(new BatchCentered(), randomInput([3, 4], 1), path, { dynamicBatch: false });
    const conv = new Conv2d(1, 2, 3).to("float64");
    await expect(exportOnnx(conv, randomInput([1, 1, 4, 4], 1).cast("float64"), path)).rejects.toThrow(/conv2d on float64/);
  }, 120_000);
});
