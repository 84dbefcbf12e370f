import { describe, expect, it } from "vitest";
import { EVENT_LOOP_TURN_MS, ReferenceBackend, Runtime, tensor, withRuntime } from "../src/index.js";

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
});
