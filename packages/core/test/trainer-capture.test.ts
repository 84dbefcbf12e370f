import { describe, expect, it } from "vitest";
import {
  Adam,
  BatchNorm1d,
  crossEntropy,
  DataLoader,
  LabelOutOfRangeError,
  LightningModule,
  Linear,
  MemoryLogger,
  ReLU,
  Sequential,
  SGD,
  StepLR,
  Trainer,
  type Batch,
  type Callback,
  type Precision,
  type Tensor,
  type TrainerOptions,
} from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

/** A classifier without dropout (capturable): batch norm, a scheduled lr, a logged accuracy. */
class Capturable extends LightningModule {
  readonly net = new Sequential(new Linear(4, 16), new BatchNorm1d(16), new ReLU(), new Linear(16, 3));
  constructor(readonly opt: "sgd" | "adam") {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    const logits = this.forward(x!);
    const loss = crossEntropy(logits, y!);
    this.log("train_loss", loss, { progBar: true });
    this.log("train_acc", logits.max(1, true).equal(logits).cast("float32").mean(), { onEpoch: true });
    return loss;
  }
  override validationStep([x, y]: Batch): void {
    this.log("val_loss", crossEntropy(this.net.forward(x!), y!));
  }
  configureOptimizers() {
    const optimizer = this.opt === "sgd" ? new SGD(this.parameters(), { lr: 0.05, momentum: 0.9 }) : new Adam(this.parameters(), { lr: 0.01 });
    return { optimizer, lrScheduler: { scheduler: new StepLR(optimizer, 7, 0.5), interval: "step" as const } };
  }
}

async function fit(captureSteps: boolean, options: TrainerOptions & { opt?: "sgd" | "adam"; module?: () => LightningModule } = {}) {
  const { opt = "sgd", module, ...rest } = options;
  const logger = new MemoryLogger();
  const trainer = new Trainer(quiet({ maxEpochs: 3, seed: 5, logger, logEveryNSteps: 1, captureSteps, ...rest }));
  const model = trainer.initModule(module ?? (() => new Capturable(opt)));
  // 30 samples in batches of 8: three full batches and a last one of 6 per epoch.
  await trainer.fit(model, new DataLoader(blobs(30, 2), { batchSize: 8 }), new DataLoader(blobs(12, 3), { batchSize: 6 }));
  const weights = await Promise.all([...model.parameters(), ...model.buffers()].map(async (t) => Array.from(await t.toHost())));
  // What a checkpoint holds of the optimizer and the precision plugin (step counts, step scalars, the scaler).
  const optimizerState = await trainer.optimizer!.stateDict();
  const pluginState = trainer.precisionPlugin.stateDict();
  return { trainer, losses: [...trainer.losses], weights, metrics: logger.rows, callbackMetrics: { ...trainer.callbackMetrics }, optimizerState, pluginState };
}

