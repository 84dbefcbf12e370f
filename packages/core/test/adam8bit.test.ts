import { beforeEach, describe, expect } from "vitest";
import {
  Adam,
  Adam8bit,
  AdamW8bit,
  BLOCK_SIZE,
  crossEntropy,
  dequantizeBlockwise,
  dynamicMap,
  Generator,
  Linear,
  manualSeed,
  precisionPluginFor,
  quantizeBlockwise,
  ReLU,
  ReferenceBackend,
  Runtime,
  Sequential,
  tensor,
} from "../src/index.js";
import { itOn } from "./scoped.js";

let runtime: Runtime;
beforeEach(() => {
  runtime = new Runtime(new ReferenceBackend());
});
const it = itOn(() => runtime);

describe("dynamic quantization maps", () => {
  it("have 256 sorted entries with 0 and 1, signed ones symmetric", () => {
    const signed = dynamicMap(true);
    const unsigned = dynamicMap(false);
    for (const map of [signed, unsigned]) {
      expect(map.length).toBe(256);
      for (let i = 1; i < 256; i++) expect(map[i]!).toBeGreaterThanOrEqual(map[i - 1]!);
      expect(map).toContain(0);
      expect(map[255]).toBe(1);
    }
    expect(signed[0]).toBeCloseTo(-0.99297, 4);
    expect(unsigned[0]).toBe(0);
    expect(unsigned[1]).toBeCloseTo(1e-6 * 0.325, 9); // the smallest step: 10^-6 times the mid of [0.1, 0.55]
  });

  it("round-trip block-wise with a small relative error, one absmax per 2048 values", () => {
    const g = new Generator(1);
    const n = 3 * BLOCK_SIZE + 100;
    const values = new Float32Array(n).map(() => g.normal() * 0.01);
    const codes = new Uint8Array(n);
    const absmax = new Float32Array(4);
    quantizeBlockwise(values, dynamicMap(true), codes, absmax);
    expect(absmax[3]).toBe(Math.max(...Array.from(values.subarray(3 * BLOCK_SIZE)).map(Math.abs)));
    const back = dequantizeBlockwise(codes, absmax, dynamicMap(true), new Float32Array(n));
    let err = 0;
    let mag = 0;
    values.forEach((v, i) => {
      err += Math.abs(back[i]! - v);
      mag += Math.abs(v);
    });
    expect(err / mag).toBeLessThan(0.02);
  });
});

describe("Adam8bit", () => {
  const model = (outputs = 4) => {
    manualSeed(2);
    return new Sequential(new Linear(64, 96), new ReLU(), new Linear(96, outputs));
  };
  const data = () => {
    const g = new Generator(4);
    const x = tensor(
      Array.from({ length: 64 * 64 }, () => g.normal()),
      [64, 64],
    );
    const y = tensor(
      Array.from({ length: 64 }, (_, i) => i % 4),
      [64],
      "int32",
    );
    return { x, y };
  };
  const train = async (make: (m: Sequential) => Adam | Adam8bit, steps = 60, outputs = 4) => {
    const m = model(outputs);
    const opt = make(m);
    const plugin = precisionPluginFor("32-true");
    const { x, y } = data();
    let loss = 0;
    for (let i = 0; i < steps; i++) loss = (await plugin.optimizerStep(opt, crossEntropy(m.forward(x), y))).loss;
    return { loss, opt };
  };

  it("stores large states in 8 bits (at most 0.27x of Adam's bytes) and small ones in 32 bits", async () => {
    // Two 6144-value weights in 8 bits; the two biases stay 32-bit.
    const adam = await train((m) => new Adam(m.parameters(), { lr: 1e-3 }), 1, 64);
    const eight = await train((m) => new Adam8bit(m.parameters(), { lr: 1e-3 }), 1, 64);
    expect(eight.opt.stateBytes() / adam.opt.stateBytes()).toBeLessThanOrEqual(0.27);
    const w1 = eight.opt.params[0]!;
    expect(Object.keys(eight.opt.state.get(w1)!)).toEqual(["state1", "absmax1", "state2", "absmax2"]);
    expect(eight.opt.state.get(w1)!.state1!.dtype).toBe("uint8");
    const b1 = eight.opt.params[1]!; // 96 values: under the 4096 threshold
    expect(Object.keys(eight.opt.state.get(b1)!)).toEqual(["expAvg", "expAvgSq"]);
  });

  it("trains like Adam (final loss within 2%)", async () => {
    const adam = await train((m) => new Adam(m.parameters(), { lr: 3e-3 }));
    const eight = await train((m) => new Adam8bit(m.parameters(), { lr: 3e-3 }));
    const decoupled = await train((m) => new AdamW8bit(m.parameters(), { lr: 3e-3 }));
    expect(Math.abs(eight.loss - adam.loss) / adam.loss).toBeLessThan(0.02);
    expect(decoupled.loss).toBeLessThan(0.5);
  });

  it("skips its host update when the gradient scaler finds Inf", async () => {
    const m = model();
    const opt = new Adam8bit(m.parameters(), { lr: 1e-3 });
    const plugin = precisionPluginFor("16-mixed");
    const before = Array.from(await m.parameters()[0]!.data());
    const { x, y } = data();
    const outcome = await plugin.optimizerStep(
      opt,
      plugin.forwardContext(() => crossEntropy(m.forward(x), y).mul(1e30)),
    );
    expect(outcome.skipped).toBe(true);
    expect(Array.from(await m.parameters()[0]!.data())).toEqual(before);
    expect(opt.state.size).toBe(0);
  });

  it("refuses 16-bit parameters", async () => {
    const m = precisionPluginFor("bf16-true").convertModule(model());
    const opt = new Adam8bit(m.parameters());
    const { x, y } = data();
    await expect(precisionPluginFor("bf16-true").optimizerStep(opt, crossEntropy(m.forward(x.cast("bfloat16")), y))).rejects.toThrow(
      /updates float32 parameters; got bfloat16/,
    );
  });
});
