import { existsSync, mkdtempSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CheckpointNotFoundError,
  DataLoader,
  formatSummary,
  LightningDataModule,
  MissingDataloaderError,
  ModelCheckpoint,
  ModelSummary,
  summarize,
  Trainer,
  UnknownOptionError,
  type Batch,
  type Callback,
  type CheckpointInfo,
  type Tensor,
  type TrainerOptions,
  type TrainerStage,
} from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

const loader = (n: number, batchSize = 4, seed = 1) => new DataLoader(blobs(n, seed), { batchSize });

/** Records every hook call by name (with the stage for setup and teardown). */
class Recorder implements Callback {
  readonly calls: string[] = [];
  setup(_t: Trainer, _m: unknown, stage: TrainerStage) {
    this.calls.push(`setup:${stage}`);
  }
  teardown(_t: Trainer, _m: unknown, stage: TrainerStage) {
    this.calls.push(`teardown:${stage}`);
  }
  onFitStart = () => void this.calls.push("onFitStart");
  onFitEnd = () => void this.calls.push("onFitEnd");
  onTrainEpochStart = () => void this.calls.push("onTrainEpochStart");
  onTrainEpochEnd = () => void this.calls.push("onTrainEpochEnd");
  onTrainBatchStart = () => void this.calls.push("onTrainBatchStart");
  onBeforeBackward = () => void this.calls.push("onBeforeBackward");
  onAfterBackward = () => void this.calls.push("onAfterBackward");
  onBeforeOptimizerStep = () => void this.calls.push("onBeforeOptimizerStep");
  onTrainBatchEnd = () => void this.calls.push("onTrainBatchEnd");
  onValidationEpochEnd = () => void this.calls.push("onValidationEpochEnd");
  onSaveCheckpoint = (_t: Trainer, _m: unknown, c: CheckpointInfo) => void this.calls.push(`onSaveCheckpoint:${c.globalStep}`);
  onLoadCheckpoint = (_t: Trainer, _m: unknown, c: CheckpointInfo) => void this.calls.push(`onLoadCheckpoint:${c.globalStep}`);
  onException = (_t: Trainer, _m: unknown, e: unknown) => void this.calls.push(`onException:${(e as Error).message}`);
}

const batchHooks = ["onTrainBatchStart", "onBeforeBackward", "onAfterBackward", "onBeforeOptimizerStep", "onTrainBatchEnd"];

