/**
 * One training step of each model on the cpu backend, against the same step written by hand as
 * one ONNX graph, interleaved step by step in one process (so load changes hit every path alike).
 * Prints, per model: nbit 32-true (recorded, and captured: replayed by a StepCapture) / hand-built and bf16-mixed / 32-true step-time ratios (min,
 * median, max over rounds), samples/s, and parameter and activation bytes per precision.
 *
 *   npm run bench:models -w @nbit/cli [-- --rounds 30 --threads 2]
 *
 * A model is one BenchEntry in ENTRIES.
 */
import {
  Conv2d,
  crossEntropy,
  Flatten,
  Generator,
  itemSize,
  Linear,
  MaxPool2d,
  precisionPluginFor,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  StepCapture,
  tensor,
  withRuntime,
  type LazyNode,
  type Module,
  type Precision,
  type Tensor,
} from "@nbit/core";
import { CpuBackend, encodeModel, OnnxType, type OnnxNode, type OnnxTensor, type OnnxValue } from "@nbit/cpu";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import type * as Ort from "onnxruntime-node";

const ort = createRequire(import.meta.url)("onnxruntime-node") as typeof Ort;
const { values: args } = parseArgs({
  options: { rounds: { type: "string", default: "30" }, threads: { type: "string", default: "2" }, warmup: { type: "string", default: "3" } },
});
const ROUNDS = Number(args.rounds);
const THREADS = Number(args.threads);
const WARMUP = Number(args.warmup);
const PRECISIONS: Precision[] = ["32-true", "bf16-mixed"];
/** nbit 32-true through a StepCapture (replayed steps). */
const CAPTURED = "32-true captured";

/** What the bench needs of a model. */
interface BenchEntry {
  readonly name: string;
  readonly batch: number;
  /** The nbit model, built in the precision's init context. */
  model(): Module;
  /** One batch: input and int32 labels. */
  data(g: Generator): { x: Float32Array; xShape: number[]; labels: Int32Array; classes: number };
  /** The same step (forward, backward, SGD update) as one hand-written ONNX graph over the model's parameters. */
  handBuilt(params: readonly Tensor[]): Promise<HandStep>;
}

interface HandStep {
  /** Runs one step; feeds the updated parameters back in. */
  step(x: Float32Array, onehot: Float32Array): Promise<number>;
}

// ---- the CNN -------------------------------------------------------------------------------

const LR = 0.01;

