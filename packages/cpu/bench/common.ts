// Shared pieces of the CPU benchmarks: MLP training steps through nbit and as hand-built ONNX
// graphs, and interleaved timing in rounds.
import {
  crossEntropy,
  FLOAT_FORMATS,
  Generator,
  manualSeed,
  precisionPluginFor,
  Runtime,
  SGD,
  StepCapture,
  Tensor,
  withRuntime,
  type Precision,
} from "@nbit/core";
import { mlp } from "@nbit/conformance/bench";
import { createRequire } from "node:module";
import type * as ortTypes from "onnxruntime-node";
import { CpuAccelerator, programWork, type CpuBackendOptions, type MallocTuning } from "../src/index.js";
import { loadNativeBinding } from "../src/native.js";
import { encodeModel, OnnxType, type OnnxNode } from "../src/onnx-proto.js";

export const ort = createRequire(import.meta.url)("onnxruntime-node") as typeof ortTypes;

/** An MLP: layer widths (input first), batch size and learning rate. */
export interface MlpShape {
  readonly name: string;
  readonly dims: readonly number[];
  readonly batch: number;
  readonly lr: number;
}

export const SMALL: MlpShape = { name: "64-64-64-10, batch 32", dims: [64, 64, 64, 10], batch: 32, lr: 0.05 };
export const MEDIUM: MlpShape = { name: "128-256-256-10, batch 64", dims: [128, 256, 256, 10], batch: 64, lr: 0.05 };
export const STANDARD: MlpShape = { name: "256-512-512-10, batch 128", dims: [256, 512, 512, 10], batch: 128, lr: 0.05 };

/** The MLP a bench's optional size argument names (`small`, `medium` or `standard`, after the bench's name), else `fallback`. */
export const shapeArg = (fallback: MlpShape): MlpShape =>
  (({ SMALL, MEDIUM, STANDARD }) as Record<string, MlpShape>)[(process.argv[3] ?? "").toUpperCase()] ?? fallback;

export interface Path {
  step(i: number): Promise<void>;
  loss(): number;
}

export function batchesFor(shape: MlpShape, count = 8) {
  const g = new Generator(0);
  const [inputs, classes] = [shape.dims[0]!, shape.dims.at(-1)!];
  return Array.from({ length: count }, () => ({
    x: new Float32Array(shape.batch * inputs).map(() => g.normal()),
    y: new Int32Array(shape.batch).map(() => g.int(classes)),
  }));
}

// The conformance kit's MLP builder, shared with its standard-MLP bench.
export { mlp };

/**
 * A training step through nbit (the Trainer's path: plugin, lazy graph, one fused program). With
 * `captured`, through a StepCapture: after two recorded steps, each step replays the compiled program.
 */
export function nbitPath(
  shape: MlpShape,
  precision: Precision,
  options: CpuBackendOptions = {},
  { captured = false }: { captured?: boolean } = {},
): Path & { sessions(): number; work(): number; capture: StepCapture | null; mallocTuning(): MallocTuning } {
  const backend = new CpuAccelerator(options).createBackend();
  // The work of the largest program compiled: the training step.
  let work = 0;
  const compile = backend.compile.bind(backend);
  backend.compile = (p) => {
    work = Math.max(work, programWork(p));
    return compile(p);
  };
  const runtime = new Runtime(backend);
  const batches = batchesFor(shape);
  const [inputs, batch] = [shape.dims[0]!, shape.batch];
  const plugin = precisionPluginFor(precision);
  const { model, optimizer } = withRuntime(runtime, () => {
    manualSeed(0);
    const model = plugin.initContext(() => mlp(shape.dims));
    return { model, optimizer: new SGD(model.parameters(), { lr: shape.lr }) };
  });
  const capture = captured ? new StepCapture(plugin, optimizer, { module: model }) : null;
  let loss = 0;
  return {
    step: (i) =>
      withRuntime(runtime, async () => {
        const b = batches[i % batches.length]!;
        // Batches enter as host tensors without a copy, as the DataLoader hands them to the Trainer.
        const x = Tensor.fromHost(b.x, [batch, inputs], "float32");
        const y = Tensor.fromHost(b.y, [batch], "int32");
        const forward = () => plugin.forwardContext(() => crossEntropy(model.forward(plugin.convertInput(x)), y));
        loss = (capture ? await capture.step([x, y], forward) : await plugin.optimizerStep(optimizer, forward())).loss;
      }),
    loss: () => loss,
    capture,
    sessions: () => backend.sessionsCreated,
    work: () => work,
    mallocTuning: () => backend.mallocTuning,
  };
}

/**
 * The same training step written by hand as one ONNX graph, as a user of onnxruntime would write
 * it: the ceiling for nbit's path. With `bf16`, it rounds where PyTorch's bf16 autocast rounds (a
 * Cast pair each): the input, weights and biases, each linear output (addmm: one rounding), the
 * logits' gradient, and each linear's dX, dW and db.
 */
