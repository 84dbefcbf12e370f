import { describe, expect, expectTypeOf, it } from "vitest";
import { closestName } from "../src/options.js";
import {
  AcceleratorRegistry,
  ReferenceBackend,
  Trainer,
  UnknownOptionError,
  type Accelerator,
  type AcceleratorName,
  type PrecisionInput,
  type TrainerOptions,
} from "../src/index.js";

// A backend package declares its names like this; here a test-only name.
declare module "../src/accelerator.js" {
  interface AcceleratorNames {
    "options-test": true;
  }
}

const acc: Accelerator = {
  name: "options-test",
  description: "test",
  supportedPrecisions: ["32-true", "bf16-mixed"],
  legacyHalfPrecision: "bf16-mixed",
  isAvailable: () => ({ available: true }),
  deviceCount: () => 1,
  createBackend: () => new ReferenceBackend(),
};
const quiet = { logger: false, enableProgressBar: false, enableCheckpointing: false, warn: () => {} } as const;

/** Builds a Trainer the way plain JavaScript would, with no type checking of the options. */
const fromJavaScript = (options: Record<string, unknown>) => new Trainer(options as TrainerOptions);

function unknownOption(options: Record<string, unknown>): UnknownOptionError {
  try {
    fromJavaScript(options);
  } catch (e) {
    if (e instanceof UnknownOptionError) return e;
    throw e;
  }
  throw new Error("expected an UnknownOptionError");
}

describe("Trainer option types", () => {
  it("are literal unions", () => {
    expectTypeOf<NonNullable<TrainerOptions["precision"]>>().toEqualTypeOf<PrecisionInput>();
    expectTypeOf<"auto">().toMatchTypeOf<AcceleratorName>();
    expectTypeOf<"options-test">().toMatchTypeOf<AcceleratorName>();
    expectTypeOf<"cpuu">().not.toMatchTypeOf<AcceleratorName>();
    expectTypeOf<"17-true">().not.toMatchTypeOf<PrecisionInput>();
  });

  it("reject typos at compile time and accept declared names, instances, aliases and private registries", () => {
    const registry = new AcceleratorRegistry();
    registry.register("anything", () => acc);
    const compiles: TrainerOptions[] = [
      { accelerator: "auto" },
      { accelerator: "options-test", precision: "bf16-mixed" },
      { accelerator: acc, precision: 16 },
      { precision: "bf16" },
      { precision: 32 },
      { ampLevel: "O2" },
      { accelerator: "anything", registry },
    ];
    expect(compiles).toHaveLength(7);
    const typos = () => [
      // @ts-expect-error: no imported backend declares "cpuu"
      new Trainer({ accelerator: "cpuu" }),
      // @ts-expect-error: "17-true" is no precision
      new Trainer({ precision: "17-true" }),
      // @ts-expect-error: 8 is no legacy precision
      new Trainer({ precision: 8 }),
      // @ts-expect-error: the levels are "O0".."O3"
      new Trainer({ ampLevel: "O4" }),
      // @ts-expect-error: maxEpochs
      new Trainer({ maxEpoch: 3 }),
    ];
    expect(typos).toBeTypeOf("function");
  });
});

describe("Trainer options from plain JavaScript", () => {
  it("reject an unknown key with the closest option", () => {
    const e = unknownOption({ ...quiet, accelerator: acc, maxEpoch: 1 });
    expect(e.message).toMatch(
      /^Unknown Trainer option "maxEpoch"\. Did you mean "maxEpochs"\? Trainer options are: accelerator, registry, devices, precision, /,
    );
    expect(e.option).toBe("maxEpoch");
    expect(e.suggestion).toBe("maxEpochs");
  });

  it("map Lightning's snake_case names to the camelCase options", () => {
    expect(unknownOption({ max_epochs: 3 }).suggestion).toBe("maxEpochs");
    expect(unknownOption({ enable_progress_bar: false }).suggestion).toBe("enableProgressBar");
    expect(unknownOption({ gradient_clip_val: 1 }).suggestion).toBe("gradientClipVal");
    expect(unknownOption({ default_root_dir: "x" }).suggestion).toBe("defaultRootDir");
  });

  it("check the keys before anything else, and suggest nothing for unrelated names", () => {
    const e = unknownOption({ accelerator: "no-such-accelerator", batchSize: 32 });
    expect(e.suggestion).toBeUndefined();
    expect(e.message).toMatch(/^Unknown Trainer option "batchSize"\. Trainer options are: /);
  });

  it("accept every known option", () => {
    expect(fromJavaScript({ ...quiet, accelerator: acc, precision: "bf16-mixed", maxEpochs: 1, seed: 1 }).precision).toBe("bf16-mixed");
  });
});

describe("closestName", () => {
  const known = ["maxEpochs", "maxSteps", "precision", "accelerator", "devices", "seed"];
  it.each([
    ["maxepochs", "maxEpochs"],
    ["max-steps", "maxSteps"],
    ["precison", "precision"],
    ["accelerater", "accelerator"],
    ["devcies", "devices"],
    ["sede", "seed"],
    ["lr", undefined],
    ["batch_size", undefined],
  ])("%s -> %s", (name, expected) => {
    expect(closestName(name, known)).toBe(expected);
  });
});
