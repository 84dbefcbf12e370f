import { describe, expect, it } from "vitest";
import {
  DataLoader,
  FloatPrecision,
  HalfPrecision,
  InvalidArgumentError,
  MasterWeightsPrecision,
  MixedPrecision,
  PrecisionConflictError,
  referenceAccelerator,
  Trainer,
  type TrainerOptions,
} from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

const cpuLike = () => referenceAccelerator({ name: "cpu-like", supportedPrecisions: ["32-true", "bf16-mixed"], legacyHalfPrecision: "bf16-mixed" });
// biome-ignore lint/suspicious/noExplicitAny: plain-JavaScript callers pass anything
const trainer = (options: Record<string, any>) => new Trainer(quiet(options as TrainerOptions));

describe("plugins: [...] as a list", () => {
  it("takes its precision plugin from the list, the same instance", () => {
    const plugin = new MixedPrecision("bf16-mixed");
    const t = trainer({ plugins: [plugin] });
    expect(t.precisionPlugin).toBe(plugin);
    expect(t.precision).toBe("bf16-mixed");
    expect(trainer({ plugins: [] }).precisionPlugin).toBeInstanceOf(FloatPrecision);
  });

  it("refuses two precision plugins, and anything that is not a plugin", () => {
    expect(() => trainer({ plugins: [new FloatPrecision(), new MixedPrecision("16-mixed")] })).toThrow(
      /Received 2 precision plugins \(FloatPrecision\("32-true"\), MixedPrecision\("16-mixed"\)\); pass one/,
    );
    expect(() => trainer({ plugin: new FloatPrecision(), plugins: [new FloatPrecision()] })).toThrow(PrecisionConflictError);
    expect(() => trainer({ plugins: ["16-mixed"] })).toThrow(InvalidArgumentError);
    expect(() => trainer({ plugins: new FloatPrecision() })).toThrow(/Trainer plugins.*a list of PrecisionPlugin instances/);
  });

  it("a plugin that conflicts with an explicit precision is a PrecisionConflictError, one that agrees is accepted", () => {
    expect(() => trainer({ precision: "32-true", plugins: [new MixedPrecision("16-mixed")] })).toThrow(PrecisionConflictError);
    expect(() => trainer({ precision: "bf16-true", plugin: new HalfPrecision("16-true") })).toThrow(
      'precision="bf16-true" means "bf16-true" on "ref", but the plugin HalfPrecision("16-true") runs "16-true"; pass one of them, or make them agree.',
    );
    expect(trainer({ precision: "16-mixed", plugins: [new MixedPrecision("16-mixed")] }).precision).toBe("16-mixed");
    // Legacy 16 is whatever half the accelerator picks: bf16-mixed on a CPU-like accelerator.
    const onCpu = trainer({ accelerator: cpuLike(), precision: 16, plugins: [new MixedPrecision("bf16-mixed")] });
    expect(onCpu.precision).toBe("bf16-mixed");
    expect(() => trainer({ accelerator: cpuLike(), precision: 16, plugins: [new MixedPrecision("16-mixed")] })).toThrow(PrecisionConflictError);
  });
});

describe("ampBackend and Lightning 1.x's Apex form", () => {
  it("accepts { ampLevel: 'O2', precision: 16 } as Apex O2 and trains float16 weights", async () => {
    for (const precision of [16, "16", "16-mixed"]) {
      const t = trainer({ ampLevel: "O2", precision });
      expect(t.precisionPlugin).toBeInstanceOf(MasterWeightsPrecision);
      expect(t.precision).toBe("16-mixed");
    }
    const t = trainer({ ampLevel: "O2", precision: 16, maxEpochs: 1 });
    const model = new Classifier();
    await t.fit(model, new DataLoader(blobs(12), { batchSize: 4 }));
    expect(model.dtype).toBe("float16");
    expect(t.losses.every(Number.isFinite)).toBe(true);
  });

  it('ampBackend "apex" runs ampLevel (default O2); "native" runs the autocast plugins', () => {
    expect(trainer({ ampBackend: "apex" }).precisionPlugin).toBeInstanceOf(MasterWeightsPrecision);
    expect(trainer({ ampBackend: "apex", precision: 16 }).precisionPlugin).toBeInstanceOf(MasterWeightsPrecision);
    const o1 = trainer({ ampBackend: "apex", ampLevel: "O1", precision: 16 }).precisionPlugin;
    expect([o1.constructor, o1.precision]).toEqual([MixedPrecision, "16-mixed"]);
    expect(trainer({ ampLevel: "O3", precision: 16 }).precision).toBe("16-true");
    expect(trainer({ ampLevel: "O3", precision: "16-true" }).precisionPlugin).toBeInstanceOf(HalfPrecision);
    expect(trainer({ ampLevel: "O0", precision: 32 }).precisionPlugin).toBeInstanceOf(FloatPrecision);
    const native = trainer({ ampBackend: "native", precision: "16-mixed" }).precisionPlugin;
    expect([native.constructor, native.precision]).toEqual([MixedPrecision, "16-mixed"]);
  });

  it("refuses combinations that disagree, each with a PrecisionConflictError", () => {
    expect(() => trainer({ ampBackend: "native", ampLevel: "O2" })).toThrow(/ampLevel "O2" is an Apex optimization level, but ampBackend is "native"/);
    expect(() => trainer({ ampBackend: "native", plugin: new MasterWeightsPrecision() })).toThrow(PrecisionConflictError);
    expect(() => trainer({ ampLevel: "O2", plugins: [new MixedPrecision("16-mixed")] })).toThrow(PrecisionConflictError);
    expect(() => trainer({ ampLevel: "O1", precision: "32-true" })).toThrow(/but Apex level O1 runs "16-mixed"/);
    expect(() => trainer({ ampLevel: "O0", precision: 16 })).toThrow(PrecisionConflictError);
    expect(() => trainer({ ampLevel: "O2", precision: "bf16-mixed" })).toThrow(PrecisionConflictError);
    expect(() => trainer({ ampBackend: "torch" })).toThrow(/Trainer ampBackend/);
  });
});
