import { describe, expect, it } from "vitest";
import {
  DataLoader,
  EarlyStopping,
  InvalidArgumentError,
  MemoryLogger,
  ModelCheckpoint,
  parseDuration,
  Timer,
  Trainer,
  type Batch,
  type Callback,
  type TrainerOptions,
} from "../src/index.js";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blobs, Classifier, quiet } from "./helpers.js";

/** A Classifier that counts its steps (sanity-check ones apart) and logs a constant validation metric. */
class Counting extends Classifier {
  trainSteps = 0;
  valSteps = 0;
  sanitySteps = 0;
  testSteps = 0;
  override trainingStep(batch: Batch, batchIdx: number) {
    this.trainSteps++;
    return super.trainingStep(batch, batchIdx);
  }
  override validationStep(batch: Batch): void {
    if (this.trainer?.sanityChecking) this.sanitySteps++;
    else this.valSteps++;
    super.validationStep(batch);
    this.log("constant", 1);
  }
  override testStep(batch: Batch): void {
    this.testSteps++;
    super.testStep(batch);
  }
}

/** Records the global step at each validation (not the sanity check). */
class ValidationSteps implements Callback {
  readonly steps: number[] = [];
  onValidationEpochEnd(trainer: Trainer): void {
    this.steps.push(trainer.globalStep);
  }
}

const loader = (n: number, batchSize = 4, seed = 1) => new DataLoader(blobs(n, seed), { batchSize });
const setup = (options: TrainerOptions) => {
  const trainer = new Trainer(quiet(options));
  return { trainer, model: trainer.initModule(() => new Counting()) };
};

describe("batch limits", () => {
  it("limit test and predict batches by count or fraction; 0 disables", async () => {
    for (const [limit, expected] of [
      [0.5, 3],
      [2, 2],
      [0, 0],
      [1, 1],
      [100, 6],
    ] as const) {
      const { trainer, model } = setup({ limitTestBatches: limit, limitPredictBatches: limit });
      const metrics = await trainer.test(model, loader(24));
      expect(model.testSteps).toBe(expected);
      expect(Object.keys(metrics).length > 0).toBe(expected > 0);
      expect(await trainer.predict(model, loader(24))).toHaveLength(expected);
    }
  });

  it("limit training and validation batches by fraction; limitValBatches 0 turns validation off", async () => {
    const { trainer, model } = setup({ maxEpochs: 2, limitTrainBatches: 0.5, limitValBatches: 0.25, numSanityValSteps: 0 });
    await trainer.fit(model, loader(24), loader(16));
    expect(model.trainSteps).toBe(6);
    expect(model.valSteps).toBe(2);
    const off = setup({ maxEpochs: 2, limitValBatches: 0 });
    const seen = new ValidationSteps();
    off.trainer.callbacks.push(seen);
    await off.trainer.fit(off.model, loader(8), loader(8));
    expect(off.model.valSteps + off.model.sanitySteps).toBe(0);
    expect(seen.steps).toEqual([]);
  });

  it("reject limits Lightning rejects, naming the option", async () => {
    for (const limitTestBatches of [1.5, -1, Number.NaN, "1"])
      expect(() => new Trainer(quiet({ limitTestBatches } as unknown as TrainerOptions))).toThrow(/limitTestBatches/);
    const { trainer, model } = setup({ limitPredictBatches: 0.1 });
    await expect(trainer.predict(model, loader(8))).rejects.toThrow(/limitPredictBatches must be at least 0.5/);
  });
});

describe("fastDevRun", () => {
  it("runs n batches of each loop in one epoch, without sanity check, logger or checkpoints", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-fastdev-"));
    const logger = new MemoryLogger();
    for (const [fastDevRun, n] of [
      [true, 1],
      [3, 3],
    ] as const) {
      const checkpoint = new ModelCheckpoint({ dirpath: join(dir, String(n)), saveLast: true });
      const early = new EarlyStopping({ monitor: "missing_metric" });
      const { trainer, model } = setup({ fastDevRun, maxEpochs: 10, logger, callbacks: [checkpoint, early] });
      expect(trainer.logger).toBeNull();
      await trainer.fit(model, loader(40), loader(40));
      expect([model.trainSteps, model.valSteps, model.sanitySteps, trainer.globalStep]).toEqual([n, n, 0, n]);
      expect(existsSync(join(dir, String(n)))).toBe(false);
      expect(checkpoint.lastModelPath).toBe("");
      await trainer.test(model, loader(40));
      expect(model.testSteps).toBe(n);
      expect(await trainer.predict(model, loader(40))).toHaveLength(n);
    }
    expect(logger.rows).toEqual([]);
  });

  it("accepts true, false or a count", () => {
    expect(new Trainer(quiet({ fastDevRun: false })).fastDevRun).toBe(0);
    expect(new Trainer(quiet({ fastDevRun: 2 })).fastDevRun).toBe(2);
    for (const bad of [-1, 1.5, "yes"]) expect(() => new Trainer(quiet({ fastDevRun: bad } as unknown as TrainerOptions))).toThrow(InvalidArgumentError);
  });
});

