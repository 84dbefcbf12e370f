import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError, Runtime, tensor, Trainer } from "../src/index.js";
import { ReleasingGraphBackend } from "./graph-backend.js";
import { quiet } from "./helpers.js";

/** One program per length n: a distinct shape, so a distinct cache key. */
const programOfLength = (runtime: Runtime, n: number) =>
  runtime.run(() =>
    tensor(Array.from({ length: n }, (_, i) => i))
      .mul(2)
      .add(1)
      .data(),
  );
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("compiled-program cache", () => {
  it("keeps the least recently used programs up to its size, releasing evicted ones", async () => {
    const backend = new ReleasingGraphBackend();
    const runtime = new Runtime(backend, { programCacheSize: 2 });
    expect(runtime.cacheStats()).toEqual({ size: 0, capacity: 2, hits: 0, misses: 0, evictions: 0 });
    await programOfLength(runtime, 1);
    await programOfLength(runtime, 2);
    await programOfLength(runtime, 1); // hit: length 1 becomes the most recently used
    await programOfLength(runtime, 3); // evicts length 2
    await tick();
    expect(runtime.cacheStats()).toEqual({ size: 2, capacity: 2, hits: 1, misses: 3, evictions: 1 });
    expect(backend.released.map((p) => p.inputs[0]!.shape)).toEqual([[2]]);
    await programOfLength(runtime, 1); // still cached
    await programOfLength(runtime, 2); // compiled again, evicting length 3
    await tick();
    expect(runtime.cacheStats()).toEqual({ size: 2, capacity: 2, hits: 2, misses: 4, evictions: 2 });
    expect(backend.compiled.length).toBe(4);
    expect(backend.released.map((p) => p.inputs[0]!.shape)).toEqual([[2], [3]]);
  });

  it("releases a program evicted while it runs only after the run settles", async () => {
    const backend = new ReleasingGraphBackend();
    const runtime = new Runtime(backend, { programCacheSize: 1 });
    const first = programOfLength(runtime, 4);
    const second = programOfLength(runtime, 5); // evicts length 4 while its run is in flight
    expect(backend.released.length).toBe(0);
    expect(Array.from(await first)).toEqual([1, 3, 5, 7]);
    await second;
    await tick();
    expect(backend.released.map((p) => p.inputs[0]!.shape)).toEqual([[4]]);
  });

  it("bounds a long run of distinct shapes to its size", async () => {
    const backend = new ReleasingGraphBackend();
    const runtime = new Runtime(backend);
    for (let n = 1; n <= 40; n++) await programOfLength(runtime, n);
    await tick();
    expect(runtime.cacheStats()).toMatchObject({ size: 16, capacity: 16, misses: 40, evictions: 24 });
    expect(backend.released.length).toBe(24);
  });

  it("is sized by the Trainer's programCacheSize, checked as a positive integer", () => {
    expect(new Trainer(quiet({ programCacheSize: 4 })).runtime.cacheStats().capacity).toBe(4);
    expect(new Trainer(quiet()).runtime.cacheStats().capacity).toBe(16);
    expect(() => new Trainer(quiet({ programCacheSize: 0 }))).toThrow(InvalidArgumentError);
    expect(() => new Runtime(new ReleasingGraphBackend(), { programCacheSize: 1.5 })).toThrow(InvalidArgumentError);
  });

  it("releases the programs of a runtime dropped without dispose() once it is collected", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const backend = new ReleasingGraphBackend();
    await (async () => {
      const runtime = new Runtime(backend);
      for (let n = 1; n <= 3; n++) await programOfLength(runtime, n);
    })();
    expect(backend.released.length).toBe(0);
    for (let i = 0; i < 10 && backend.released.length < 3; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(backend.released.length).toBe(3);
  });
});
