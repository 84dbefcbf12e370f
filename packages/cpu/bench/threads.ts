// 1 against 2 intra-op threads for nbit's training step at three MLP sizes and two precisions,
// interleaved step by step, in rounds. The work per step (float32-equivalent FLOPs, as programWork counts them) is
// what the default thread rule looks at.
import { SMALL_PROGRAM_WORK } from "../src/index.js";
import { env, interleave, MEDIUM, nbitPath, ratios, SMALL, spread, STANDARD } from "./common.js";

const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 5), env("BENCH_STEPS", 40), env("BENCH_WARMUP", 10)];
console.log(`nbit, 1 vs 2 intra-op threads, spinning off; ${ROUNDS} rounds of ${STEPS} steps per path after ${WARMUP} warm-up`);
console.log(
  `${"model".padEnd(34)}${"M work/step".padStart(11)}  ${"1 thread, steps/s".padEnd(24)}${"2 threads".padEnd(24)}2 threads / 1 thread (min / median / max)`,
);
for (const shape of [SMALL, MEDIUM, STANDARD])
  for (const precision of ["32-true", "64-true"] as const) {
    const one = nbitPath(shape, precision, { threads: 1 });
    const two = nbitPath(shape, precision, { threads: 2 });
    const rates = await interleave({ one, two }, { rounds: ROUNDS, steps: STEPS, warmup: WARMUP });
    const work = one.work();
    console.log(
      `${`${shape.name} ${precision}`.padEnd(34)}${(work / 1e6).toFixed(1).padStart(11)}  ${spread(rates.one, 1).padEnd(24)}${spread(rates.two, 1).padEnd(24)}${spread(ratios(rates.two, rates.one))}`,
    );
  }
console.log(`\nThe default rule: 1 thread below ${SMALL_PROGRAM_WORK / 1e6} M work (float32-equivalent FLOP) per run, every core above.`);
