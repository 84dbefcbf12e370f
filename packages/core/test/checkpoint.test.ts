import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  CHECKPOINT_FORMAT,
  CheckpointError,
  CosineAnnealingLR,
  DataLoader,
  decodeSafetensors,
  EarlyStopping,
  encodeSafetensors,
  GradScaler,
  InvalidArgumentError,
  ModelCheckpoint,
  NbitError,
  SGD,
  StepLR,
  Trainer,
  Dropout,
  Linear,
  ReLU,
  Sequential,
  type Callback,
  type LightningModule,
  type TrainerOptions,
} from "../src/index.js";
import { blobs, quiet, readSafetensorsIndependently, ResumableClassifier, sha256Hex, withHeader, withMeta } from "./helpers.js";

const loader = (seed = 1) => new DataLoader(blobs(32, seed), { batchSize: 8, shuffle: true, seed });

/** 16-mixed (so a gradient scaler), Adam with a per-step StepLR, top-2 checkpoints and early stopping. */
function setup(dir: string, extra: TrainerOptions = {}, make: () => ResumableClassifier = () => new ResumableClassifier("adam", true)) {
  const checkpoint = new ModelCheckpoint({ dirpath: join(dir, "ckpts"), saveTopK: 2 });
  const early = new EarlyStopping({ monitor: "train_loss", patience: 100 });
  const trainer = new Trainer(quiet({ precision: "16-mixed", maxEpochs: 2, callbacks: [checkpoint, early], ...extra }));
  const model = trainer.initModule(make);
  return { trainer, model, checkpoint, early };
}

let dir: string;
let basePath: string;
let base: Uint8Array;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nbit-ckpt-"));
  const { trainer, model } = setup(dir);
  await trainer.fit(model, loader());
  basePath = join(dir, "base.safetensors");
  await trainer.saveCheckpoint(basePath);
  base = readFileSync(basePath);
});

/** The whole training state of a trainer, as the bytes of a checkpoint of it. */
async function snapshot(trainer: Trainer): Promise<Buffer> {
  const path = join(dir, `snap-${Math.random().toString(36).slice(2)}.safetensors`);
  await trainer.saveCheckpoint(path);
  return readFileSync(path);
}

let cases = 0;
/**
 * Resumes a trained run (different data, so every piece of state differs from the file) from
 * `bytes`; expects a CheckpointError and checks that nothing of the run changed.
 */
async function rejects(bytes: Uint8Array, message: RegExp, make?: () => ResumableClassifier): Promise<CheckpointError> {
  const path = join(dir, `case-${cases++}.safetensors`);
  writeFileSync(path, bytes);
  const { trainer, model } = setup(dir, { maxEpochs: 1 }, make);
  await trainer.fit(model, loader(5));
  const before = await snapshot(trainer);
  const error = await trainer.fit(model, loader(5), undefined, { ckptPath: path }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CheckpointError);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).toContain(path);
  expect((await snapshot(trainer)).equals(before)).toBe(true);
  expect(trainer.globalStep).toBe(4);
  return error as CheckpointError;
}

const modelCheckpointKey = 'ModelCheckpoint{"monitor":null,"mode":"min","everyNEpochs":1}';