describe("valCheckInterval", () => {
  const run = async (valCheckInterval: number | undefined, checkValEveryNEpoch = 1) => {
    const seen = new ValidationSteps();
    const { trainer, model } = setup({ maxEpochs: 2, valCheckInterval, checkValEveryNEpoch, numSanityValSteps: 0, callbacks: [seen] });
    await trainer.fit(model, loader(48), loader(8)); // 12 batches per epoch
    return seen.steps;
  };

  it("validates every n batches (an integer) or every fraction of the epoch", async () => {
    expect(await run(undefined)).toEqual([12, 24]);
    expect(await run(0.25)).toEqual([3, 6, 9, 12, 15, 18, 21, 24]);
    expect(await run(0.4)).toEqual([4, 8, 12, 16, 20, 24]);
    expect(await run(5)).toEqual([5, 10, 17, 22]);
    expect(await run(6, 2)).toEqual([18, 24]);
  });

  it("rejects an interval longer than the epoch and values that are neither", async () => {
    await expect(run(13)).rejects.toThrow(/valCheckInterval must be at most the number of training batches \(12\)/);
    for (const bad of [0, -0.5, 1.5, "1"]) expect(() => new Trainer(quiet({ valCheckInterval: bad } as unknown as TrainerOptions))).toThrow(/valCheckInterval/);
  });
});

describe("numSanityValSteps", () => {
  it("runs 2 validation batches before training by default, all with -1, none with 0; their metrics are discarded", async () => {
    for (const [numSanityValSteps, expected] of [
      [undefined, 2],
      [-1, 3],
      [0, 0],
      [1, 1],
    ] as const) {
      const logger = new MemoryLogger();
      const { trainer, model } = setup({ maxEpochs: 1, logger, numSanityValSteps });
      let trainedBeforeSanity = false;
      const original = model.validationStep.bind(model);
      model.validationStep = (batch: Batch) => {
        if (trainer.sanityChecking && model.trainSteps > 0) trainedBeforeSanity = true;
        original(batch);
      };
      await trainer.fit(model, loader(8), loader(12));
      expect(model.sanitySteps).toBe(expected);
      expect(trainedBeforeSanity).toBe(false);
      expect(model.valSteps).toBe(3);
      expect(logger.rows.filter((r) => "val_loss" in r)).toHaveLength(1);
    }
    expect(() => new Trainer(quiet({ numSanityValSteps: -2 }))).toThrow(/numSanityValSteps must be an integer >= -1/);
  });
});

