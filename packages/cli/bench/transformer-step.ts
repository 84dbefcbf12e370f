// One training step of the names transformer (the demo's model: 2 causal pre-norm blocks, d=64, 4
// heads, context 16, batch 32 names, SGD) on the cpu backend, against the same step written by hand
// as one ONNX graph (forward, backward and SGD update), interleaved step by step in one process.
// Prints steps/s, samples/s, the ratios, and parameter and activation bytes per precision.
import { DataLoader, manualSeed, precisionPluginFor, Runtime, SGD, StepCapture, Tensor, withRuntime, type LazyNode, type Precision } from "@nbit/core";
import { CpuAccelerator } from "@nbit/cpu";
import { createRequire } from "node:module";
import type * as ortTypes from "onnxruntime-node";
import { encodeModel, OnnxType, type OnnxNode } from "@nbit/cpu";
import { loadNames, nameDataset, splitNames, Vocabulary } from "../src/names.js";
import { CharTransformer, DEFAULT_CHAR_TRANSFORMER, type CharTransformerConfig } from "../src/transformer.js";

const ort = createRequire(import.meta.url)("onnxruntime-node") as typeof ortTypes;
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const WARMUP = 5;
const STEPS = Number(process.env.BENCH_STEPS ?? 30);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const [BATCH, LR] = [32, 0.1];

const names = loadNames();
const vocab = new Vocabulary(names);
const config: CharTransformerConfig = { ...DEFAULT_CHAR_TRANSFORMER, vocabSize: vocab.size, lr: LR };
const { blockSize: T, dModel: D, numHeads: H, numLayers: L, vocabSize: V } = config;
const HD = D / H;
const N = BATCH * T;
const batches = [...new DataLoader(nameDataset(splitNames(names).train, vocab), { batchSize: BATCH, shuffle: true, seed: 0, dropLast: true })].slice(0, 8);
// Host copies taken before any path runs (running a batch may move its data onto a runtime).
const hostBatches = batches.map((b) => b.map((t) => t.node.host!));

function initialModel(precision: Precision) {
  manualSeed(0);
  return precisionPluginFor(precision).initContext(() => new CharTransformer(config));
}

/** The Trainer's path: plugin, lazy graph, one compiled program per step; `captured`: replayed by a StepCapture. */
function nbitPath(precision: Precision, captured = false) {
  const runtime = new Runtime(new CpuAccelerator({ threads: THREADS, allowSpinning: false }).createBackend());
  const plugin = precisionPluginFor(precision);
  const model = initialModel(precision);
  const optimizer = new SGD(model.parameters(), { lr: LR });
  const capture = captured ? new StepCapture(plugin, optimizer, { module: model }) : null;
  let loss = 0;
  const forward = (raw: readonly Tensor[]) => {
    const batch = raw.map((t) => plugin.convertInput(t));
    return plugin.forwardContext(() => model.maskedNll(batch).sum().div(batch[2]!.sum()));
  };
  const step = (i: number) =>
    withRuntime(runtime, async () => {
      if (!capture) {
        loss = (await plugin.optimizerStep(optimizer, forward(batches[i % batches.length]!))).loss;
        return;
      }
      // Fresh host tensors per step, as a DataLoader hands them over (a replay uploads each batch).
      const k = i % batches.length;
      const batch = batches[k]!.map((t, j) => Tensor.fromHost(hostBatches[k]![j]!, t.shape, t.dtype));
      loss = (await capture.step(batch, forward)).loss;
    });
  return { step, loss: () => loss, model, plugin };
}

