import { crossEntropy, Generator, Linear, manualSeed, ReLU, Runtime, Sequential, SGD, Tensor, withRuntime } from "@nbit/core";
import { createRequire } from "node:module";
import type * as ortTypes from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { EVENT_LOOP_TURN_MS } from "@nbit/core";
import { CpuAccelerator, type CpuBackendOptions } from "../src/index.js";

const ort = createRequire(import.meta.url)("onnxruntime-node") as typeof ortTypes;

/** A 3-layer MLP trained with SGD on the cpu backend: `step()` runs one training step. */
function trainer(options: CpuBackendOptions) {
  const backend = new CpuAccelerator({ threads: 1, ...options }).createBackend();
  const runtime = new Runtime(backend);
  const { model, optimizer } = withRuntime(runtime, () => {
    manualSeed(0);
    const model = new Sequential(new Linear(12, 24), new ReLU(), new Linear(24, 5));
    return { model, optimizer: new SGD(model.parameters(), { lr: 0.1 }) };
  });
  const g = new Generator(4);
  const batches = Array.from({ length: 4 }, () => ({
    x: new Float32Array(8 * 12).map(() => g.normal()),
    y: new Int32Array(8).map(() => g.int(5)),
  }));
  let i = 0;
  return {
    backend,
    step: () =>
      withRuntime(runtime, async () => {
        const b = batches[i++ % batches.length]!;
        const loss = crossEntropy(model.forward(Tensor.fromHost(b.x, [8, 12], "float32")), Tensor.fromHost(b.y, [8], "int32"));
        loss.backward();
        optimizer.step();
        optimizer.zeroGrad();
        return loss.item();
      }),
    params: () => withRuntime(runtime, () => Promise.all(model.parameters().map(async (p) => Array.from(await p.data())))),
  };
}

/** Counts calls of onnxruntime-node's public InferenceSession.create while `body` runs. */
async function publicSessionsCreated(body: () => Promise<void>) {
  const create = ort.InferenceSession.create;
  let created = 0;
  ort.InferenceSession.create = ((...args: Parameters<typeof create>) => {
    created++;
    return (create as (...a: Parameters<typeof create>) => Promise<ortTypes.InferenceSession>).apply(ort.InferenceSession, args);
  }) as typeof create;
  try {
    await body();
  } finally {
    ort.InferenceSession.create = create;
  }
  return created;
}

describe("runs through onnxruntime-node's binding", () => {
  it("gives the same losses and parameters, bit for bit, as runs through onnxruntime-node's public session", async () => {
    const direct = trainer({});
    const wrapped = trainer({ directRun: false });
    const losses: number[][] = [[], []];
    const params: number[][][] = [];
    const created = [
      await publicSessionsCreated(async () => {
        for (let s = 0; s < 6; s++) losses[0]!.push(await direct.step());
        params.push(await direct.params());
      }),
      await publicSessionsCreated(async () => {
        for (let s = 0; s < 6; s++) losses[1]!.push(await wrapped.step());
        params.push(await wrapped.params());
      }),
    ];
    expect(losses[0]).toEqual(losses[1]);
    expect(params[0]).toEqual(params[1]);
    // Both compiled the same sessions; only the wrapped backend made them through the public API.
    expect(direct.backend.sessionsCreated).toBeGreaterThan(0);
    expect(direct.backend.sessionsCreated).toBe(wrapped.backend.sessionsCreated);
    expect(created).toEqual([0, wrapped.backend.sessionsCreated]);
  });

  it("lets the event loop turn during a long run of steps", async () => {
    const t = trainer({});
    await t.step();
    let timerFiredAt: number | undefined;
    const start = performance.now();
    setTimeout(() => (timerFiredAt = performance.now()), 0);
    // Steps only await promises; without a turn now and then the timer would wait for the loop's end.
    let steps = 0;
    for (; performance.now() - start < 40 * EVENT_LOOP_TURN_MS; steps++) await t.step();
    const end = performance.now();
    expect(steps).toBeGreaterThan(1);
    expect(timerFiredAt).toBeDefined();
    expect(timerFiredAt!).toBeLessThan(end);
  });
});