describe("checkpoint format", () => {
  it("is a standard safetensors file: an independent reader parses it, metadata strings only, a SHA-256 per tensor", () => {
    const read = readSafetensorsIndependently(base);
    expect(Object.values(read.metadata).every((v) => typeof v === "string")).toBe(true);
    expect((8 + read.headerLength) % 8).toBe(0);
    for (const t of read.tensors) expect(read.metadata[`sha256:${t.name}`]).toBe(sha256Hex(t.bytes));
    expect(read.metadata["sha256:nbit"]).toBe(sha256Hex(read.metadata.nbit!));
    expect(Object.keys(read.metadata).sort()).toEqual(["nbit", "sha256:nbit", ...read.tensors.map((t) => `sha256:${t.name}`)].sort());
    const meta = JSON.parse(read.metadata.nbit!);
    expect(meta.format).toBe(CHECKPOINT_FORMAT);
    expect(meta.loop).toEqual({ epoch: 2, batch: 0, globalStep: 8, skippedSteps: 0 });
    expect(Object.keys(meta.callbacks)).toEqual([modelCheckpointKey, 'EarlyStopping{"monitor":"train_loss","mode":"min"}']);
    expect(read.tensors.some((t) => t.name === "net.0.weight" && t.dtype === "F32")).toBe(true);
    expect(read.tensors.some((t) => t.name.startsWith("optimizer_states.0.state.0.exp_avg"))).toBe(true);
  });

  it("resumes exactly and restores the skipped-step count", async () => {
    // Batches 1 and 5 overflow float16, so the scaler skips two steps before the save.
    const overflow = (l: Parameters<ResumableClassifier["lossHook"]>[0], i: number) => (i === 1 ? l.mul(1e30) : l);
    const run = async (ckptPath?: string, saveAt?: string) => {
      const callbacks: Callback[] = saveAt
        ? [
            {
              onTrainBatchEnd: async (t: Trainer, _m: LightningModule, _o: unknown, _b: unknown, i: number) =>
                void (t.currentEpoch === 1 && i === 2 && (await t.saveCheckpoint(saveAt))),
            },
          ]
        : [];
      const trainer = new Trainer(quiet({ precision: "16-mixed", maxEpochs: 3, callbacks, seed: 4 }));
      const model = trainer.initModule(() => new ResumableClassifier("sgd", true, overflow));
      await trainer.fit(model, loader(), undefined, ckptPath ? { ckptPath } : {});
      return trainer;
    };
    const path = join(dir, "skips.safetensors");
    const straight = await run(undefined, path);
    expect(straight.skippedSteps).toBe(3);
    const resumed = await run(path);
    expect(resumed.skippedSteps).toBe(3);
    expect(resumed.globalStep).toBe(straight.globalStep);
    expect(resumed.losses).toEqual(straight.losses.slice(-resumed.losses.length));
  });

  it("rejects a checkpoint of another format version", async () => {
    await rejects(
      withMeta(base, (m) => void (m.format = 1)),
      /format 1 is not supported \(expected 3, or 2, which is still read\): it was written by an older nbit/,
    );
  });
});

