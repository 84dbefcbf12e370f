import { beforeEach, describe, expect } from "vitest";
import {
  Adam,
  AdamW,
  GradScaler,
  Linear,
  MixedPrecision,
  ReLU,
  ReferenceBackend,
  Runtime,
  SGD,
  Sequential,
  ShapeError,
  UnsupportedOpError,
  crossEntropy,
  manualSeed,
  precisionPluginFor,
  KernelRegistry,
  referenceKernels,
  tensor,
  type Backend,
} from "../src/index.js";
import { ReleasingGraphBackend } from "./graph-backend.js";
import { itOn } from "./scoped.js";

let backend: ReleasingGraphBackend;
let runtime: Runtime;
beforeEach(() => {
  backend = new ReleasingGraphBackend();
  runtime = new Runtime(backend);
});
const it = itOn(() => runtime);

function mlp() {
  manualSeed(3);
  return new Sequential(new Linear(6, 8), new ReLU(), new Linear(8, 3));
}

describe("graph capture", () => {
  it("runs a whole training step (forward, backward, update) as one program, compiled once", async () => {
    const model = mlp();
    const optimizer = new Adam(model.parameters(), { lr: 0.01 });
    const plugin = precisionPluginFor("32-true");
    const x = tensor(
      Array.from({ length: 24 }, (_, i) => Math.sin(i)),
      [4, 6],
    );
    const y = tensor([0, 1, 2, 1], [4], "int32");
    for (let step = 0; step < 5; step++) await plugin.optimizerStep(optimizer, crossEntropy(model.forward(x), y));
    expect(backend.runs).toBe(5);
    // The first step builds fresh optimizer state from constants; every later step reuses one program.
    expect(backend.compiled.length).toBe(2);
    const stepProgram = backend.compiled.at(-1)!;
    const ops = new Set(stepProgram.instructions.map((i) => i.op));
    for (const op of ["matmul", "exp", "log", "sqrt", "sum", "where"]) expect(ops.has(op as never)).toBe(true);
  });

  it("gives identical structures the same key and different shapes different keys", async () => {
    const run = async (n: number) => {
      const t = tensor(new Float32Array(n).fill(1), [n]).mul(2).sum();
      await t.data();
    };
    await run(4);
    await run(4);
    await run(5);
    const keys = backend.compiled.map((p) => p.key);
    expect(keys.length).toBe(2);
    expect(keys[0]).not.toBe(keys[1]);
  });
});

