import { describe, expect, it } from "vitest";
import {
  CANONICAL_PRECISIONS,
  DataLoader,
  FloatPrecision,
  HalfPrecision,
  InvalidAmpLevelError,
  LightningModule,
  Linear,
  MasterWeightsPrecision,
  MixedPrecision,
  PrecisionConflictError,
  ReLU,
  ReferenceBackend,
  Runtime,
  SGD,
  Sequential,
  TensorDataset,
  Trainer,
  UnsupportedPrecisionError,
  crossEntropy,
  manualSeed,
  precisionPluginForAmpLevel,
  referenceAccelerator,
  roundToFloat16,
  tensor,
  type Batch,
  type Precision,
  type Tensor,
} from "../src/index.js";

const accelerator = (supportedPrecisions: readonly Precision[] = CANONICAL_PRECISIONS) => referenceAccelerator({ name: "ref", supportedPrecisions });

class Net extends LightningModule {
  readonly net = new Sequential(new Linear(6, 16), new ReLU(), new Linear(16, 3));
  forward(x: Tensor) {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch) {
    return crossEntropy(this.forward(x!), y!).cast("float32");
  }
  configureOptimizers() {
    return new SGD(this.parameters(), { lr: 0.05, momentum: 0.9 });
  }
}

const data = () =>
  new TensorDataset(
    { data: Array.from({ length: 48 * 6 }, (_, i) => Math.sin(i * 0.37) + (Math.floor(i / 6) % 3) * 0.8), sampleShape: [6] },
    { data: Array.from({ length: 48 }, (_, i) => i % 3), sampleShape: [], dtype: "int32" },
  );

describe("Apex optimization levels", () => {
  it("map O0-O3 onto the precision plugins", () => {
    expect(precisionPluginForAmpLevel("O0")).toBeInstanceOf(FloatPrecision);
    const o1 = precisionPluginForAmpLevel("O1") as MixedPrecision;
    expect([o1.precision, o1.paramDType, o1.autocastDType, o1.scaler?.scale]).toEqual(["16-mixed", "float32", "float16", 65536]);
    const o2 = precisionPluginForAmpLevel("O2") as MasterWeightsPrecision;
    expect([o2.paramDType, o2.autocastDType, o2.scaler.scale]).toEqual(["float16", null, 65536]);
    const o3 = precisionPluginForAmpLevel("O3");
    expect(o3).toBeInstanceOf(HalfPrecision);
    expect(o3.precision).toBe("16-true");
  });

  it("refuses an unknown level, listing the four", () => {
    expect(() => precisionPluginForAmpLevel("O4")).toThrow(InvalidAmpLevelError);
    // @ts-expect-error: "o1" does not compile; plain JavaScript gets the run-time error.
    expect(() => new Trainer({ accelerator: accelerator(), ampLevel: "o1", logger: false })).toThrow(
      'ampLevel "o1" is not supported. Expected one of: "O0", "O1", "O2", "O3".',
    );
    expect(() => new Trainer({ accelerator: accelerator(["32-true", "bf16-mixed"]), ampLevel: "O2", logger: false })).toThrow(UnsupportedPrecisionError);
    expect(() => new Trainer({ accelerator: accelerator(), ampLevel: "O1", precision: "32-true", logger: false })).toThrow(PrecisionConflictError);
  });

  it("O2 trains float16 weights from float32 master weights", async () => {
    manualSeed(1);
    const trainer = new Trainer({
      accelerator: accelerator(),
      ampLevel: "O2",
      maxEpochs: 6,
      logger: false,
      enableProgressBar: false,
      enableCheckpointing: false,
    });
    const model = new Net();
    await trainer.fit(model, new DataLoader(data(), { batchSize: 12, shuffle: true }));
    expect(model.parameters().every((p) => p.dtype === "float16")).toBe(true);
    const masters = trainer.optimizer!.params;
    expect(masters.every((p) => p.dtype === "float32")).toBe(true);
    expect(trainer.optimizer!.state.get(masters[0]!)!.momentumBuffer!.dtype).toBe("float32");
    // The model holds the masters rounded to float16, and the masters hold more precision.
    const [w16, w32] = [await model.parameters()[0]!.data(), await masters[0]!.data()];
    expect(Array.from(w16)).toEqual(Array.from(w32).map(roundToFloat16));
    expect(Array.from(w32).some((v) => roundToFloat16(v) !== v)).toBe(true);
    expect(trainer.losses.at(-1)!).toBeLessThan(trainer.losses[0]! * 0.6);
  });

  it("O2 skips steps with overflowing float16 gradients and backs the scale off", () =>
    new Runtime(new ReferenceBackend()).run(async () => {
      const plugin = new MasterWeightsPrecision();
      const model = plugin.convertModule(new Sequential(new Linear(4, 2)));
      const optimizer = new SGD(model.parameters(), { lr: 0.1 });
      const before = Array.from(await model.parameters()[0]!.data());
      const x = tensor([1000, 2000, 3000, 4000], [1, 4], "float16");
      const outcome = await plugin.optimizerStep(optimizer, model.forward(x).sum().cast("float32"));
      expect(outcome.skipped).toBe(true);
      expect(plugin.scaler.scale).toBe(32768);
      expect(Array.from(await model.parameters()[0]!.data())).toEqual(before);
    }));
});
