import { availableParallelism } from "node:os";
import {
  Conv2d,
  crossEntropy,
  Flatten,
  MaxPool2d,
  Generator,
  Linear,
  manualSeed,
  mseLoss,
  precisionPluginFor,
  ReferenceBackend,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  Tensor,
  withRuntime,
  type Backend,
  type Precision,
  type Program,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import {
  CPU_KERNELS,
  CpuAccelerator,
  defaultThreads,
  lowerProgram,
  programWork,
  programToOnnx,
  SMALL_PROGRAM_WORK,
  type CpuBackendOptions,
} from "../src/index.js";
import { SCATTER_ROWS_LIMIT } from "../src/kernels.js";

/** Trains a 3-layer MLP with SGD on `backend`; returns each step's loss, the final parameters and the programs compiled. */
async function train(backend: Backend, precision: Precision, { steps = 5, loss = "crossEntropy" }: { steps?: number; loss?: "crossEntropy" | "mse" } = {}) {
  const programs: Program[] = [];
  if (backend.compile) {
    const compile = backend.compile.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
  }
  return withRuntime(new Runtime(backend), async () => {
    manualSeed(0);
    const plugin = precisionPluginFor(precision);
    const model = plugin.initContext(() => new Sequential(new Linear(12, 24), new ReLU(), new Linear(24, 16), new ReLU(), new Linear(16, 5)));
    const optimizer = new SGD(model.parameters(), { lr: 0.1 });
    const g = new Generator(4);
    const losses: number[] = [];
    for (let i = 0; i < steps; i++) {
      const x = plugin.convertInput(
        Tensor.fromHost(
          new Float32Array(8 * 12).map(() => g.normal()),
          [8, 12],
          "float32",
        ),
      );
      const y = new Int32Array(8).map(() => g.int(5));
      const out = plugin.forwardContext(() => {
        const logits = model.forward(x);
        return loss === "mse"
          ? mseLoss(logits, Tensor.fromHost(Float32Array.from(y), [8, 1], "float32").expand([8, 5]).cast(logits.dtype))
          : crossEntropy(logits, Tensor.fromHost(y, [8], "int32"));
      });
      losses.push((await plugin.optimizerStep(optimizer, out)).loss);
    }
    const params = await Promise.all(model.parameters().map((p) => p.data()));
    return { losses, params: params.map((p) => Array.from(p as Float64Array)), programs };
  });
}

const cpu = (options: CpuBackendOptions = {}) => new CpuAccelerator({ threads: 2, ...options }).createBackend();
const onnxText = (p: Program, fuse = true) => new TextDecoder("latin1").decode(programToOnnx(p, CPU_KERNELS, { fuse }));
const maxRelative = (a: readonly number[][], b: readonly number[][]) =>
  Math.max(...a.flatMap((p, k) => p.map((v, i) => Math.abs(v - b[k]![i]!) / Math.max(Math.abs(b[k]![i]!), 1e-300))));

describe("cpu session options", () => {
  const matmulProgram = (n: number, dtype: "float32" | "float64" = "float32"): Program => ({
    inputs: [
      { dtype, shape: [n, n] },
      { dtype, shape: [n, n] },
    ],
    instructions: [{ op: "matmul", dtype, shape: [n, n], inputs: [0, 1], attrs: {} }],
    outputs: [2],
    key: `matmul${n}`,
  });

  it("counts a matrix product as 2·M·N·K operations, twice in float64", () => {
    expect(programWork(matmulProgram(64))).toBe(2 * 64 ** 3);
    expect(programWork(matmulProgram(64, "float64"))).toBe(4 * 64 ** 3);
  });

  it("turns thread spinning off unless asked, and picks threads by the work per run", () => {
    const [small, large] = [matmulProgram(64), matmulProgram(1024)];
    expect(programWork(small)).toBeLessThan(SMALL_PROGRAM_WORK);
    expect(programWork(large)).toBeGreaterThan(SMALL_PROGRAM_WORK);
    const auto = new CpuAccelerator().createBackend();
    expect(auto.sessionOptions(small).extra).toEqual({ session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } });
    expect(auto.sessionOptions(small).intraOpNumThreads).toBe(1);
    expect(auto.sessionOptions(large).intraOpNumThreads).toBe(availableParallelism());
    expect(defaultThreads(programWork(large), 8)).toBe(8);
    const spinning = new CpuAccelerator({ allowSpinning: true, threads: 3 }).createBackend();
    expect(spinning.sessionOptions(small).extra).toEqual({ session: { intra_op: { allow_spinning: "1" }, inter_op: { allow_spinning: "1" } } });
    expect(spinning.sessionOptions(small).intraOpNumThreads).toBe(3);
  });
});

