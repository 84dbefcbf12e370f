// CUDA backend benchmark: the standard MLP (256-512-512-10, ReLU, cross-entropy, SGD lr 0.05,
// batch 128, synthetic data), steps/s per precision on whichever tfjs engine loads. Without
// @tensorflow/tfjs-node-gpu and a GPU this measures tfjs's JavaScript CPU kernels, and says so.
import { standardMlpRates } from "@nbit/conformance/bench";
import { CudaAccelerator } from "../src/index.js";

const gpu = new CudaAccelerator();
const status = gpu.isAvailable();
const accelerator = status.available ? gpu : new CudaAccelerator("tfjs-cpu");
const steps = Number(process.env.BENCH_STEPS ?? (status.available ? 200 : 10));
console.log(status.available ? "engine: @tensorflow/tfjs-node-gpu (CUDA)" : `engine: tfjs CPU kernels, NOT a GPU (${status.reason})`);
console.log(`MLP 256-512-512-10, batch 128, ${steps} timed steps after 2 warm-up\n`);
console.log(`${"precision".padEnd(12)}${"steps/s".padStart(9)}${"param bytes".padStart(14)}  backend`);
for (const { precision, stepsPerSecond, parameterBytes, backend } of await standardMlpRates(accelerator, { steps }))
  console.log(
    `${precision.padEnd(12)}${stepsPerSecond.toFixed(2).padStart(9)}${String(parameterBytes).padStart(14)}  ${backend.name} / tfjs ${backend.tf.getBackend()}`,
  );
