// Resident memory over 5,000 training steps with StepLR on an epoch interval: the learning rate
// changes every epoch (50 steps), the case where a baked-in learning rate compiled new programs
// each epoch. Prints RSS every 500 steps, the onnxruntime sessions created, and the spread of RSS
// after the first 500 steps (target: flat within 10%). Each sample also splits out V8's heap: its
// young generation (new space) grows in steps up to twice --max-semi-space-size as allocation
// goes on, which is most of the growth (run node with --min-semi-space-size=16 to start it at
// its final size and see the rest). Each sample also gives the whole V8 heap, external (ArrayBuffer)
// memory and the rest of the process (onnxruntime, Node itself, the allocator); run node with
// --expose-gc to also see the live heap after a full GC at each sample. The last line compares the
// last half of the run (a plateau shows as little growth there).
import { getHeapSpaceStatistics } from "node:v8";
import { Session } from "node:inspector/promises";
import { DataLoader, Generator, LightningModule, StepLR, SGD, TensorDataset, Trainer, crossEntropy, manualSeed, type Batch, type Tensor } from "@nbit/core";
import { CpuAccelerator } from "../src/index.js";
import { env, mlp, SMALL } from "./common.js";

const STEPS = env("BENCH_STEPS", 5000);
const STEPS_PER_EPOCH = 50;
const precision = (process.argv[3] ?? "32-true") as "32-true";
// BENCH_CAPTURE=1 replays the captured step (Trainer captureSteps) instead of recording each one.
const capture = process.env.BENCH_CAPTURE === "1";

class Net extends LightningModule {
  readonly net = mlp(SMALL.dims);
  forward(x: Tensor) {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch) {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    const optimizer = new SGD(this.parameters(), { lr: 0.05 });
    return { optimizer, lrScheduler: { scheduler: new StepLR(optimizer, 1, 0.99), interval: "epoch" as const } };
  }
}
const g = new Generator(0);
const [inputs, classes, batch] = [SMALL.dims[0]!, SMALL.dims.at(-1)!, SMALL.batch];
const samples = STEPS_PER_EPOCH * batch;
const data = new TensorDataset(
  { data: Array.from({ length: samples * inputs }, () => g.normal()), sampleShape: [inputs] },
  { data: Array.from({ length: samples }, () => g.int(classes)), sampleShape: [], dtype: "int32" },
);
const mb = () => process.memoryUsage().rss / 2 ** 20;
const samplesAt: { step: number; rss: number; young: number; old: number; heap: number; external: number; live?: number }[] = [];
const gc = (globalThis as { gc?: () => void }).gc;
const space = (name: string) => (getHeapSpaceStatistics().find((s) => s.space_name === name)?.space_size ?? 0) / 2 ** 20;
const t0 = performance.now();
const probe = {
  onTrainBatchEnd(trainer: Trainer) {
    if (trainer.globalStep % 500 !== 0) return;
    const { heapTotal, external, rss } = process.memoryUsage();
    gc?.();
    const live = gc ? process.memoryUsage().heapUsed / 2 ** 20 : undefined;
    samplesAt.push({
      step: trainer.globalStep,
      rss: rss / 2 ** 20,
      young: space("new_space"),
      old: space("old_space"),
      heap: heapTotal / 2 ** 20,
      external: external / 2 ** 20,
      live,
    });
  },
};
const accelerator = new CpuAccelerator();
const createBackend = accelerator.createBackend.bind(accelerator);
let backend: ReturnType<typeof createBackend> | undefined;
accelerator.createBackend = () => (backend = createBackend());
manualSeed(0);
const trainer = new Trainer({
  accelerator,
  precision,
  maxSteps: STEPS,
  maxEpochs: -1,
  logger: false,
  enableProgressBar: false,
  enableModelSummary: false,
  enableCheckpointing: false,
  callbacks: [probe],
  captureSteps: capture,
});
console.log(
  `MLP ${SMALL.name}, ${precision}, SGD with StepLR(step 1 epoch, gamma 0.99) on an epoch interval, ${STEPS_PER_EPOCH} steps per epoch, ${STEPS} steps, ${capture ? "captured steps replayed" : "every step recorded"}`,
);
console.log(`RSS before fit: ${mb().toFixed(0)} MiB`);
const session = new Session(); session.connect();
await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
await trainer.fit(
  trainer.initModule(() => new Net()),
  new DataLoader(data, { batchSize: batch, shuffle: true, seed: 1 }),
);

{
const { profile } = (await session.post("HeapProfiler.stopSampling")) as any;
const bytes = new Map<string, number>();
const walk = (n: any, stack: string) => { const k = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`; if (n.selfSize) bytes.set(k + " <- " + stack, (bytes.get(k + " <- " + stack) ?? 0) + n.selfSize); for (const c of n.children) walk(c, k.split(" ")[0]!); };
walk(profile.head, "");
let tot = 0; for (const b of bytes.values()) tot += b;
console.log("total per step", (tot / STEPS).toFixed(0));
for (const [k, b] of [...bytes].sort((a, z) => z[1] - a[1]).slice(0, 40)) console.log((b / STEPS).toFixed(0).padStart(6), k);
}
for (const s of samplesAt)
  console.log(
    `  step ${String(s.step).padStart(5)}: RSS ${s.rss.toFixed(0)} MiB (V8 new space ${s.young.toFixed(0)} MiB, old space ${s.old.toFixed(0)} MiB; ` +
      `V8 heap ${s.heap.toFixed(0)} MiB${s.live === undefined ? "" : `, live ${s.live.toFixed(1)} MiB`}, external ${s.external.toFixed(1)} MiB, rest ${(s.rss - s.heap).toFixed(0)} MiB)`,
  );
const measured = samplesAt.filter((s) => s.step >= 500);
const after = measured.map((s) => s.rss);
console.log(`onnxruntime sessions created: ${backend?.sessionsCreated}; ${((performance.now() - t0) / 1000).toFixed(1)} s`);
if (trainer.stepCapture) console.log(`steps replayed: ${trainer.stepCapture.stats.replayed}, recorded: ${trainer.stepCapture.stats.recorded}`);
console.log(
  `RSS from step 500 to ${STEPS}: ${Math.min(...after).toFixed(0)}–${Math.max(...after).toFixed(0)} MiB, growth ${((after.at(-1)! / after[0]! - 1) * 100).toFixed(1)}% (target: within 10%)`,
);
const [first, last] = [measured[0]!, measured.at(-1)!];
const half = samplesAt.find((s) => s.step >= STEPS / 2)!;
console.log(
  `RSS over the last half (step ${half.step} to ${STEPS}): ${half.rss.toFixed(0)} -> ${last.rss.toFixed(0)} MiB, ${((last.rss / half.rss - 1) * 100).toFixed(1)}%`,
);
console.log(
  `  of the growth: V8 new space ${(last.young - first.young).toFixed(0)} MiB, V8 old space ${(last.old - first.old).toFixed(0)} MiB, the rest ${(last.rss - first.rss - (last.young - first.young) - (last.old - first.old)).toFixed(0)} MiB`,
);
