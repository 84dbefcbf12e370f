// TPU-style backend benchmark: the standard MLP (256-512-512-10, ReLU, cross-entropy, SGD lr 0.05,
// batch 128, synthetic data), steps/s for each precision the backend supports, every step
// recorded. npm run bench -w @nbit/tpu (BENCH_STEPS sets the timed steps, default 10).
import { standardMlpRates } from "@nbit/conformance/bench";
import { TpuAccelerator } from "../src/index.js";

const steps = Number(process.env.BENCH_STEPS ?? 10);
console.log(`MLP 256-512-512-10, batch 128, ${steps} timed steps after 2 warm-up\n`);
console.log(`${"precision".padEnd(12)}${"steps/s".padStart(9)}${"param bytes".padStart(14)}`);
for (const { precision, stepsPerSecond, parameterBytes } of await standardMlpRates(new TpuAccelerator(), { steps }))
  console.log(`${precision.padEnd(12)}${stepsPerSecond.toFixed(2).padStart(9)}${String(parameterBytes).padStart(14)}`);