describe("cpu fused lowering", () => {
  it("lowers linear layers to Gemm without transposed copies, and log-softmax to LogSoftmax", async () => {
    for (const precision of ["32-true", "64-true"] as const) {
      const { programs } = await train(cpu(), precision, { steps: 2 });
      const step = programs.at(-1)!;
      expect(step.instructions.filter((i) => i.op === "transpose").length).toBeGreaterThan(0);
      const fused = onnxText(step);
      expect(fused).toContain("Gemm");
      expect(fused).toContain("LogSoftmax");
      expect(fused).not.toContain("Transpose");
      const literal = onnxText(step, false);
      expect(literal).toContain("Transpose");
      expect(literal).not.toContain("Gemm");
      expect(literal).not.toContain("LogSoftmax");
    }
  });

  it("gives bitwise the same float32 training as the literal lowering where only Gemm fuses", async () => {
    const fused = await train(cpu(), "32-true", { loss: "mse" });
    const literal = await train(cpu({ fuse: false }), "32-true", { loss: "mse" });
    expect(onnxText(fused.programs.at(-1)!)).toContain("Gemm");
    expect(fused.losses).toEqual(literal.losses);
    expect(fused.params).toEqual(literal.params);
  });

  it("keeps cross-entropy training within float32 rounding of the literal lowering", async () => {
    const fused = await train(cpu(), "32-true");
    const literal = await train(cpu({ fuse: false }), "32-true");
    fused.losses.forEach((l, i) => expect(Math.abs(l - literal.losses[i]!) / literal.losses[i]!).toBeLessThan(1e-6));
    expect(maxRelative(fused.params, literal.params)).toBeLessThan(1e-4);
  });

  it("trains 64-true within 1e-12 of the float64 reference backend over 100 SGD steps", async () => {
    const reference = await train(new ReferenceBackend(), "64-true", { steps: 100 });
    const fused = await train(cpu(), "64-true", { steps: 100 });
    fused.losses.forEach((l, i) => expect(Math.abs(l - reference.losses[i]!) / reference.losses[i]!, `step ${i}`).toBeLessThan(1e-12));
    const scale = Math.max(...reference.params.flat().map(Math.abs));
    expect(Math.max(...fused.params.flatMap((p, k) => p.map((v, i) => Math.abs(v - reference.params[k]![i]!))))).toBeLessThan(1e-12 * scale);
  });

  it("scatters a 1-D index_add with repeated indices without reshaping its index", async () => {
    const backend = cpu();
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    const values = await withRuntime(new Runtime(backend), () =>
      Tensor.fromHost(Float32Array.of(1, 2, 3, 4), [4], "float32")
        .indexAdd(0, Tensor.fromHost(Int32Array.of(2, 0, 2, 3, 2), [5], "int32"), Tensor.fromHost(Float32Array.of(10, 20, 30, 40, 50), [5], "float32"))
        .data(),
    );
    expect(Array.from(values)).toEqual([21, 2, 93, 44]);
    const onnx = onnxText(programs.at(-1)!);
    expect(onnx).toContain("ScatterElements");
    expect(onnx).not.toContain("Reshape");
  });

  it.each([2, Math.max(4, availableParallelism())])(
    "scatters rows with ScatterND up to its limit in the reference's order of additions (%i threads)",
    async (threads) => {
      // An embedding gradient's shape at the limit: most indices repeat one row (padding tokens),
      // values of mixed magnitudes so that a different order of additions rounds differently.
      const [rows, width] = [8, 64];
      const k = SCATTER_ROWS_LIMIT / width;
      const g = new Generator(5);
      const index = Int32Array.from({ length: k }, () => (g.uniform(0, 1) < 0.6 ? 0 : g.int(rows)));
      const updates = Float32Array.from({ length: k * width }, () => g.normal() * 10 ** g.int(6));
      const base = Float32Array.from({ length: rows * width }, () => g.normal());
      const scatter = () =>
        Tensor.fromHost(base, [rows, width], "float32")
          .indexAdd(0, Tensor.fromHost(index, [k], "int32"), Tensor.fromHost(updates, [k, width], "float32"))
          .data();
      const backend = cpu({ threads });
      const programs: Program[] = [];
      const compile = backend.compile!.bind(backend);
      backend.compile = (p) => (programs.push(p), compile(p));
      const [reference, values] = [await withRuntime(new Runtime(new ReferenceBackend()), scatter), await withRuntime(new Runtime(backend), scatter)];
      expect(onnxText(programs.at(-1)!)).toContain("ScatterND");
      expect(Array.from(values)).toEqual(Array.from(reference));
      // One more row of updates goes back to ScatterElements.
      const over = lowerProgram(
        {
          inputs: [
            { dtype: "float32", shape: [rows, width] },
            { dtype: "int32", shape: [k + 1] },
            { dtype: "float32", shape: [k + 1, width] },
          ],
          instructions: [{ op: "indexAdd", dtype: "float32", shape: [rows, width], inputs: [0, 1, 2], attrs: { axis: 0 } }],
          outputs: [3],
          key: "indexAdd",
        },
        CPU_KERNELS,
      );
      expect(over.nodes.map((n) => n.op)).toContain("ScatterElements");
    },
  );

  /** Runs `program` on a cpu backend with and without fusions; returns both outputs and the fused graph's ops. */
  async function fusedAndLiteral(program: Program, inputs: readonly Float32Array[]) {
    const run = async (fuse: boolean) => {
      const backend = cpu({ fuse });
      const compiled = await backend.compile!(program);
      const [out] = await compiled.run(inputs.map((x, i) => backend.upload(x, "float32", program.inputs[i]!.shape)));
      return Array.from(backend.download(out!, "float32") as Float32Array, (v) => (Object.is(v, -0) ? "-0" : v));
    };
    return { fused: await run(true), literal: await run(false), ops: lowerProgram(program, CPU_KERNELS).nodes.map((n) => n.op) };
  }

  it("lowers a sum of zero-padded pieces that tile an axis to one Concat, bitwise as the literal lowering (-0 included)", async () => {
    const pad = (input: number, before: number, after: number) =>
      ({ op: "pad", dtype: "float32", shape: [2, 3, 6], inputs: [input], attrs: { before: [0, 0, before], after: [0, 0, after], fill: 0 } }) as const;
    const add = (a: number, b: number) => ({ op: "add", dtype: "float32", shape: [2, 3, 6], inputs: [a, b], attrs: {} }) as const;
    const program = (last: { before: number; after: number }): Program => ({
      inputs: [0, 1, 2].map(() => ({ dtype: "float32", shape: [2, 3, 2] })),
      // The middle piece first: the order of the additions is not the order along the axis.
      // The sum feeds a negation: onnxruntime keeps a graph output's producer, whatever it is.
      instructions: [
        pad(1, 2, 2),
        pad(0, 0, 4),
        add(3, 4),
        pad(2, last.before, last.after),
        add(6, 5),
        { op: "neg", dtype: "float32", shape: [2, 3, 6], inputs: [7], attrs: {} },
      ],
      outputs: [8],
      key: `tiles${last.before}`,
    });
    const g = new Generator(6);
    const inputs = [0, 1, 2].map(() => Float32Array.from({ length: 12 }, (_, i) => (i % 4 === 0 ? -0 : i % 5 === 0 ? Number.NaN : g.normal())));
    const tiling = await fusedAndLiteral(program({ before: 4, after: 0 }), inputs);
    expect(tiling.ops).toEqual(["Concat", "Sum", "Neg"]);
    expect(tiling.fused).toEqual(tiling.literal);
    // The pieces' -0s come out of the sum as +0, negated.
    expect(tiling.fused.filter((v) => v === "-0")).toHaveLength(9);
    // Pieces that overlap (the last one over the middle one) stay pads and adds.
    const overlapping = await fusedAndLiteral(program({ before: 3, after: 1 }), inputs);
    expect(overlapping.ops).toContain("Pad");
    expect(overlapping.fused).toEqual(overlapping.literal);
    // Integers (no -0, and onnxruntime's Sum has no integer kernel) keep their pads and adds.
    const tilingInts = program({ before: 4, after: 0 });
    const ints: Program = {
      ...tilingInts,
      inputs: tilingInts.inputs.map((i) => ({ ...i, dtype: "int32" })),
      instructions: tilingInts.instructions.slice(0, 5).map((i) => ({ ...i, dtype: "int32" })),
      outputs: [7],
      key: "tiles-int32",
    };
    const intOps = lowerProgram(ints, CPU_KERNELS).nodes.map((n) => n.op);
    expect(intOps).toContain("Pad");
    expect(intOps).not.toContain("Sum");
  });

  it("gives ReLU of -0 as +0 also where the ReLU feeds another op (onnxruntime drops an Add of +0 there)", async () => {
    const negatedRelu = () =>
      Tensor.fromHost(Float32Array.of(-0, 0, -2, 3, Number.NaN), [5], "float32")
        .mul(Tensor.fromHost(Float32Array.of(1, 1, 1, 1, 1), [5], "float32"))
        .relu()
        .neg()
        .data();
    const signed = (a: ArrayLike<number>) => Array.from(a, (v) => (Object.is(v, -0) ? "-0" : v));
    const reference = signed(await withRuntime(new Runtime(new ReferenceBackend()), negatedRelu));
    expect(reference.slice(0, 2)).toEqual(["-0", "-0"]);
    expect(signed(await withRuntime(new Runtime(cpu()), negatedRelu))).toEqual(reference);
  });

  /**
   * Runs `layer(x).relu().neg()` with a -0 bias on the reference backend and on cpu, and checks the
   * cpu lowering gives the same zeros (all -0 after the Neg, so every ReLU gave +0) with `fusedOp`
   * followed by a plain Relu (no Sum of +0).
   */
  async function expectPositiveZeroReluWithoutSum(layer: () => Conv2d | Linear, input: Float32Array, shape: number[], fusedOp: string) {
    const run = async (backend: Backend) => {
      const programs: Program[] = [];
      if (backend.compile) {
        const compile = backend.compile.bind(backend);
        backend.compile = (p) => (programs.push(p), compile(p));
      }
      const values = await withRuntime(new Runtime(backend), async () => {
        const built = layer();
        built.bias!.assign(Tensor.fromHost(new Float32Array(built.bias!.shape[0]!).fill(-0), [...built.bias!.shape], "float32"));
        return built
          .forward(Tensor.fromHost(input, shape, "float32"))
          .relu()
          .neg()
          .data();
      });
      return { values: Array.from(values, (v) => (Object.is(v, -0) ? "-0" : v)), programs };
    };
    const reference = await run(new ReferenceBackend());
    expect(new Set(reference.values)).toEqual(new Set(["-0"]));
    const fused = await run(cpu());
    expect(fused.values).toEqual(reference.values);
    const ops = lowerProgram(fused.programs.at(-1)!, CPU_KERNELS).nodes.map((n) => n.op);
    expect(ops).toContain(fusedOp);
    expect(ops).toContain("Relu");
    expect(ops).not.toContain("Sum");
  }

  // The benchmark CNN's two convolutions (onnxruntime picks its blocked NCHWc kernels for channel
  // counts like these) and a small odd one.
  it.each([
    [1, 8, 28],
    [8, 16, 14],
    [2, 3, 5],
  ])(
    "lowers a ReLU of a convolution without the +0: onnxruntime's Conv gives +0, never -0, where its sum is zero (%i -> %i channels, %i pixels square)",
    async (inC, outC, size) => {
      // Zeros of both signs in, weights of both signs, a -0 bias: every product and the bias are
      // zeros, many of them -0. Negating the ReLU shows the sign of each zero it gave.
      const g = new Generator(7);
      const input = Float32Array.from({ length: 2 * inC * size * size }, () => (g.uniform(0, 1) < 0.5 ? -0 : 0));
      const weights = Float32Array.from({ length: outC * inC * 3 * 3 }, () => g.normal());
      const conv = () => {
        const layer = new Conv2d(inC, outC, 3, { padding: 1 });
        layer.weight.assign(Tensor.fromHost(weights, [outC, inC, 3, 3], "float32"));
        return layer;
      };
      await expectPositiveZeroReluWithoutSum(conv, input, [2, inC, size, size], "Conv");
    },
  );

  // The MLP tests' hidden layer, the CNN's classifier, and a small one.
  it.each([
    [8, 12, 24],
    [64, 784, 10],
    [2, 3, 5],
  ])(
    "lowers a ReLU of a linear layer without the +0: onnxruntime's Gemm gives +0, never -0, where its sum is zero (batch %i, %i -> %i)",
    async (batch, inF, outF) => {
      const g = new Generator(8);
      const input = Float32Array.from({ length: batch * inF }, () => (g.uniform(0, 1) < 0.5 ? -0 : 0));
      const weights = Float32Array.from({ length: outF * inF }, () => g.normal());
      const linear = () => {
        const layer = new Linear(inF, outF);
        layer.weight.assign(Tensor.fromHost(weights, [outF, inF], "float32"));
        return layer;
      };
      await expectPositiveZeroReluWithoutSum(linear, input, [batch, inF], "Gemm");
    },
  );

  it("keeps NaN through the ReLU onnxruntime fuses into a convolution or a Gemm, as the reference backend does", async () => {
    const relus = (backend: Backend) =>
      withRuntime(new Runtime(backend), async () => {
        manualSeed(3);
        const conv = new Conv2d(1, 8, 3, { padding: 1 });
        const image = new Float32Array(2 * 28 * 28).map((_, i) => (i === 30 ? Number.NaN : (i % 7) - 3));
        const convOut = Array.from(
          await conv
            .forward(Tensor.fromHost(image, [2, 1, 28, 28], "float32"))
            .relu()
            .data(),
        );
        const linear = new Linear(3, 4);
        const linearOut = Array.from(
          await linear
            .forward(Tensor.fromHost(Float32Array.of(Number.NaN, 1, 2, -1, 0, 1), [2, 3], "float32"))
            .relu()
            .data(),
        );
        return { convOut, linearOut };
      });
    const [reference, fused] = [await relus(new ReferenceBackend()), await relus(cpu())];
    // Object.is: NaN equals NaN, and +0 and -0 differ.
    expect(fused.convOut.map((v, i) => Object.is(v, reference.convOut[i]))).not.toContain(false);
    expect(fused.linearOut.map((v, i) => Object.is(v, reference.linearOut[i]))).not.toContain(false);
    expect(reference.convOut.filter(Number.isNaN).length).toBeGreaterThan(0);
    expect(reference.linearOut.slice(0, 4).every(Number.isNaN)).toBe(true);
  });

  /** A small CNN trained with SGD on `backend` (conv, ReLU, max pool twice, linear). */
  async function trainCnn(backend: Backend, steps = 3) {
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    return withRuntime(new Runtime(backend), async () => {
      manualSeed(1);
      const model = new Sequential(
        new Conv2d(1, 3, 3, { padding: 1 }),
        new ReLU(),
        new MaxPool2d(2),
        new Conv2d(3, 4, 3, { padding: 1 }),
        new ReLU(),
        new MaxPool2d(2),
        new Flatten(),
        new Linear(4 * 2 * 2, 3),
      );
      const optimizer = new SGD(model.parameters(), { lr: 0.1 });
      const g = new Generator(5);
      const losses: number[] = [];
      for (let i = 0; i < steps; i++) {
        const x = Tensor.fromHost(
          new Float32Array(6 * 64).map(() => g.normal()),
          [6, 1, 8, 8],
          "float32",
        );
        // MSE keeps the step free of the LogSoftmax fusion, which rounds differently from the literal lowering.
        const y = Tensor.fromHost(
          new Float32Array(6 * 3).map(() => g.normal()),
          [6, 3],
          "float32",
        );
        losses.push((await precisionPluginFor("32-true").optimizerStep(optimizer, mseLoss(model.forward(x), y))).loss);
      }
      const params = await Promise.all(model.parameters().map((p) => p.data()));
      return { losses, params: params.map((p) => Array.from(p)), programs };
    });
  }

  it("lowers a CNN step with one MaxPool per pool, Conv biases and 4-D weight-gradient transposes, bitwise as the literal lowering", async () => {
    const fused = await trainCnn(cpu());
    const literal = await trainCnn(cpu({ fuse: false }));
    expect(fused.losses).toEqual(literal.losses);
    expect(fused.params).toEqual(literal.params);
    const step = fused.programs.at(-1)!;
    const nodes = (fuse: boolean) => lowerProgram(step, CPU_KERNELS, { fuse }).nodes;
    const count = (fuse: boolean, op: string) => nodes(fuse).filter((n) => n.op === op).length;
    // Forward and gradient share each pool's MaxPool, which gives both values and indices.
    expect(count(false, "MaxPool")).toBe(4);
    expect(count(true, "MaxPool")).toBe(2);
    expect(
      nodes(true)
        .filter((n) => n.op === "MaxPool")
        .every((n) => n.outputs.length === 2),
    ).toBe(true);
    // Both forward convolutions take their bias as Conv's third input.
    expect(nodes(true).filter((n) => n.op === "Conv" && n.inputs.length === 3).length).toBe(2);
    const rank5 = (fuse: boolean) =>
      nodes(fuse).filter((n) => n.op === "Transpose" && (n.attributes?.[0] as { ints?: number[] } | undefined)?.ints?.length === 5).length;
    expect(rank5(false)).toBeGreaterThan(0);
    expect(rank5(true)).toBe(0);
  });

  it("lets elementwise ops broadcast an expanded operand instead of materializing the Expand", async () => {
    const backend = cpu();
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    const x = Float32Array.from({ length: 6 }, (_, i) => i - 2.5);
    const values = await withRuntime(new Runtime(backend), () =>
      Tensor.fromHost(x, [2, 3], "float32")
        .mul(Tensor.fromHost(Float32Array.of(2, -3), [2, 1], "float32").expand([2, 3]))
        .data(),
    );
    expect(Array.from(values)).toEqual([-5, -3, -1, -1.5, -4.5, -7.5]);
    const step = programs.at(-1)!;
    expect(step.instructions.some((i) => i.op === "expand")).toBe(true);
    expect(lowerProgram(step, CPU_KERNELS, { fuse: false }).nodes.some((n) => n.op === "Expand")).toBe(true);
    expect(lowerProgram(step, CPU_KERNELS).nodes.some((n) => n.op === "Expand")).toBe(false);
  });

  it("computes a repeated instruction once", async () => {
    const backend = cpu();
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    const values = await withRuntime(new Runtime(backend), () => {
      const a = Tensor.fromHost(Float32Array.of(1, 2, 3), [3], "float32");
      const b = Tensor.fromHost(Float32Array.of(4, -5, 6), [3], "float32");
      return a.mul(b).add(a.mul(b).mul(b)).data();
    });
    expect(Array.from(values)).toEqual([20, 40, 126]);
    const step = programs.at(-1)!;
    expect(step.instructions.filter((i) => i.op === "mul").length).toBe(3);
    const muls = (fuse: boolean) => lowerProgram(step, CPU_KERNELS, { fuse }).nodes.filter((n) => n.op === "Mul").length;
    expect(muls(false)).toBe(3);
    expect(muls(true)).toBe(2);
  });

  it("lowers a reshape of a reshape as one Reshape", async () => {
    const backend = cpu();
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    const values = await withRuntime(new Runtime(backend), () => {
      const x = Tensor.fromHost(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3], "float32").add(1);
      return x
        .reshape([6])
        .add(x.reshape([6]).reshape([3, 2]).reshape([6]))
        .data();
    });
    expect(Array.from(values)).toEqual([4, 6, 8, 10, 12, 14]);
    const step = programs.at(-1)!;
    const reshapes = (fuse: boolean) => lowerProgram(step, CPU_KERNELS, { fuse }).nodes.filter((n) => n.op === "Reshape").length;
    expect(step.instructions.filter((i) => i.op === "reshape").length).toBeGreaterThan(2);
    expect(reshapes(false)).toBeGreaterThan(2);
    expect(reshapes(true)).toBe(2);
  });

  it("lowers a softmax that no gradient reads back to Softmax with the reference's values", async () => {
    const data = Float64Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.cos(i) * 4);
    const softmax = (backend: Backend) => withRuntime(new Runtime(backend), () => Tensor.fromHost(data, [2, 3, 4], "float64").softmax(-1).data());
    const backend = cpu();
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    const [got, expected] = [await softmax(backend), await softmax(new ReferenceBackend())];
    expect(lowerProgram(programs.at(-1)!, CPU_KERNELS).nodes.map((n) => n.op)).toEqual(["Softmax"]);
    got.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-15));
  });

  it("lowers log-softmax over a middle axis of a rank-3 tensor to LogSoftmax with the reference's values", async () => {
    const data = Float64Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.sin(i) * 5);
    const logSoftmax = (backend: Backend) => withRuntime(new Runtime(backend), () => Tensor.fromHost(data, [2, 3, 4], "float64").logSoftmax(1).data());
    const backend = cpu();
    const programs: Program[] = [];
    const compile = backend.compile!.bind(backend);
    backend.compile = (p) => (programs.push(p), compile(p));
    const [got, expected] = [await logSoftmax(backend), await logSoftmax(new ReferenceBackend())];
    expect(onnxText(programs.at(-1)!)).toContain("LogSoftmax");
    got.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-14));
  });
});
