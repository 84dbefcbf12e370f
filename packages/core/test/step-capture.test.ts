import { describe, expect, it } from "vitest";
import {
  Adam,
  Adam8bit,
  BatchNorm1d,
  crossEntropy,
  Dropout,
  GradScaler,
  Linear,
  manualSeed,
  MixedPrecision,
  precisionPluginFor,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  StepCapture,
  StepCaptureMismatchError,
  StepLR,
  tensor,
  type Module,
  type Optimizer,
  type HostArray,
  type PrecisionPlugin,
  Tensor,
} from "../src/index.js";
import { ReleasingGraphBackend } from "./graph-backend.js";

interface Setup {
  readonly plugin: PrecisionPlugin;
  readonly model: Module;
  readonly optimizer: Optimizer<{ lr: number }>;
  readonly scheduler?: StepLR;
}

interface RunOptions {
  readonly steps?: number;
  readonly batchOf?: (step: number) => number;
  /** A batch whose loss overflows float16 (16-mixed skip). */
  readonly overflowAt?: number;
  readonly verifyEvery?: number;
  /** Called before each step (replace state from outside, say). */
  readonly before?: (step: number, setup: Setup) => void | Promise<void>;
  readonly forward?: (setup: Setup, x: Tensor, y: Tensor, step: number) => Tensor;
  readonly programCacheSize?: number;
}

const mlp = () => new Sequential(new Linear(6, 16), new ReLU(), new Linear(16, 3));

/** Trains `build()` on deterministic batches; returns the losses, the final parameter bits and the capture's stats. */
function train(build: () => Setup, captured: boolean, options: RunOptions = {}) {
  const { steps = 24, batchOf = () => 8 } = options;
  const backend = new ReleasingGraphBackend();
  const runtime = new Runtime(backend, options.programCacheSize ? { programCacheSize: options.programCacheSize } : {});
  const warnings: string[] = [];
  return runtime.run(async () => {
    manualSeed(3);
    const setup = build();
    const { plugin, model, optimizer, scheduler } = setup;
    const capture = new StepCapture(plugin, optimizer, { module: model, warn: (m) => warnings.push(m), verifyEvery: options.verifyEvery ?? 200 });
    const losses: number[] = [];
    const skipped: boolean[] = [];
    const replayed: boolean[] = [];
    for (let step = 0; step < steps; step++) {
      await options.before?.(step, setup);
      const n = batchOf(step);
      const scale = step === options.overflowAt ? 1e6 : 1;
      const x = tensor(
        Array.from({ length: n * 6 }, (_, i) => scale * Math.sin(i * 0.7 + step)),
        [n, 6],
        "float32",
      );
      const y = tensor(
        Array.from({ length: n }, (_, i) => (i + step) % 3),
        [n],
        "int32",
      );
      const forward = ([bx, by]: readonly Tensor[]) =>
        options.forward ? options.forward(setup, bx!, by!, step) : crossEntropy(model.forward(plugin.convertInput(bx!)), by!);
      const outcome = captured
        ? await capture.step([x, y], forward)
        : await plugin.optimizerStep(
            optimizer,
            plugin.forwardContext(() => forward([x, y])),
            { extra: model.buffers() },
          );
      losses.push(outcome.loss);
      skipped.push(outcome.skipped);
      replayed.push("replayed" in outcome && outcome.replayed === true);
      if (!outcome.skipped) scheduler?.step();
    }
    const bits = [];
    for (const t of [...model.parameters(), ...model.buffers()]) bits.push(Array.from(new Uint8Array((await t.toHost()).buffer)));
    const steps_ = model.parameters().map((p) => optimizer.steps.get(p));
    return { losses, skipped, replayed, bits, steps: steps_, stats: { ...capture.stats }, warnings, runtime, backend, capture };
  });
}

async function expectSameTraining(build: () => Setup, options: RunOptions = {}) {
  const plain = await train(build, false, options);
  const captured = await train(build, true, options);
  expect(captured.losses).toEqual(plain.losses);
  expect(captured.skipped).toEqual(plain.skipped);
  expect(captured.steps).toEqual(plain.steps);
  expect(captured.bits).toEqual(plain.bits);
  return captured;
}