describe("lowering", () => {
  it("runs 16-bit ops as float32 kernels followed by exact rounding casts", async () => {
    const a = tensor([1, 2 ** -9], [2], "bfloat16");
    const out = a.add(tensor([2 ** -9, 1], [2], "bfloat16"));
    expect(out.dtype).toBe("bfloat16");
    expect(Array.from(await out.data())).toEqual([1, 1]); // 1 + 2^-9 rounds to 1 in bfloat16
    const ops = backend.compiled.at(-1)!.instructions.map((i) => `${i.op}:${i.dtype}`);
    expect(ops).toEqual(["cast:float32", "cast:float32", "add:float32", "cast:bfloat16"]);
  });

  it("rounds a 16-bit linear's weight gradient in the weight's layout, with no transposed copy", async () => {
    const model = mlp();
    const plugin = precisionPluginFor("bf16-mixed");
    const x = tensor(
      Array.from({ length: 24 }, (_, i) => Math.sin(i)),
      [4, 6],
    );
    await plugin.optimizerStep(
      new SGD(model.parameters(), { lr: 0.1 }),
      plugin.forwardContext(() => crossEntropy(model.forward(x), tensor([0, 1, 2, 1], [4], "int32"))),
    );
    const program = backend.compiled.at(-1)!;
    const producer = (v: number) => program.instructions[v - program.inputs.length];
    // A transpose may feed a matmul (the backend folds it in), but never copies a rounded value.
    const transposed = program.instructions.filter((ins) => ins.op === "transpose").map((ins) => producer(ins.inputs[0]!));
    expect(transposed.length).toBeGreaterThan(0);
    for (const source of transposed) expect(source?.op === "cast" && source.dtype === "bfloat16").toBe(false);
    const roundedMatmuls = program.instructions.filter((ins) => ins.op === "cast" && ins.dtype === "bfloat16" && producer(ins.inputs[0]!)?.op === "matmul");
    const shapes = roundedMatmuls.map((ins) => ins.shape.join("x"));
    expect(shapes).toEqual(expect.arrayContaining(["8x6", "3x8"]));
  });

  it("refuses ops a backend lacks with the backend, op and dtype named", async () => {
    const partial: Backend = Object.assign(new ReferenceBackend(), {
      name: "partial",
      capabilities: new KernelRegistry("partial", referenceKernels(["float32"], ["float32", "int32", "bool"])).capabilities("eager", {
        float32: "native",
        int32: "native",
        bool: "native",
      }),
    });
    await new Runtime(partial).run(async () => {
      await expect(tensor([1], [1], "float64").exp().data()).rejects.toThrow(UnsupportedOpError);
      await expect(tensor([1], [1], "float32").cast("float16").data()).rejects.toThrow(
        'Backend "partial" cannot run op "cast" in float16. It runs "cast" in: "float32", "int32", "bool".',
      );
    });
  });

  it("names the op and shapes on a shape mismatch", () => {
    expect(() => tensor([1, 2, 3], [3]).add(tensor([1, 2], [2]))).toThrow(ShapeError);
    expect(() => tensor([1, 2, 3, 4], [2, 2]).matmul(tensor([1, 2, 3], [3, 1]))).toThrow(
      "matmul: inner dimensions differ (2 vs 3) (got shapes [2, 2] and [3, 1])",
    );
    expect(() => new Linear(4, 2).forward(tensor([1, 2, 3], [1, 3]))).toThrow(/linear: input features 3 do not match the weight's 4/);
  });
});

describe("autograd", () => {
  it("accumulates gradients through shared inputs and broadcasts", async () => {
    const x = tensor([1, 2, 3], [3]);
    x.requiresGrad = true;
    const b = tensor([10], [1]);
    b.requiresGrad = true;
    x.mul(x).add(x.mul(b)).sum().backward();
    expect(Array.from(await x.grad!.data())).toEqual([12, 14, 16]);
    expect(Array.from(await b.grad!.data())).toEqual([6]);
  });

  it("relu has zero gradient at zero and max shares ties", async () => {
    const x = tensor([-1, 0, 2, 2], [4]);
    x.requiresGrad = true;
    x.relu().sum().add(x.max()).backward();
    expect(Array.from(await x.grad!.data())).toEqual([0, 0, 1.5, 1.5]);
  });
});

describe("optimizers", () => {
  const param = (values: number[]) => {
    const l = new Linear(values.length, 1, { bias: false });
    l.weight.assign(tensor(values, [1, values.length]));
    return l;
  };
  const stepWith = async (optimizer: SGD | Adam, p: Linear, grads: number[]) => {
    p.weight.grad = tensor(grads, [1, grads.length]);
    optimizer.step();
    optimizer.commit(true);
    return Array.from(await p.weight.data());
  };

  it("SGD with momentum and weight decay follows torch.optim.SGD", async () => {
    const p = param([1, -2]);
    const opt = new SGD(p.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    let w = [1, -2];
    let buf: number[] | null = null;
    for (const g of [
      [0.5, 0.25],
      [-1, 2],
      [0.1, 0.1],
    ]) {
      const got = await stepWith(opt, p, g);
      const d = g.map((gi, i) => gi + 0.01 * w[i]!);
      buf = buf ? buf.map((b, i) => 0.9 * b + d[i]!) : d;
      w = w.map((wi, i) => wi - 0.1 * buf![i]!);
      got.forEach((v, i) => expect(v).toBeCloseTo(w[i]!, 6));
    }
  });

  it("Adam and AdamW follow the PyTorch update", async () => {
    for (const Opt of [Adam, AdamW]) {
      const p = param([0.5, -1.5, 2]);
      const opt = new Opt(p.parameters(), { lr: 0.01, weightDecay: 0.1 });
      let w = [0.5, -1.5, 2];
      let m = [0, 0, 0];
      let v = [0, 0, 0];
      const decoupled = Opt === AdamW;
      for (let t = 1; t <= 4; t++) {
        const g0 = [0.3 * t, -0.2, 0.05 * t * t];
        const got = await stepWith(opt, p, g0);
        if (decoupled) w = w.map((wi) => wi * (1 - 0.01 * 0.1));
        const g = decoupled ? g0 : g0.map((gi, i) => gi + 0.1 * w[i]!);
        m = m.map((mi, i) => 0.9 * mi + 0.1 * g[i]!);
        v = v.map((vi, i) => 0.999 * vi + 0.001 * g[i]! ** 2);
        const stepSize = 0.01 / (1 - 0.9 ** t);
        w = w.map((wi, i) => wi - (stepSize * m[i]!) / (Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8));
        got.forEach((x, i) => expect(x).toBeCloseTo(w[i]!, 5));
      }
    }
  });

  it("state dicts round-trip, and a skipped step does not count", async () => {
    const p = param([1, 2]);
    const opt = new Adam(p.parameters(), { lr: 0.1 });
    await stepWith(opt, p, [1, 1]);
    const saved = await opt.stateDict();
    expect(saved.steps[0]).toBe(1);
    const q = param([1, 2]);
    const restored = new Adam(q.parameters(), { lr: 0.5 });
    restored.loadStateDict(saved);
    expect(restored.paramGroups[0]!.lr).toBe(0.1);
    expect(Array.from(await restored.state.get(q.weight)!.expAvg!.data())).toEqual(Array.from(await opt.state.get(p.weight)!.expAvg!.data()));
    q.weight.grad = tensor([1, 1], [1, 2]);
    restored.step();
    restored.commit(false);
    expect(restored.steps.get(q.weight)).toBe(1);
  });
});

describe("GradScaler", () => {
  it("backs off on Inf/NaN, grows after the interval, never to Infinity", () => {
    const s = new GradScaler({ growthInterval: 2 });
    s.update(true);
    expect(s.scale).toBe(32768);
    s.update(false);
    expect(s.scale).toBe(32768);
    s.update(false);
    expect(s.scale).toBe(65536);
    s.update(false);
    s.update(true);
    expect([s.scale, s.growthTracker]).toEqual([32768, 0]);
    const big = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
    big.update(false);
    expect(big.scale).toBe(2 ** 127);
    const restored = new GradScaler();
    restored.loadStateDict(s.stateDict());
    expect(restored.stateDict()).toEqual(s.stateDict());
  });

  it("bf16-mixed refuses a scaler", () => {
    expect(() => new MixedPrecision("bf16-mixed", {})).toThrow(/bf16-mixed does not use a gradient scaler/);
  });
});

describe("precision plugins", () => {
  it("initContext creates parameters directly in the precision's dtype; true-half halves memory", () => {
    const bytes = (p: Parameters<typeof precisionPluginFor>[0]) =>
      precisionPluginFor(p)
        .initContext(() => mlp())
        .parameterBytes();
    expect(bytes("32-true")).toBe((6 * 8 + 8 + 8 * 3 + 3) * 4);
    expect(bytes("bf16-true")).toBe(bytes("32-true") / 2);
    expect(bytes("16-true")).toBe(bytes("32-true") / 2);
    expect(bytes("64-true")).toBe(bytes("32-true") * 2);
    expect(bytes("bf16-mixed")).toBe(bytes("32-true"));
  });

  it("convertModule casts a module built outside the init context", () => {
    const model = precisionPluginFor("bf16-true").convertModule(mlp());
    expect(model.parameters().every((p) => p.dtype === "bfloat16")).toBe(true);
  });
});

describe("nn layers", () => {
  it("Embedding picks rows exactly and sends gradients back to the picked rows", async () => {
    const { Embedding } = await import("../src/index.js");
    manualSeed(4);
    const emb = new Embedding(5, 3, { dtype: "bfloat16" });
    const table = Array.from(await emb.weight.data());
    const idx = tensor([4, 0, 4], [3], "int32");
    const out = emb.forward(idx);
    expect(out.shape).toEqual([3, 3]);
    expect(out.dtype).toBe("bfloat16");
    expect(Array.from(await out.data())).toEqual([...table.slice(12, 15), ...table.slice(0, 3), ...table.slice(12, 15)]);
    out.cast("float32").sum().backward();
    expect(Array.from(await emb.weight.grad!.data())).toEqual([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2]);
  });

  it("Dropout is seeded, scales kept values by 1/(1-p), and is the identity in eval mode", async () => {
    const { Dropout, Generator } = await import("../src/index.js");
    const x = tensor(new Float32Array(1000).fill(1), [1000]);
    const a = Array.from(await new Dropout(0.25, new Generator(9)).forward(x).data());
    const b = Array.from(await new Dropout(0.25, new Generator(9)).forward(x).data());
    expect(a).toEqual(b);
    expect(new Set(a)).toEqual(new Set([0, 1 / 0.75].map(Math.fround)));
    expect(a.filter((v) => v === 0).length).toBeGreaterThan(200);
    expect(a.filter((v) => v === 0).length).toBeLessThan(300);
    const d = new Dropout(0.25).eval();
    expect(d.forward(x)).toBe(x);
  });

  it("LayerNorm, GELU and sigmoid match their definitions", async () => {
    const { LayerNorm } = await import("../src/index.js");
    const values = [1, 2, 4, -1];
    const ln = new LayerNorm(4);
    const out = Array.from(await ln.forward(tensor(values, [1, 4])).data());
    const mean = 1.5;
    const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / 4;
    out.forEach((v, i) => expect(v).toBeCloseTo((values[i]! - mean) / Math.sqrt(variance + 1e-5), 5));
    const gelu = Array.from(await tensor(values, [4]).gelu().data());
    gelu.forEach((v, i) => {
      const x = values[i]!;
      expect(v).toBeCloseTo(0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), 5);
    });
    const sig = Array.from(await tensor(values, [4]).sigmoid().data());
    sig.forEach((v, i) => expect(v).toBeCloseTo(1 / (1 + Math.exp(-values[i]!)), 6));
  });
});