describe("callback hooks", () => {
  it("run in Lightning's order through fit, validate, test and predict", async () => {
    const recorder = new Recorder();
    const dir = mkdtempSync(join(tmpdir(), "nbit-hooks-"));
    const trainer = new Trainer(quiet({ maxEpochs: 1, numSanityValSteps: 0, callbacks: [recorder, new ModelCheckpoint({ dirpath: dir })] }));
    const model = trainer.initModule(() => new Classifier());
    await trainer.fit(model, loader(8), loader(4));
    expect(recorder.calls).toEqual([
      "setup:fit",
      "onFitStart",
      "onTrainEpochStart",
      ...batchHooks,
      ...batchHooks,
      "onValidationEpochEnd",
      "onTrainEpochEnd",
      "onSaveCheckpoint:2",
      "onFitEnd",
      "teardown:fit",
    ]);
    const written: boolean[] = [];
    trainer.callbacks.unshift({ onSaveCheckpoint: (_t, _m, c) => void written.push(existsSync(c.path)) });
    const path = join(dir, "manual.safetensors");
    await trainer.saveCheckpoint(path);
    expect([written, existsSync(path)]).toEqual([[false], true]);
    trainer.callbacks.shift();
    recorder.calls.length = 0;
    await trainer.validate(model, loader(4));
    await trainer.test(model, loader(4));
    await trainer.predict(model, loader(4));
    expect(recorder.calls).toEqual([
      "setup:validate",
      "onValidationEpochEnd",
      "teardown:validate",
      "setup:test",
      "teardown:test",
      "setup:predict",
      "teardown:predict",
    ]);
  });

  it("skip the optimizer-step hook inside gradient accumulation, and see the loss backward differentiates", async () => {
    const recorder = new Recorder();
    const seen: number[] = [];
    const lossProbe: Callback = { onBeforeBackward: async (_t, _m, loss: Tensor) => void seen.push(await loss.item()) };
    const trainer = new Trainer(quiet({ maxEpochs: 1, accumulateGradBatches: 2, callbacks: [recorder, lossProbe] }));
    await trainer.fit(
      trainer.initModule(() => new Classifier()),
      loader(8),
    );
    const batches = recorder.calls.filter((c) => batchHooks.includes(c));
    expect(batches).toEqual(["onTrainBatchStart", "onBeforeBackward", "onAfterBackward", "onTrainBatchEnd", ...batchHooks]);
    // Lightning hands on_before_backward the loss divided by accumulate_grad_batches.
    expect(seen.map((l) => l * 2)).toEqual(trainer.losses.map((l) => expect.closeTo(l, 5)));
  });

  it("see unscaled gradients before the optimizer step under 16-mixed", async () => {
    const largest: number[] = [];
    const probe: Callback = {
      onBeforeOptimizerStep: async (_t, _m, optimizer) => {
        for (const p of optimizer.params) largest.push(Math.max(...(await p.grad!.toArray()).map(Math.abs)));
      },
    };
    const trainer = new Trainer(quiet({ precision: "16-mixed", maxEpochs: 1, callbacks: [probe] }));
    const model = trainer.initModule(() => new Classifier("sgd"));
    await trainer.fit(model, loader(8));
    expect(largest.length).toBeGreaterThan(0);
    // Scaled by 2^16 they would be in the thousands; cross-entropy gradients of this model are below 10.
    expect(Math.max(...largest)).toBeLessThan(10);
    expect(Math.max(...largest)).toBeGreaterThan(0);
  });

  it("call onException with the error, skip teardown and rethrow", async () => {
    const recorder = new Recorder();
    const trainer = new Trainer(quiet({ maxEpochs: 1, callbacks: [recorder] }));
    const model = trainer.initModule(
      () =>
        new Classifier("adam", false, (l, i) => {
          if (i === 1) throw new Error("boom");
          return l;
        }),
    );
    await expect(trainer.fit(model, loader(8))).rejects.toThrow("boom");
    expect(recorder.calls.at(-1)).toBe("onException:boom");
    expect(recorder.calls).not.toContain("teardown:fit");
    expect(trainer.stage).toBeNull();
  });
});

