// 8-bit Adam on the standard MLP (256-512-512-10, batch 128, synthetic data, 32-true, CPU):
// loss after 300 steps and optimizer-state bytes against 32-bit Adam.
import { Adam, Adam8bit, crossEntropy, Generator, Linear, manualSeed, precisionPluginFor, ReLU, Runtime, Sequential, tensor } from "@nbit/core";
import { CpuAccelerator } from "../src/index.js";

const [IN, H, OUT, BATCH, STEPS, LR] = [256, 512, 10, 128, 300, 1e-3];
const g = new Generator(0);
// A learnable target: labels from a fixed random linear map of the inputs.
const teacher = Array.from({ length: OUT * IN }, () => g.normal());
// Every step sees a fresh batch, so the loss measures learning rather than memorisation.
const batches = Array.from({ length: STEPS }, () => {
  const x = new Float32Array(BATCH * IN).map(() => g.normal());
  const y = new Int32Array(BATCH).map((_, r) => {
    let best = 0;
    let bestScore = -Infinity;
    for (let c = 0; c < OUT; c++) {
      let s = 0;
      for (let k = 0; k < IN; k++) s += teacher[c * IN + k]! * x[r * IN + k]!;
      if (s > bestScore) [best, bestScore] = [c, s];
    }
    return best;
  });
  return { x, y };
});

function run(make: (params: ReturnType<Sequential["parameters"]>) => Adam | Adam8bit) {
  return new Runtime(new CpuAccelerator({ threads: 2 }).createBackend()).run(async () => {
    manualSeed(0);
    const model = new Sequential(new Linear(IN, H), new ReLU(), new Linear(H, H), new ReLU(), new Linear(H, OUT));
    const optimizer = make(model.parameters());
    const plugin = precisionPluginFor("32-true");
    const losses: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) {
      const b = batches[i % batches.length]!;
      const loss = crossEntropy(model.forward(tensor(b.x, [BATCH, IN])), tensor(b.y, [BATCH], "int32"));
      losses.push((await plugin.optimizerStep(optimizer, loss)).loss);
    }
    const seconds = (performance.now() - t0) / 1000;
    const last = losses.slice(-20).reduce((a, b) => a + b, 0) / 20;
    return { last, stateBytes: optimizer.stateBytes(), stepsPerSecond: STEPS / seconds };
  });
}

const adam = await run((p) => new Adam(p, { lr: LR }));
const eight = await run((p) => new Adam8bit(p, { lr: LR }));
console.log(`MLP ${IN}-${H}-${H}-${OUT}, batch ${BATCH}, ${STEPS} steps, lr ${LR}, 32-true on CPU; loss = mean of the last 20 steps`);
console.log(`${"optimizer".padEnd(10)}${"loss".padStart(10)}${"state bytes".padStart(14)}${"steps/s".padStart(10)}`);
for (const [name, r] of [
  ["Adam", adam],
  ["Adam8bit", eight],
] as const)
  console.log(`${name.padEnd(10)}${r.last.toFixed(4).padStart(10)}${String(r.stateBytes).padStart(14)}${r.stepsPerSecond.toFixed(1).padStart(10)}`);
console.log(
  `\nstate bytes ratio ${(eight.stateBytes / adam.stateBytes).toFixed(4)} (target <= 0.27); loss difference ${((100 * (eight.last - adam.last)) / adam.last).toFixed(2)}% (target within 2%)`,
);