/** The demo CNN's layers without batch norm (its hand-written backward is not part of this bench). */
const cnn: BenchEntry = {
  name: "cnn (conv 1->8->16, max pool, linear; batch 64, 28x28)",
  batch: 64,
  model: () =>
    new Sequential(
      new Conv2d(1, 8, 3, { padding: 1 }),
      new ReLU(),
      new MaxPool2d(2),
      new Conv2d(8, 16, 3, { padding: 1 }),
      new ReLU(),
      new MaxPool2d(2),
      new Flatten(),
      new Linear(16 * 7 * 7, 10),
    ),
  data: (g) => {
    const x = Float32Array.from({ length: 64 * 784 }, () => Math.max(0, g.normal()));
    return { x, xShape: [64, 1, 28, 28], labels: Int32Array.from({ length: 64 }, (_, i) => i % 10), classes: 10 };
  },
  handBuilt: async (params) => {
    const B = 64;
    const g = new GraphBuilder();
    const [w1, b1, w2, b2, w3, b3] = ["w1", "b1", "w2", "b2", "w3", "b3"];
    g.input("x", [B, 1, 28, 28]);
    g.input("y", [B, 10]);
    const shapes = params.map((p) => [...p.shape]);
    [w1, b1, w2, b2, w3, b3].forEach((n, i) => g.input(n!, shapes[i]!));
    const convAttrs = [
      { name: "pads", ints: [1, 1, 1, 1] },
      { name: "kernel_shape", ints: [3, 3] },
    ];
    const pool = [
      { name: "kernel_shape", ints: [2, 2] },
      { name: "strides", ints: [2, 2] },
    ];
    // Forward.
    g.node("Conv", ["x", w1!, b1!], ["c1"], convAttrs);
    g.node("Relu", ["c1"], ["r1"]);
    g.node("MaxPool", ["r1"], ["p1", "i1"], pool);
    g.node("Conv", ["p1", w2!, b2!], ["c2"], convAttrs);
    g.node("Relu", ["c2"], ["r2"]);
    g.node("MaxPool", ["r2"], ["p2", "i2"], pool);
    g.node("Reshape", ["p2", g.int64s([B, 784])], ["f"]);
    g.node("Gemm", ["f", w3!, b3!], ["logits"], [{ name: "transB", int: 1 }]);
    g.node("LogSoftmax", ["logits"], ["ls"], [{ name: "axis", int: 1 }]);
    g.node("Mul", ["ls", "y"], ["picked"]);
    g.node("ReduceSum", ["picked"], ["total"], [{ name: "keepdims", int: 0 }]);
    g.node("Mul", ["total", g.float(-1 / B)], ["loss"]);
    // Backward: cross-entropy, linear, pools (scatter-add to each window's max), ReLU, convolutions.
    g.node("Exp", ["ls"], ["probs"]);
    g.node("Sub", ["probs", "y"], ["d0"]);
    g.node("Mul", ["d0", g.float(1 / B)], ["gl"]);
    g.node("Gemm", ["gl", "f"], ["gw3"], [{ name: "transA", int: 1 }]);
    g.node("ReduceSum", ["gl", g.int64s([0])], ["gb3"], [{ name: "keepdims", int: 0 }]);
    g.node("MatMul", ["gl", w3!], ["gf"]);
    const poolBack = (grad: string, indices: string, inShape: number[], out: string) => {
      const size = inShape.reduce((a, b) => a * b, 1);
      g.node("Reshape", [grad, g.int64s([-1])], [`${out}_g`]);
      g.node("Reshape", [indices, g.int64s([-1])], [`${out}_i`]);
      g.node("ScatterElements", [g.zeros(size), `${out}_i`, `${out}_g`], [`${out}_flat`], [{ name: "reduction", string: "add" }]);
      g.node("Reshape", [`${out}_flat`, g.int64s(inShape)], [out]);
    };
    const reluBack = (grad: string, activated: string, out: string) => {
      g.node("Greater", [activated, g.float(0)], [`${out}_m`]);
      g.node("Where", [`${out}_m`, grad, g.float(0)], [out]);
    };
    const convWeightGrad = (input: string, grad: string, out: string) => {
      g.node("Transpose", [input], [`${out}_x`], [{ name: "perm", ints: [1, 0, 2, 3] }]);
      g.node("Transpose", [grad], [`${out}_k`], [{ name: "perm", ints: [1, 0, 2, 3] }]);
      g.node("Conv", [`${out}_x`, `${out}_k`], [`${out}_r`], [{ name: "pads", ints: [1, 1, 1, 1] }]);
      g.node("Transpose", [`${out}_r`], [out], [{ name: "perm", ints: [1, 0, 2, 3] }]);
    };
    g.node("Reshape", ["gf", g.int64s([B, 16, 7, 7])], ["gp2"]);
    poolBack("gp2", "i2", [B, 16, 14, 14], "gr2");
    reluBack("gr2", "r2", "gc2");
    g.node("ReduceSum", ["gc2", g.int64s([0, 2, 3])], ["gb2"], [{ name: "keepdims", int: 0 }]);
    convWeightGrad("p1", "gc2", "gw2");
    g.node("ConvTranspose", ["gc2", w2!], ["gp1"], [{ name: "pads", ints: [1, 1, 1, 1] }]);
    poolBack("gp1", "i1", [B, 8, 28, 28], "gr1");
    reluBack("gr1", "r1", "gc1");
    g.node("ReduceSum", ["gc1", g.int64s([0, 2, 3])], ["gb1"], [{ name: "keepdims", int: 0 }]);
    convWeightGrad("x", "gc1", "gw1");
    // SGD update.
    const names = [w1!, b1!, w2!, b2!, w3!, b3!];
    for (const [i, n] of names.entries()) {
      g.node("Mul", [`g${n}`, g.float(LR)], [`${n}_step`]);
      g.node("Sub", [n, `${n}_step`], [`${n}_new`]);
      g.output(`${n}_new`, shapes[i]!);
    }
    g.output("loss", []);
    const session = await ort.InferenceSession.create(g.encode(), sessionOptions());
    let state: Ort.Tensor[] = await Promise.all(
      params.map(async (p) => new ort.Tensor("float32", Float32Array.from((await p.data()) as Float32Array), [...p.shape])),
    );
    return {
      step: async (x, onehot) => {
        const feeds: Record<string, Ort.Tensor> = { x: new ort.Tensor("float32", x, [B, 1, 28, 28]), y: new ort.Tensor("float32", onehot, [B, 10]) };
        names.forEach((n, i) => (feeds[n] = state[i]!));
        const out = await session.run(feeds);
        state = names.map((n) => out[`${n}_new`]!);
        return (out.loss!.data as Float32Array)[0]!;
      },
    };
  },
};

