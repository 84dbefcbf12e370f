// CPU backend benchmark: the standard MLP (256-512-512-10, ReLU, cross-entropy, SGD lr 0.05,
// batch 128, synthetic data) on onnxruntime-node with 2 intra-op threads (BENCH_THREADS changes
// it). Prints steps/s per precision, the same step as hand-built ONNX graphs (32-true and
// bf16-mixed), and parameter/optimizer bytes.
import {
  Adam,
  FLOAT_FORMATS,
  crossEntropy,
  Generator,
  Linear,
  manualSeed,
  precisionPluginFor,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  tensor,
  Tensor,
  type Precision,
} from "@nbit/core";
import { createRequire } from "node:module";
import type * as ortTypes from "onnxruntime-node";
import { CpuAccelerator } from "../src/index.js";
import { encodeModel, OnnxType, type OnnxNode } from "../src/onnx-proto.js";

const ort = createRequire(import.meta.url)("onnxruntime-node") as typeof ortTypes;
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const [IN, H, OUT, BATCH, LR] = [256, 512, 10, 128, 0.05];
const WARMUP = 20;
const STEPS = Number(process.env.BENCH_STEPS ?? 200);

const g = new Generator(0);
const batches = Array.from({ length: 8 }, () => ({
  x: new Float32Array(BATCH * IN).map(() => g.normal()),
  y: new Int32Array(BATCH).map(() => g.int(OUT)),
}));

/** A training step through nbit (the Trainer's path: plugin, lazy graph, one fused program). */
async function trainerPath(precision: Precision) {
  const backend = new CpuAccelerator({ threads: THREADS, allowSpinning: false }).createBackend();
  const runtime = new Runtime(backend);
  manualSeed(0);
  const plugin = precisionPluginFor(precision);
  const model = plugin.initContext(() => new Sequential(new Linear(IN, H), new ReLU(), new Linear(H, H), new ReLU(), new Linear(H, OUT)));
  const optimizer = new SGD(model.parameters(), { lr: LR });
  let loss = 0;
  const step = (i: number) =>
    runtime.run(async () => {
      const b = batches[i % batches.length]!;
      // Batches enter as host tensors without a copy, as the DataLoader hands them to the Trainer.
      const x = plugin.convertInput(Tensor.fromHost(b.x, [BATCH, IN], "float32"));
      const out = plugin.forwardContext(() => crossEntropy(model.forward(x), Tensor.fromHost(b.y, [BATCH], "int32")));
      loss = (await plugin.optimizerStep(optimizer, out)).loss;
    });
  return { step, result: () => ({ loss, paramBytes: model.parameterBytes(), sessions: backend.sessionsCreated }) };
}

/**
 * The same training step written by hand as one ONNX graph: the ceiling for the Trainer path.
 * With `bf16`, it rounds where PyTorch's bf16 autocast rounds (a Cast pair each): the input,
 * weights and biases, each linear output (addmm: one rounding), the logits' gradient, and each
 * linear's dX, dW and db. That is the least rounding any exact bf16-mixed step must do here.
 */