describe("ckptPath", () => {
  const dirs = () => mkdtempSync(join(tmpdir(), "nbit-ckptpath-"));

  it('"last" resumes from the ModelCheckpoint\'s last file, also in a new Trainer', async () => {
    const dir = dirs();
    const first = new Trainer(quiet({ maxEpochs: 2, callbacks: [new ModelCheckpoint({ dirpath: dir, saveLast: true })] }));
    await first.fit(
      first.initModule(() => new Classifier()),
      loader(12),
    );
    expect(first.globalStep).toBe(6);
    const recorder = new Recorder();
    const second = new Trainer(quiet({ maxEpochs: 3, callbacks: [recorder, new ModelCheckpoint({ dirpath: dir, saveLast: true })] }));
    await second.fit(
      second.initModule(() => new Classifier()),
      loader(12),
      undefined,
      { ckptPath: "last" },
    );
    expect(second.globalStep).toBe(9);
    expect(second.losses).toHaveLength(3);
    expect(recorder.calls.slice(0, 3)).toEqual(["setup:fit", "onLoadCheckpoint:6", "onFitStart"]);
  });

  it('"last" picks the most recently written of several last files', async () => {
    const [a, b] = [dirs(), dirs()];
    const trainer = new Trainer(
      quiet({
        maxEpochs: 1,
        callbacks: [new ModelCheckpoint({ dirpath: a, saveLast: true }), new ModelCheckpoint({ dirpath: b, saveLast: true, monitor: "train_loss" })],
      }),
    );
    await trainer.fit(
      trainer.initModule(() => new Classifier()),
      loader(8),
    );
    utimesSync(join(a, "last.safetensors"), new Date(), new Date(Date.now() + 60_000));
    const recorder = new Recorder();
    trainer.callbacks.push(recorder);
    await trainer.validate(
      trainer.initModule(() => new Classifier()),
      loader(4),
      { ckptPath: "last" },
    );
    expect(recorder.calls).toContain("onLoadCheckpoint:2");
    const info: CheckpointInfo[] = [];
    trainer.callbacks.push({ onLoadCheckpoint: (_t, _m, c) => void info.push(c) });
    await trainer.test(
      trainer.initModule(() => new Classifier()),
      loader(4),
      { ckptPath: "last" },
    );
    expect(info.map((i) => i.path)).toEqual([join(a, "last.safetensors")]);
  });

  it('"best" loads the best model\'s weights for validate and test', async () => {
    const dir = dirs();
    const checkpoint = new ModelCheckpoint({ dirpath: dir, monitor: "val_loss", saveTopK: 1 });
    const trainer = new Trainer(quiet({ maxEpochs: 4, seed: 5, callbacks: [checkpoint] }));
    const model = trainer.initModule(() => new Classifier());
    await trainer.fit(model, loader(24), loader(12, 4, 9));
    expect(checkpoint.bestModelPath).not.toBe("");
    const fresh = trainer.initModule(() => new Classifier());
    const before = await trainer.validate(fresh, loader(12, 4, 9));
    const best = await trainer.validate(fresh, loader(12, 4, 9), { ckptPath: "best" });
    expect(best.val_loss).not.toBeCloseTo(before.val_loss!, 3);
    expect(best.val_loss).toBeCloseTo(checkpoint.bestModelScore!, 6);
    const tested = await trainer.test(
      trainer.initModule(() => new Classifier()),
      loader(12, 4, 9),
      { ckptPath: "best" },
    );
    expect(tested.test_acc).toBeGreaterThan(0.8);
  });

  it("explains when there is no checkpoint to load", async () => {
    const none = new Trainer(quiet());
    const model = none.initModule(() => new Classifier());
    await expect(none.fit(model, loader(8), undefined, { ckptPath: "last" })).rejects.toThrow(CheckpointNotFoundError);
    await expect(none.validate(model, loader(8), { ckptPath: "best" })).rejects.toThrow(
      /validate\(ckptPath: "best"\): the Trainer has no ModelCheckpoint callback/,
    );
    const unsaved = new Trainer(quiet({ callbacks: [new ModelCheckpoint({ dirpath: dirs() })] }));
    await expect(unsaved.test(model, loader(8), { ckptPath: "best" })).rejects.toThrow(/has not saved a checkpoint yet/);
    await expect(unsaved.fit(model, loader(8), undefined, { ckptPath: "last" })).rejects.toThrow(/no last checkpoint exists.*saveLast: true/);
    await expect(unsaved.fit(model, loader(8), undefined, { ckptPath: "" })).rejects.toThrow(/fit ckptPath must be a checkpoint path, "last" or "best"/);
  });
});

describe("model summary", () => {
  it("lists layers with parameter counts, dtypes and bytes, and the totals", () => {
    const trainer = new Trainer(quiet({ precision: "bf16-true" }));
    const model = trainer.initModule(() => new Classifier());
    const top = summarize(model);
    expect(top).toEqual({
      layers: [{ name: "net", type: "Sequential", params: 131, trainableParams: 131, dtypes: ["bfloat16"], bytes: 262 }],
      trainableParams: 131,
      nonTrainableParams: 0,
      totalParams: 131,
      totalBytes: 262,
    });
    const deep = summarize(model, { maxDepth: 2 });
    // Sequential's children are named as its parameters are (net.layers.0 today; net.0 in PyTorch).
    const names = [...model.net.namedChildren()].map(([n]) => `net.${n}`);
    expect(deep.layers.map((l) => [l.name, l.type, l.params])).toEqual([
      ["net", "Sequential", 131],
      [names[0], "Linear", 80],
      [names[1], "ReLU", 0],
      [names[2], "Dropout", 0],
      [names[3], "Linear", 51],
    ]);
    const table = formatSummary(deep).split("\n");
    expect(table[0]).toMatch(/^ *\| Name +\| Type +\| Params \| DType +\| Bytes$/);
    expect(
      table
        .find((row) => row.startsWith("1 |"))
        ?.split("|")
        .map((c) => c.trim()),
    ).toEqual(["1", names[0], "Linear", "80", "bfloat16", "160 B"]);
    expect(table.at(-1)).toBe("262 B   Total parameter bytes (as held)");
  });

  it("is printed at fit start unless enableModelSummary is false", async () => {
    const printed: string[] = [];
    const trainer = new Trainer(quiet({ maxEpochs: 1, enableModelSummary: true }));
    expect(trainer.callbacks.some((c) => c instanceof ModelSummary)).toBe(true);
    expect(new Trainer(quiet()).callbacks.some((c) => c instanceof ModelSummary)).toBe(false);
    const own = new Trainer(quiet({ maxEpochs: 1, callbacks: [new ModelSummary({ write: (t) => printed.push(t) })] }));
    await own.fit(
      own.initModule(() => new Classifier()),
      loader(8),
    );
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain("131     Total params");
  });
});