/** The same step as one hand-written ONNX graph in float32, from the same initial weights. */
async function handBuilt() {
  const nodes: OnnxNode[] = [];
  let id = 0;
  const n = (op: string, inputs: string[], attributes?: OnnxNode["attributes"], output = `t${id++}`) => {
    nodes.push({ op, inputs, outputs: [output], ...(attributes ? { attributes } : {}) });
    return output;
  };
  const f32 = (name: string, values: number[], dims: number[]) => ({ name, type: OnnxType.FLOAT, dims, raw: new Uint8Array(Float32Array.from(values).buffer) });
  const i64 = (name: string, values: number[]) => ({
    name,
    type: OnnxType.INT64,
    dims: [values.length],
    raw: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer),
  });
  const causal = Array.from({ length: T * T }, (_, k) => (k % T > Math.floor(k / T) ? Number.NEGATIVE_INFINITY : 0));
  const initializers = [
    f32("lr", [LR], []),
    f32("one", [1], []),
    f32("half", [0.5], []),
    f32("c0", [Math.sqrt(2 / Math.PI)], []),
    f32("c1", [0.044715], []),
    f32("c3", [3 * 0.044715], []),
    f32("eps", [1e-5], []),
    f32("scale", [1 / Math.sqrt(HD)], []),
    f32("mask", causal, [T, T]),
    f32("onoff", [0, 1], [2]),
    i64("axLast", [-1]),
    i64("ax0", [0]),
    i64("depthV", [V]),
    i64("depthT", [V]),
    i64("shapeND", [N, D]),
    i64("shapeHeads", [BATCH, T, H, HD]),
    i64("shapeN3", [N, V]),
    i64("shapeBTD", [BATCH, T, D]),
    i64("split3", [D, D, D]),
  ];
  const T_ = (x: string, perm: number[]) => n("Transpose", [x], [{ name: "perm", ints: perm }]);
  const sumRows = (x: string) => n("ReduceSum", [x, "ax0"], [{ name: "keepdims", int: 0 }]);
  const meanLast = (x: string) => n("ReduceMean", [x, "axLast"], [{ name: "keepdims", int: 1 }]);
  const sumLast = (x: string) => n("ReduceSum", [x, "axLast"], [{ name: "keepdims", int: 1 }]);
  const linear = (x: string, w: string, b: string) => n("Add", [n("MatMul", [x, T_(w, [1, 0])]), b]);
  const params: { name: string; dims: number[] }[] = [];
  const grads = new Map<string, string>();
  const param = (name: string, dims: number[]) => {
    params.push({ name, dims });
    return name;
  };
  const linearBack = (x: string, w: string, b: string, dy: string) => {
    grads.set(w, n("MatMul", [T_(dy, [1, 0]), x]));
    grads.set(b, sumRows(dy));
    return n("MatMul", [dy, w]);
  };
  const layerNorm = (x: string, g: string, b: string) => {
    const xc = n("Sub", [x, meanLast(x)]);
    const rstd = n("Reciprocal", [n("Sqrt", [n("Add", [meanLast(n("Mul", [xc, xc])), "eps"])])]);
    const xhat = n("Mul", [xc, rstd]);
    return { y: n("Add", [n("Mul", [xhat, g]), b]), xhat, rstd };
  };
  const layerNormBack = (ln: { xhat: string; rstd: string }, g: string, b: string, dy: string) => {
    grads.set(g, sumRows(n("Mul", [dy, ln.xhat])));
    grads.set(b, sumRows(dy));
    const dxhat = n("Mul", [dy, g]);
    const inner = n("Sub", [n("Sub", [dxhat, meanLast(dxhat)]), n("Mul", [ln.xhat, meanLast(n("Mul", [dxhat, ln.xhat]))])]);
    return n("Mul", [inner, ln.rstd]);
  };
  const heads = (x: string) => T_(n("Reshape", [x, "shapeHeads"]), [0, 2, 1, 3]);
  const merge = (x: string) => n("Reshape", [T_(x, [0, 2, 1, 3]), "shapeND"]);

  // Forward: embeddings, blocks, final norm and head, masked cross-entropy.
  const wte = param("wte", [V, D]);
  const wpe = param("wpe", [T, D]);
  const tokens = n("Cast", ["x"], [{ name: "to", int: OnnxType.INT64 }]);
  const onehotTokens = n("Reshape", [n("OneHot", [tokens, "depthV", "onoff"], [{ name: "axis", int: -1 }]), "shapeN3"]);
  let h = n("Reshape", [n("Add", [n("Reshape", [n("MatMul", [onehotTokens, wte]), "shapeBTD"]), wpe]), "shapeND"]);
  type Norm = { xhat: string; rstd: string };
  type Keys =
    | "inW"
    | "inB"
    | "outW"
    | "outB"
    | "w1"
    | "b1"
    | "w2"
    | "b2"
    | "g1"
    | "be1"
    | "g2"
    | "be2"
    | "qh"
    | "kh"
    | "vh"
    | "probs"
    | "attnIn"
    | "pre"
    | "x2"
    | "tanh"
    | "act"
    | "ln1y"
    | "ln2y";
  const saved: (Record<Keys, string> & { ln1: Norm; ln2: Norm })[] = [];
  for (let l = 0; l < L; l++) {
    const p = (s: string, dims: number[]) => param(`b${l}.${s}`, dims);
    const [inW, inB, outW, outB, w1, b1, w2, b2, g1, be1, g2, be2] = [
      p("inW", [3 * D, D]),
      p("inB", [3 * D]),
      p("outW", [D, D]),
      p("outB", [D]),
      p("w1", [4 * D, D]),
      p("b1", [4 * D]),
      p("w2", [D, 4 * D]),
      p("b2", [D]),
      p("g1", [D]),
      p("be1", [D]),
      p("g2", [D]),
      p("be2", [D]),
    ];
    const ln1 = layerNorm(h, g1, be1);
    const qkv = linear(ln1.y, inW, inB);
    const [q, k, v] = [`q${l}`, `k${l}`, `v${l}`];
    nodes.push({ op: "Split", inputs: [qkv, "split3"], outputs: [q, k, v], attributes: [{ name: "axis", int: 1 }] });
    const [qh, kh, vh] = [heads(n("Mul", [q, "scale"])), heads(k), heads(v)];
    const probs = n("Softmax", [n("Add", [n("MatMul", [qh, T_(kh, [0, 1, 3, 2])]), "mask"])], [{ name: "axis", int: -1 }]);
    const attnIn = merge(n("MatMul", [probs, vh]));
    const h1 = n("Add", [h, linear(attnIn, outW, outB)]);
    const ln2 = layerNorm(h1, g2, be2);
    const pre = linear(ln2.y, w1, b1);
    const x2 = n("Mul", [pre, pre]);
    const tanh = n("Tanh", [n("Mul", ["c0", n("Mul", [pre, n("Add", ["one", n("Mul", ["c1", x2])])])])]);
    const act = n("Mul", [n("Mul", ["half", pre]), n("Add", ["one", tanh])]);
    saved.push({ inW, inB, outW, outB, w1, b1, w2, b2, g1, be1, g2, be2, ln1, ln2, qh, kh, vh, probs, attnIn, pre, x2, tanh, act, ln1y: ln1.y, ln2y: ln2.y });
    h = n("Add", [h1, linear(act, w2, b2)]);
  }
  const [gf, bf, wh, bh] = [param("gf", [D]), param("bf", [D]), param("wh", [V, D]), param("bh", [V])];
  const lnf = layerNorm(h, gf, bf);
  const logits = linear(lnf.y, wh, bh);
  const logp = n("LogSoftmax", [logits], [{ name: "axis", int: -1 }]);
  const onehotTargets = n("Reshape", [
    n("OneHot", [n("Cast", ["y"], [{ name: "to", int: OnnxType.INT64 }]), "depthT", "onoff"], [{ name: "axis", int: -1 }]),
    "shapeN3",
  ]);
  const weights = n("Div", [
    n("Reshape", ["m", n("Constant", [], [{ name: "value_ints", ints: [N, 1] }])]),
    n("ReduceSum", ["m"], [{ name: "keepdims", int: 0 }]),
  ]);
  n("Neg", [n("ReduceSum", [n("Mul", [n("Mul", [onehotTargets, logp]), weights])], [{ name: "keepdims", int: 0 }])], undefined, "loss");

  // Backward.
  let dh = layerNormBack(lnf, gf, bf, linearBack(lnf.y, wh, bh, n("Mul", [n("Sub", [n("Exp", [logp]), onehotTargets]), weights])));
  for (let l = L - 1; l >= 0; l--) {
    const s = saved[l]!;
    const dact = linearBack(s.act, s.w2, s.b2, dh);
    const dtanh = n("Mul", [n("Sub", ["one", n("Mul", [s.tanh, s.tanh])]), n("Mul", ["c0", n("Add", ["one", n("Mul", ["c3", s.x2])])])]);
    const dpre = n("Mul", [dact, n("Add", [n("Mul", ["half", n("Add", ["one", s.tanh])]), n("Mul", [n("Mul", ["half", s.pre]), dtanh])])]);
    const dh1 = n("Add", [dh, layerNormBack(s.ln2, s.g2, s.be2, linearBack(s.ln2y, s.w1, s.b1, dpre))]);
    const dheads = heads(linearBack(s.attnIn, s.outW, s.outB, dh1));
    const dv = n("MatMul", [T_(s.probs, [0, 1, 3, 2]), dheads]);
    const dp = n("MatMul", [dheads, T_(s.vh, [0, 1, 3, 2])]);
    const ds = n("Mul", [s.probs, n("Sub", [dp, sumLast(n("Mul", [dp, s.probs]))])]);
    const dq = n("Mul", [merge(n("MatMul", [ds, s.kh])), "scale"]);
    const dk = merge(n("MatMul", [T_(ds, [0, 1, 3, 2]), s.qh]));
    const dqkv = n("Concat", [dq, dk, merge(dv)], [{ name: "axis", int: 1 }]);
    dh = n("Add", [dh1, layerNormBack(s.ln1, s.g1, s.be1, linearBack(s.ln1y, s.inW, s.inB, dqkv))]);
  }
  grads.set(wte, n("MatMul", [T_(onehotTokens, [1, 0]), dh]));
  grads.set(wpe, sumRows(n("Reshape", [dh, "shapeBTD"])));
  for (const p of params) n("Sub", [p.name, n("Mul", [grads.get(p.name)!, "lr"])], undefined, `new.${p.name}`);

  const value = (name: string, dims: number[], type: number = OnnxType.FLOAT) => ({ name, type, dims });
  const model = encodeModel({
    nodes,
    initializers,
    inputs: [
      value("x", [BATCH, T], OnnxType.INT32),
      value("y", [BATCH, T], OnnxType.INT32),
      value("m", [BATCH, T]),
      ...params.map((p) => value(p.name, p.dims)),
    ],
    outputs: [value("loss", []), ...params.map((p) => value(`new.${p.name}`, p.dims))],
  });
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  });
  // The nbit model's initial weights, in the hand-built graph's order.
  const start = new Map([...initialModel("32-true").namedParameters()].map(([k, p]) => [k, p]));
  const source = (name: string): string => {
    const block = /^b(\d+)\.(\w+)$/.exec(name);
    if (!block) return { wte: "wte.weight", wpe: "wpe.weight", gf: "ln_f.weight", bf: "ln_f.bias", wh: "lm_head.weight", bh: "lm_head.bias" }[name]!;
    const names: Record<string, string | undefined> = {
      inW: "self_attn.in_proj_weight",
      inB: "self_attn.in_proj_bias",
      outW: "self_attn.out_proj.weight",
      outB: "self_attn.out_proj.bias",
      w1: "linear1.weight",
      b1: "linear1.bias",
      w2: "linear2.weight",
      b2: "linear2.bias",
      g1: "norm1.weight",
      be1: "norm1.bias",
      g2: "norm2.weight",
      be2: "norm2.bias",
    };
    return `blocks.${block[1]}.${names[block[2]!]}`;
  };
  const state: Record<string, ortTypes.Tensor> = {};
  for (const p of params) state[p.name] = new ort.Tensor("float32", Float32Array.from(await start.get(source(p.name))!.data()), p.dims);
  let loss = 0;
  const step = async (i: number) => {
    const [x, y, m] = hostBatches[i % batches.length]!;
    const out = await session.run({
      x: new ort.Tensor("int32", x as Int32Array, [BATCH, T]),
      y: new ort.Tensor("int32", y as Int32Array, [BATCH, T]),
      m: new ort.Tensor("float32", m as Float32Array, [BATCH, T]),
      ...state,
    });
    for (const p of params) state[p.name] = out[`new.${p.name}`]!;
    loss = (out.loss!.data as Float32Array)[0]!;
  };
  return { step, loss: () => loss };
}

