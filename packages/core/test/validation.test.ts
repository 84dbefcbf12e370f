import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  Adam,
  AdamW8bit,
  crossEntropy,
  CSVLogger,
  DataLoader,
  EarlyStopping,
  InvalidArgumentError,
  InvalidReturnValueError,
  LabelOutOfRangeError,
  LearningRateMonitor,
  LinearLR,
  ModelCheckpoint,
  NbitError,
  SGD,
  TensorDataset,
  Trainer,
  type Batch,
  type Tensor,
  type TrainerOptions,
} from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

const loader = (n = 32) => new DataLoader(blobs(n), { batchSize: 8 });
const weights = async (m: Classifier) => Array.from(await m.net.parameters()[0]!.data());

describe("loop limits follow Lightning", () => {
  it("maxEpochs -1 has no epoch limit; maxSteps stops it", async () => {
    const trainer = new Trainer(quiet({ maxEpochs: -1, maxSteps: 10 }));
    expect(trainer.maxEpochs).toBe(Infinity);
    await trainer.fit(new Classifier(), loader());
    expect([trainer.globalStep, trainer.losses.length]).toEqual([10, 10]);
  });

  it("maxSteps -1 has no step limit; maxEpochs stops it", async () => {
    const trainer = new Trainer(quiet({ maxEpochs: 2, maxSteps: -1 }));
    await trainer.fit(new Classifier(), loader());
    expect(trainer.globalStep).toBe(8);
  });

  it("maxSteps 0 trains nothing", async () => {
    const trainer = new Trainer(quiet({ maxSteps: 0 }));
    const model = new Classifier();
    const before = await weights(model);
    await trainer.fit(model, loader());
    expect([trainer.globalStep, trainer.losses.length]).toEqual([0, 0]);
    expect(await weights(model)).toEqual(before);
  });

  it("maxEpochs 0 trains nothing; with neither limit, maxEpochs is 1000", async () => {
    const trainer = new Trainer(quiet({ maxEpochs: 0 }));
    await trainer.fit(new Classifier(), loader());
    expect(trainer.globalStep).toBe(0);
    expect(new Trainer(quiet()).maxEpochs).toBe(1000);
    expect(new Trainer(quiet({ maxSteps: 3 })).maxEpochs).toBe(Infinity);
  });

  it("stops at maxSteps inside gradient accumulation windows", async () => {
    const trainer = new Trainer(quiet({ maxSteps: 3, accumulateGradBatches: 2 }));
    await trainer.fit(new Classifier(), loader(64));
    expect([trainer.globalStep, trainer.losses.length]).toEqual([3, 6]);
  });

  it("rejects NaN and other invalid limits", () => {
    for (const [option, value] of [
      ["maxEpochs", NaN],
      ["maxEpochs", -2],
      ["maxEpochs", 1.5],
      ["maxEpochs", "3"],
      ["maxSteps", NaN],
      ["maxSteps", -5],
      ["maxSteps", Infinity],
    ] as const)
      expect(() => new Trainer(quiet({ [option]: value } as TrainerOptions)), `${option}=${String(value)}`).toThrow(
        new RegExp(`^Trainer ${option} must be an integer >= -1; got`),
      );
  });

  it("limits training batches by count or fraction and trains nothing with 0", async () => {
    const half = new Trainer(quiet({ maxEpochs: 1, limitTrainBatches: 0.5 }));
    await half.fit(new Classifier(), loader(64));
    expect(half.globalStep).toBe(4);
    const none = new Trainer(quiet({ maxEpochs: 1, limitTrainBatches: 0 }));
    await none.fit(new Classifier(), loader());
    expect([none.globalStep, none.warnings.some((w) => /No training batches/.test(w))]).toEqual([0, true]);
    await expect(new Trainer(quiet({ limitTrainBatches: 0.01 })).fit(new Classifier(), loader())).rejects.toThrow(/limitTrainBatches must be at least 0\.25/);
  });
});

class LabelledNet extends Classifier {
  constructor(readonly labels: (y: Tensor, batchIdx: number) => Tensor) {
    super("sgd");
  }
  override trainingStep([x, y]: Batch, batchIdx: number): Tensor {
    return crossEntropy(this.forward(x!), this.labels(y!, batchIdx));
  }
}