describe("crafted checkpoints cannot reach files or objects", () => {
  it("refuses kept paths outside the checkpoint folder, so a save never deletes them", async () => {
    const victim = join(dir, "victim.txt");
    writeFileSync(victim, "keep me");
    const crafted = withMeta(base, (m) => void m.callbacks[modelCheckpointKey].kept.push({ path: victim, score: -1 }));
    const error = await rejects(crafted, /ModelCheckpoint state kept\[2\]\.path must be a \.safetensors file inside/);
    expect(error.cause).toBeInstanceOf(InvalidArgumentError);
    const traversal = withMeta(base, (m) => void (m.callbacks[modelCheckpointKey].kept[0].path = join(dir, "ckpts", "..", "base.safetensors")));
    await rejects(traversal, /kept\[0\]\.path must be a \.safetensors file inside/);
    expect(readFileSync(victim, "utf8")).toBe("keep me");
  });

  it("never deletes a file outside its folder even when its kept list is set by hand", async () => {
    const victim = join(dir, "victim.safetensors");
    writeFileSync(victim, "keep me");
    const { trainer, model, checkpoint } = setup(dir, { maxEpochs: 1 });
    // Lower scores rank last without a monitor, so the next save drops the victim from the top 2.
    checkpoint.kept = [
      { path: join(dir, "ckpts", "x.safetensors"), score: -1 },
      { path: victim, score: -2 },
    ];
    await trainer.fit(model, loader());
    expect(checkpoint.kept.map((k) => k.path)).not.toContain(victim);
    expect(readFileSync(victim, "utf8")).toBe("keep me");
  });

  it("restores only known callback fields: saved options cannot redirect later checkpoints", async () => {
    await rejects(
      withMeta(base, (m) => void (m.callbacks[modelCheckpointKey].options = { dirpath: "/tmp/elsewhere" })),
      /ModelCheckpoint state field "options" must be absent \(unknown field\)/,
    );
    const checkpoint = new ModelCheckpoint({ dirpath: join(dir, "mine") });
    expect(() =>
      checkpoint.loadStateDict({ dirpath: null, bestModelPath: "", bestModelScore: null, lastModelPath: "", kept: [], options: { dirpath: "/x" } }),
    ).toThrow(InvalidArgumentError);
    expect(checkpoint.options.dirpath).toBe(join(dir, "mine"));
  });

  it('rejects "__proto__" and "constructor" keys anywhere in the metadata', async () => {
    const proto = (target: "callback" | "root" | "group") =>
      withMeta(base, (m) => {
        const json = JSON.stringify(m);
        if (target === "root") return json.replace("{", '{"__proto__":{"polluted":true},');
        if (target === "group") return json.replace('"paramGroups":[{', '"paramGroups":[{"constructor":1,');
        return json.replace(`"${modelCheckpointKey.replaceAll('"', '\\"')}":{`, `"${modelCheckpointKey.replaceAll('"', '\\"')}":{"__proto__":{},`);
      });
    await rejects(proto("callback"), /metadata uses the reserved key "__proto__"/);
    await rejects(proto("root"), /reserved key "__proto__"/);
    await rejects(proto("group"), /reserved key "constructor"/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const checkpoint = new ModelCheckpoint();
    expect(() => checkpoint.loadStateDict(JSON.parse('{"__proto__": {}}'))).toThrow(InvalidArgumentError);
    expect(typeof checkpoint.onTrainEpochEnd).toBe("function");
  });

  it("validates restored scaler state as strictly as the constructor", async () => {
    for (const [field, value, message] of [
      ["scale", -1, /plugin\.scaler" scale must be a finite number in \(0, 3\.4028234663852886e\+38\]; got -1/],
      ["scale", 0, /scale must be .*; got 0/],
      ["scale", "abc", /scale must be .*; got "abc"/],
      ["growthFactor", 0.5, /growthFactor must be a finite number > 1; got 0\.5/],
      ["backoffFactor", 2, /backoffFactor must be a finite number in \(0, 1\); got 2/],
      ["growthInterval", 0, /growthInterval must be an integer >= 1; got 0/],
      ["growthTracker", 5000, /growthTracker must be an integer in \[0, 1999\]; got 5000/],
    ] as const)
      await rejects(
        withMeta(base, (m) => void (m.plugin.scaler[field] = value)),
        message,
      );
    const scaler = new GradScaler();
    expect(() => scaler.loadStateDict({ scale: -1, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, growthTracker: 0 })).toThrow(
      InvalidArgumentError,
    );
    expect(() => scaler.loadStateDict({ scale: 8, growthFactor: 0.5, backoffFactor: 2, growthInterval: 2000, growthTracker: 0 })).toThrow(InvalidArgumentError);
    expect(scaler.stateDict()).toEqual({ scale: 65536, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, growthTracker: 0 });
    for (const options of [
      { initScale: 0 },
      { initScale: -1 },
      { initScale: NaN },
      { growthFactor: 0.5 },
      { backoffFactor: 2 },
      { growthInterval: 0 },
      { growthInterval: 1.5 },
    ])
      expect(() => new GradScaler(options)).toThrow(InvalidArgumentError);
  });

  it("validates restored scheduler and optimizer state", async () => {
    await rejects(
      withMeta(base, (m) => void (m.scheduler.lastEpoch = "abc")),
      /StepLR state lastEpoch must be an integer >= 0; got "abc"/,
    );
    await rejects(
      withMeta(base, (m) => void (m.scheduler.lastEpoch = -1)),
      /lastEpoch must be an integer >= 0; got -1/,
    );
    await rejects(
      withMeta(base, (m) => void (m.scheduler.baseLrs = [-0.1])),
      /baseLrs\[0\] must be a finite number >= 0; got -0\.1/,
    );
    await rejects(
      withMeta(base, (m) => void (m.scheduler = null)),
      /has no learning-rate scheduler state, but this run configures a scheduler/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.paramGroups[0].lr = -1)),
      /Adam state paramGroups\[0\] lr must be a finite number >= 0; got -1/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.paramGroups[0].betas = [1, 0.999])),
      /betas\[0\] must be a finite number in \[0, 1\); got 1/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.paramGroups[0].momentum = 0.9)),
      /field "momentum" must be absent \(not a hyperparameter of this optimizer\)/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.steps["0"] = 2.5)),
      /steps\[0\] must be an integer >= 0; got 2\.5/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.scalars["x:int64"] = 1)),
      /scalar "x:int64"/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.stateNames["0"] = ["expAvg"])),
      /Adam state state\[0\] must be the tensors expAvg, expAvgSq; got "expAvg"/,
    );
    await rejects(
      withMeta(base, (m) => void (m.optimizer.stateNames["9"] = [])),
      /Optimizer state names parameter "9", which does not exist/,
    );
  });

  it("rejects an invalid loop position instead of hanging or training nothing", async () => {
    await rejects(
      withMeta(base, (m) => void (m.loop.globalStep = "abc")),
      /metadata field "loop\.globalStep" must be an integer >= 0; got "abc"/,
    );
    await rejects(
      withMeta(base, (m) => void (m.loop.globalStep = 1.5)),
      /loop\.globalStep" must be an integer/,
    );
    await rejects(
      withMeta(base, (m) => void (m.loop.skippedSteps = 9)),
      /skippedSteps" must be an integer in \[0, 8\]; got 9/,
    );
    // A flipped bit in the key: the checksum catches it; re-signed, the schema does.
    const flipped = (resign: boolean) => withMeta(base, (m) => JSON.stringify(m).replace('"globalStep"', '"globalStdp"'), resign);
    await rejects(flipped(false), /the nbit metadata does not match its sha256 checksum/);
    await rejects(flipped(true), /metadata field "loop\.globalStdp" must be absent \(unknown field\)/);
    await rejects(
      withMeta(base, (m) => void delete m.loop),
      /metadata field "loop" must be present/,
    );
    for (const field of ["precision", "optimizer", "scheduler", "plugin", "callbacks", "rng"])
      await rejects(
        withMeta(base, (m) => void delete m[field]),
        new RegExp(`metadata field "${field}" must be present`),
      );
    await rejects(
      withMeta(base, (m) => void (m.rng = [0, 0, 0, 0])),
      /"rng" must be 4 integers/,
    );
    await rejects(
      withMeta(base, () => "[1, 2]"),
      /metadata is an array of 2, not an object/,
    );
  });

  it("applies nothing of a checkpoint that does not fit the module (no half-loaded module)", async () => {
    // The first layers fit; the last one does not. Nothing is loaded, not even the layers that fit.
    class WiderHead extends ResumableClassifier {
      override readonly net = new Sequential(new Linear(4, 16), new ReLU(), new Dropout(0.1), new Linear(16, 4));
    }
    await rejects(base, /tensor "net\.3\.weight" expected float32\[4, 16\], found float32\[3, 16\]/, () => new WiderHead("adam", true));
  });
});