/** Bytes of every intermediate value one forward and backward records (its lazy graph before it runs). */
function activationBytes(precision: Precision): number {
  const plugin = precisionPluginFor(precision);
  const model = initialModel(precision);
  const batch = batches[0]!.map((t) => plugin.convertInput(t));
  const loss = plugin.forwardContext(() => model.maskedNll(batch).sum().div(batch[2]!.sum()));
  loss.backward();
  const seen = new Set<LazyNode>();
  const stack = [loss.node, ...model.parameters().map((p) => p.grad!.node)];
  let bytes = 0;
  while (stack.length) {
    const node = stack.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    if (node.op !== "leaf" && node.op !== "const" && node.op !== "reshape") bytes += new Tensor(node).nbytes;
    stack.push(...node.src);
  }
  return bytes;
}

console.log(`names transformer (${L} blocks, d=${D}, ${H} heads, context ${T}, vocab ${V}), batch ${BATCH} names, SGD lr ${LR}, cpu with ${THREADS} threads`);
console.log(`${ROUNDS} rounds of ${STEPS} timed steps per path after ${WARMUP} warm-up; the paths take turns step by step.`);
const paths = {
  "hand-built 32-true": await handBuilt(),
  "nbit 32-true": nbitPath("32-true"),
  "nbit 32-true captured": nbitPath("32-true", true),
  "nbit bf16-mixed": nbitPath("bf16-mixed"),
};
type PathName = keyof typeof paths;
const rounds: Record<PathName, number>[] = [];
let i = 0;
for (; i < WARMUP; i++) for (const path of Object.values(paths)) await path.step(i);
const firstLosses = Object.fromEntries(Object.entries(paths).map(([k, p]) => [k, p.loss()]));
for (let r = 0; r < ROUNDS; r++) {
  const seconds = { "hand-built 32-true": 0, "nbit 32-true": 0, "nbit 32-true captured": 0, "nbit bf16-mixed": 0 };
  for (let s = 0; s < STEPS; s++, i++)
    for (const [name, path] of Object.entries(paths) as [PathName, (typeof paths)[PathName]][]) {
      const t0 = performance.now();
      await path.step(i);
      seconds[name] += (performance.now() - t0) / 1000;
    }
  rounds.push(seconds);
}
const rate = (r: Record<PathName, number>, k: PathName) => STEPS / r[k];
const spread = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return `min ${s[0]!.toFixed(2)} / median ${s[Math.floor(s.length / 2)]!.toFixed(2)} / max ${s.at(-1)!.toFixed(2)}`;
};
console.log(`\n${"path".padEnd(24)}${"steps/s".padStart(9)}${"samples/s".padStart(11)}  loss after warm-up -> end`);
for (const name of Object.keys(paths) as PathName[]) {
  const median = [...rounds.map((r) => rate(r, name))].sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
  console.log(
    `${name.padEnd(24)}${median.toFixed(2).padStart(9)}${(median * BATCH).toFixed(1).padStart(11)}  ${firstLosses[name]!.toFixed(4)} -> ${paths[name].loss().toFixed(4)}`,
  );
}
console.log(`\nnbit 32-true / hand-built 32-true (target >= 0.85): ${spread(rounds.map((r) => rate(r, "nbit 32-true") / rate(r, "hand-built 32-true")))}`);
console.log(
  `nbit 32-true captured / hand-built 32-true (target >= 0.85): ${spread(rounds.map((r) => rate(r, "nbit 32-true captured") / rate(r, "hand-built 32-true")))}`,
);
console.log(`nbit bf16-mixed / nbit 32-true: ${spread(rounds.map((r) => rate(r, "nbit bf16-mixed") / rate(r, "nbit 32-true")))}`);

console.log(
  `\n${"memory".padEnd(12)}${"param bytes".padStart(13)}${"activation bytes".padStart(18)}  (activations: every value one step's forward and backward records)`,
);
for (const precision of ["32-true", "bf16-mixed", "bf16-true", "64-true"] as const) {
  const params = initialModel(precision).parameterBytes();
  console.log(`${precision.padEnd(12)}${String(params).padStart(13)}${String(activationBytes(precision)).padStart(18)}`);
}
