// JS cost of a training step with and without replay: the 64-64-64-10 MLP, batch 32, 32-true, SGD,
// on onnxruntime with 1 thread. Two runtimes (replay on / off) train side by side, alternating step
// by step in one process; a step's JS cost is its wall time minus the time spent in session.run.
import { crossEntropy, Generator, Linear, manualSeed, precisionPluginFor, ReLU, Runtime, Sequential, SGD, Tensor } from "@nbit/core";
import { CpuAccelerator } from "../src/index.js";

const [IN, H, OUT, BATCH] = [64, 64, 10, 32];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STEPS = Number(process.env.BENCH_STEPS ?? 300);

const g = new Generator(0);
const batches = Array.from({ length: 8 }, () => ({ x: new Float32Array(BATCH * IN).map(() => g.normal()), y: new Int32Array(BATCH).map(() => g.int(OUT)) }));

function path(replay: boolean) {
  const backend = new CpuAccelerator({ threads: 1, allowSpinning: false }).createBackend();
  const compile = backend.compile.bind(backend);
  let inRun = 0;
  backend.compile = async (program) => {
    const compiled = await compile(program);
    return {
      ...compiled,
      run: async (inputs) => {
        const t0 = performance.now();
        const out = await compiled.run(inputs);
        inRun += performance.now() - t0;
        return out;
      },
    };
  };
  const runtime = new Runtime(backend, { replay });
  manualSeed(0);
  const plugin = precisionPluginFor("32-true");
  const model = new Sequential(new Linear(IN, H), new ReLU(), new Linear(H, H), new ReLU(), new Linear(H, OUT));
  const optimizer = new SGD(model.parameters(), { lr: 0.05 });
  /** One step; returns its JS cost in ms. */
  const step = (i: number) =>
    runtime.run(async () => {
      const b = batches[i % batches.length]!;
      const before = inRun;
      const t0 = performance.now();
      const out = crossEntropy(model.forward(Tensor.fromHost(b.x, [BATCH, IN], "float32")), Tensor.fromHost(b.y, [BATCH], "int32"));
      await plugin.optimizerStep(optimizer, out);
      return performance.now() - t0 - (inRun - before);
    });
  return { step, runtime };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
console.log(
  `MLP ${IN}-${H}-${H}-${OUT}, batch ${BATCH}, 32-true, 1 thread: JS cost per step (wall minus session.run), ${ROUNDS} rounds of ${STEPS} alternated steps`,
);
console.log(`${"round".padEnd(6)}${"replay ms".padStart(11)}${"lowered ms".padStart(12)}${"ratio".padStart(8)}`);
const ratios: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const [on, off] = [path(true), path(false)];
  for (let i = 0; i < 5; i++) await Promise.all([on.step(i), off.step(i)]).catch(() => undefined);
  const costOn: number[] = [];
  const costOff: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    costOn.push(await on.step(i));
    costOff.push(await off.step(i));
  }
  const [m1, m0] = [median(costOn), median(costOff)];
  ratios.push(m1 / m0);
  console.log(
    `${String(r + 1).padEnd(6)}${m1.toFixed(3).padStart(11)}${m0.toFixed(3).padStart(12)}${(m1 / m0).toFixed(2).padStart(8)}   (replayed ${on.runtime.stats.programsReplayed} of ${on.runtime.stats.programsRun})`,
  );
  await Promise.all([on.runtime.dispose(), off.runtime.dispose()]);
}
const sorted = [...ratios].sort((a, b) => a - b);
console.log(`replay / lowered JS cost per step: min ${sorted[0]!.toFixed(2)}, median ${median(ratios).toFixed(2)}, max ${sorted.at(-1)!.toFixed(2)}`);
