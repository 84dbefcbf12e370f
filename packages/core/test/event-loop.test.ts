import { describe, expect, it } from "vitest";
import { DataLoader, EVENT_LOOP_TURN_MS, ReferenceBackend, Runtime, tensor, Trainer, withRuntime, type Callback } from "../src/index.js";
import { blobs, Classifier, quiet } from "./helpers.js";

describe("Runtime and the event loop", () => {
  it("lets the event loop turn during a long run of programs on an eager backend, which computes synchronously", async () => {
    const runtime = new Runtime(new ReferenceBackend());
    await withRuntime(runtime, async () => {
      let timerFiredAt: number | undefined;
      const start = performance.now();
      setTimeout(() => (timerFiredAt = performance.now()), 0);
      // Each realization only awaits promises; without a turn now and then the timer would wait for the loop's end.
      let runs = 0;
      for (let x = tensor([1, 2, 3]); performance.now() - start < 40 * EVENT_LOOP_TURN_MS; runs++) x = tensor(Array.from(await x.mul(1.0001).data()));
      const end = performance.now();
      expect(runs).toBeGreaterThan(1);
      expect(timerFiredAt).toBeDefined();
      expect(timerFiredAt!).toBeLessThan(end);
    });
  });

  it("the Trainer lets it turn between training steps, where no step's graph is alive", async () => {
    let inStep = false;
    const turns = { between: 0, inside: 0 };
    const tracker: Callback = {
      onTrainBatchStart: () => {
        inStep = true;
      },
      onTrainBatchEnd: () => {
        inStep = false;
      },
    };
    let ticking = true;
    const tick = () => {
      turns[inStep ? "inside" : "between"]++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const trainer = new Trainer(quiet({ maxEpochs: 4, seed: 1, callbacks: [tracker] }));
    const start = performance.now();
    await trainer.fit(
      trainer.initModule(() => new Classifier()),
      new DataLoader(blobs(256, 1), { batchSize: 4 }),
    );
    ticking = false;
    // A step on this model takes well under EVENT_LOOP_TURN_MS, so the turns come at step starts.
    expect(performance.now() - start).toBeGreaterThan(4 * EVENT_LOOP_TURN_MS);
    expect(turns.between).toBeGreaterThan(2);
  });
});