class BlobData extends LightningDataModule {
  readonly calls: string[] = [];
  override prepareData() {
    this.calls.push("prepareData");
  }
  override setup(stage: TrainerStage) {
    this.calls.push(`setup:${stage}`);
  }
  override teardown(stage: TrainerStage) {
    this.calls.push(`teardown:${stage}`);
  }
  override trainDataloader() {
    this.calls.push("trainDataloader");
    return loader(8);
  }
  override valDataloader() {
    this.calls.push("valDataloader");
    return loader(4);
  }
  override predictDataloader() {
    return loader(6);
  }
}

describe("LightningDataModule", () => {
  it("is prepared, set up, asked for loaders and torn down in Lightning's order", async () => {
    const recorder = new Recorder();
    const data = new BlobData();
    const trainer = new Trainer(quiet({ maxEpochs: 2, numSanityValSteps: 0, callbacks: [recorder] }));
    const model = trainer.initModule(() => new Classifier());
    await trainer.fit(model, data);
    expect(data.calls).toEqual(["prepareData", "setup:fit", "trainDataloader", "valDataloader", "teardown:fit"]);
    expect(data.trainer).toBe(trainer);
    expect(trainer.globalStep).toBe(4);
    expect(recorder.calls.filter((c) => c === "onValidationEpochEnd")).toHaveLength(2);
    expect(recorder.calls[0]).toBe("setup:fit");
    data.calls.length = 0;
    await trainer.validate(model, undefined, { datamodule: data });
    expect(data.calls).toEqual(["prepareData", "setup:validate", "valDataloader", "teardown:validate"]);
    expect(await trainer.predict(model, undefined, { datamodule: data })).toHaveLength(2);
  });

  it("explains a missing loader, two data sources and unknown options", async () => {
    const trainer = new Trainer(quiet({ maxEpochs: 1 }));
    const model = trainer.initModule(() => new Classifier());
    await expect(trainer.test(model, new BlobData())).rejects.toThrow(MissingDataloaderError);
    await expect(trainer.test(model, new BlobData())).rejects.toThrow("test() needs BlobData.testDataloader(), which it does not define.");
    await expect(trainer.fit(model, loader(8), undefined, { datamodule: new BlobData() })).rejects.toThrow(/both a DataLoader and a datamodule/);
    await expect(trainer.fit(model, new BlobData(), loader(4))).rejects.toThrow(/both a validation DataLoader and a datamodule/);
    await expect(trainer.fit(model)).rejects.toThrow(/fit\(\) needs a DataLoader or a datamodule/);
    await expect(trainer.fit(model, loader(8), undefined, { ckpt_path: "last" } as unknown as { ckptPath: string })).rejects.toThrow(UnknownOptionError);
    class Broken extends LightningDataModule {
      override trainDataloader() {
        return [] as unknown as DataLoader;
      }
    }
    await expect(trainer.fit(model, new Broken())).rejects.toThrow("Broken.trainDataloader() must return a DataLoader; got an array of 0");
  });
});

describe("Trainer option keys", () => {
  it("accept the new loop options and suggest them for snake_case", () => {
    const options: TrainerOptions = {
      fastDevRun: 1,
      valCheckInterval: 0.5,
      maxTime: "00:00:01:00",
      minEpochs: 1,
      minSteps: 1,
      numSanityValSteps: -1,
      limitTestBatches: 0.5,
      limitPredictBatches: 2,
      enableModelSummary: false,
    };
    expect(() => new Trainer(quiet(options))).not.toThrow();
    expect(() => new Trainer(quiet({ fast_dev_run: true } as unknown as TrainerOptions))).toThrow(/Did you mean "fastDevRun"/);
    expect(() => new Trainer(quiet({ enableModelSummary: "no" } as unknown as TrainerOptions))).toThrow(/enableModelSummary must be true or false/);
  });
});

// Keeps the Batch import used when the file is type-checked on its own.
export type { Batch };