/** The models the bench runs; another model is one more entry. */
const ENTRIES: BenchEntry[] = [cnn];

// ---- graph building ------------------------------------------------------------------------

class GraphBuilder {
  private readonly nodes: OnnxNode[] = [];
  private readonly initializers: OnnxTensor[] = [];
  private readonly inputs: OnnxValue[] = [];
  private readonly outputs: OnnxValue[] = [];

  input(name: string, dims: number[]): void {
    this.inputs.push({ name, type: OnnxType.FLOAT, dims });
  }
  output(name: string, dims: number[]): void {
    this.outputs.push({ name, type: OnnxType.FLOAT, dims });
  }
  node(op: string, inputs: string[], outputs: string[], attributes?: OnnxNode["attributes"]): void {
    this.nodes.push({ op, inputs, outputs, ...(attributes ? { attributes } : {}) });
  }
  private constant(type: number, dims: number[], raw: Uint8Array): string {
    const name = `k${this.initializers.length}`;
    this.initializers.push({ name, type, dims, raw });
    return name;
  }
  int64s(values: number[]): string {
    return this.constant(OnnxType.INT64, [values.length], new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer));
  }
  float(value: number): string {
    return this.constant(OnnxType.FLOAT, [], new Uint8Array(Float32Array.of(value).buffer));
  }
  zeros(size: number): string {
    return this.constant(OnnxType.FLOAT, [size], new Uint8Array(new Float32Array(size).buffer));
  }
  encode(): Uint8Array {
    return encodeModel({ nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs }, 18, "hand_built_step");
  }
}

const sessionOptions = (): Ort.InferenceSession.SessionOptions => ({
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  executionMode: "sequential",
  interOpNumThreads: 1,
  intraOpNumThreads: THREADS,
  logSeverityLevel: 3,
  extra: { session: { intra_op: { allow_spinning: "0" } } },
});

// ---- measuring -----------------------------------------------------------------------------

/** Bytes of every intermediate value of the forward pass (an upper bound on the activations a step keeps). */
function forwardBytes(out: Tensor): number {
  const seen = new Set<LazyNode>();
  const stack: LazyNode[] = [out.node];
  let bytes = 0;
  while (stack.length) {
    const node = stack.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    if (node.op !== "leaf" && node.op !== "const") bytes += node.shape.reduce((a, b) => a * b, 1) * itemSize(node.dtype);
    stack.push(...node.src);
  }
  return bytes;
}

interface NbitStep {
  step(): Promise<number>;
  params: Tensor[];
  parameterBytes: number;
  activationBytes: number;
}