describe("labels outside [0, classes)", () => {
  /** Blobs whose label at position n - 3 (position 5 of the last batch of 8) is `label`. */
  const withBadLabel = (n: number, label: number) => blobs(n, 1, (i) => (i === n - 3 ? label : i % 3));

  it("host labels: a clear error naming the batch, before the step runs", async () => {
    const model = new Classifier("sgd");
    const before = await weights(model);
    const run = new Trainer(quiet({ maxEpochs: 1 })).fit(model, new DataLoader(withBadLabel(32, 3), { batchSize: 8 }));
    await expect(run).rejects.toThrow(LabelOutOfRangeError);
    await expect(new Trainer(quiet({ maxEpochs: 1 })).fit(new Classifier("sgd"), new DataLoader(withBadLabel(32, -1), { batchSize: 8 }))).rejects.toThrow(
      /crossEntropy: class index -1 at position 5 in train batch 3 of epoch 0 is outside \[0, 3\)/,
    );
    // Batches 0-2 trained; the rejected batch changed nothing of its own.
    expect(await weights(model)).not.toEqual(before);
  });

  it("lazy labels: checked inside the step's program and reported with the batch", async () => {
    const model = new LabelledNet((y, i) => (i === 2 ? y.reshape([8]).add(3) : y.reshape([8])));
    await expect(new Trainer(quiet({ maxEpochs: 1 })).fit(model, loader())).rejects.toThrow(
      /crossEntropy: a class index in train batch 2 of epoch 0 is outside \[0, 3\)/,
    );
    const fine = new Trainer(quiet({ maxEpochs: 1 }));
    await fine.fit(new LabelledNet((y) => y.reshape([8])), loader());
    expect(fine.globalStep).toBe(4);
  });

  it("validation labels name the validation batch", async () => {
    const trainer = new Trainer(quiet({ maxEpochs: 1 }));
    await expect(trainer.fit(new Classifier("sgd"), loader(), new DataLoader(withBadLabel(16, 7), { batchSize: 8 }))).rejects.toThrow(
      /class index 7 at position 5 in validate batch 1 of epoch 0/,
    );
  });
});