async function handBuilt(bf16: boolean) {
  const nodes: OnnxNode[] = [];
  const n = (op: string, inputs: string[], output: string, attributes?: OnnxNode["attributes"]) => {
    nodes.push({ op, inputs, outputs: [output], ...(attributes ? { attributes } : {}) });
    return output;
  };
  const round = (v: string) =>
    bf16 ? n("Cast", [n("Cast", [v], `${v}_bf16`, [{ name: "to", int: FLOAT_FORMATS.bfloat16.onnxType }])], `${v}_r`, [{ name: "to", int: OnnxType.FLOAT }]) : v;
  const dims = [IN, H, H, OUT];
  const f32 = (v: number) => new Uint8Array(Float32Array.of(v).buffer);
  const i64 = (v: number[]) => new Uint8Array(BigInt64Array.from(v.map(BigInt)).buffer);
  const initializers = [
    { name: "lr", type: OnnxType.FLOAT, dims: [], raw: f32(LR) },
    { name: "invN", type: OnnxType.FLOAT, dims: [], raw: f32(1 / BATCH) },
    { name: "zero", type: OnnxType.FLOAT, dims: [], raw: f32(0) },
    { name: "ax1", type: OnnxType.INT64, dims: [1], raw: i64([1]) },
    { name: "ax0", type: OnnxType.INT64, dims: [1], raw: i64([0]) },
    { name: "depth", type: OnnxType.INT64, dims: [1], raw: i64([OUT]) },
    { name: "onoff", type: OnnxType.FLOAT, dims: [2], raw: new Uint8Array(Float32Array.of(0, 1).buffer) },
  ];
  // Forward: h_k = relu(h_{k-1} W_k^T + b_k); weights are [out, in] as in nbit. ReLU of a rounded
  // value needs no rounding of its own.
  let h = round("x");
  const acts: string[] = [h];
  const weights = [0, 1, 2].map((k) => round(`W${k}`));
  for (let k = 0; k < 3; k++) {
    const z = round(n("Add", [n("MatMul", [h, n("Transpose", [weights[k]!], `Wt${k}`, [{ name: "perm", ints: [1, 0] }])], `mm${k}`), round(`b${k}`)], `z${k}`));
    h = k < 2 ? n("Relu", [z], `h${k}`) : z;
    acts.push(h);
  }
  const lsm = n("LogSoftmax", [h], "lsm", [{ name: "axis", int: 1 }]);
  const y64 = n("Cast", ["y"], "y64", [{ name: "to", int: OnnxType.INT64 }]);
  const onehot = n("OneHot", [y64, "depth", "onoff"], "onehot", [{ name: "axis", int: -1 }]);
  n("Mul", [n("Neg", [n("ReduceSum", [n("Mul", [onehot, lsm], "pick"), "ax1"], "rowsum", [{ name: "keepdims", int: 0 }])], "nll"), "invN"], "nllN");
  n("ReduceSum", ["nllN"], "loss", [{ name: "keepdims", int: 0 }]);
  // Backward: dz = (softmax - onehot) / N, then through the layers.
  let dz = round(n("Mul", [n("Sub", [n("Exp", [lsm], "sm"), onehot], "diff"), "invN"], "dz2"));
  for (let k = 2; k >= 0; k--) {
    const dW = round(n("MatMul", [n("Transpose", [dz], `dzt${k}`, [{ name: "perm", ints: [1, 0] }]), acts[k]!], `dW${k}`));
    const db = round(n("ReduceSum", [dz, "ax0"], `db${k}`, [{ name: "keepdims", int: 0 }]));
    if (k > 0) {
      const dh = round(n("MatMul", [dz, weights[k]!], `dh${k}`));
      dz = n("Where", [n("Greater", [acts[k]!, "zero"], `pos${k}`), dh, "zero"], `dz${k - 1}`);
    }
    n("Sub", [`W${k}`, n("Mul", [dW, "lr"], `sW${k}`)], `newW${k}`);
    n("Sub", [`b${k}`, n("Mul", [db, "lr"], `sb${k}`)], `newb${k}`);
  }
  const value = (name: string, d: number[], type: (typeof OnnxType)[keyof typeof OnnxType] = OnnxType.FLOAT) => ({ name, type, dims: d });
  const params = [0, 1, 2].flatMap((k) => [value(`W${k}`, [dims[k + 1]!, dims[k]!]), value(`b${k}`, [dims[k + 1]!])]);
  const model = encodeModel({
    nodes,
    initializers,
    inputs: [value("x", [BATCH, IN]), value("y", [BATCH], OnnxType.INT32), ...params],
    outputs: [value("loss", []), ...[2, 1, 0].flatMap((k) => [value(`newW${k}`, [dims[k + 1]!, dims[k]!]), value(`newb${k}`, [dims[k + 1]!])])],
  });
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: THREADS, interOpNumThreads: 1, graphOptimizationLevel: "all", extra: { session: { intra_op: { allow_spinning: "0" } } } });
  const init = new Generator(1);
  const state: Record<string, ortTypes.Tensor> = {};
  for (const p of params) state[p.name] = new ort.Tensor("float32", new Float32Array(p.dims.reduce((a, b) => a * b, 1)).map(() => (init.random() - 0.5) * 0.1), p.dims);
  let loss = 0;
  const step = async (i: number) => {
    const b = batches[i % batches.length]!;
    const out = await session.run({ x: new ort.Tensor("float32", b.x, [BATCH, IN]), y: new ort.Tensor("int32", b.y, [BATCH]), ...state });
    for (let k = 0; k < 3; k++) {
      state[`W${k}`] = out[`newW${k}`]!;
      state[`b${k}`] = out[`newb${k}`]!;
    }
    loss = (out.loss!.data as Float32Array)[0]!;
  };
  return { step, result: () => ({ loss }) };
}

