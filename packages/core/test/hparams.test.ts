import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  Adam,
  CheckpointError,
  crossEntropy,
  DataLoader,
  decodeSafetensors,
  InvalidArgumentError,
  LightningModule,
  Linear,
  ReLU,
  SGD,
  Sequential,
  Trainer,
  withRuntime,
  Runtime,
  ReferenceBackend,
  type Batch,
  type Tensor,
} from "../src/index.js";
import { blobs, quiet, withMeta } from "./helpers.js";

interface NetConfig {
  readonly hidden: number;
  readonly optimizer: "adam" | "sgd";
  readonly tags?: readonly string[];
}

/** Takes its hyperparameters as one object, the form loadFromCheckpoint calls. */
class Net extends LightningModule {
  readonly net: Sequential;
  constructor(readonly config: NetConfig) {
    super();
    this.saveHyperparameters(config);
    this.net = new Sequential(new Linear(4, config.hidden), new ReLU(), new Linear(config.hidden, 3));
  }
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return this.config.optimizer === "sgd" ? new SGD(this.parameters(), { lr: 0.05, momentum: 0.9 }) : new Adam(this.parameters(), { lr: 0.01 });
  }
}

/** Builds its layers in configureModel. */
class Lazy extends LightningModule {
  net: Sequential | null = null;
  constructor(readonly config: { hidden: number }) {
    super();
    this.saveHyperparameters(config);
  }
  override configureModel(): void {
    this.net = new Sequential(new Linear(4, this.config.hidden), new ReLU(), new Linear(this.config.hidden, 3));
  }
  forward(x: Tensor): Tensor {
    return this.net!.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return new Adam(this.parameters(), { lr: 0.01 });
  }
}

const loader = () => new DataLoader(blobs(16), { batchSize: 8 });
let dir: string;
let adamPath: string;
let trained: Net;

async function trainAndSave<M extends LightningModule>(make: () => M, name: string, precision: "32-true" | "bf16-true" = "32-true"): Promise<[M, string]> {
  const trainer = new Trainer(quiet({ maxEpochs: 2, precision }));
  const model = make();
  await trainer.fit(model, loader());
  const path = join(dir, name);
  await trainer.saveCheckpoint(path);
  return [model, path];
}

const hostOf = async (m: LightningModule) =>
  withRuntime(new Runtime(new ReferenceBackend()), async () =>
    Promise.all(Object.values(m.stateDict()).map(async (t) => Array.from(await t.cast("float32").data()))),
  );

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nbit-hparams-"));
  [trained, adamPath] = await trainAndSave(() => new Net({ hidden: 6, optimizer: "adam", tags: ["a", "b"] }), "adam.safetensors");
});