describe("hyperparameters are validated where they are defined", () => {
  const params = () => new Classifier().parameters();

  it("optimizers", () => {
    const cases: [() => unknown, RegExp][] = [
      [() => new Adam(params(), { lr: -1 }), /Adam lr must be a finite number >= 0; got -1/],
      [() => new Adam(params(), { lr: NaN }), /Adam lr must be a finite number >= 0; got NaN/],
      [() => new Adam(params(), { betas: [1, 0.999] }), /Adam betas\[0\] must be a finite number in \[0, 1\); got 1/],
      [() => new Adam(params(), { betas: [0.9, -0.1] }), /Adam betas\[1\] must be a finite number in \[0, 1\); got -0\.1/],
      [() => new Adam(params(), { eps: -1e-8 }), /Adam eps must be/],
      [() => new AdamW8bit(params(), { weightDecay: -0.01 }), /AdamW8bit weightDecay must be a finite number >= 0/],
      [() => new SGD(params(), { lr: -0.1 }), /SGD lr must be a finite number >= 0; got -0\.1/],
      [() => new SGD(params(), { lr: 0.1, momentum: -0.9 }), /SGD momentum must be/],
      [() => new SGD(params(), { lr: 0.1, nesterov: true }), /SGD nesterov must be used with momentum > 0 and dampening 0/],
      [() => new SGD(params(), {} as { lr: number }), /SGD lr must be a finite number >= 0; got undefined/],
      [() => new SGD([], { lr: 0.1 }), /SGD params must be a non-empty list/],
      [() => new Adam([{ params: params() }, { params: params(), lr: -2 }]), /Adam paramGroups\[1\] lr must be/],
    ];
    for (const [make, message] of cases) expect(make, String(message)).toThrow(message);
  });

  it("optimizer state restores are held to the same rules and apply nothing when rejected", async () => {
    const model = new Classifier("sgd");
    const trainer = new Trainer(quiet({ maxSteps: 2 }));
    await trainer.fit(model, loader());
    const optimizer = trainer.optimizer!;
    const state = await optimizer.stateDict();
    const bad = { ...state, paramGroups: [{ ...state.paramGroups[0]!, lr: -1 }] };
    expect(() => optimizer.loadStateDict(bad)).toThrow(/SGD state paramGroups\[0\] lr must be a finite number >= 0; got -1/);
    expect(optimizer.paramGroups[0]!.lr).toBe(0.05);
    expect(() => optimizer.loadStateDict({ ...state, paramGroups: [{ ...state.paramGroups[0]!, nesterov: true, dampening: 0.5 }] })).toThrow(
      /SGD state paramGroups\[0\] nesterov must be used with momentum > 0 and dampening 0/,
    );
  });

  it("trainer options", () => {
    const cases: [TrainerOptions, RegExp][] = [
      [{ logEveryNSteps: 0 }, /Trainer logEveryNSteps must be an integer >= 1; got 0/],
      [{ checkValEveryNEpoch: 0 }, /Trainer checkValEveryNEpoch must be an integer >= 1; got 0/],
      [{ limitTrainBatches: -1 }, /Trainer limitTrainBatches must be an integer >= 0; got -1/],
      [{ limitTrainBatches: NaN }, /Trainer limitTrainBatches must be an integer >= 0; got NaN/],
      [{ limitTrainBatches: 1.5 }, /Trainer limitTrainBatches must be an integer >= 0; got 1\.5/],
      [{ limitValBatches: -3 }, /Trainer limitValBatches must be/],
      [{ seed: NaN }, /Trainer seed must be an integer in \[0, 4294967295\]; got NaN/],
      [{ seed: -1 }, /Trainer seed must be/],
      [{ accumulateGradBatches: 0 }, /Trainer accumulateGradBatches must be an integer >= 1; got 0/],
      [{ gradientClipVal: -1 }, /Trainer gradientClipVal must be a finite number >= 0; got -1/],
      [{ gradientClipAlgorithm: "max" as never }, /Trainer gradientClipAlgorithm must be one of "norm", "value"; got "max"/],
      [{ enableProgressBar: "yes" as never }, /Trainer enableProgressBar must be true or false/],
      [{ logger: 3 as never }, /Trainer logger must be true, false or a Logger; got 3/],
      [{ devices: 0 }, /Trainer devices must be an integer >= 1; got 0/],
    ];
    for (const [options, message] of cases) {
      expect(() => new Trainer(quiet(options)), String(message)).toThrow(InvalidArgumentError);
      expect(() => new Trainer(quiet(options)), String(message)).toThrow(message);
    }
  });

  it("data, callbacks and schedulers", () => {
    const cases: [() => unknown, RegExp][] = [
      [() => new TensorDataset({ data: [1, 2], sampleShape: [-2] }), /TensorDataset field 0 sampleShape\[0\] must be an integer >= 0; got -2/],
      [() => new TensorDataset({ data: [1, 2], sampleShape: [1.5] }), /sampleShape\[0\] must be an integer/],
      [
        () => new TensorDataset({ data: [1, 2], sampleShape: [], dtype: "int64" as never }),
        /TensorDataset field 0 dtype must be one of "float64", .*; got "int64"/,
      ],
      [() => new DataLoader(blobs(4), { batchSize: 0 }), /DataLoader batchSize must be an integer >= 1; got 0/],
      [() => new DataLoader(blobs(4), { seed: NaN }), /DataLoader seed must be/],
      [() => new EarlyStopping({ monitor: "val_loss", patience: -1 }), /EarlyStopping patience must be an integer >= 0; got -1/],
      [() => new EarlyStopping({} as never), /EarlyStopping monitor must be the name of a logged metric; got undefined/],
      [() => new ModelCheckpoint({ saveTopK: -2 }), /ModelCheckpoint saveTopK must be an integer >= -1; got -2/],
      [() => new ModelCheckpoint({ mode: "best" as never }), /ModelCheckpoint mode must be one of "min", "max"/],
      [() => new LearningRateMonitor("batch" as never), /LearningRateMonitor loggingInterval must be one of "step", "epoch"/],
      [() => new LinearLR(new SGD(new Classifier().parameters(), { lr: 0.1 }), 0), /LinearLR startFactor must be a finite number in \(0, 1\]; got 0/],
    ];
    for (const [make, message] of cases) {
      expect(make, String(message)).toThrow(NbitError);
      expect(make, String(message)).toThrow(message);
    }
  });
});

