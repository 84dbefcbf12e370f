import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  AcceleratorRegistry,
  AcceleratorUnavailableError,
  CANONICAL_PRECISIONS,
  CheckpointError,
  CSVLogger,
  DataLoader,
  EarlyStopping,
  LearningRateMonitor,
  LightningModule,
  Linear,
  MemoryLogger,
  ModelCheckpoint,
  NonFiniteLossError,
  ReLU,
  Sequential,
  TensorDataset,
  Trainer,
  UnsupportedPrecisionError,
  decodeSafetensors,
  encodeSafetensors,
  manualSeed,
  type Precision,
} from "../src/index.js";
import { blobs, Classifier, quiet, reference } from "./helpers.js";

describe("Trainer", () => {
  it("fits, validates and tests with logged metrics", async () => {
    const logger = new MemoryLogger();
    const trainer = new Trainer(quiet({ maxEpochs: 4, logger, seed: 3, logEveryNSteps: 1 }));
    const model = trainer.initModule(() => new Classifier());
    const data = blobs(96);
    await trainer.fit(model, new DataLoader(data, { batchSize: 16, shuffle: true }), new DataLoader(blobs(30, 9), { batchSize: 10 }));
    expect(trainer.globalStep).toBe(24);
    expect(trainer.losses).toHaveLength(24);
    expect(trainer.losses.at(-1)!).toBeLessThan(trainer.losses[0]!);
    expect(trainer.callbackMetrics.val_acc).toBeGreaterThan(0.8);
    expect(logger.rows.some((r) => "val_loss" in r)).toBe(true);
    expect(logger.rows.filter((r) => "train_loss" in r).length).toBeGreaterThanOrEqual(24);
    const metrics = await trainer.test(model, new DataLoader(blobs(30, 11), { batchSize: 7 }));
    expect(metrics.test_acc).toBeGreaterThan(0.8);
    const predictions = await trainer.predict(model, new DataLoader(blobs(10, 2), { batchSize: 4 }));
    expect(predictions.map((p) => p.shape)).toEqual([
      [4, 3],
      [4, 3],
      [2, 3],
    ]);
  });

  it("creates parameters in the precision's dtype with initModule", () => {
    for (const [precision, dtype] of [
      ["bf16-true", "bfloat16"],
      ["64-true", "float64"],
      ["bf16-mixed", "float32"],
    ] as const) {
      const trainer = new Trainer(quiet({ precision }));
      expect(
        trainer
          .initModule(() => new Classifier())
          .parameters()
          .every((p) => p.dtype === dtype),
      ).toBe(true);
    }
  });

  it("explains unavailable accelerators, unsupported precisions and devices", () => {
    const registry = new AcceleratorRegistry();
    registry.register("cuda", () => reference("cuda", CANONICAL_PRECISIONS, false), { priority: 10 });
    registry.register("cpu", () => reference("cpu", ["32-true", "bf16-mixed", "64-true"]));
    expect(() => new Trainer({ ...quiet(), accelerator: "cuda", registry })).toThrow(AcceleratorUnavailableError);
    expect(() => new Trainer({ ...quiet(), accelerator: "cuda", registry })).toThrow(/cuda: no such device here\nAvailable accelerators: "cpu"/);
    expect(new Trainer({ ...quiet(), accelerator: "auto", registry }).accelerator.name).toBe("cpu");
    expect(() => new Trainer({ ...quiet(), accelerator: "cpu", registry, precision: "16-mixed" })).toThrow(UnsupportedPrecisionError);
    expect(() => new Trainer(quiet({ devices: 2 }))).toThrow(/nbit trains on one device/);
  });

  it("stops with a clear error when the loss becomes NaN in 32-true", async () => {
    const trainer = new Trainer(quiet({ maxEpochs: 1 }));
    const model = new Classifier("sgd", false, (loss, i) => (i === 2 ? loss.mul(NaN) : loss));
    const run = trainer.fit(model, new DataLoader(blobs(64), { batchSize: 8 }));
    await expect(run).rejects.toThrow(NonFiniteLossError);
    await expect(
      new Trainer(quiet({ maxEpochs: 1 })).fit(
        new Classifier("sgd", false, (l, i) => (i === 2 ? l.mul(Infinity) : l)),
        new DataLoader(blobs(64), { batchSize: 8 }),
      ),
    ).rejects.toThrow(/The loss is Infinity at global step 2 \(epoch 0, batch 2\) with precision "32-true"/);
  });

  it("does not advance the LR scheduler on steps the scaler skipped, and warns", async () => {
    const warnings: string[] = [];
    const trainer = new Trainer(quiet({ maxEpochs: 1, precision: "16-mixed", warn: (m) => warnings.push(m) }));
    // Batches 1 and 4 overflow float16 in the forward pass, so their gradients are Inf.
    const model = new Classifier("sgd", true, (loss, i) => (i === 1 || i === 4 ? loss.mul(1e30) : loss));
    await trainer.fit(model, new DataLoader(blobs(64), { batchSize: 8 }));
    expect(trainer.skippedSteps).toBe(2);
    expect(trainer.globalStep).toBe(8);
    expect(trainer.scheduler!.scheduler.lastEpoch).toBe(6);
    expect(trainer.optimizer!.paramGroups[0]!.lr).toBeCloseTo(0.05 * 0.5 ** 2);
    expect(warnings.join("\n")).toMatch(/scheduler is not advanced on skipped steps/);
  });

  it("accumulating 2 batches of 8 matches one batch of 16", async () => {
    const run = async (batchSize: number, accumulate: number) => {
      manualSeed(5);
      const trainer = new Trainer(quiet({ maxEpochs: 1, accumulateGradBatches: accumulate }));
      const model = new Classifier("sgd");
      model.net.layers[2] = new Sequential(); // no dropout: the two runs must see the same masks
      await trainer.fit(model, new DataLoader(blobs(64), { batchSize }));
      return { step: trainer.globalStep, weights: Array.from(await model.net.parameters()[0]!.data()) };
    };
    const a = await run(8, 2);
    const b = await run(16, 1);
    expect(a.step).toBe(b.step);
    a.weights.forEach((w, i) => expect(w).toBeCloseTo(b.weights[i]!, 5));
  });

  it("early stopping, top-k checkpoints and the learning-rate monitor", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-ckpt-"));
    const checkpoint = new ModelCheckpoint({ dirpath: dir, monitor: "val_loss", saveTopK: 2, saveLast: true });
    const early = new EarlyStopping({ monitor: "val_acc", mode: "max", patience: 1, minDelta: 0.5 });
    const logger = new MemoryLogger();
    const trainer = new Trainer(quiet({ maxEpochs: 10, callbacks: [checkpoint, early, new LearningRateMonitor("epoch")], logger }));
    const model = new Classifier();
    await trainer.fit(model, new DataLoader(blobs(48), { batchSize: 16 }), new DataLoader(blobs(30, 4), { batchSize: 10 }));
    expect(early.stoppedEpoch).toBe(1); // no improvement of 0.5 in accuracy after the first check
    expect(trainer.currentEpoch).toBe(2);
    const files = readdirSync(dir).sort();
    expect(files).toContain("last.safetensors");
    expect(files.filter((f) => f.startsWith("epoch=")).length).toBe(2);
    expect(checkpoint.bestModelScore).toBe(Math.min(...checkpoint.kept.map((k) => k.score)));
    expect(logger.rows.some((r) => r["lr-Adam"] === 0.01)).toBe(true);
    await expect(
      new Trainer(quiet({ maxEpochs: 1, callbacks: [new EarlyStopping({ monitor: "val_nope" })] })).fit(
        new Classifier(),
        new DataLoader(blobs(16), { batchSize: 8 }),
      ),
    ).rejects.toThrow(/EarlyStopping is monitoring "val_nope", which was not logged. Logged metrics: .*train_loss/);
  });

  it("writes metrics.csv with a CSVLogger", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-log-"));
    const trainer = new Trainer(quiet({ maxEpochs: 2, logger: new CSVLogger(dir, "run"), logEveryNSteps: 2 }));
    await trainer.fit(new Classifier(), new DataLoader(blobs(32), { batchSize: 8 }));
    const csv = readFileSync(join(dir, "run", "version_0", "metrics.csv"), "utf8")
      .trim()
      .split("\n");
    expect(csv[0]).toBe("step,train_loss,epoch");
    expect(csv.length).toBeGreaterThanOrEqual(5);
  });
});

