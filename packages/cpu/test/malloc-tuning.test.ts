import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Runtime, tensor } from "@nbit/core";
import { CpuAccelerator, mallocTuningRefusal, MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD, MALLOC_TUNING_OUTPUT_BYTES, tuneMalloc } from "../src/index.js";

const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
const onGlibc = process.platform === "linux" && glibc !== undefined;
const context = { env: {}, platform: "linux" };

describe("mallocTuningRefusal", () => {
  it("tunes a plain glibc process", () => {
    expect(mallocTuningRefusal(context)).toBeUndefined();
  });
  it("refuses when turned off, off Linux, or when the process sets its own malloc settings", () => {
    expect(mallocTuningRefusal({ ...context, env: { NBIT_MALLOC_TUNING: "0" } })).toMatch(/NBIT_MALLOC_TUNING=0/);
    expect(mallocTuningRefusal({ ...context, platform: "darwin" })).toMatch(/darwin/);
    expect(mallocTuningRefusal({ ...context, env: { MALLOC_TRIM_THRESHOLD_: "0" } })).toMatch(/MALLOC_TRIM_THRESHOLD_/);
    expect(mallocTuningRefusal({ ...context, env: { GLIBC_TUNABLES: "glibc.malloc.trim_threshold=1" } })).toMatch(/GLIBC_TUNABLES/);
    expect(mallocTuningRefusal({ ...context, env: { GLIBC_TUNABLES: "glibc.pthread.rseq=0" } })).toBeUndefined();
  });
});

describe("tuneMalloc", () => {
  it.runIf(onGlibc && mallocTuningRefusal({ env: process.env, platform: "linux" }) === undefined)(
    "a cpu backend tunes once it compiles a program with an output above 128 KiB, and glibc's thresholds are set once per process",
    async () => {
      const backend = new CpuAccelerator().createBackend();
      const runtime = new Runtime(backend);
      const compute = (elements: number) => runtime.run(() => tensor(new Float32Array(elements).fill(1), [elements]).mul(2).data());
      await compute(MALLOC_TUNING_OUTPUT_BYTES / 4);
      expect(backend.mallocTuning).toEqual({ applied: false, reason: "no program compiled so far has an output larger than 128 KiB" });
      await compute(MALLOC_TUNING_OUTPUT_BYTES / 4 + 1);
      const tuning = tuneMalloc();
      expect(tuning).toEqual({ applied: true, trimThreshold: MALLOC_TRIM_THRESHOLD, mmapThreshold: MALLOC_MMAP_THRESHOLD });
      expect(backend.mallocTuning).toBe(tuning);
      expect(tuneMalloc()).toBe(tuning);
      const off = new CpuAccelerator({ tuneMalloc: false }).createBackend();
      await new Runtime(off).run(() =>
        tensor(new Float32Array(2 ** 18).fill(1), [2 ** 18])
          .mul(2)
          .data(),
      );
      expect(off.mallocTuning).toEqual({ applied: false, reason: "this backend's tuneMalloc option is false" });
    },
  );

  it.runIf(onGlibc)("keeps freed buffers' memory in the process: re-allocating it page-faults far less", () => {
    const fixture = fileURLToPath(new URL("./malloc-faults.fixture.mts", import.meta.url));
    const run = (env: Record<string, string>) => {
      const { MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, MALLOC_TOP_PAD_, GLIBC_TUNABLES, NBIT_MALLOC_TUNING, ...rest } = process.env;
      const child = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", fixture], { env: { ...rest, ...env }, encoding: "utf8" });
      expect(child.status, child.stderr).toBe(0);
      return JSON.parse(child.stdout.trim().split("\n").at(-1)!) as { applied: boolean; faults: number };
    };
    const tuned = run({});
    const untuned = run({ NBIT_MALLOC_TUNING: "0" });
    expect(tuned.applied).toBe(true);
    expect(untuned.applied).toBe(false);
    // 128 MiB re-allocated: 32,768 pages. Measured: about 450 faults tuned, 14,100 with glibc's defaults.
    expect(untuned.faults).toBeGreaterThan(4000);
    expect(tuned.faults).toBeLessThan(untuned.faults / 5);
  });
});