function nbitStep(entry: BenchEntry, precision: Precision, data: ReturnType<BenchEntry["data"]>, runtime: Runtime, captured = false): NbitStep {
  const plugin = precisionPluginFor(precision);
  const model = withRuntime(runtime, () => plugin.initContext(() => entry.model()));
  // The same initial weights in every path.
  const init = new Generator(1);
  for (const p of model.parameters())
    p.assign(
      tensor(
        Array.from({ length: p.size }, () => (init.uniform(-1, 1) * 0.5) / Math.sqrt(p.size / p.shape[0]!)),
        p.shape,
        p.dtype,
      ),
    );
  const optimizer = new SGD(model.parameters(), { lr: LR });
  const x = plugin.convertInput(tensor(data.x, data.xShape));
  const labels = tensor(data.labels, [data.labels.length], "int32");
  const activationBytes = plugin.forwardContext(() => forwardBytes(model.forward(x)));
  // Captured: after two recorded steps, each step replays the compiled program (StepCapture).
  const capture = captured ? new StepCapture(plugin, optimizer, { module: model }) : null;
  return {
    params: model.parameters(),
    parameterBytes: model.parameterBytes(),
    activationBytes,
    step: () =>
      withRuntime(runtime, async () => {
        const forward = () => plugin.forwardContext(() => crossEntropy(model.forward(x), labels));
        return (capture ? await capture.step([x, labels], forward) : await plugin.optimizerStep(optimizer, forward())).loss;
      }),
  };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s.at(-1)! };
};
const fmt = (r: { min: number; median: number; max: number }, digits = 2) =>
  `${r.median.toFixed(digits)} (min ${r.min.toFixed(digits)}, max ${r.max.toFixed(digits)})`;

async function bench(entry: BenchEntry): Promise<void> {
  const data = entry.data(new Generator(3));
  const onehot = new Float32Array(data.labels.length * data.classes);
  data.labels.forEach((c, i) => (onehot[i * data.classes + c] = 1));
  const runtime = new Runtime(new CpuBackend(ort, { threads: THREADS, allowSpinning: false }));
  const steps: Record<string, NbitStep> = Object.fromEntries(PRECISIONS.map((p) => [p, nbitStep(entry, p, data, runtime)]));
  steps[CAPTURED] = nbitStep(entry, "32-true", data, runtime, true);
  const KEYS = [...PRECISIONS, CAPTURED];
  // The hand-built step starts from a copy of the same initial weights.
  const hand = await withRuntime(runtime, () => entry.handBuilt(steps["32-true"]!.params));
  const times: Record<string, number[]> = { hand: [], ...Object.fromEntries(KEYS.map((p) => [p, []])) };
  const losses: Record<string, number> = {};
  const time = async (key: string, run: () => Promise<number>) => {
    const t0 = performance.now();
    losses[key] = await run();
    times[key]!.push(performance.now() - t0);
  };
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const order: string[] = round % 2 === 0 ? ["hand", ...KEYS] : [...[...KEYS].reverse(), "hand"];
    for (const key of order) await time(key, key === "hand" ? () => hand.step(data.x, onehot) : () => steps[key]!.step());
    if (round === WARMUP - 1) for (const k of Object.keys(times)) times[k] = [];
  }
  const ratio = (a: string, b: string) => stats(times[a]!.map((t, i) => times[b]![i]! / t));
  console.log(`\n${entry.name}: ${ROUNDS} interleaved rounds after ${WARMUP} warm-up, ${THREADS} intra-op threads`);
  console.log(`  hand-built ONNX step: ${fmt(stats(times.hand!), 1)} ms, ${(entry.batch / (stats(times.hand!).median / 1000)).toFixed(0)} samples/s`);
  for (const p of KEYS) {
    const s = stats(times[p]!);
    console.log(
      `  nbit ${p}: ${fmt(s, 1)} ms, ${(entry.batch / (s.median / 1000)).toFixed(0)} samples/s, parameters ${steps[p]!.parameterBytes} B, forward values ${steps[p]!.activationBytes} B`,
    );
  }
  console.log(`  speed of nbit 32-true relative to hand-built (hand time / nbit time; target >= 0.85): ${fmt(ratio("32-true", "hand"))}`);
  console.log(`  speed of nbit 32-true captured relative to hand-built (target >= 0.85): ${fmt(ratio(CAPTURED, "hand"))}`);
  console.log(`  speed of bf16-mixed relative to 32-true (32-true time / bf16-mixed time): ${fmt(ratio("bf16-mixed", "32-true"))}`);
  console.log(
    `  last losses: ${Object.entries(losses)
      .map(([k, v]) => `${k} ${v.toFixed(4)}`)
      .join(", ")}`,
  );
}

for (const entry of ENTRIES) await bench(entry);