describe("checkpoints", () => {
  const losses = async (precision: Precision, opts: { epochs: number; ckptPath?: string; saveAt?: string; saveAfterBatch?: number }) => {
    manualSeed(7);
    const callbacks = opts.saveAt
      ? [
          {
            async onTrainBatchEnd(t: Trainer, _m: LightningModule, _o: unknown, _b: unknown, i: number) {
              if (t.currentEpoch === 0 && i === opts.saveAfterBatch) await t.saveCheckpoint(opts.saveAt!);
            },
          },
        ]
      : [];
    const trainer = new Trainer(quiet({ precision, maxEpochs: opts.epochs, callbacks }));
    const model = trainer.initModule(() => new Classifier("adam", true));
    await trainer.fit(model, new DataLoader(blobs(64), { batchSize: 8, shuffle: true, seed: 1 }), undefined, opts.ckptPath ? { ckptPath: opts.ckptPath } : {});
    return { losses: trainer.losses, trainer, model };
  };

  for (const precision of ["32-true", "16-mixed", "bf16-true"] as const)
    it(`resuming mid-epoch continues with the same losses (${precision})`, async () => {
      const path = join(mkdtempSync(join(tmpdir(), "nbit-resume-")), "mid.safetensors");
      const straight = await losses(precision, { epochs: 2, saveAt: path, saveAfterBatch: 4 });
      const resumed = await losses(precision, { epochs: 2, ckptPath: path });
      expect(resumed.losses).toEqual(straight.losses.slice(5));
      expect(resumed.trainer.globalStep).toBe(straight.trainer.globalStep);
      const [a, b] = [await straight.model.parameters()[0]!.data(), await resumed.model.parameters()[0]!.data()];
      expect(Array.from(b)).toEqual(Array.from(a));
      if (precision === "bf16-true") {
        const { tensors } = decodeSafetensors(readFileSync(path));
        expect(tensors["net.0.weight"]!.dtype).toBe("bfloat16");
        expect(tensors["net.0.weight"]!.data.byteLength).toBe(16 * 4 * 2);
      }
    });

  it("leaves no temporary files and replaces the previous checkpoint atomically", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-atomic-"));
    const path = join(dir, "a.safetensors");
    writeFileSync(path, "old");
    await losses("32-true", { epochs: 1, saveAt: path, saveAfterBatch: 1 });
    expect(readdirSync(dir)).toEqual(["a.safetensors"]);
    expect(decodeSafetensors(readFileSync(path)).metadata.nbit).toBeDefined();
  });

  it("names the tensor and what was expected for a mismatched or corrupt checkpoint", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-bad-"));
    const path = join(dir, "c.safetensors");
    await losses("32-true", { epochs: 1, saveAt: path, saveAfterBatch: 1 });
    const bytes = readFileSync(path);
    // A model with a wider first layer does not fit the saved weights.
    class Wider extends Classifier {
      override readonly net = new Sequential(new Linear(4, 17), new ReLU(), new Linear(17, 3));
    }
    const trainer = new Trainer(quiet({ maxEpochs: 1 }));
    await expect(trainer.fit(new Wider(), new DataLoader(blobs(16), { batchSize: 8 }), undefined, { ckptPath: path })).rejects.toThrow(
      /tensor "net.0.weight" expected float32\[17, 4\], found float32\[16, 4\]/,
    );
    const truncated = join(dir, "t.safetensors");
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 40));
    await expect(new Trainer(quiet()).fit(new Classifier(), new DataLoader(blobs(16), { batchSize: 8 }), undefined, { ckptPath: truncated })).rejects.toThrow(
      CheckpointError,
    );
    await expect(new Trainer(quiet()).fit(new Classifier(), new DataLoader(blobs(16), { batchSize: 8 }), undefined, { ckptPath: truncated })).rejects.toThrow(
      /truncated or corrupt/,
    );
    const garbage = join(dir, "g.safetensors");
    writeFileSync(garbage, Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{nope!!}")]));
    await expect(new Trainer(quiet()).fit(new Classifier(), new DataLoader(blobs(16), { batchSize: 8 }), undefined, { ckptPath: garbage })).rejects.toThrow(
      /not valid JSON/,
    );
    expect(existsSync(join(dir, "missing.safetensors"))).toBe(false);
    await expect(
      new Trainer(quiet()).fit(new Classifier(), new DataLoader(blobs(16), { batchSize: 8 }), undefined, { ckptPath: join(dir, "missing.safetensors") }),
    ).rejects.toThrow(/cannot be read/);
  });

  it("safetensors keeps 16-bit tensors 16-bit and round-trips every dtype", () => {
    const tensors = {
      a: { dtype: "bfloat16" as const, shape: [2], data: Uint16Array.of(0x3f80, 0xc000) },
      b: { dtype: "float64" as const, shape: [1, 1], data: Float64Array.of(Math.PI) },
      c: { dtype: "int32" as const, shape: [3], data: Int32Array.of(1, -2, 3) },
    };
    const bytes = encodeSafetensors(tensors, { note: "x" });
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true)))));
    expect(header.a).toEqual({ dtype: "BF16", shape: [2], data_offsets: [0, 4] });
    const back = decodeSafetensors(bytes);
    expect(back.metadata).toEqual({ note: "x" });
    expect(Array.from(back.tensors.a!.data)).toEqual([0x3f80, 0xc000]);
    expect(Array.from(back.tensors.b!.data)).toEqual([Math.PI]);
    expect(Array.from(back.tensors.c!.data)).toEqual([1, -2, 3]);
  });
});