describe("checkpoint tensor names, as PyTorch writes them", () => {
  it("names weights by module.stateDict() (Sequential children 0, 1, ...) and optimizer state as optimizer_states.0.state.<i>.<name>", async () => {
    expect(Object.keys(trained.stateDict())).toEqual(["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]);
    const names = Object.keys(decodeSafetensors(readFileSync(adamPath)).tensors).sort();
    const adam = [0, 1, 2, 3].flatMap((i) => [`optimizer_states.0.state.${i}.exp_avg`, `optimizer_states.0.state.${i}.exp_avg_sq`]);
    expect(names).toEqual([...Object.keys(trained.stateDict()), ...adam].sort());
    const [, sgdPath] = await trainAndSave(() => new Net({ hidden: 6, optimizer: "sgd" }), "sgd.safetensors");
    const sgd = Object.keys(decodeSafetensors(readFileSync(sgdPath)).tensors).filter((n) => n.startsWith("optimizer_states"));
    expect(sgd.sort()).toEqual([0, 1, 2, 3].map((i) => `optimizer_states.0.state.${i}.momentum_buffer`));
  });

  it("reads format 2, written by the previous nbit (model.net.layers.0.weight, optimizer.0.expAvg): resume and loadFromCheckpoint", async () => {
    // Written by nbit's format-2 writer (the main branch at 31050b6): Net below, 16-mixed, one epoch of 2 steps on the reference backend.
    const fixture = join(import.meta.dirname, "fixtures", "format2-16-mixed.safetensors");
    const stored = decodeSafetensors(readFileSync(fixture));
    expect(JSON.parse(stored.metadata.nbit!).format).toBe(2);
    expect(Object.keys(stored.tensors)).toContain("model.net.layers.0.weight");
    class Old extends LightningModule {
      readonly net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
      constructor(_hparams: object = {}) {
        super();
      }
      forward(x: Tensor): Tensor {
        return this.net.forward(x);
      }
      trainingStep([x, y]: Batch): Tensor {
        return crossEntropy(this.forward(x!), y!);
      }
      configureOptimizers() {
        return new Adam(this.parameters(), { lr: 0.01 });
      }
    }
    const saved = ["0.weight", "0.bias", "2.weight", "2.bias"].map((n) => Array.from(stored.tensors[`model.net.layers.${n}`]!.data as Float32Array));
    const loaded = Old.loadFromCheckpoint(fixture);
    expect(loaded.hparams).toEqual({});
    expect(await hostOf(loaded)).toEqual(saved);

    const trainer = new Trainer(quiet({ precision: "16-mixed", maxEpochs: 2 }));
    const resumed = new Old();
    const steps: number[] = [];
    trainer.callbacks.push({ onTrainBatchEnd: async (t: Trainer) => void steps.push(t.globalStep) });
    await trainer.fit(resumed, loader(), undefined, { ckptPath: fixture });
    expect(steps).toEqual([3, 4]);
    // Adam's step counts went on from the 2 the file holds.
    expect((await trainer.optimizer!.stateDict()).steps).toEqual({ 0: 4, 1: 4, 2: 4, 3: 4 });
    // Saved again, it is format 3 with PyTorch's names.
    const path = join(dir, "migrated.safetensors");
    await trainer.saveCheckpoint(path);
    const names = Object.keys(decodeSafetensors(readFileSync(path)).tensors);
    expect(names).toContain("net.0.weight");
    expect(names).toContain("optimizer_states.0.state.3.exp_avg_sq");
  });

  it("refuses a format-2 file whose weights do not fit, naming the old tensor name", () => {
    const fixture = join(import.meta.dirname, "fixtures", "format2-16-mixed.safetensors");
    expect(() => Net.loadFromCheckpoint(fixture, { hparams: { hidden: 8, optimizer: "adam" } })).not.toThrow();
    expect(() => Net.loadFromCheckpoint(fixture, { hparams: { hidden: 9, optimizer: "adam" } })).toThrow(
      /tensor "model\.net\.layers\.0\.weight" expected float32\[9, 4\], found float32\[8, 4\]/,
    );
  });
});

describe("saveHyperparameters", () => {
  it("keeps a frozen copy in hparams and writes it into the checkpoint's metadata", () => {
    expect(trained.hparams).toEqual({ hidden: 6, optimizer: "adam", tags: ["a", "b"] });
    expect(Object.isFrozen(trained.hparams) && Object.isFrozen(trained.hparams.tags)).toBe(true);
    const meta = JSON.parse(decodeSafetensors(readFileSync(adamPath)).metadata.nbit!);
    expect(meta.hparams).toEqual({ hidden: 6, optimizer: "adam", tags: ["a", "b"] });
  });

  it("accepts plain JSON values only, naming the offending path; ignore drops keys", () => {
    const save = (h: Record<string, unknown>, ignore?: string[]) => {
      const m = new Net({ hidden: 2, optimizer: "adam" });
      m.saveHyperparameters(h, ignore ? { ignore } : {});
      return m.hparams;
    };
    expect(() => save({ f: () => 1 })).toThrow(/saveHyperparameters hparams\.f must be a plain JSON value.*got a function/);
    expect(() => save({ nested: { lr: Number.NaN } })).toThrow(/hparams\.nested\.lr must be a finite number/);
    expect(() => save({ layer: new Linear(1, 1) })).toThrow(InvalidArgumentError);
    expect(() => save({ list: [1, new Date(0)] })).toThrow(/hparams\.list\[1\] must be a plain JSON value/);
    expect(save({ lr: 0.1, data: new Date(0) }, ["data"])).toEqual({ lr: 0.1 });
  });
});

describe("loadFromCheckpoint", () => {
  it("builds the module from the saved hyperparameters and loads its weights", async () => {
    const loaded = Net.loadFromCheckpoint(adamPath);
    expect(loaded).toBeInstanceOf(Net);
    expect(loaded.config).toEqual({ hidden: 6, optimizer: "adam", tags: ["a", "b"] });
    expect(await hostOf(loaded)).toEqual(await hostOf(trained));
    expect(loaded.trainer).toBeNull();
    // Overrides are laid over the saved values (Lightning's **kwargs).
    expect(Net.loadFromCheckpoint(adamPath, { hparams: { optimizer: "sgd" } }).config).toEqual({ hidden: 6, optimizer: "sgd", tags: ["a", "b"] });
    expect(() => Net.loadFromCheckpoint(adamPath, { hparams: { hidden: 7 } })).toThrow(/tensor "net.0.weight" expected float32\[7, 4\], found float32\[6, 4\]/);
  });

  it("runs configureModel before loading, and casts 16-bit weights to the module's float32", async () => {
    const [lazy, lazyPath] = await trainAndSave(() => new Lazy({ hidden: 5 }), "lazy.safetensors", "bf16-true");
    expect(lazy.dtype).toBe("bfloat16");
    const loaded = Lazy.loadFromCheckpoint(lazyPath);
    expect(loaded.dtype).toBe("float32");
    expect(await hostOf(loaded)).toEqual(await hostOf(lazy));
    // A Trainer does not run configureModel again (it would draw new weights).
    const trainer = new Trainer(quiet({ maxEpochs: 0 }));
    await trainer.fit(loaded, loader());
    expect(await hostOf(loaded)).toEqual(await hostOf(lazy));
  });

  it("treats the saved hyperparameters as untrusted: plain JSON only, checked before anything is built", () => {
    const crafted = (mutate: (m: Record<string, unknown>) => void, resign = true) => {
      const path = join(dir, `crafted-${Math.random().toString(36).slice(2)}.safetensors`);
      writeFileSync(path, withMeta(readFileSync(adamPath), mutate, resign));
      return path;
    };
    let built = 0;
    class Counting extends Net {
      constructor(c: NetConfig) {
        super(c);
        built++;
      }
    }
    const cases: [(m: Record<string, unknown>) => void, RegExp][] = [
      [(m) => void (m.hparams = [1]), /metadata field "hparams" must be a plain object of hyperparameters; got an array of 1/],
      [(m) => void (m.hparams = "x"), /metadata field "hparams" must be a plain object/],
      [(m) => void delete m.hparams, /metadata field "hparams" must be present/],
      [(m) => void (m.hparams = { hidden: { deep: JSON.parse(`${"[".repeat(40)}1${"]".repeat(40)}`) } }), /nested at most 32 levels deep/],
    ];
    for (const [mutate, message] of cases) expect(() => Counting.loadFromCheckpoint(crafted(mutate))).toThrow(message);
    // A prototype key anywhere in the metadata is refused while parsing.
    expect(() => Counting.loadFromCheckpoint(crafted((m) => void (m.hparams = JSON.parse('{"__proto__": {"polluted": 1}}'))))).toThrow(CheckpointError);
    // Changed without re-signing: the checksum names the metadata as corrupt.
    expect(() => Counting.loadFromCheckpoint(crafted((m) => void (m.hparams = { hidden: 6, optimizer: "sgd" }), false))).toThrow(
      /does not match its sha256 checksum/,
    );
    expect(built).toBe(0);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
