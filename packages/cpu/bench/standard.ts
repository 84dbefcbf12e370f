// The standard MLP (256-512-512-10, ReLU, cross-entropy, SGD lr 0.05, batch 128, synthetic data)
// per precision against the same step as hand-built ONNX graphs (32-true and bf16-mixed), and
// 32-true through a StepCapture (replayed steps), with
// the threads nbit picks for it (BENCH_THREADS changes it), and parameter/optimizer bytes.
import { Adam, crossEntropy, precisionPluginFor, Runtime, SGD, Tensor, withRuntime } from "@nbit/core";
import { CpuAccelerator, defaultThreads } from "../src/index.js";
import { batchesFor, env, handBuiltPath, interleave, mlp, nbitPath, ratios, spread, STANDARD } from "./common.js";

const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 5), env("BENCH_STEPS", 40), env("BENCH_WARMUP", 10)];
const probe = nbitPath(STANDARD, "32-true", { threads: 1 });
await probe.step(0);
const THREADS = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : defaultThreads(probe.work());
console.log(`MLP ${STANDARD.name}, SGD lr ${STANDARD.lr}, ${THREADS} threads, ${ROUNDS} rounds of ${STEPS} steps per path after ${WARMUP} warm-up`);
console.log("Paths take turns step by step, so load on this shared machine hits them alike; every session runs with");
console.log("onnxruntime's thread spinning off, or the idle sessions' spinning threads would slow the busy one.");
const paths = {
  "hand-built 32-true": await handBuiltPath(STANDARD, { threads: THREADS }),
  "hand-built bf16-mixed": await handBuiltPath(STANDARD, { threads: THREADS, bf16: true }),
  "nbit 32-true": nbitPath(STANDARD, "32-true", { threads: THREADS }),
  "nbit 32-true captured": nbitPath(STANDARD, "32-true", { threads: THREADS }, { captured: true }),
  "nbit bf16-mixed": nbitPath(STANDARD, "bf16-mixed", { threads: THREADS }),
  "nbit 64-true": nbitPath(STANDARD, "64-true", { threads: THREADS }),
};
type PathName = keyof typeof paths;
const rates = await interleave(paths, { rounds: ROUNDS, steps: STEPS, warmup: WARMUP });
const compare = (k: PathName, to: PathName) => `${spread(ratios(rates[k], rates[to]))} of ${to}`;
const notes: Record<PathName, string[]> = {
  "hand-built 32-true": [],
  "hand-built bf16-mixed": [compare("hand-built bf16-mixed", "hand-built 32-true")],
  "nbit 32-true": [compare("nbit 32-true", "hand-built 32-true")],
  "nbit 32-true captured": [compare("nbit 32-true captured", "hand-built 32-true"), compare("nbit 32-true captured", "nbit 32-true")],
  "nbit bf16-mixed": [compare("nbit bf16-mixed", "nbit 32-true"), compare("nbit bf16-mixed", "hand-built bf16-mixed")],
  "nbit 64-true": [compare("nbit 64-true", "nbit 32-true")],
};
console.log(`\n${"path".padEnd(25)}${"steps/s min / median / max".padEnd(28)}final loss  ratios per round (min / median / max)`);
for (const name of Object.keys(paths) as PathName[])
  console.log(`${name.padEnd(25)}${spread(rates[name], 1).padEnd(28)}${paths[name].loss().toFixed(4).padEnd(10)}  ${notes[name].join("; ")}`);
console.log("\nhand-built bf16-mixed rounds exactly where PyTorch's bf16 autocast does, with nothing else added:");
console.log("its ratio to hand-built 32-true is what onnxruntime's bfloat16 Cast allows on this machine.");

// Memory per precision: parameters, and optimizer state after one step of SGD with momentum and of Adam.
console.log(`\n${"memory".padEnd(12)}${"params".padStart(12)}${"SGD+momentum".padStart(14)}${"Adam".padStart(12)}  (bytes)`);
const [b] = batchesFor(STANDARD, 1);
const [inputs, batch] = [STANDARD.dims[0]!, STANDARD.batch];
for (const p of ["32-true", "bf16-mixed", "64-true"] as const) {
  const runtime = new Runtime(new CpuAccelerator({ threads: THREADS }).createBackend());
  const plugin = precisionPluginFor(p);
  const states: number[] = [];
  let params = 0;
  for (const kind of ["sgd", "adam"] as const)
    await withRuntime(runtime, async () => {
      const model = plugin.initContext(() => mlp(STANDARD.dims));
      const optimizer = kind === "sgd" ? new SGD(model.parameters(), { lr: STANDARD.lr, momentum: 0.9 }) : new Adam(model.parameters(), { lr: 1e-3 });
      const x = plugin.convertInput(Tensor.fromHost(b!.x, [batch, inputs], "float32"));
      await plugin.optimizerStep(
        optimizer,
        plugin.forwardContext(() => crossEntropy(model.forward(x), Tensor.fromHost(b!.y, [batch], "int32"))),
      );
      params = model.parameterBytes();
      states.push(optimizer.stateBytes());
    });
  console.log(`${p.padEnd(12)}${String(params).padStart(12)}${String(states[0]).padStart(14)}${String(states[1]).padStart(12)}`);
}
