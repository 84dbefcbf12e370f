// onnxruntime's per-node profile of nbit's 32-true training step against the hand-built graph of
// the same step: time per run of each op type (median per node times nodes per run), after warm-up. Both run with profiling on
// (it adds its own overhead to both), alternating step by step.
// An optional size after the name picks the MLP: npm run bench -w @nbit/cpu -- profile small
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpuBackend, defaultThreads } from "../src/index.js";
import { env, handBuiltPath, median, nbitPath, STANDARD, shapeArg } from "./common.js";

const shape = shapeArg(STANDARD);
const [STEPS, WARMUP] = [env("BENCH_STEPS", 200), env("BENCH_WARMUP", 50)];
const dir = mkdtempSync(join(tmpdir(), "nbit-profile-"));
process.env.NBIT_PROFILE = join(dir, "nbit");
process.env.HAND_PROFILE = join(dir, "hand");

// Keep the compiled programs, to end their sessions (which writes the profile) at the end.
const compiled: { dispose?(): void }[] = [];
const compile = CpuBackend.prototype.compile;
CpuBackend.prototype.compile = async function (p) {
  const c = await compile.call(this, p);
  // Disposed here to write the profiles, and again by the runtime at exit: only the first counts.
  let disposed = false;
  const once = {
    ...c,
    dispose: () => {
      if (!disposed) c.dispose?.();
      disposed = true;
    },
  };
  compiled.push(once);
  return once;
};
const probe = nbitPath(shape, "32-true", { threads: 1 });
await probe.step(0);
const threads = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : defaultThreads(probe.work());
const nbit = nbitPath(shape, "32-true", { threads });
const hand = await handBuiltPath(shape, { threads });
for (let i = 0; i < WARMUP + STEPS; i++) {
  await nbit.step(i);
  await hand.step(i);
}
for (const c of compiled) c.dispose?.();
hand.endProfiling();

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}
console.log(`MLP ${shape.name}, 32-true, ${threads} thread(s); ${STEPS} profiled steps per path after ${WARMUP} warm-up`);
for (const who of ["hand", "nbit"]) {
  // The step program is the session with the most runs.
  const files = readdirSync(dir).filter((f) => f.startsWith(who));
  // A session that never ran leaves an empty file.
  const profiles = files
    .map((f) => readFileSync(join(dir, f), "utf8"))
    .filter((text) => text.trim())
    .map((text) => JSON.parse(text) as ProfileEvent[]);
  const events = profiles.sort((a, b) => b.filter((e) => e.name === "model_run").length - a.filter((e) => e.name === "model_run").length)[0]!;
  const runs = events.filter((e) => e.name === "model_run");
  const kernels = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time"));
  const perRun = kernels.length / runs.length;
  const timed = kernels.slice(Math.round(perRun * WARMUP));
  const n = runs.length - WARMUP;
  // Medians, not means: on a shared machine a few preempted nodes would dominate a mean.
  const byOp = new Map<string, number[]>();
  for (const e of timed) byOp.set(e.args!.op_name!, [...(byOp.get(e.args!.op_name!) ?? []), e.dur]);
  const rows = [...byOp].map(([op, durations]) => ({ op, perRun: durations.length / n, us: median(durations) * (durations.length / n) }));
  const total = rows.reduce((a, r) => a + r.us, 0);
  console.log(
    `\n${who === "hand" ? "hand-built" : "nbit"}: run ${median(runs.slice(WARMUP).map((e) => e.dur)).toFixed(0)} us (median), kernels ${total.toFixed(0)} us (sum of per-op medians), ${perRun.toFixed(0)} nodes`,
  );
  for (const r of rows.sort((a, b) => b.us - a.us)) console.log(`  ${r.op.padEnd(22)}${r.us.toFixed(1).padStart(9)} us  x${r.perRun.toFixed(0)}`);
}
rmSync(dir, { recursive: true, force: true });
