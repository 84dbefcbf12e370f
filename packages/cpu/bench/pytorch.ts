// nbit 32-true and 64-true against PyTorch on the CPU, same MLP (the standard 256-512-512-10,
// batch 128, SGD), same thread count, alternated step by step in one run. PyTorch runs in python3
// child processes that time their own steps: once as installed ("default") and once with
// OMP_WAIT_POLICY=PASSIVE (its OpenMP threads sleep between steps, like nbit's with spinning off).
// BENCH_PYTHON picks the interpreter (default: the first of python3, /usr/bin/python3 with torch).
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { defaultThreads } from "../src/index.js";
import { env, interleave, MEDIUM, nbitPath, ratios, SMALL, spread, STANDARD, type MlpShape } from "./common.js";

const shape: MlpShape = { SMALL, MEDIUM, STANDARD }[(process.argv[3] ?? "STANDARD").toUpperCase() as "STANDARD"] ?? STANDARD;
const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 5), env("BENCH_STEPS", 30), env("BENCH_WARMUP", 10)];
const python = [process.env.BENCH_PYTHON, "python3", "/usr/bin/python3"].find((p) => p && spawnSync(p, ["-c", "import torch"], { stdio: "ignore" }).status === 0);
if (!python) {
  console.log("PyTorch is absent: no python3 on PATH (nor /usr/bin/python3) can `import torch`, so there is nothing to compare against.");
  console.log("Install it (Debian: apt-get install python3-torch) or point BENCH_PYTHON at an interpreter that has it.");
  process.exit(0);
}

/** A PyTorch training step in a child process; step() resolves to that process's own step seconds. */
async function torchPath(dtype: "float32" | "float64", threads: number, extraEnv: Record<string, string>) {
  const child = spawn(python!, [fileURLToPath(new URL("./torch_mlp.py", import.meta.url))], { env: { ...process.env, ...extraEnv }, stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => JSON.parse((await lines.next()).value as string) as Record<string, number | string>;
  child.stdin!.write(`${JSON.stringify({ dims: shape.dims, batch: shape.batch, lr: shape.lr, threads, dtype })}\n`);
  const hello = await next();
  let loss = 0;
  return {
    hello,
    step: async () => {
      child.stdin!.write("step\n");
      const r = await next();
      loss = r.loss as number;
      return r.seconds as number;
    },
    loss: () => loss,
    close: () => child.stdin!.end(),
  };
}

const probe = nbitPath(shape, "32-true", { threads: 1 });
await probe.step(0);
const threads = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : defaultThreads(probe.work());
const passive = { OMP_WAIT_POLICY: "PASSIVE" };
const paths = {
  "nbit 32-true": nbitPath(shape, "32-true", { threads }),
  "torch fp32": await torchPath("float32", threads, {}),
  "torch fp32 passive": await torchPath("float32", threads, passive),
  "nbit 64-true": nbitPath(shape, "64-true", { threads }),
  "torch fp64": await torchPath("float64", threads, {}),
  "torch fp64 passive": await torchPath("float64", threads, passive),
};
const hello = paths["torch fp32"].hello;
console.log(`MLP ${shape.name}, SGD lr ${shape.lr}; ${threads} thread(s) each (nbit intra-op, torch.set_num_threads), PyTorch ${hello.torch} via ${python}`);
console.log(`${ROUNDS} rounds of ${STEPS} steps per path after ${WARMUP} warm-up, paths alternating step by step; nbit spinning off`);
const rates = await interleave(paths, { rounds: ROUNDS, steps: STEPS, warmup: WARMUP });
for (const t of ["torch fp32", "torch fp32 passive", "torch fp64", "torch fp64 passive"] as const) paths[t].close();
console.log(`\n${"path".padEnd(20)}steps/s (min / median / max)`);
for (const [name, r] of Object.entries(rates)) console.log(`${name.padEnd(20)}${spread(r as number[], 1)}`);
console.log("\nper-round ratios (min / median / max):");
for (const [ours, theirs] of [
  ["nbit 32-true", "torch fp32"],
  ["nbit 32-true", "torch fp32 passive"],
  ["nbit 64-true", "torch fp64"],
  ["nbit 64-true", "torch fp64 passive"],
] as const)
  console.log(`  ${ours} / ${theirs}: ${spread(ratios(rates[ours], rates[theirs]))}`);
