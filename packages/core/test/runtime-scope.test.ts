import { describe, expect, it } from "vitest";
import {
  autocast,
  autocastDType,
  crossEntropy,
  DataLoader,
  isGradEnabled,
  LightningModule,
  Linear,
  manualSeed,
  noGrad,
  ReferenceBackend,
  ReLU,
  Runtime,
  RuntimeMismatchError,
  Sequential,
  SGD,
  tensor,
  Trainer,
  withRuntime,
  type Batch,
  type Tensor,
} from "../src/index.js";
import { blobs, quiet, reference } from "./helpers.js";

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

class Net extends LightningModule {
  readonly net = new Sequential(new Linear(4, 16), new ReLU(), new Linear(16, 3));
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return new SGD(this.parameters(), { lr: 0.05, momentum: 0.9 });
  }
}

/** A Trainer whose every batch ends with an await, so concurrent fits interleave step by step. */
function interleavingTrainer(name: string, precision: "32-true" | "64-true" | "bf16-mixed") {
  const yieldEachBatch = { onTrainBatchEnd: tick };
  return new Trainer(quiet({ accelerator: reference(name), precision, maxEpochs: 2, callbacks: [yieldEachBatch] }));
}

describe("runtime scopes", () => {
  it("has no process-wide runtime: outside a scope, unplaced tensors name the way to get one", async () => {
    await expect(tensor([1, 2]).add(1).data()).rejects.toMatchObject({ code: "NO_RUNTIME" });
  });

  it("keeps grad, autocast and runtime settings per async call chain, across awaits", async () => {
    const [a, b] = [new Runtime(new ReferenceBackend()), new Runtime(new ReferenceBackend())];
    const seen: string[] = [];
    const chain = (runtime: Runtime, label: string, grad: boolean) =>
      withRuntime(runtime, () =>
        (grad ? <T>(f: () => T) => f() : noGrad)(() =>
          autocast(grad ? null : "bfloat16", async () => {
            for (let i = 0; i < 3; i++) {
              await tick();
              const t = tensor([i]).add(1);
              await t.data();
              seen.push(`${label}:${isGradEnabled()}:${autocastDType()}:${t.node.device?.runtime === runtime}`);
            }
          }),
        ),
      );
    await Promise.all([chain(a, "a", true), chain(b, "b", false)]);
    expect(seen.filter((s) => s.startsWith("a"))).toEqual(Array(3).fill("a:true:null:true"));
    expect(seen.filter((s) => s.startsWith("b"))).toEqual(Array(3).fill("b:false:bfloat16:true"));
    expect(isGradEnabled()).toBe(true);
    expect(autocastDType()).toBe(null);
  });

  it("refuses an operation over tensors of two runtimes, naming both backends", async () => {
    const cpuLike = new Runtime(Object.assign(new ReferenceBackend(), { name: "first" }));
    const other = new Runtime(Object.assign(new ReferenceBackend(), { name: "second" }));
    const x = tensor([1, 2, 3]);
    await cpuLike.run(() => x.data().then(() => x.mul(2).data()));
    const y = tensor([4, 5, 6]).mul(1);
    await other.run(() => y.data());
    const failure = await other.run(() => x.add(y).data()).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(RuntimeMismatchError);
    expect(failure).toMatchObject({ code: "RUNTIME_MISMATCH" });
    expect(String((failure as Error).message)).toMatch(/"first"[\s\S]*"second"|"second"[\s\S]*"first"/);
  });

  it("trains two Trainers concurrently with interleaved awaits to exactly their solo losses, each on its own runtime", async () => {
    const data = blobs(48);
    const fit = async (trainer: Trainer, seed: number) => {
      manualSeed(seed);
      const model = trainer.initModule(() => new Net());
      await trainer.fit(model, new DataLoader(data, { batchSize: 8, shuffle: true, seed }));
      return { losses: [...trainer.losses], model };
    };
    const soloA = await fit(interleavingTrainer("ref-a", "64-true"), 1);
    const soloB = await fit(interleavingTrainer("ref-b", "bf16-mixed"), 2);
    const [ta, tb] = [interleavingTrainer("ref-a", "64-true"), interleavingTrainer("ref-b", "bf16-mixed")];
    // Models are built before either fit starts, so neither fit's scope decides where the other's parameters go.
    manualSeed(1);
    const modelA = ta.initModule(() => new Net());
    manualSeed(2);
    const modelB = tb.initModule(() => new Net());
    await Promise.all([
      ta.fit(modelA, new DataLoader(data, { batchSize: 8, shuffle: true, seed: 1 })),
      tb.fit(modelB, new DataLoader(data, { batchSize: 8, shuffle: true, seed: 2 })),
    ]);
    expect(ta.losses).toEqual(soloA.losses);
    expect(tb.losses).toEqual(soloB.losses);
    expect(modelA.parameters().every((p) => p.node.device?.runtime === ta.runtime)).toBe(true);
    expect(modelB.parameters().every((p) => p.node.device?.runtime === tb.runtime)).toBe(true);
  });
});