describe("typed errors instead of TypeErrors", () => {
  it("accelerator: null", () => {
    expect(() => new Trainer({ ...quiet(), accelerator: null as never })).toThrow(
      /Trainer accelerator must be a registered name, "auto" or an Accelerator instance; got null/,
    );
  });

  it("configureOptimizers() returning undefined or a malformed config", async () => {
    class NoOptimizer extends Classifier {
      override configureOptimizers() {
        return undefined as never;
      }
    }
    await expect(new Trainer(quiet()).fit(new NoOptimizer(), loader())).rejects.toThrow(InvalidReturnValueError);
    await expect(new Trainer(quiet()).fit(new NoOptimizer(), loader())).rejects.toThrow(
      /NoOptimizer\.configureOptimizers\(\) must return an Optimizer or \{ optimizer, lrScheduler\? \}.*; got undefined/,
    );
    class BadScheduler extends Classifier {
      override configureOptimizers() {
        return { optimizer: new SGD(this.parameters(), { lr: 0.1 }), lrScheduler: { interval: "step" } } as never;
      }
    }
    await expect(new Trainer(quiet()).fit(new BadScheduler(), loader())).rejects.toThrow(InvalidReturnValueError);
  });

  it("trainingStep returning undefined or a non-scalar", async () => {
    class Silent extends Classifier {
      override trainingStep(): Tensor {
        return undefined as never;
      }
    }
    await expect(new Trainer(quiet()).fit(new Silent(), loader())).rejects.toThrow(
      /Silent\.trainingStep\(\) must return the loss: a one-element Tensor, or \{ loss: Tensor \}; got undefined/,
    );
    class PerSample extends Classifier {
      override trainingStep([x, y]: Batch): Tensor {
        return crossEntropy(this.forward(x!), y!, "none");
      }
    }
    await expect(new Trainer(quiet()).fit(new PerSample(), loader())).rejects.toThrow(/got a float32 tensor of shape \[8\]/);
  });

  it("a ckptPath that is not a path", async () => {
    await expect(new Trainer(quiet()).fit(new Classifier(), loader(), undefined, { ckptPath: "" })).rejects.toThrow(
      /fit ckptPath must be a checkpoint path, "last" or "best"; got ""/,
    );
  });
});

describe("CSVLogger", () => {
  it("takes the highest version + 1 and never reuses a run's folder", () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-csv-"));
    mkdirSync(join(dir, "run", "version_0"), { recursive: true });
    mkdirSync(join(dir, "run", "version_2"), { recursive: true });
    mkdirSync(join(dir, "run", "version_x"), { recursive: true });
    const a = new CSVLogger(dir, "run");
    const b = new CSVLogger(dir, "run");
    expect(a.logDir).toBe(join(dir, "run", "version_3"));
    expect(b.logDir).toBe(join(dir, "run", "version_4")); // chosen before a wrote anything
    a.logMetrics({ loss: 1 }, 0);
    a.flush();
    expect(() => new CSVLogger(dir, "run", 3).logDir).toThrow(/version_3 already holds a run's metrics\.csv/);
    expect(() => new CSVLogger(dir, "run", -1)).toThrow(InvalidArgumentError);
  });

  it("escapes metric names and leaves prototype names alone", () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-csv-"));
    const logger = new CSVLogger(dir);
    logger.logMetrics({ 'acc,top"1"': 0.5, "line\nbreak": 2 }, 1);
    logger.logMetrics({ constructor: 3 }, 2);
    logger.flush();
    const csv = readFileSync(join(logger.logDir, "metrics.csv"), "utf8");
    expect(csv).toBe('step,"acc,top""1""","line\nbreak",constructor\n1,0.5,2,\n2,,,3\n');
    expect(existsSync(join(dir, "default", "version_0"))).toBe(true);
  });
});