describe("DataLoader", () => {
  it("batches, drops the last partial batch on request and shuffles by (seed, epoch)", () => {
    const data = blobs(10);
    expect(new DataLoader(data, { batchSize: 4 }).length).toBe(3);
    expect(new DataLoader(data, { batchSize: 4, dropLast: true }).length).toBe(2);
    const shapes = [...new DataLoader(data, { batchSize: 4 })].map((b) => b[0]!.shape[0]);
    expect(shapes).toEqual([4, 4, 2]);
    const loader = new DataLoader(data, { batchSize: 4, shuffle: true, seed: 3 });
    const e0 = loader.order(0);
    expect(loader.order(0)).toEqual(e0);
    expect(loader.order(1)).not.toEqual(e0);
    expect([...e0].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("keeps each (seed, epoch)'s order and iterates the selected epoch's samples in that order", () => {
    const indices = new TensorDataset({ data: Array.from({ length: 10 }, (_, i) => i), sampleShape: [], dtype: "int32" });
    const loader = new DataLoader(indices, { batchSize: 4, shuffle: true, seed: 3 });
    // The permutations of earlier releases: a resumed run must see the same batches.
    expect(loader.order(0)).toEqual([2, 0, 8, 5, 9, 1, 7, 3, 4, 6]);
    expect(loader.order(2)).toEqual([8, 1, 2, 5, 4, 6, 9, 7, 0, 3]);
    loader.setEpoch(2);
    const seen = [...loader].flatMap((b) => Array.from(b[0]!.node.host!));
    expect(seen).toEqual(loader.order(2));
  });
});

describe("Trainer limits and clipping", () => {
  it("stops at maxSteps and clips gradients by value", async () => {
    const trainer = new Trainer(quiet({ maxSteps: 5, gradientClipVal: 1e-3, gradientClipAlgorithm: "value" }));
    const model = new Classifier("sgd");
    model.net.layers[2] = new Sequential();
    const before = Array.from(await model.net.parameters()[0]!.data());
    await trainer.fit(model, new DataLoader(blobs(64), { batchSize: 8 }));
    expect(trainer.globalStep).toBe(5);
    expect(trainer.losses).toHaveLength(5);
    // With every gradient clipped to 1e-3, SGD (lr 0.05, momentum 0.9) moves each weight by at most
    // lr * 1e-3 * (1 + 0.9 + ... ) over 5 steps.
    const after = Array.from(await model.net.parameters()[0]!.data());
    const bound = 0.05 * 1e-3 * (1 + 1.9 + 2.71 + 3.439 + 4.0951) + 1e-7;
    after.forEach((w, i) => expect(Math.abs(w - before[i]!)).toBeLessThanOrEqual(bound));
    expect(after.some((w, i) => w !== before[i])).toBe(true);
  });
});