describe("the safetensors decoder validates every entry", () => {
  const tensors = {
    a: { dtype: "float32" as const, shape: [2], data: Float32Array.of(1, 2) },
    b: { dtype: "int32" as const, shape: [1], data: Int32Array.of(7) },
  };
  const plain = encodeSafetensors(tensors, { note: "x" });
  // biome-ignore lint/suspicious/noExplicitAny: crafted headers are edited field by field, whatever their shape
  const crafted = (mutate: (h: Record<string, any>) => unknown) => () => decodeSafetensors(withHeader(plain, mutate));

  it("names the tensor for each malformed entry", () => {
    // biome-ignore lint/suspicious/noExplicitAny: as above
    const cases: [(h: Record<string, any>) => unknown, RegExp][] = [
      [(h) => void (h.a = null), /tensor "a" has header entry null/],
      [(h) => void delete h.a.shape, /tensor "a" has shape undefined/],
      [(h) => void delete h.a.data_offsets, /tensor "a" has data_offsets undefined/],
      [(h) => void (h.a.data_offsets = [-8, 0]), /tensor "a" has data_offsets \[-8,0\]/],
      [(h) => void (h.a.data_offsets = [0.5, 8.5]), /tensor "a" has data_offsets \[0\.5,8\.5\]/],
      [(h) => void (h.a.shape = [-2]), /tensor "a" has shape \[-2\]/],
      [(h) => void (h.a.shape = [2.5]), /tensor "a" has shape \[2\.5\]/],
      [(h) => void (h.a.dtype = "constructor"), /tensor "a" has unsupported dtype "constructor"/],
      [(h) => void (h.a.dtype = "__proto__"), /tensor "a" has unsupported dtype "__proto__"/],
      [(h) => void (h.a.dtype = "toString"), /tensor "a" has unsupported dtype "toString"/],
      [(h) => void (h.a.extra = 1), /tensor "a" has an unknown header field "extra"/],
      [(h) => void (h.b.data_offsets = [4, 8]), /tensor "b" starts at byte 4, inside tensor "a" \(bytes 0-8\): overlapping/],
      [
        (h) => void ((h.a.shape = [3]), (h.a.data_offsets = [0, 12]), (h.b.data_offsets = [12, 16])),
        /tensor "b" ends at byte 16 of the data but the file has 12 \(truncated or corrupt\)/,
      ],
      [(h) => void ((h.a.shape = [1]), (h.a.data_offsets = [0, 4])), /tensor "b" starts at byte 8, but the data before it ends at byte 4: a gap/],
      [(h) => void (h.__metadata__.note = 3), /__metadata__ value "note" is 3; the format allows strings only/],
      [() => "[1,2]", /header is not a JSON object|does not start with/],
    ];
    for (const [mutate, message] of cases) {
      expect(crafted(mutate), String(message)).toThrow(CheckpointError);
      expect(crafted(mutate)).toThrow(message);
    }
    const trailing = new Uint8Array(plain.length + 4);
    trailing.set(plain);
    expect(() => decodeSafetensors(trailing)).toThrow(/4 bytes after the last tensor's data/);
    const huge = Uint8Array.from(plain);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
    expect(() => decodeSafetensors(huge)).toThrow(/header claims 9223372036854775808 bytes/);
    const latin = withHeader(plain, (h) => JSON.stringify(h));
    latin[20] = 0xff; // not UTF-8
    expect(() => decodeSafetensors(latin)).toThrow(/not valid JSON/);
  });

  it("returns records without a prototype, so any tensor name is a plain key", () => {
    const odd = decodeSafetensors(withHeader(plain, (h) => JSON.parse(JSON.stringify(h).replace('"a":', '"__proto__":'))));
    expect(Object.getPrototypeOf(odd.tensors)).toBeNull();
    expect(Object.keys(odd.tensors).sort()).toEqual(["__proto__", "b"]);
    expect(({} as Record<string, unknown>).dtype).toBeUndefined();
  });

  it("rejects every single-bit flip of tensor data, naming the tensor", async () => {
    const read = readSafetensorsIndependently(base);
    const dataStart = 8 + read.headerLength;
    for (const t of read.tensors) {
      const bytes = Uint8Array.from(base);
      bytes[dataStart + t.begin + ((t.end - t.begin) >> 1)]! ^= 1 << (t.begin % 8);
      const path = join(dir, "flip.safetensors");
      writeFileSync(path, bytes);
      const { trainer, model } = setup(dir);
      await expect(trainer.fit(model, loader(), undefined, { ckptPath: path })).rejects.toThrow(
        new RegExp(`tensor "${t.name.replaceAll(".", "\\.")}" does not match its sha256 checksum`),
      );
    }
  });

  it("reads only regular files", async () => {
    const { trainer, model } = setup(dir);
    await expect(trainer.fit(model, loader(), undefined, { ckptPath: dir })).rejects.toThrow(/cannot be read: not a regular file/);
  });
});

describe("callbacks restore what they saved, and nothing else", () => {
  it("round-trips non-finite scores and rejects malformed state", () => {
    const early = new EarlyStopping({ monitor: "val_loss" });
    early.best = NaN;
    const saved = JSON.parse(JSON.stringify(early.stateDict()));
    const restored = new EarlyStopping({ monitor: "val_loss" });
    restored.loadStateDict(saved);
    expect(restored.best).toBeNaN();
    for (const bad of [
      null,
      [],
      { best: null, waitCount: -1, stoppedEpoch: null },
      { best: "abc", waitCount: 0, stoppedEpoch: null },
      { best: 1, waitCount: 0 },
    ])
      expect(() => restored.loadStateDict(bad)).toThrow(NbitError);
    expect(restored.waitCount).toBe(0);
  });

  it("keeps separate states for differently configured ModelCheckpoints and refuses shared keys on save", async () => {
    const a = new ModelCheckpoint({ monitor: "val_loss" });
    const b = new ModelCheckpoint({ monitor: "val_acc", mode: "max" });
    expect(a.stateKey).not.toBe(b.stateKey);
    const clash = { stateKey: "same", stateDict: () => 1, loadStateDict: () => {} };
    const trainer = new Trainer(quiet({ maxSteps: 1, callbacks: [clash, { ...clash }] }));
    const model = new ResumableClassifier();
    await trainer.fit(model, loader());
    await expect(trainer.saveCheckpoint(join(dir, "clash.safetensors"))).rejects.toThrow(/two callbacks share the state key "same"/);
  });

  it("rolls back callbacks without validateStateDict when a later one rejects its state", async () => {
    const counter = (key: string) => ({
      stateKey: key,
      count: 0,
      stateDict() {
        return { count: this.count };
      },
      loadStateDict(state: unknown) {
        const count = (state as { count?: unknown }).count;
        if (typeof count !== "number") throw new TypeError("count must be a number");
        this.count = count;
      },
    });
    const [a, b] = [counter("a"), counter("b")];
    a.count = 3;
    b.count = 4;
    const trainer = new Trainer(quiet({ maxEpochs: 1, callbacks: [a, b] }));
    const model = new ResumableClassifier();
    await trainer.fit(model, loader());
    const path = join(dir, "counters.safetensors");
    await trainer.saveCheckpoint(path);
    writeFileSync(
      path,
      withMeta(readFileSync(path), (m) => void ((m.callbacks.a.count = 10), (m.callbacks.b.count = "x"))),
    );
    a.count = 5;
    await expect(trainer.fit(model, loader(), undefined, { ckptPath: path })).rejects.toThrow(
      /Checkpoint .*: callback "b" rejected its state: count must be a number/,
    );
    expect([a.count, b.count]).toEqual([5, 4]);
  });
});

describe("atomic writes", () => {
  it("replaces a symlink at the checkpoint path instead of writing through it", async () => {
    const victim = join(dir, "symlink-victim.txt");
    writeFileSync(victim, "keep me");
    const folder = mkdtempSync(join(dir, "link-"));
    const path = join(folder, "ckpt.safetensors");
    symlinkSync(victim, path);
    const trainer = new Trainer(quiet({ maxSteps: 1 }));
    await trainer.fit(new ResumableClassifier(), loader());
    await trainer.saveCheckpoint(path);
    expect(readFileSync(victim, "utf8")).toBe("keep me");
    expect(decodeSafetensors(readFileSync(path)).metadata.nbit).toBeDefined();
  });

  it("removes the temporary file when the rename fails, and stale ones of dead writers at the next save", async () => {
    const folder = mkdtempSync(join(dir, "stale-"));
    const trainer = new Trainer(quiet({ maxSteps: 1 }));
    await trainer.fit(new ResumableClassifier(), loader());
    const blocked = join(folder, "blocked.safetensors");
    mkdirSync(join(blocked, "inside"), { recursive: true }); // renaming a file over a non-empty folder fails
    await expect(trainer.saveCheckpoint(blocked)).rejects.toThrow(CheckpointError);
    expect(readdirSync(folder)).toEqual(["blocked.safetensors"]);
    // A writer that died (this pid's leftovers count as dead: saves are synchronous) and a live one (the parent process).
    const stale = `.a.safetensors.nbit-tmp-${process.pid}-0123456789abcdef`;
    const live = `.a.safetensors.nbit-tmp-${process.ppid}-0123456789abcdef`;
    writeFileSync(join(folder, stale), "torn");
    writeFileSync(join(folder, live), "in progress");
    await trainer.saveCheckpoint(join(folder, "a.safetensors"));
    expect(readdirSync(folder).sort()).toEqual([live, "a.safetensors", "blocked.safetensors"].sort());
    expect(existsSync(join(folder, stale))).toBe(false);
  });
});

describe("loop limits with checkpoints", () => {
  it("a run resumed at maxSteps trains nothing more", async () => {
    const trainer = new Trainer(
      quiet({
        precision: "16-mixed",
        maxSteps: 8,
        callbacks: [new ModelCheckpoint({ dirpath: join(dir, "ckpts"), saveTopK: 2 }), new EarlyStopping({ monitor: "train_loss", patience: 100 })],
      }),
    );
    const model = trainer.initModule(() => new ResumableClassifier("adam", true));
    await trainer.fit(model, loader(), undefined, { ckptPath: basePath });
    expect(trainer.globalStep).toBe(8);
    expect(trainer.losses).toEqual([]);
  });

  it("validates scheduler constructors", () => {
    const opt = new SGD(new ResumableClassifier().parameters(), { lr: 0.1 });
    expect(() => new StepLR(opt, 0)).toThrow(/StepLR stepSize must be an integer >= 1; got 0/);
    expect(() => new StepLR(opt, 2, -1)).toThrow(/StepLR gamma must be a finite number > 0; got -1/);
    expect(() => new CosineAnnealingLR(opt, NaN)).toThrow(InvalidArgumentError);
  });
});
