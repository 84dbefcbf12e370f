// TPU-style backend benchmark: the standard MLP (256-512-512-10, ReLU, cross-entropy, SGD lr 0.05,
// batch 128, synthetic data), steps/s for each precision the backend supports, every step
// recorded. npm run bench -w @nbit/tpu (BENCH_STEPS sets the timed steps, default 10).
import { crossEntropy, Generator, Linear, manualSeed, precisionPluginFor, ReLU, Runtime, Sequential, SGD, tensor } from "@nbit/core";
import { TpuAccelerator } from "../src/index.js";

const [IN, H, OUT, BATCH] = [256, 512, 10, 128];
const STEPS = Number(process.env.BENCH_STEPS ?? 10);
const accelerator = new TpuAccelerator();
console.log(`MLP ${IN}-${H}-${H}-${OUT}, batch ${BATCH}, ${STEPS} timed steps after 2 warm-up\n`);
const g = new Generator(0);
const x = new Float32Array(BATCH * IN).map(() => g.normal());
const y = new Int32Array(BATCH).map(() => g.int(OUT));
console.log(`${"precision".padEnd(12)}${"steps/s".padStart(9)}${"param bytes".padStart(14)}`);
for (const precision of accelerator.supportedPrecisions) {
  await new Runtime(accelerator.createBackend()).run(async () => {
    manualSeed(0);
    const plugin = precisionPluginFor(precision);
    const model = plugin.initContext(() => new Sequential(new Linear(IN, H), new ReLU(), new Linear(H, H), new ReLU(), new Linear(H, OUT)));
    const optimizer = new SGD(model.parameters(), { lr: 0.05 });
    const step = () =>
      plugin.optimizerStep(
        optimizer,
        plugin.forwardContext(() => crossEntropy(model.forward(plugin.convertInput(tensor(x, [BATCH, IN]))), tensor(y, [BATCH], "int32"))),
      );
    for (let i = 0; i < 2; i++) await step();
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) await step();
    const rate = STEPS / ((performance.now() - t0) / 1000);
    console.log(`${precision.padEnd(12)}${rate.toFixed(2).padStart(9)}${String(model.parameterBytes()).padStart(14)}`);
  });
}
