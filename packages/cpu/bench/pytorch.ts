// nbit 32-true and 64-true against PyTorch on the CPU, same MLP (the standard 256-512-512-10,
// batch 128, SGD), same thread count, alternated step by step in one run. PyTorch runs in a python3
// child process that times its own steps, one process at a time for each setting: as installed,
// with OMP_WAIT_POLICY=PASSIVE (its OpenMP threads sleep between steps, like nbit's with spinning
// off), and with OpenBLAS's pthreads also limited to the same thread count.
// An optional size after the name picks another MLP: npm run bench -w @nbit/cpu -- pytorch small
// BENCH_PYTHON picks the interpreter (default: the first of python3, /usr/bin/python3 with torch).
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { defaultThreads } from "../src/index.js";
import { env, interleave, nbitPath, ratios, spread, STANDARD, shapeArg } from "./common.js";

const shape = shapeArg(STANDARD);
const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 5), env("BENCH_STEPS", 30), env("BENCH_WARMUP", 10)];
const python = [process.env.BENCH_PYTHON, "python3", "/usr/bin/python3"].find(
  (p) => p && spawnSync(p, ["-c", "import torch"], { stdio: "ignore" }).status === 0,
);
if (!python) {
  console.log("PyTorch is absent: no python3 on PATH (nor /usr/bin/python3) can `import torch`, so there is nothing to compare against.");
  console.log("Install it (Debian: apt-get install python3-torch) or point BENCH_PYTHON at an interpreter that has it.");
  process.exit(0);
}

/** PyTorch in a child process with a float32 and a float64 model; each step resolves to that process's own step seconds. */
async function torchProcess(threads: number, extraEnv: Record<string, string>) {
  const child = spawn(python!, [fileURLToPath(new URL("./torch_mlp.py", import.meta.url))], {
    env: { ...process.env, ...extraEnv },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => JSON.parse((await lines.next()).value as string) as Record<string, number | string>;
  child.stdin!.write(`${JSON.stringify({ dims: shape.dims, batch: shape.batch, lr: shape.lr, threads })}\n`);
  const hello = await next();
  const path = (dtype: "float32" | "float64") => ({
    step: async () => {
      child.stdin!.write(`step ${dtype}\n`);
      return (await next()).seconds as number;
    },
  });
  return { hello, fp32: path("float32"), fp64: path("float64"), close: () => child.stdin!.end() };
}

const probe = nbitPath(shape, "32-true", { threads: 1 });
await probe.step(0);
const threads = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : defaultThreads(probe.work());
const nbit32 = nbitPath(shape, "32-true", { threads });
const nbit64 = nbitPath(shape, "64-true", { threads });
// The same steps replayed through a StepCapture (the Trainer's captureSteps).
const nbit32c = nbitPath(shape, "32-true", { threads }, { captured: true });
const nbit64c = nbitPath(shape, "64-true", { threads }, { captured: true });
// One PyTorch process at a time: its idle threads would otherwise slow everything else down.
const variants = {
  "as installed": {},
  "OMP_WAIT_POLICY=PASSIVE": { OMP_WAIT_POLICY: "PASSIVE" },
  "PASSIVE, OPENBLAS_NUM_THREADS=threads": { OMP_WAIT_POLICY: "PASSIVE", OPENBLAS_NUM_THREADS: String(threads) },
};
let header = false;
for (const [variant, extraEnv] of Object.entries(variants)) {
  const torch = await torchProcess(threads, extraEnv);
  if (!header) {
    console.log(
      `MLP ${shape.name}, SGD lr ${shape.lr}; ${threads} thread(s) each (nbit intra-op, torch.set_num_threads), PyTorch ${torch.hello.torch} via ${python}`,
    );
    console.log(`${ROUNDS} rounds of ${STEPS} steps per path after ${WARMUP} warm-up, paths alternating step by step; nbit spinning off`);
    const malloc = probe.mallocTuning();
    console.log(`nbit's glibc malloc tuning: ${malloc.applied ? "on" : `off (${malloc.reason})`}`);
    header = true;
  }
  const rates = await interleave(
    {
      "nbit 32-true": nbit32,
      "nbit 32 capt.": nbit32c,
      "torch fp32": torch.fp32,
      "nbit 64-true": nbit64,
      "nbit 64 capt.": nbit64c,
      "torch fp64": torch.fp64,
    },
    { rounds: ROUNDS, steps: STEPS, warmup: WARMUP },
  );
  torch.close();
  console.log(`\nPyTorch ${variant}: steps/s (min / median / max)`);
  for (const [name, r] of Object.entries(rates)) console.log(`  ${name.padEnd(14)}${spread(r as number[], 1)}`);
  console.log(`  nbit 32-true / torch fp32, per round: ${spread(ratios(rates["nbit 32-true"], rates["torch fp32"]))}`);
  console.log(`  nbit 64-true / torch fp64, per round: ${spread(ratios(rates["nbit 64-true"], rates["torch fp64"]))}`);
  console.log(`  nbit 32-true captured / torch fp32, per round: ${spread(ratios(rates["nbit 32 capt."], rates["torch fp32"]))}`);
  console.log(`  nbit 64-true captured / torch fp64, per round: ${spread(ratios(rates["nbit 64 capt."], rates["torch fp64"]))}`);
}
