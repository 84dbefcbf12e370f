import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Adam,
  DataLoader,
  Generator,
  LightningModule,
  StepLR,
  TensorDataset,
  Trainer,
  type Batch,
  type Tensor,
  crossEntropy,
  Linear,
  manualSeed,
  precisionPluginFor,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  tensor,
  type Program,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { CPU_KERNELS, CpuAccelerator, programToOnnx } from "../src/index.js";

function setup() {
  const backend = new CpuAccelerator({ threads: 2 }).createBackend();
  const programs: Program[] = [];
  const compile = backend.compile.bind(backend);
  backend.compile = (p) => (programs.push(p), compile(p));
  return { backend, programs, runtime: new Runtime(backend) };
}

describe("cpu backend", () => {
  it("is available and declares the seed support matrix", () => {
    const acc = new CpuAccelerator();
    expect(acc.isAvailable()).toEqual({ available: true });
    expect([...acc.supportedPrecisions].sort()).toEqual(["32-true", "64-true", "bf16-mixed"]);
    expect(acc.legacyHalfPrecision).toBe("bf16-mixed");
  });

  it("rounds to bfloat16 with a Cast pair that survives onnxruntime's optimizer", () => {
    const { programs, runtime } = setup();
    return runtime.run(async () => {
      const x = tensor([1 + 2 ** -9, 1 + 2 ** -7 + 2 ** -8, 3.4e38, -(2 ** -130) * 1.5], [4]);
      const back = await x.cast("bfloat16").cast("float32").data();
      // Round to nearest even: 1+2^-9 -> 1; the tie 1+2^-7+2^-8 -> 1+2^-6; overflow -> Infinity.
      expect(Array.from(back)).toEqual([1, 1 + 2 ** -6, Infinity, -(2 ** -130) * 1.5]);
      const text = new TextDecoder("latin1").decode(programToOnnx(programs.at(-1)!, CPU_KERNELS));
      expect(text).toContain("Cast");
    });
  });

  it("runs each training step as one session run, reusing compiled sessions", () => {
    const { backend, programs, runtime } = setup();
    return runtime.run(async () => {
      manualSeed(0);
      const plugin = precisionPluginFor("bf16-mixed");
      const model = new Sequential(new Linear(16, 32), new ReLU(), new Linear(32, 4));
      const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
      const x = tensor(
        Array.from({ length: 8 * 16 }, (_, i) => Math.cos(i)),
        [8, 16],
      );
      const y = tensor([0, 1, 2, 3, 0, 1, 2, 3], [8], "int32");
      const losses: number[] = [];
      for (let i = 0; i < 12; i++)
        losses.push(
          (
            await plugin.optimizerStep(
              optimizer,
              plugin.forwardContext(() => crossEntropy(model.forward(x), y)),
            )
          ).loss,
        );
      expect(programs.length).toBe(2); // the first step (no momentum buffer yet), then one program for every later step
      expect(backend.sessionsCreated).toBe(programs.length);
      expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.5);
      const steady = programs.at(-1)!;
      const ops = steady.instructions.map((i) => `${i.op}:${i.attrs.to ?? ""}`);
      expect(ops).toContain("cast:bfloat16");
    });
  });

  it("refuses 16-mixed with advice, and maps legacy 16 to bf16-mixed", async () => {
    const { resolvePrecision } = await import("@nbit/core");
    const acc = new CpuAccelerator();
    expect(() => resolvePrecision(acc, "16-mixed", null)).toThrow(/AMP with float16 is not supported on CPU/);
    expect(resolvePrecision(acc, 16, null).precision).toBe("bf16-mixed");
  });
});

describe("cpu checkpoints", () => {
  it("resume mid-epoch with the same losses as an uninterrupted run (bf16-mixed, Adam, step LR schedule)", async () => {
    class Net extends LightningModule {
      readonly net = new Sequential(new Linear(8, 32), new ReLU(), new Linear(32, 3));
      forward(x: Tensor) {
        return this.net.forward(x);
      }
      trainingStep([x, y]: Batch) {
        return crossEntropy(this.forward(x!), y!);
      }
      configureOptimizers() {
        const optimizer = new Adam(this.parameters(), { lr: 0.01 });
        return { optimizer, lrScheduler: { scheduler: new StepLR(optimizer, 4, 0.5), interval: "step" as const } };
      }
    }
    const g = new Generator(3);
    const data = new TensorDataset(
      { data: Array.from({ length: 96 * 8 }, () => g.normal()), sampleShape: [8] },
      { data: Array.from({ length: 96 }, (_, i) => i % 3), sampleShape: [], dtype: "int32" },
    );
    const path = join(mkdtempSync(join(tmpdir(), "nbit-cpu-resume-")), "mid.safetensors");
    const run = async (ckptPath?: string) => {
      manualSeed(11);
      const save = {
        async onTrainBatchEnd(t: Trainer, _m: unknown, _o: unknown, _b: unknown, i: number) {
          if (!ckptPath && t.currentEpoch === 0 && i === 5) await t.saveCheckpoint(path);
        },
      };
      const trainer = new Trainer({
        accelerator: new CpuAccelerator({ threads: 2 }),
        precision: "bf16-mixed",
        maxEpochs: 2,
        logger: false,
        enableProgressBar: false,
        enableCheckpointing: false,
        callbacks: [save],
      });
      await trainer.fit(
        trainer.initModule(() => new Net()),
        new DataLoader(data, { batchSize: 8, shuffle: true, seed: 2 }),
        undefined,
        ckptPath ? { ckptPath } : {},
      );
      return trainer.losses;
    };
    const straight = await run();
    const resumed = await run(path);
    expect(resumed).toEqual(straight.slice(6));
  });
});