describe("maxTime and the Timer", () => {
  it("stops fit once the duration has passed, checked after each batch", async () => {
    let trainer!: Trainer;
    // A clock that advances one second per optimizer step: the run stops after 5 steps.
    const timer = new Timer({ duration: { seconds: 5 }, clock: () => trainer.globalStep * 1000 });
    ({ trainer } = setup({ callbacks: [timer], maxEpochs: -1 }));
    const model = trainer.initModule(() => new Counting());
    await trainer.fit(model, loader(24));
    expect(trainer.globalStep).toBe(5);
    expect(timer.timeElapsed("fit")).toBe(5000);
    expect(timer.timeRemaining()).toBe(0);
  });

  it("validates at the batch where a stop request ends training", async () => {
    let trainer!: Trainer;
    const seen = new ValidationSteps();
    const timer = new Timer({ duration: 5000, clock: () => trainer.globalStep * 1000 });
    ({ trainer } = setup({ callbacks: [timer, seen], numSanityValSteps: 0 }));
    await trainer.fit(
      trainer.initModule(() => new Counting()),
      loader(48),
      loader(8),
    );
    expect(seen.steps).toEqual([5]);
  });

  it("saves the elapsed time in checkpoints and keeps counting after a resume", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-timer-"));
    let first!: Trainer;
    const firstTimer = new Timer({ clock: () => first.globalStep * 1000 });
    ({ trainer: first } = setup({ maxEpochs: 1, callbacks: [firstTimer, new ModelCheckpoint({ dirpath: dir, saveLast: true })] }));
    await first.fit(
      first.initModule(() => new Counting()),
      loader(12),
    );
    const resumed = new Timer({ clock: () => 0 });
    const elapsedAtLoad: number[] = [];
    const probe: Callback = { onLoadCheckpoint: () => void elapsedAtLoad.push(resumed.timeElapsed("fit")) };
    const { trainer } = setup({ maxEpochs: 1, callbacks: [resumed, probe, new ModelCheckpoint({ dirpath: dir, saveLast: true })] });
    await trainer.fit(
      trainer.initModule(() => new Counting()),
      loader(12),
      undefined,
      { ckptPath: "last" },
    );
    expect(elapsedAtLoad).toEqual([3000]);
  });

  it("maxTime adds a Timer, makes epochs unlimited, and stops a real run", async () => {
    const trainer = new Trainer(quiet({ maxTime: 5 }));
    expect(trainer.maxEpochs).toBe(Infinity);
    expect(trainer.callbacks.filter((c) => c instanceof Timer).map((t) => (t as Timer).durationMs)).toEqual([5]);
    // Each training step waits 6 ms of wall time, so the first batch crosses the 5 ms limit.
    const slow = trainer.initModule(
      () =>
        new (class extends Counting {
          override trainingStep(batch: Batch, batchIdx: number) {
            const until = performance.now() + 6;
            while (performance.now() < until);
            return super.trainingStep(batch, batchIdx);
          }
        })(),
    );
    await trainer.fit(slow, loader(24));
    expect(trainer.globalStep).toBe(1);
    const warnings: string[] = [];
    const own = new Timer();
    const kept = new Trainer(quiet({ maxTime: "00:01:00:00", callbacks: [own], warn: (m) => warnings.push(m) }));
    expect(kept.callbacks.filter((c) => c instanceof Timer)).toEqual([own]);
    expect(warnings).toEqual(["maxTime is ignored: the callbacks already hold a Timer, which sets the time limit."]);
  });

  it("parses Lightning's duration forms and rejects others", () => {
    expect(parseDuration("d", "01:02:03:04")).toBe(((24 + 2) * 3600 + 3 * 60 + 4) * 1000);
    expect(parseDuration("d", { hours: 1, seconds: 0.5 })).toBe(3_600_500);
    expect(parseDuration("d", 250)).toBe(250);
    for (const bad of ["1:2:3", "00:00:00:00", { weeks: 1 }, { hours: -1 }, 0, Number.POSITIVE_INFINITY, null])
      expect(() => new Trainer(quiet({ maxTime: bad } as unknown as TrainerOptions))).toThrow(/Trainer maxTime/);
  });

  it("keeps counting from a restored state", () => {
    let now = 0;
    const timer = new Timer({ clock: () => now });
    timer.setup(null as never, null as never, "fit");
    now = 700;
    const state = timer.stateDict();
    const resumed = new Timer({ clock: () => now });
    resumed.setup(null as never, null as never, "fit");
    resumed.loadStateDict(state);
    now = 1000;
    expect(resumed.timeElapsed("fit")).toBe(1000);
    expect(() => resumed.loadStateDict({ timeElapsed: { fit: -1, validate: 0, test: 0, predict: 0 } })).toThrow(/Timer state timeElapsed.fit/);
  });
});

describe("minEpochs and minSteps", () => {
  it("EarlyStopping cannot stop before minEpochs", async () => {
    for (const [minEpochs, epochs] of [
      [undefined, 2],
      [5, 5],
    ] as const) {
      const early = new EarlyStopping({ monitor: "constant", patience: 0 });
      const { trainer, model } = setup({ maxEpochs: 20, minEpochs, callbacks: [early], numSanityValSteps: 0 });
      await trainer.fit(model, loader(8), loader(8));
      expect(trainer.currentEpoch).toBe(epochs);
      expect(trainer.globalStep).toBe(epochs * 2);
    }
  });

  it("a stop request waits for minSteps", async () => {
    let trainer!: Trainer;
    const timer = new Timer({ duration: 2000, clock: () => trainer.globalStep * 1000 });
    ({ trainer } = setup({ callbacks: [timer], maxEpochs: -1, minSteps: 7 }));
    await trainer.fit(
      trainer.initModule(() => new Counting()),
      loader(12),
    );
    expect(trainer.globalStep).toBe(7);
    expect(() => new Trainer(quiet({ minSteps: -1 }))).toThrow(/minSteps must be an integer >= 0/);
  });
});
