// nbit's training step against the same step as a hand-built ONNX graph, for three MLP sizes, all
// 32-true with SGD: paths take turns step by step, in rounds; prints min / median / max per round.
// "hand-built direct" runs the hand-built graph through onnxruntime-node's binding, as nbit's
// backend does (no event-loop turn per run); "hand-built" uses the public session.run. "nbit literal" lowers every primitive to its own ONNX node (fuse: false), to show what the fused
// lowering gains; "nbit captured" replays the step through a StepCapture. Every path uses the same threads (BENCH_THREADS, default: nbit's own rule).
import { defaultThreads } from "../src/index.js";
import { env, handBuiltPath, interleave, MEDIUM, nbitPath, ratios, SMALL, spread, STANDARD } from "./common.js";

const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 5), env("BENCH_STEPS", 40), env("BENCH_WARMUP", 10)];
const only = process.argv[3];
console.log(`32-true, SGD; ${ROUNDS} rounds of ${STEPS} steps per path after ${WARMUP} warm-up; thread spinning off everywhere`);
for (const shape of [SMALL, MEDIUM, STANDARD]) {
  if (only && !shape.name.startsWith(only)) continue;
  const probe = nbitPath(shape, "32-true", { threads: 1 });
  await probe.step(0);
  const threads = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : defaultThreads(probe.work());
  const paths = {
    handBuilt: await handBuiltPath(shape, { threads }),
    handBuiltDirect: await handBuiltPath(shape, { threads, direct: true }),
    nbit: nbitPath(shape, "32-true", { threads }),
    captured: nbitPath(shape, "32-true", { threads }, { captured: true }),
    literal: nbitPath(shape, "32-true", { threads, fuse: false }),
  };
  const rates = await interleave(paths, { rounds: ROUNDS, steps: STEPS, warmup: WARMUP });
  console.log(`\nMLP ${shape.name}: ${(probe.work() / 1e6).toFixed(1)} M work per step (float32-equivalent FLOP), ${threads} thread(s)`);
  console.log(
    `  steps/s (min / median / max): hand-built ${spread(rates.handBuilt, 1)}, hand-built direct ${spread(rates.handBuiltDirect, 1)}, nbit ${spread(rates.nbit, 1)}, nbit captured ${spread(rates.captured, 1)}, nbit literal ${spread(rates.literal, 1)}`,
  );
  console.log(`  nbit captured / hand-built: ${spread(ratios(rates.captured, rates.handBuilt))} (${paths.captured.capture!.stats.replayed} steps replayed)`);
  console.log(`  nbit captured / hand-built direct: ${spread(ratios(rates.captured, rates.handBuiltDirect))}`);
  console.log(`  nbit / hand-built:         ${spread(ratios(rates.nbit, rates.handBuilt))}`);
  console.log(`  nbit literal / hand-built: ${spread(ratios(rates.literal, rates.handBuilt))}`);
  console.log(`  nbit / nbit literal:       ${spread(ratios(rates.nbit, rates.literal))}`);
}
