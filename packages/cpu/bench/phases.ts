// Where a small model's step time goes: nbit's 32-true SGD step split into phases (recording the
// forward, autograd, recording the update, realize outside and inside onnxruntime's native run,
// reading the loss) against the hand-built graph's step (its native run and the rest), alternating
// step by step, median of per-round means. The native run is timed around onnxruntime-node's
// binding call, so "realize, JS" holds the graph walk, binding the inputs, the onnxruntime-node
// wrapper and its event-loop turn. The phases mirror PrecisionPlugin.optimizerStep without hooks.
// "captured" is the same step through a StepCapture (replayed: binding inputs, one native run, the loss read).
// An optional size after the name picks the MLP: npm run bench -w @nbit/cpu -- phases medium
import { createRequire } from "node:module";
import { crossEntropy, manualSeed, precisionPluginFor, realize, Runtime, SGD, StepCapture, Tensor, withRuntime } from "@nbit/core";
import { CpuAccelerator } from "../src/index.js";
import { batchesFor, env, handBuiltPath, median, mlp, SMALL, shapeArg } from "./common.js";

const { binding } = createRequire(import.meta.url)("onnxruntime-node/dist/binding.js") as {
  binding: { InferenceSession: new () => { run(...args: unknown[]): unknown } };
};
let native = 0;
const NativeSession = binding.InferenceSession;
binding.InferenceSession = class extends NativeSession {
  override run(...args: unknown[]) {
    const t = performance.now();
    try {
      return super.run(...args);
    } finally {
      native += performance.now() - t;
    }
  }
};

const shape = shapeArg(SMALL);
const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 5), env("BENCH_STEPS", 300), env("BENCH_WARMUP", 50)];
const runtime = new Runtime(new CpuAccelerator({ threads: 1 }).createBackend());
const batches = batchesFor(shape);
const plugin = precisionPluginFor("32-true");
const { model, optimizer } = withRuntime(runtime, () => {
  manualSeed(0);
  const model = plugin.initContext(() => mlp(shape.dims));
  return { model, optimizer: new SGD(model.parameters(), { lr: shape.lr }) };
});
const hand = await handBuiltPath(shape, { threads: 1 });
// The same model and step through a StepCapture (replayed after two recorded steps), on its own runtime.
const capturedRuntime = new Runtime(new CpuAccelerator({ threads: 1 }).createBackend());
const captured = withRuntime(capturedRuntime, () => {
  manualSeed(0);
  const model = plugin.initContext(() => mlp(shape.dims));
  const optimizer = new SGD(model.parameters(), { lr: shape.lr });
  return { model, capture: new StepCapture(plugin, optimizer, { module: model }) };
});
const PHASES = [
  "forward",
  "backward",
  "optimizer.step",
  "realize, JS",
  "realize, native run",
  "loss read",
  "nbit step",
  "captured, native run",
  "captured, JS",
  "captured step",
  "hand-built, native run",
  "hand-built, rest",
  "hand-built step",
] as const;
type Phase = (typeof PHASES)[number];
const perRound = Object.fromEntries(PHASES.map((p) => [p, [] as number[]])) as Record<Phase, number[]>;
let sums = {} as Record<Phase, number>;
const add = (phase: Phase, ms: number) => (sums[phase] = (sums[phase] ?? 0) + ms);

async function nbitStep(i: number) {
  await withRuntime(runtime, async () => {
    const b = batches[i % batches.length]!;
    const start = performance.now();
    let t = start;
    const lap = (phase: Phase) => {
      const now = performance.now();
      add(phase, now - t);
      t = now;
    };
    const x = plugin.convertInput(Tensor.fromHost(b.x, [shape.batch, shape.dims[0]!], "float32"));
    const loss = plugin.forwardContext(() => crossEntropy(model.forward(x), Tensor.fromHost(b.y, [shape.batch], "int32")));
    lap("forward");
    const lossValue = loss.detach();
    plugin.backward(loss);
    lap("backward");
    optimizer.step({});
    lap("optimizer.step");
    native = 0;
    await realize([lossValue, ...optimizer.tensors()]);
    add("realize, native run", native);
    add("realize, JS", performance.now() - t - native);
    t = performance.now();
    optimizer.commit(true);
    optimizer.zeroGrad();
    await lossValue.item();
    lap("loss read");
    add("nbit step", t - start);
  });
}

async function capturedStep(i: number) {
  await withRuntime(capturedRuntime, async () => {
    const b = batches[i % batches.length]!;
    native = 0;
    const start = performance.now();
    const x = Tensor.fromHost(b.x, [shape.batch, shape.dims[0]!], "float32");
    const y = Tensor.fromHost(b.y, [shape.batch], "int32");
    await captured.capture.step([x, y], ([x, y]) => crossEntropy(captured.model.forward(plugin.convertInput(x!)), y!));
    const ms = performance.now() - start;
    add("captured, native run", native);
    add("captured, JS", ms - native);
    add("captured step", ms);
  });
}

for (let i = 0; i < WARMUP + ROUNDS * STEPS; i++) {
  if (i >= WARMUP && (i - WARMUP) % STEPS === 0) sums = {} as Record<Phase, number>;
  native = 0;
  const t = performance.now();
  await hand.step(i);
  add("hand-built, native run", native);
  add("hand-built, rest", performance.now() - t - native);
  add("hand-built step", performance.now() - t);
  await nbitStep(i);
  await capturedStep(i);
  if (i >= WARMUP && (i - WARMUP + 1) % STEPS === 0) for (const p of PHASES) perRound[p].push((sums[p] ?? 0) / STEPS);
}
console.log(`MLP ${shape.name}, 32-true, SGD, 1 thread; ${ROUNDS} rounds of ${STEPS} steps after ${WARMUP} warm-up; us per step, median of round means`);
for (const p of PHASES) console.log(`  ${p.padEnd(24)}${(median(perRound[p]) * 1000).toFixed(0).padStart(7)}`);
const ratio = perRound["hand-built step"].map((h, r) => h / perRound["nbit step"][r]!);
console.log(`  hand-built / nbit step: ${median(ratio).toFixed(2)} (min ${Math.min(...ratio).toFixed(2)}, max ${Math.max(...ratio).toFixed(2)})`);
const capturedRatio = perRound["hand-built step"].map((h, r) => h / perRound["captured step"][r]!);
console.log(
  `  hand-built / captured step: ${median(capturedRatio).toFixed(2)} (min ${Math.min(...capturedRatio).toFixed(2)}, max ${Math.max(...capturedRatio).toFixed(2)}); ${captured.capture.stats.replayed} steps replayed`,
);
