import {
  AcceleratorRegistry,
  crossEntropy,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  Generator,
  Linear,
  precisionPluginFor,
  ReLU,
  resolvePrecision,
  Runtime,
  Sequential,
  SGD,
  tensor,
  Trainer,
} from "@nbit/core";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { CudaAccelerator, registerCuda, roundToHalf } from "../src/index.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

describe("the cuda accelerator, where a GPU is and where none is", () => {
  // The same test is right in both places: with tfjs-node-gpu and a CUDA GPU, "gpu" and "auto"
  // pick cuda; without them, cuda says exactly why, and "gpu" fails naming what is available.
  it("is available with a GPU and picked by 'gpu' and 'auto'; otherwise unavailable with the exact reason", () => {
    const status = new CudaAccelerator().isAvailable();
    const registry = new AcceleratorRegistry();
    registerCuda(registry);
    registry.register("cpu-test", () => new CudaAccelerator("tfjs-cpu"), { priority: -100 });
    if (status.available) {
      expect(new CudaAccelerator().deviceCount()).toBeGreaterThan(0);
      expect(new Trainer({ accelerator: "gpu", registry, logger: false, enableProgressBar: false }).accelerator.name).toBe("cuda");
      expect(registry.resolve("auto").name).toBe("cuda");
      return;
    }
    expect(status.reason).toMatch(
      /^@tensorflow\/tfjs-node-gpu (is not installed \(an optional dependency|failed to load: |loaded, but TensorFlow found no CUDA GPU)/,
    );
    expect(new CudaAccelerator().deviceCount()).toBe(0);
    expect(() => new Trainer({ accelerator: "gpu", registry, logger: false, enableProgressBar: false })).toThrow(
      /Accelerator "gpu" is not available:\n {2}- cuda: @tensorflow\/tfjs-node-gpu [^\n]*\nAvailable accelerators: "cpu-test"/,
    );
    // "auto" skips the unavailable GPU and takes the tfjs-cpu stand-in registered as "cpu-test".
    expect(registry.resolve("auto").description).toMatch(/not a GPU/);
  });

  it("declares every precision but 64-true, and says why 64-true is refused", () => {
    const acc = new CudaAccelerator("tfjs-cpu");
    expect([...acc.supportedPrecisions].sort()).toEqual(["16-mixed", "16-true", "32-true", "bf16-mixed", "bf16-true"]);
    expect(() => resolvePrecision(acc, "64-true", null)).toThrow(/tfjs has no float64 tensors/);
    expect(resolvePrecision(acc, 16, null).precision).toBe("16-mixed");
  });
});

describe("16-bit rounding with tfjs ops", () => {
  const bitsOf = (values: Float32Array) => new Uint32Array(values.buffer);
  const check = (input: Float32Array, format: "float16" | "bfloat16") => {
    const rounded = roundToHalf(tf, tf.tensor1d(input, "float32"), format);
    const got = rounded.dataSync() as Float32Array;
    rounded.dispose();
    const encoded = format === "float16" ? float32ArrayToFloat16(input) : float32ArrayToBfloat16(input);
    const want = new Float32Array(input.length);
    const wantBits = bitsOf(want);
    encoded.forEach((h, i) => {
      if (format === "bfloat16") wantBits[i] = h << 16;
      else want[i] = halfToFloat(h);
    });
    const gotBits = bitsOf(Float32Array.from(got));
    const mismatches: string[] = [];
    for (let i = 0; i < input.length && mismatches.length < 5; i++) {
      const bothNaN = Number.isNaN(got[i]!) && Number.isNaN(want[i]!);
      if (!bothNaN && gotBits[i] !== wantBits[i]) mismatches.push(`${input[i]} -> ${got[i]}, want ${want[i]}`);
    }
    expect(mismatches).toEqual([]);
  };

  const edges = new Float32Array([
    0,
    -0,
    1,
    -1,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    65504,
    65519.99,
    65520,
    -65520,
    1e6,
    2 ** -24,
    2 ** -25,
    3 * 2 ** -25,
    2 ** -14 - 2 ** -25,
    2 ** -26,
    -(2 ** -30),
    Infinity,
    -Infinity,
    NaN,
    3.4028234663852886e38,
    -3.4e38,
    1.1754943508222875e-38,
    1e-40,
    1.4e-45,
    2 ** -133,
    2 ** -134,
    3 * 2 ** -134,
    0.1,
    1 / 3,
    2 ** 127,
    2 ** -126,
    0.5 - 2 ** -26,
  ]);

  it("matches core bit for bit on edge cases", () => {
    check(edges, "float16");
    check(edges, "bfloat16");
  });

  it("matches core bit for bit on 200,000 random float32 bit patterns and values near float16's range", () => {
    const g = new Generator(123);
    const patterns = new Float32Array(100_000);
    const bits = bitsOf(patterns);
    for (let i = 0; i < bits.length; i++) bits[i] = g.nextUint32();
    const scaled = new Float32Array(100_000).map(() => (g.random() - 0.5) * 2 ** (g.int(50) - 30));
    for (const input of [patterns, scaled]) {
      check(input, "float16");
      check(input, "bfloat16");
    }
  });
});

describe("training on tfjs", () => {
  it("frees every intermediate tensor: tfjs memory stays flat across steps", () => {
    const backend = new CudaAccelerator("tfjs-cpu").createBackend();
    const runtime = new Runtime(backend);
    return runtime.run(async () => {
      const plugin = precisionPluginFor("16-mixed");
      const model = new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 3));
      const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
      const x = tensor(
        Array.from({ length: 32 * 8 }, (_, i) => Math.sin(i)),
        [32, 8],
      );
      const y = tensor(
        Array.from({ length: 32 }, (_, i) => i % 3),
        [32],
        "int32",
      );
      const counts: number[] = [];
      for (let step = 0; step < 30; step++) {
        await plugin.optimizerStep(
          optimizer,
          plugin.forwardContext(() => crossEntropy(model.forward(x), y)),
        );
        const gc = (globalThis as { gc?: () => void }).gc;
        if (gc) {
          gc();
          await new Promise((r) => setTimeout(r, 0));
        }
        counts.push(tf.memory().numTensors);
      }
      // Live tensors: parameters, momentum buffers, inputs, and what the last step still references.
      // A finalizer can lag a step behind under load (one step's tensors, about 9), so the check
      // compares the last five steps' lowest count with steps 5-9's highest: a leak of one tensor
      // a step puts it 15 or more above, a finalizer that lags once does not.
      expect(Math.min(...counts.slice(-5))).toBeLessThanOrEqual(Math.max(...counts.slice(5, 10)));
    });
  });
});

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