export async function handBuiltPath(
  shape: MlpShape,
  { threads, bf16 = false, direct = false }: { threads: number; bf16?: boolean; direct?: boolean },
): Promise<Path & { endProfiling(): void }> {
  const { dims, batch: BATCH, lr: LR } = shape;
  const layers = dims.length - 1;
  const OUT = dims.at(-1)!;
  const nodes: OnnxNode[] = [];
  const n = (op: string, inputs: string[], output: string, attributes?: OnnxNode["attributes"]) => {
    nodes.push({ op, inputs, outputs: [output], ...(attributes ? { attributes } : {}) });
    return output;
  };
  const round = (v: string) =>
    bf16
      ? n("Cast", [n("Cast", [v], `${v}_bf16`, [{ name: "to", int: FLOAT_FORMATS.bfloat16.onnxType }])], `${v}_r`, [{ name: "to", int: OnnxType.FLOAT }])
      : v;
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
  // Forward: h_k = relu(h_{k-1} W_k^T + b_k); weights are [out, in] as in nbit.
  let h = round("x");
  const acts: string[] = [h];
  const ks = Array.from({ length: layers }, (_, k) => k);
  const weights = ks.map((k) => round(`W${k}`));
  for (const k of ks) {
    const z = round(n("Add", [n("MatMul", [h, n("Transpose", [weights[k]!], `Wt${k}`, [{ name: "perm", ints: [1, 0] }])], `mm${k}`), round(`b${k}`)], `z${k}`));
    h = k < layers - 1 ? n("Relu", [z], `h${k}`) : z;
    acts.push(h);
  }
  const lsm = n("LogSoftmax", [h], "lsm", [{ name: "axis", int: 1 }]);
  const y64 = n("Cast", ["y"], "y64", [{ name: "to", int: OnnxType.INT64 }]);
  const onehot = n("OneHot", [y64, "depth", "onoff"], "onehot", [{ name: "axis", int: -1 }]);
  n("Mul", [n("Neg", [n("ReduceSum", [n("Mul", [onehot, lsm], "pick"), "ax1"], "rowsum", [{ name: "keepdims", int: 0 }])], "nll"), "invN"], "nllN");
  n("ReduceSum", ["nllN"], "loss", [{ name: "keepdims", int: 0 }]);
  // Backward: dz = (softmax - onehot) / N, then through the layers.
  let dz = round(n("Mul", [n("Sub", [n("Exp", [lsm], "sm"), onehot], "diff"), "invN"], `dz${layers - 1}`));
  for (let k = layers - 1; k >= 0; k--) {
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
  const params = ks.flatMap((k) => [value(`W${k}`, [dims[k + 1]!, dims[k]!]), value(`b${k}`, [dims[k + 1]!])]);
  const model = encodeModel({
    nodes,
    initializers,
    inputs: [value("x", [BATCH, dims[0]!]), value("y", [BATCH], OnnxType.INT32), ...params],
    outputs: [value("loss", []), ...ks.flatMap((k) => [value(`newW${k}`, [dims[k + 1]!, dims[k]!]), value(`newb${k}`, [dims[k + 1]!])])],
  });
  const sessionOptions: ortTypes.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
    ...(process.env.HAND_PROFILE ? { enableProfiling: true, profileFilePrefix: process.env.HAND_PROFILE } : {}),
  };
  // `direct`: through onnxruntime-node's binding, as nbit's cpu backend runs its sessions (no event-loop turn per run).
  const native = direct ? loadNativeBinding() : undefined;
  if (direct && !native) throw new Error("this onnxruntime-node has no binding nbit knows: no direct hand-built path");
  const fetches = Object.fromEntries(["loss", ...ks.flatMap((k) => [`newW${k}`, `newb${k}`])].map((name) => [name, null]));
  const nativeSession = native?.createSession(model, sessionOptions);
  const session = nativeSession ? null : await ort.InferenceSession.create(model, sessionOptions);
  const run = async (feeds: Record<string, ortTypes.Tensor>) => (nativeSession ? await nativeSession.run(feeds, fetches, {}) : await session!.run(feeds));
  const init = new Generator(1);
  const state: Record<string, ortTypes.Tensor> = {};
  for (const p of params)
    state[p.name] = new ort.Tensor(
      "float32",
      new Float32Array(p.dims.reduce((a, b) => a * b, 1)).map(() => (init.random() - 0.5) * 0.1),
      p.dims,
    );
  const batches = batchesFor(shape);
  let loss = 0;
  return {
    step: async (i) => {
      const b = batches[i % batches.length]!;
      const out = await run({ x: new ort.Tensor("float32", b.x, [BATCH, dims[0]!]), y: new ort.Tensor("int32", b.y, [BATCH]), ...state });
      for (const k of ks) {
        state[`W${k}`] = out[`newW${k}`]!;
        state[`b${k}`] = out[`newb${k}`]!;
      }
      loss = (out.loss!.data as Float32Array)[0]!;
    },
    loss: () => loss,
    endProfiling: () => session?.endProfiling(),
  };
}

export const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export const spread = (xs: readonly number[], digits = 2) =>
  `${Math.min(...xs).toFixed(digits)} / ${median(xs).toFixed(digits)} / ${Math.max(...xs).toFixed(digits)}`;

/**
 * Runs the paths in turn, one step each, `rounds` times `steps` steps after `warmup` steps, and
 * returns each path's steps/s per round. Taking turns step by step means load on a shared machine
 * hits every path alike.
 */
export async function interleave<K extends string>(
  paths: Record<K, { step(i: number): Promise<number | void> }>,
  { rounds, steps, warmup }: { rounds: number; steps: number; warmup: number },
): Promise<Record<K, number[]>> {
  const names = Object.keys(paths) as K[];
  const rates = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  let i = 0;
  for (; i < warmup; i++) for (const k of names) await paths[k].step(i);
  for (let r = 0; r < rounds; r++) {
    const seconds = Object.fromEntries(names.map((k) => [k, 0])) as Record<K, number>;
    for (let s = 0; s < steps; s++, i++)
      for (const k of names) {
        const t0 = performance.now();
        // A path that times itself (another process) returns its own seconds.
        const own = await paths[k].step(i);
        seconds[k] += typeof own === "number" ? own : (performance.now() - t0) / 1000;
      }
    for (const k of names) rates[k].push(steps / seconds[k]);
  }
  return rates;
}

/** Per-round ratios of two paths' steps/s. */
export const ratios = (a: readonly number[], b: readonly number[]) => a.map((x, r) => x / b[r]!);

export const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