describe("Trainer captureSteps", () => {
  for (const [precision, opt] of [
    ["32-true", "sgd"],
    ["32-true", "adam"],
    ["16-mixed", "sgd"],
    ["bf16-mixed", "adam"],
  ] as [Precision, "sgd" | "adam"][])
    it(`trains exactly as without capture (${precision}, ${opt}, StepLR per step, batch norm, logged metrics, a smaller last batch)`, async () => {
      const plain = await fit(false, { precision, opt });
      const captured = await fit(true, { precision, opt });
      expect(captured.losses).toEqual(plain.losses);
      expect(captured.weights).toEqual(plain.weights);
      expect(captured.metrics).toEqual(plain.metrics);
      expect(captured.metrics.filter((r) => "train_acc" in r).length).toBeGreaterThan(10);
      expect(captured.callbackMetrics).toEqual(plain.callbackMetrics);
      expect(captured.optimizerState).toEqual(plain.optimizerState);
      expect(captured.pluginState).toEqual(plain.pluginState);
      expect(captured.trainer.globalStep).toBe(plain.trainer.globalStep);
      const stats = captured.trainer.stepCapture!.stats;
      expect(stats.refusal).toBeNull();
      // Per epoch, the last smaller batch is recorded; the full ones replay once captured.
      expect(stats.replayed).toBeGreaterThanOrEqual(5);
      expect(stats.replayed + stats.recorded).toBe(12);
      expect(plain.trainer.stepCapture).toBeNull();
    });

  it("falls back to recorded steps with the reason when the model uses dropout", async () => {
    const warnings: string[] = [];
    const plain = await fit(false, { module: () => new Classifier("sgd") });
    const captured = await fit(true, { module: () => new Classifier("sgd"), warn: (m) => warnings.push(m) });
    expect(captured.losses).toEqual(plain.losses);
    expect(captured.trainer.stepCapture!.stats.replayed).toBe(0);
    expect(captured.trainer.stepCapture!.stats.refusal).toMatch(/changed between two steps/);
    expect(warnings.filter((w) => w.startsWith("Step capture:"))).toHaveLength(1);
  });

  it("refuses, naming why, with an in-step callback hook or gradient accumulation", async () => {
    const hook: Callback = { onBeforeBackward: () => {} };
    const withHook = await fit(true, { callbacks: [hook] });
    expect(withHook.trainer.stepCapture!.enabled).toBe(false);
    expect(withHook.trainer.stepCapture!.stats.refusal).toMatch(/implements onBeforeBackward/);
    const accumulating = await fit(true, { accumulateGradBatches: 2 });
    expect(accumulating.trainer.stepCapture!.stats.refusal).toMatch(/accumulateGradBatches/);
    expect(accumulating.trainer.stepCapture!.stats.replayed).toBe(0);
  });

  it("replays with gradient clipping, which runs inside the step's program", async () => {
    const plain = await fit(false, { gradientClipVal: 0.05 });
    const captured = await fit(true, { gradientClipVal: 0.05 });
    expect(captured.losses).toEqual(plain.losses);
    expect(captured.weights).toEqual(plain.weights);
    expect(captured.trainer.stepCapture!.stats.replayed).toBeGreaterThanOrEqual(5);
  });

  it("replays in-step label checks (labels reshaped inside the step) and still names a bad label's batch", async () => {
    class ReshapedLabels extends Capturable {
      override trainingStep([x, y]: Batch): Tensor {
        const rows = y!.shape[0]!;
        return crossEntropy(this.forward(x!), y!.reshape([2, rows / 2]).reshape([rows]));
      }
    }
    const module = () => new ReshapedLabels("sgd");
    const plain = await fit(false, { module });
    const captured = await fit(true, { module });
    expect(captured.losses).toEqual(plain.losses);
    expect(captured.trainer.stepCapture!.stats.refusal).toBeNull();
    expect(captured.trainer.stepCapture!.stats.replayed).toBeGreaterThanOrEqual(5);
    // Sample 44 sits in batch 5, after the capture.
    const badLabel = async (captureSteps: boolean) => {
      const trainer = new Trainer(quiet({ maxEpochs: 1, seed: 5, captureSteps }));
      const model = trainer.initModule(module);
      const data = new DataLoader(
        blobs(48, 2, (i) => (i === 44 ? 3 : i % 3)),
        { batchSize: 8 },
      );
      return trainer.fit(model, data).then(
        () => null,
        (e: Error) => ({ error: e, replayed: trainer.stepCapture?.stats.replayed ?? 0 }),
      );
    };
    const [plainError, capturedError] = [await badLabel(false), await badLabel(true)];
    expect(capturedError!.error).toBeInstanceOf(LabelOutOfRangeError);
    expect(capturedError!.error.message).toBe(plainError!.error.message);
    expect(capturedError!.error.message).toMatch(/train batch 5 of epoch 0/);
    expect(capturedError!.replayed).toBeGreaterThanOrEqual(1);
  });

  it("rejects a malformed captureSteps option", () => {
    expect(() => new Trainer(quiet({ captureSteps: { verifyEvery: -1 } }))).toThrow(/captureSteps.verifyEvery/);
    expect(() => new Trainer(quiet({ captureSteps: "yes" as never }))).toThrow(/captureSteps/);
  });
});
