import { describe, expect, it } from "vitest";
import { crossEntropy, Linear, manualSeed, precisionPluginFor, ReLU, Runtime, Sequential, SGD, tensor, type Precision } from "../src/index.js";
import { ReleasingGraphBackend } from "./graph-backend.js";

/** Trains a small MLP for `steps` steps (batch sizes from `batchOf`) and returns the losses and the runtime's stats. */
function train(precision: Precision, steps: number, replay: boolean, batchOf: (step: number) => number = () => 8) {
  const backend = new ReleasingGraphBackend();
  const runtime = new Runtime(backend, { replay });
  return runtime.run(async () => {
    manualSeed(7);
    const plugin = precisionPluginFor(precision);
    const model = plugin.initContext(() => new Sequential(new Linear(6, 16), new ReLU(), new Linear(16, 3)));
    const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) {
      const n = batchOf(step);
      const x = plugin.convertInput(
        tensor(
          Array.from({ length: n * 6 }, (_, i) => Math.sin(i + step)),
          [n, 6],
        ),
      );
      const y = tensor(
        Array.from({ length: n }, (_, i) => (i + step) % 3),
        [n],
        "int32",
      );
      losses.push(
        (
          await plugin.optimizerStep(
            optimizer,
            plugin.forwardContext(() => crossEntropy(model.forward(x), y)),
          )
        ).loss,
      );
    }
    return { losses, stats: { ...runtime.stats }, compiled: backend.compiled.length };
  });
}

describe("replaying a step whose graph matches an earlier one", () => {
  for (const precision of ["32-true", "bf16-mixed"] as const)
    it(`runs the cached program without lowering it again, with the same losses (${precision})`, async () => {
      const replayed = await train(precision, 12, true);
      const lowered = await train(precision, 12, false);
      expect(replayed.losses).toEqual(lowered.losses);
      // The first step (no momentum buffer yet) and the second are lowered; every later one replays.
      expect(replayed.stats.programsReplayed).toBe(10);
      expect(lowered.stats.programsReplayed).toBe(0);
      expect(replayed.compiled).toBe(lowered.compiled);
    });

  it("lowers again when a shape changes, and replays each shape once seen", async () => {
    const sizes = [8, 8, 8, 5, 8, 5, 5];
    const replayed = await train("32-true", sizes.length, true, (step) => sizes[step]!);
    const lowered = await train("32-true", sizes.length, false, (step) => sizes[step]!);
    expect(replayed.losses).toEqual(lowered.losses);
    // Lowered: step 0 (first), step 1 (momentum buffer now an input), step 3 (batch 5); the rest replay.
    expect(replayed.stats.programsReplayed).toBe(4);
  });
});
