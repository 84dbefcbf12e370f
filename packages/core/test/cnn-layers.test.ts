import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  autocast,
  AUTOCAST_POLICIES,
  autocastLists,
  AvgPool2d,
  BatchNorm1d,
  BatchNorm2d,
  Conv2d,
  crossEntropy,
  DataLoader,
  Flatten,
  Generator,
  LightningModule,
  Linear,
  MaxPool2d,
  ReferenceBackend,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  ShapeError,
  tensor,
  TensorDataset,
  Trainer,
  withParamDType,
  withRuntime,
  type Batch,
  type Callback,
  type Tensor,
} from "../src/index.js";
import { quiet } from "./helpers.js";

const runtime = () => new Runtime(new ReferenceBackend());
const seeded = (n: number, seed: number, scale = 1, shift = 0) => {
  const g = new Generator(seed);
  return Array.from({ length: n }, () => g.normal() * scale + shift);
};
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("Conv2d, pooling and Flatten", () => {
  it("initialises like PyTorch: weight and bias in U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch names", async () => {
    const conv = new Conv2d(3, 8, [3, 5], { generator: new Generator(1), groups: 1 });
    expect(conv.weight.shape).toEqual([8, 3, 3, 5]);
    expect([...conv.namedParameters()].map(([n]) => n)).toEqual(["weight", "bias"]);
    const bound = 1 / Math.sqrt(3 * 3 * 5);
    const w = await conv.weight.toArray();
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    // Uniform over the interval: the spread reaches close to both ends.
    expect(Math.max(...w)).toBeGreaterThan(0.9 * bound);
    expect(Math.min(...w)).toBeLessThan(-0.9 * bound);
    expect(Math.max(...(await conv.bias!.toArray()).map(Math.abs))).toBeLessThanOrEqual(bound);
    const grouped = new Conv2d(4, 6, 3, { groups: 2, bias: false });
    expect(grouped.weight.shape).toEqual([6, 2, 3, 3]);
    expect(grouped.bias).toBeNull();
    expect(() => new Conv2d(3, 6, 3, { groups: 2 })).toThrow(/groups=2/);
  });

  it("runs conv, pools and flatten with PyTorch's output shapes and values", async () => {
    await withRuntime(runtime(), async () => {
      const conv = new Conv2d(1, 2, 3, { padding: 1, generator: new Generator(2) });
      const x = tensor(seeded(2 * 1 * 6 * 6, 3), [2, 1, 6, 6]);
      const net = new Sequential(conv, new MaxPool2d(2), new AvgPool2d(3, { stride: 1, padding: 1 }), new Flatten());
      const y = net.forward(x);
      expect(y.shape).toEqual([2, 2 * 3 * 3]);
      // Direct check of one conv output against a hand-written 3x3 correlation.
      const [xs, ws, bs, out] = await Promise.all([x.toArray(), conv.weight.toArray(), conv.bias!.toArray(), conv.forward(x).toArray()]);
      let expected = bs[1]!;
      for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) expected += ws[9 + i * 3 + j]! * xs[(2 + i - 1) * 6 + (3 + j - 1)]!;
      expect(out[36 + 2 * 6 + 3]).toBeCloseTo(expected, 5);
      expect(new Flatten(1, 2).forward(tensor(seeded(24, 1), [2, 3, 2, 2])).shape).toEqual([2, 6, 2]);
      expect(new Flatten(0, -2).forward(tensor(seeded(24, 1), [2, 3, 4])).shape).toEqual([6, 4]);
      expect(() => new Flatten(2, 1).forward(tensor(seeded(24, 1), [2, 3, 4]))).toThrow(ShapeError);
    });
  });

  it("conv runs in the low dtype under every autocast table; batch norm keeps its input dtype (on no PyTorch list) with float32 running statistics", () => {
    for (const device of ["cuda", "cpu", "tpu"] as const) {
      const lists = autocastLists(device);
      expect(lists.lowPrecision).toContain("conv2d");
      expect([...lists.lowPrecision, ...lists.float32]).not.toContain("batchNorm");
      const x = tensor(seeded(2 * 2 * 4 * 4, 5), [2, 2, 4, 4]);
      autocast(
        "bfloat16",
        () => {
          const h = new Conv2d(2, 3, 3, { padding: 1 }).forward(x);
          expect(h.dtype).toBe("bfloat16");
          const norm = new BatchNorm2d(3);
          expect(norm.forward(h).dtype).toBe("bfloat16");
          expect(norm.running_mean!.dtype).toBe("float32");
        },
        AUTOCAST_POLICIES[device],
      );
    }
  });
});