console.log(`MLP ${IN}-${H}-${H}-${OUT}, batch ${BATCH}, SGD lr ${LR}, ${THREADS} threads, ${STEPS} timed steps per path after ${WARMUP} warm-up`);
console.log("Paths take turns step by step, so load on this shared machine hits them alike; every session runs with");
console.log("onnxruntime's thread spinning off, or the idle sessions' spinning threads would slow the busy one.");
const paths = {
  "hand-built 32-true": await handBuilt(false),
  "hand-built bf16-mixed": await handBuilt(true),
  "nbit 32-true": await trainerPath("32-true"),
  "nbit bf16-mixed": await trainerPath("bf16-mixed"),
  "nbit 64-true": await trainerPath("64-true"),
};
type PathName = keyof typeof paths;
const seconds = Object.fromEntries(Object.keys(paths).map((k) => [k, 0])) as Record<PathName, number>;
for (let i = 0; i < WARMUP + STEPS; i++)
  for (const [name, path] of Object.entries(paths) as [PathName, (typeof paths)[PathName]][]) {
    const t0 = performance.now();
    await path.step(i);
    if (i >= WARMUP) seconds[name] += (performance.now() - t0) / 1000;
  }
const rate = (k: PathName) => STEPS / seconds[k];
const compare = (k: PathName, to: PathName) => `${(rate(k) / rate(to)).toFixed(2)} of ${to}`;
const ratios: Record<PathName, string[]> = {
  "hand-built 32-true": [],
  "hand-built bf16-mixed": [compare("hand-built bf16-mixed", "hand-built 32-true")],
  "nbit 32-true": [compare("nbit 32-true", "hand-built 32-true")],
  "nbit bf16-mixed": [compare("nbit bf16-mixed", "nbit 32-true"), compare("nbit bf16-mixed", "hand-built bf16-mixed")],
  "nbit 64-true": [compare("nbit 64-true", "nbit 32-true")],
};
console.log(`\n${"path".padEnd(23)}${"steps/s".padStart(9)}${"param bytes".padStart(13)}  sessions  final loss  ratios`);
for (const name of Object.keys(paths) as PathName[]) {
  const r: { loss: number; paramBytes?: number; sessions?: number } = paths[name].result();
  console.log(
    `${name.padEnd(23)}${rate(name).toFixed(1).padStart(9)}${String(r.paramBytes ?? "").padStart(13)}  ${String(r.sessions ?? "").padEnd(8)}  ${r.loss.toFixed(4).padEnd(10)}  ${ratios[name].join(", ")}`,
  );
}
console.log("\nhand-built bf16-mixed rounds exactly where PyTorch's bf16 autocast does, with nothing else added:");
console.log("its ratio to hand-built 32-true is what onnxruntime's bfloat16 Cast allows on this machine.");

// Memory per precision: parameters, and optimizer state after one step of SGD with momentum and of Adam.
console.log(`\n${"memory".padEnd(12)}${"params".padStart(12)}${"SGD+momentum".padStart(14)}${"Adam".padStart(12)}  (bytes)`);
for (const p of ["32-true", "bf16-mixed", "64-true"] as const) {
  await new Runtime(new CpuAccelerator({ threads: THREADS }).createBackend()).run(async () => {
    const plugin = precisionPluginFor(p);
    const b = batches[0]!;
    const states = [];
    let params = 0;
    for (const make of [(ps: ReturnType<Sequential["parameters"]>) => new SGD(ps, { lr: LR, momentum: 0.9 }), (ps: ReturnType<Sequential["parameters"]>) => new Adam(ps, { lr: 1e-3 })]) {
      const model = plugin.initContext(() => new Sequential(new Linear(IN, H), new ReLU(), new Linear(H, H), new ReLU(), new Linear(H, OUT)));
      const optimizer = make(model.parameters());
      await plugin.optimizerStep(optimizer, plugin.forwardContext(() => crossEntropy(model.forward(plugin.convertInput(tensor(b.x, [BATCH, IN]))), tensor(b.y, [BATCH], "int32"))));
      params = model.parameterBytes();
      states.push(optimizer.stateBytes());
    }
    console.log(`${p.padEnd(12)}${String(params).padStart(12)}${String(states[0]).padStart(14)}${String(states[1]).padStart(12)}`);
  });
}