describe("StepCapture", () => {
  it("replays SGD with momentum bit for bit, after two matching recorded steps", async () => {
    const run = await expectSameTraining(() => {
      const plugin = precisionPluginFor("32-true");
      const model = mlp();
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
    });
    // Step 0 has no momentum buffer yet; steps 1 and 2 match and capture; the rest replay.
    expect(run.stats).toMatchObject({ recorded: 3, replayed: 21, captures: 1, refusal: null });
    expect(run.replayed.slice(0, 4)).toEqual([false, false, false, true]);
    expect(run.warnings).toEqual([]);
  });

  it("replays Adam, whose bias corrections change every step", async () => {
    const run = await expectSameTraining(() => {
      const plugin = precisionPluginFor("32-true");
      const model = mlp();
      return { plugin, model, optimizer: new Adam(model.parameters(), { lr: 0.01 }) };
    });
    expect(run.stats.replayed).toBeGreaterThanOrEqual(20);
  });

  it("follows a StepLR schedule that changes the learning rate mid-run", async () => {
    const run = await expectSameTraining(() => {
      const plugin = precisionPluginFor("32-true");
      const model = mlp();
      const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.5 });
      return { plugin, model, optimizer, scheduler: new StepLR(optimizer, 5, 0.3) };
    });
    expect(run.stats.replayed).toBeGreaterThanOrEqual(20);
  });

  it("skips an overflowing 16-mixed step and halves the scale on replay, as when recorded", async () => {
    let scaler: GradScaler | null = null;
    const build = () => {
      scaler = new GradScaler({ initScale: 2 ** 10, growthInterval: 4 });
      const plugin = new MixedPrecision("16-mixed", scaler);
      const model = plugin.initContext(mlp);
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
    };
    const plain = await train(build, false, { overflowAt: 12 });
    const plainScale = scaler!.scale;
    const run = await expectSameTraining(build, { overflowAt: 12 });
    expect(run.skipped[12]).toBe(true);
    expect(run.replayed[12]).toBe(true);
    expect(scaler!.scale).toBe(plainScale);
    expect(plain.skipped.filter(Boolean)).toHaveLength(1);
  });

  it("carries batch norm's running statistics from replay to replay", async () => {
    const run = await expectSameTraining(() => {
      const plugin = precisionPluginFor("32-true");
      const model = new Sequential(new Linear(6, 16), new BatchNorm1d(16), new ReLU(), new Linear(16, 3));
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
    });
    expect(run.stats.replayed).toBeGreaterThanOrEqual(20);
  });

  it("records a step with a smaller last batch and resumes replaying the full-size batches", async () => {
    const batchOf = (step: number) => (step % 8 === 7 ? 5 : 8);
    const run = await expectSameTraining(
      () => {
        const plugin = precisionPluginFor("32-true");
        const model = mlp();
        return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
      },
      { batchOf },
    );
    run.replayed.forEach((r, step) => {
      if (batchOf(step) === 5) expect(r).toBe(false);
    });
    expect(run.stats.recorded).toBe(3 + 3);
  });

  it("falls back to recording, with one warning naming the reason, when dropout makes a new mask each step", async () => {
    const run = await expectSameTraining(() => {
      const plugin = precisionPluginFor("32-true");
      const model = new Sequential(new Linear(6, 16), new ReLU(), new Dropout(0.25), new Linear(16, 3));
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
    });
    expect(run.stats.replayed).toBe(0);
    expect(run.stats.refusal).toMatch(/made on the host inside the step and changed between two steps/);
    expect(run.warnings).toHaveLength(1);
  });

  it("refuses, naming why, an optimizer that updates on the host (Adam8bit)", async () => {
    const run = await expectSameTraining(() => {
      const plugin = precisionPluginFor("32-true");
      const model = new Sequential(new Linear(6, 256), new ReLU(), new Linear(256, 3));
      return { plugin, model, optimizer: new Adam8bit(model.parameters(), { lr: 0.01 }) };
    });
    expect(run.stats.replayed).toBe(0);
    expect(run.stats.refusal).toMatch(/Adam8bit updates on the host/);
    expect(run.capture.enabled).toBe(false);
  });

  it("records again when the state is replaced from outside (a checkpoint load)", async () => {
    let saved: HostArray[] = [];
    const run = await expectSameTraining(
      () => {
        const plugin = precisionPluginFor("32-true");
        const model = mlp();
        return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
      },
      {
        before: async (step, { model }) => {
          const params = model.parameters();
          if (step === 6) saved = await Promise.all(params.map(async (p) => (await p.toHost()).slice()));
          if (step === 14) params.forEach((p, i) => p.assign(Tensor.fromHost(saved[i]!, p.shape, p.dtype)));
        },
      },
    );
    expect(run.replayed[14]).toBe(false);
    expect(run.stats.captures).toBe(2);
  });

  it("records again when a hyperparameter other than the learning rate changes", async () => {
    const run = await expectSameTraining(
      () => {
        const plugin = precisionPluginFor("32-true");
        const model = mlp();
        return { plugin, model, optimizer: new Adam(model.parameters(), { lr: 0.01 }) };
      },
      {
        before: (step, { optimizer }) => {
          if (step === 10) (optimizer.paramGroups[0] as unknown as { betas: number[] }).betas[0] = 0.5;
        },
      },
    );
    expect(run.replayed[10]).toBe(false);
    expect(run.replayed.slice(12)).toContain(true);
  });

  it("throws when a verification step builds a different graph than the captured one", async () => {
    const build = () => {
      const plugin = precisionPluginFor("32-true");
      const model = mlp();
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05 }) };
    };
    // The loss's structure depends on the step number: the contract forbids it, and verification notices.
    const forward = ({ plugin, model }: Setup, x: Tensor, y: Tensor, step: number) => {
      const loss = crossEntropy(model.forward(plugin.convertInput(x)), y);
      return step < 6 ? loss : loss.mul(2);
    };
    await expect(train(build, true, { forward, verifyEvery: 3 })).rejects.toBeInstanceOf(StepCaptureMismatchError);
  });

  it("throws when a verification step finds a host-made constant that changed since the capture", async () => {
    const build = () => {
      const plugin = precisionPluginFor("32-true");
      const model = mlp();
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05 }) };
    };
    // A loss weight made on the host that changes after step 8: replays kept the captured one.
    const forward = ({ plugin, model }: Setup, x: Tensor, y: Tensor, step: number) =>
      crossEntropy(model.forward(plugin.convertInput(x)), y).mul(tensor([step < 8 ? 1 : 2], [], "float32"));
    const error = await train(build, true, { forward, verifyEvery: 4 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StepCaptureMismatchError);
    expect((error as Error).message).toMatch(/made on the host inside the step and changed/);
  });

  it("records again when a frozen parameter (not in the optimizer) is loaded from outside", async () => {
    const run = await expectSameTraining(
      () => {
        const plugin = precisionPluginFor("32-true");
        const model = mlp();
        const [first, ...rest] = model.parameters();
        first!.requiresGrad = false;
        return { plugin, model, optimizer: new SGD(rest, { lr: 0.05, momentum: 0.9 }) };
      },
      {
        before: (step, { model }) => {
          const frozen = model.parameters()[0]!;
          if (step === 12) frozen.assign(frozen.mul(0.5));
        },
      },
    );
    expect(run.replayed[12]).toBe(false);
    expect(run.stats.captures).toBe(2);
  });

  it("compiles the step again when the cache evicted it, with the same results", async () => {
    const run = await expectSameTraining(
      () => {
        const plugin = precisionPluginFor("32-true");
        const model = mlp();
        return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
      },
      {
        programCacheSize: 1,
        // Another program between steps (an evaluation, say) evicts the step's from a one-entry cache.
        before: async (step, { model }) => {
          await model.forward(tensor([step, 1, 2, 3, 4, 5], [1, 6], "float32")).data();
        },
      },
    );
    expect(run.stats.replayed).toBeGreaterThanOrEqual(20);
    expect(run.runtime.cacheStats().evictions).toBeGreaterThanOrEqual(40);
    expect(run.backend.released.length).toBe(run.backend.compiled.length - 1);
  });

  it("releases nothing early and leaks no programs: one compiled step program, released on dispose", async () => {
    const run = await train(() => {
      const plugin = precisionPluginFor("32-true");
      const model = mlp();
      return { plugin, model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) };
    }, true);
    expect(run.backend.compiled).toHaveLength(2);
    expect(run.runtime.cacheStats().size).toBe(2);
    await run.runtime.dispose();
    expect(run.backend.released).toHaveLength(2);
  });
});