describe("BatchNorm", () => {
  it("normalises with batch statistics in train mode and folds them into float32 running buffers (momentum 0.1, unbiased)", async () => {
    await withRuntime(runtime(), async () => {
      const bn = new BatchNorm2d(2);
      expect([...bn.namedParameters()].map(([n]) => n)).toEqual(["weight", "bias"]);
      expect(Object.keys(bn.stateDict())).toEqual(["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
      const values = seeded(3 * 2 * 2 * 2, 7, 2, 1);
      const x = tensor(values, [3, 2, 2, 2]);
      const y = await bn.forward(x).toArray();
      for (let c = 0; c < 2; c++) {
        const idx = [0, 1, 2].flatMap((n) => [0, 1, 2, 3].map((k) => n * 8 + c * 4 + k));
        const xs = idx.map((i) => values[i]!);
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
        const biased = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
        const ys = idx.map((i) => y[i]!);
        idx.forEach((i, k) => expect(ys[k]).toBeCloseTo((values[i]! - mean) / Math.sqrt(biased + 1e-5), 4));
        expect((await bn.running_mean!.toArray())[c]).toBeCloseTo(0.1 * mean, 5);
        expect((await bn.running_var!.toArray())[c]).toBeCloseTo(0.9 + (0.1 * biased * 12) / 11, 5);
      }
      expect(await bn.num_batches_tracked!.item()).toBe(1);
      bn.eval();
      const before = await bn.running_mean!.toArray();
      const evalOut = await bn.forward(x).toArray();
      const rm = await bn.running_mean!.toArray();
      const rv = await bn.running_var!.toArray();
      expect(rm).toEqual(before);
      expect(evalOut[5]).toBeCloseTo((values[5]! - rm[1]!) / Math.sqrt(rv[1]! + 1e-5), 5); // index 5 is channel 1
    });
  });

  it("keeps running statistics in float32 when the parameters are bfloat16 (and through module.to)", async () => {
    await withRuntime(runtime(), async () => {
      const bn = withParamDType("bfloat16", () => new BatchNorm1d(3));
      expect(bn.weight!.dtype).toBe("bfloat16");
      bn.to("float16");
      expect(bn.weight!.dtype).toBe("float16");
      const x = tensor(seeded(4 * 3, 9), [4, 3]).cast("float16");
      const y = bn.forward(x);
      expect(y.dtype).toBe("float16");
      expect(bn.running_mean!.dtype).toBe("float32");
      expect(bn.running_var!.dtype).toBe("float32");
      expect(bn.num_batches_tracked!.dtype).toBe("int32");
      expect(Math.abs((await bn.running_mean!.toArray())[0]!)).toBeGreaterThan(0);
      expect(() => bn.forward(tensor([1, 2, 3], [1, 3]))).toThrow(/more than 1 value per channel/);
      expect(() => bn.forward(tensor(seeded(8, 1), [2, 4]))).toThrow(ShapeError);
    });
  });

  it("loads running statistics through loadStateDict and refuses missing buffers", () => {
    const bn = new BatchNorm1d(2);
    const state = {
      weight: { data: [1, 2], shape: [2], dtype: "float32" as const },
      bias: { data: [0, 0], shape: [2], dtype: "float32" as const },
      running_mean: { data: [0.5, -0.5], shape: [2], dtype: "float32" as const },
      running_var: { data: [2, 3], shape: [2], dtype: "float32" as const },
      num_batches_tracked: { data: Int32Array.of(7), shape: [], dtype: "int32" as const },
    };
    bn.loadStateDict(state);
    expect(bn.running_var!.node.host).toEqual(Float32Array.of(2, 3));
    const { running_var: _dropped, ...partial } = state;
    expect(() => bn.loadStateDict(partial)).toThrow(/Missing: running_var/);
  });
});

class TinyCnn extends LightningModule {
  readonly net = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new MaxPool2d(2), new Flatten(), new Linear(16, 3));
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

function images(n: number) {
  const g = new Generator(3);
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    y.push(i % 3);
    for (let p = 0; p < 16; p++) x.push(g.normal() + (p % 3 === i % 3 ? 1.5 : 0));
  }
  return new TensorDataset({ data: x, sampleShape: [1, 4, 4] }, { data: y, sampleShape: [], dtype: "int32" });
}

describe("BatchNorm under the Trainer", () => {
  it("resumes bit-identically: running statistics are saved in the checkpoint and restored", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-bn-"));
    dirs.push(dir);
    const path = join(dir, "mid.safetensors");
    const run = async (precision: "32-true" | "bf16-mixed", ckptPath?: string, saveAt?: string) => {
      const callbacks: Callback[] = saveAt
        ? [
            {
              onTrainBatchEnd: async (t: Trainer, _m: LightningModule, _o: unknown, _b: unknown, i: number) =>
                void (t.currentEpoch === 1 && i === 1 && (await t.saveCheckpoint(saveAt))),
            },
          ]
        : [];
      const trainer = new Trainer(quiet({ precision, maxEpochs: 3, callbacks, seed: 5 }));
      const model = trainer.initModule(() => new TinyCnn());
      await trainer.fit(model, new DataLoader(images(24), { batchSize: 6, shuffle: true, seed: 2 }), undefined, ckptPath ? { ckptPath } : {});
      const bn = model.net.layers[1] as BatchNorm2d;
      return { trainer, mean: await bn.running_mean!.toHost(), variance: await bn.running_var!.toHost(), tracked: await bn.num_batches_tracked!.item() };
    };
    for (const precision of ["32-true", "bf16-mixed"] as const) {
      const straight = await run(precision, undefined, path);
      expect(straight.tracked).toBe(12);
      expect(straight.mean).toBeInstanceOf(Float32Array);
      const resumed = await run(precision, path);
      expect(resumed.tracked).toBe(12);
      expect(resumed.mean).toEqual(straight.mean);
      expect(resumed.variance).toEqual(straight.variance);
      expect(resumed.trainer.losses).toEqual(straight.trainer.losses.slice(-resumed.trainer.losses.length));
      // Without the buffers in the checkpoint, the resumed run's statistics would start from (0, 1).
      expect(straight.trainer.losses.at(-1)!).toBeLessThan(straight.trainer.losses[0]!);
    }
  });
});
