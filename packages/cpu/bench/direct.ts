// nbit's 32-true step with runs through onnxruntime-node's binding (directRun, the default) against
// runs through its public session.run (one event-loop turn per run), against session.run with every
// output its own (packedOutputBytes: 0, as before both changes), and the hand-built step, in
// one process, taking turns step by step (each path first in turn); per-step medians per round.
// An optional size after the name picks the MLP: npm run bench -w @nbit/cpu -- direct medium
import type { CpuBackendOptions } from "../src/index.js";
import { env, handBuiltPath, median, nbitPath, ratios, SMALL, spread, type Path, shapeArg } from "./common.js";

const shape = shapeArg(SMALL);
const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 7), env("BENCH_STEPS", 200), env("BENCH_WARMUP", 50)];

/** nbit's training step on 1 thread with these backend options. */
const nbit = (options: CpuBackendOptions): Path => nbitPath(shape, "32-true", { threads: 1, ...options });

// "neither": session.run and every output its own, as before either change.
const paths: Record<string, Path> = {
  direct: nbit({}),
  "session.run": nbit({ directRun: false }),
  neither: nbit({ directRun: false, packedOutputBytes: 0 }),
  "hand-built": await handBuiltPath(shape, { threads: 1 }),
};
const names = Object.keys(paths);
const perRound = Object.fromEntries(names.map((k) => [k, [] as number[]]));
let i = 0;
for (; i < WARMUP; i++) for (const k of names) await paths[k]!.step(i);
for (let r = 0; r < ROUNDS; r++) {
  const times = Object.fromEntries(names.map((k) => [k, [] as number[]]));
  for (let s = 0; s < STEPS; s++, i++)
    for (const k of [...names.slice(i % names.length), ...names.slice(0, i % names.length)]) {
      const t = performance.now();
      await paths[k]!.step(i);
      times[k]!.push(performance.now() - t);
    }
  for (const k of names) perRound[k]!.push(median(times[k]!) * 1000);
}
console.log(
  `MLP ${shape.name}, 32-true, SGD, 1 thread; ${ROUNDS} rounds of ${STEPS} steps after ${WARMUP} warm-up; us per step, min / median / max of round medians`,
);
for (const k of names) console.log(`  ${k.padEnd(12)} ${spread(perRound[k]!, 1)}`);
const [direct, run, neither, hand] = [perRound.direct!, perRound["session.run"]!, perRound.neither!, perRound["hand-built"]!];
console.log(`  session.run / direct: ${spread(ratios(run, direct), 3)}; neither / direct: ${spread(ratios(neither, direct), 3)}`);
console.log(
  `  hand-built / nbit: direct ${spread(ratios(hand, direct), 3)}, session.run ${spread(ratios(hand, run), 3)}, neither ${spread(ratios(hand, neither), 3)}`,
);
const losses = ["direct", "session.run", "neither"].map((k) => paths[k]!.loss());
console.log(`  last loss: ${losses.join(", ")} (${losses.every((l) => l === losses[0]) ? "identical" : "DIFFERENT"})`);
