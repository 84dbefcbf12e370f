import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckpointError, DataLoader, decodeSafetensors, EarlyStopping, ModelCheckpoint, NbitError, Trainer, type Callback } from "../src/index.js";
import { blobs, quiet, readSafetensorsIndependently, ResumableClassifier, sha256Hex, withHeader, withMeta } from "./helpers.js";

/**
 * Property test of checkpoint loading with fixed seeds: real checkpoints with flipped bits,
 * overwritten bytes, truncations, crafted headers and crafted metadata (re-signed, so the schema
 * is what rejects them), swapped tensors and re-signed new weights. Every case goes through
 * `Trainer.fit(..., { ckptPath })` on a trained run whose state differs from the file in every
 * part. Properties: nothing but an NbitError is thrown; a rejected load is a CheckpointError and
 * changes nothing (weights, optimizer, scaler, scheduler, callbacks, RNG and loop position, compared
 * as the bytes of a checkpoint of the run); an accepted load restores everything the file holds;
 * Object.prototype stays clean; every case ends within a bounded number of epochs, batches and time.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A user callback without validateStateDict: restored first and rolled back on a later failure. */
class Counter implements Callback {
  count = 0;
  constructor(readonly stateKey: string) {}
  stateDict() {
    return { count: this.count };
  }
  loadStateDict(state: unknown) {
    if (typeof state !== "object" || state === null || Object.keys(state).join() !== "count") throw new TypeError("expected { count }");
    const count = (state as { count: unknown }).count;
    if (typeof count !== "number") throw new TypeError("count must be a number");
    this.count = count;
  }
}

/** Saves a checkpoint of the run right after fit() restored one (onFitStart runs after loading). */
class Probe implements Callback {
  captured: Uint8Array | null = null;
  constructor(private readonly path: string) {}
  async onFitStart(trainer: Trainer) {
    await trainer.saveCheckpoint(this.path);
    this.captured = readFileSync(this.path);
  }
}

/**
 * This process's CPU time in ms: the bound on a case's work. Wall time is not, since CI runs every
 * package's tests at once on two cores and a case may wait many seconds for a core.
 */
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** Fails a case whose loop runs longer than any valid checkpoint allows. */
class Watchdog implements Callback {
  private epochs = 0;
  private batches = 0;
  private started = 0;
  reset() {
    [this.epochs, this.batches, this.started] = [0, 0, cpuMs()];
  }
  private check() {
    if (this.epochs > 20 || this.batches > 40 || cpuMs() - this.started > 10_000)
      throw new Error(`hang: ${this.epochs} epochs, ${this.batches} batches, ${(cpuMs() - this.started).toFixed(0)} ms of CPU time`);
  }
  onTrainEpochStart() {
    this.epochs++;
    this.check();
  }
  onTrainBatchEnd() {
    this.batches++;
    this.check();
  }
}

const SEED = 20250613;
const JUNK: Json[] = [
  -1,
  0,
  0.5,
  1.5,
  -0.5,
  2 ** 53,
  1e308,
  -1e308,
  "abc",
  "NaN",
  "Infinity",
  "__proto__",
  "constructor",
  "F32",
  "I32",
  "",
  null,
  true,
  [],
  {},
  [0, 0],
  [-8, 0],
  [0, 4],
  [0.5, 4.5],
  ["a"],
  [1, 2, 3, 4],
  { polluted: true },
];
const junk: fc.Arbitrary<Json> = fc.oneof(fc.constantFrom(...JUNK), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>);
const newKey = fc.constantFrom("__proto__", "constructor", "prototype", "extra", "polluted", "0", "lr");

type Path = (string | number)[];
function paths(value: Json, prefix: Path = [], out: Path[] = []): Path[] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (value !== null && typeof value === "object") for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  return out;
}

interface TreeEdit {
  readonly at: number;
  readonly op: "set" | "delete" | "add";
  readonly key: string;
  readonly value: Json;
}
const treeEdit: fc.Arbitrary<TreeEdit> = fc.record({ at: fc.nat(), op: fc.constantFrom("set", "delete", "add"), key: newKey, value: junk });

/** Applies one edit to a deep copy of `root`: replace or delete a value below the root, or add a key anywhere (an own "__proto__" too). */
function edit(root: Json, { at, op, key, value }: TreeEdit): Json {
  const copy = JSON.parse(JSON.stringify(root)) as Json;
  const all = paths(copy);
  const path = op === "add" ? all[at % all.length]! : all.slice(1)[at % (all.length - 1)]!;
  if (path.length === 0) {
    Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true });
    return copy;
  }
  const parent = path.slice(0, -1).reduce<Json>((node, k) => (node as Record<string, Json>)[k]!, copy) as Record<string | number, Json> | Json[];
  const last = path.at(-1)!;
  if (op === "set") (parent as Record<string | number, Json>)[last] = value;
  else if (op === "delete") Array.isArray(parent) ? parent.splice(last as number, 1) : delete parent[last];
  else {
    const target = (parent as Record<string | number, Json>)[last];
    if (Array.isArray(target)) target.push(value);
    else if (target !== null && typeof target === "object") Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
    else (parent as Record<string | number, Json>)[last] = value;
  }
  return copy;
}

let dir: string;
let base: Uint8Array;
let trainer: Trainer;
let model: ResumableClassifier;
let probe: Probe;
let watchdog: Watchdog;
const train = () => new DataLoader(blobs(32, 5), { batchSize: 8, shuffle: true, seed: 5 });
const outcomes: Record<string, { rejected: number; accepted: number }> = {};
const protoNames = Object.getOwnPropertyNames(Object.prototype).sort().join();

const callbacksFor = (ckpts: string) => [
  new ModelCheckpoint({ dirpath: ckpts, saveTopK: 2 }),
  new EarlyStopping({ monitor: "train_loss", patience: 100 }),
  new Counter("first"),
  new Counter("second"),
];

beforeAll(async () => {
  // Memory-backed where there is one: every case writes two checkpoints, and fsync on a shared disk dominates.
  dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "nbit-fuzz-"));
  const ckpts = join(dir, "ckpts");
  // The file: 2 epochs of 4 batches in 16-mixed (scaler), Adam with a per-step StepLR.
  const source = new Trainer(quiet({ precision: "16-mixed", maxEpochs: 2, seed: 1, callbacks: callbacksFor(ckpts) }));
  const sourceModel = source.initModule(() => new ResumableClassifier("adam", true));
  await source.fit(sourceModel, new DataLoader(blobs(32), { batchSize: 8, shuffle: true, seed: 1 }));
  (source.callbacks[2] as Counter).count = 3;
  (source.callbacks[3] as Counter).count = 4;
  await source.saveCheckpoint(join(dir, "base.safetensors"));
  base = readFileSync(join(dir, "base.safetensors"));
  // The run that loads: other data and seed; no epoch limit, so only validated step counts end it.
  probe = new Probe(join(dir, "probe.safetensors"));
  watchdog = new Watchdog();
  trainer = new Trainer(quiet({ precision: "16-mixed", maxEpochs: -1, maxSteps: 9, seed: 2, callbacks: [...callbacksFor(ckpts), probe, watchdog] }));
  model = trainer.initModule(() => new ResumableClassifier("adam", true));
  await trainer.fit(model, train());
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  console.info(`checkpoint fuzz (seed ${SEED}): ${JSON.stringify(outcomes)}`);
});

async function snapshot(): Promise<Buffer> {
  const path = join(dir, "snapshot.safetensors");
  await trainer.saveCheckpoint(path);
  return readFileSync(path);
}

/** What an accepted file must have put in place: every tensor, and every metadata field the run restores. */
function expectRestored(input: Uint8Array, captured: Uint8Array) {
  const a = decodeSafetensors(input);
  const b = decodeSafetensors(captured);
  expect(Object.keys(b.tensors).sort()).toEqual(Object.keys(a.tensors).sort());
  for (const name of Object.keys(a.tensors)) {
    const [x, y] = [a.tensors[name]!, b.tensors[name]!];
    expect([y.dtype, y.shape]).toEqual([x.dtype, x.shape]);
    expect(Buffer.from(y.data.buffer).equals(Buffer.from(x.data.buffer))).toBe(true);
  }
  const [m, n] = [JSON.parse(a.metadata.nbit!), JSON.parse(b.metadata.nbit!)];
  for (const field of ["format", "precision", "loop", "scheduler", "plugin", "rng"]) expect(n[field]).toEqual(m[field]);
  // The learning rate is the scheduler's: restoring the scheduler sets it from baseLrs and lastEpoch.
  const withoutLr = (groups: Record<string, unknown>[]) => groups.map(({ lr: _, ...rest }) => rest);
  expect(withoutLr(n.optimizer.paramGroups)).toEqual(withoutLr(m.optimizer.paramGroups));
  expect(n.optimizer.steps).toEqual(m.optimizer.steps);
  expect(n.optimizer.scalars).toEqual(m.optimizer.scalars);
  for (const key of Object.keys(n.callbacks)) if (Object.hasOwn(m.callbacks, key)) expect(n.callbacks[key]).toEqual(m.callbacks[key]);
}

let caseIndex = 0;
async function check(kind: string, bytes: Uint8Array): Promise<void> {
  const path = join(dir, `case-${caseIndex++ % 4}.safetensors`);
  writeFileSync(path, bytes);
  const before = await snapshot();
  probe.captured = null;
  watchdog.reset();
  const started = cpuMs();
  const error = await trainer.fit(model, train(), undefined, { ckptPath: path }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(cpuMs() - started).toBeLessThan(10_000);
  expect(Object.getOwnPropertyNames(Object.prototype).sort().join()).toBe(protoNames);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getPrototypeOf(trainer.callbacks[0])).toBe(ModelCheckpoint.prototype);
  const tally = (outcomes[kind] ??= { rejected: 0, accepted: 0 });
  if (probe.captured === null) {
    tally.rejected++;
    expect(error).toBeInstanceOf(CheckpointError);
    expect((await snapshot()).equals(before)).toBe(true);
  } else {
    tally.accepted++;
    if (error !== null) expect(error).toBeInstanceOf(NbitError);
    expectRestored(bytes, probe.captured);
  }
}

const runs = async <T>(kind: string, arbitrary: fc.Arbitrary<T>, mutate: (value: T) => Uint8Array, numRuns: number) =>
  fc.assert(
    fc.asyncProperty(arbitrary, (value) => check(kind, mutate(value))),
    { seed: SEED, numRuns, endOnFailure: true },
  );

describe("checkpoint fuzz", () => {
  it("bit flips and overwritten bytes anywhere: rejected unless nothing changed, never partially applied", async () => {
    const bits = base.length * 8;
    await runs(
      "bit flips",
      fc.uniqueArray(fc.nat({ max: bits - 1 }), { minLength: 1, maxLength: 3 }),
      (flips) => {
        const bytes = Uint8Array.from(base);
        for (const b of flips) bytes[b >> 3]! ^= 1 << (b & 7);
        return bytes;
      },
      800,
    );
    await runs(
      "byte writes",
      fc.array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }),
      (writes) => {
        const bytes = Uint8Array.from(base);
        for (const [at, v] of writes) bytes[at] = v;
        return bytes;
      },
      300,
    );
    // Every single-bit flip changes a checksummed byte, so none of them may load.
    expect(outcomes["bit flips"]!.accepted).toBe(0);
  });

  it("truncations", async () => {
    await runs("truncations", fc.nat({ max: base.length - 1 }), (n) => base.subarray(0, n), 200);
    expect(outcomes.truncations!.accepted).toBe(0);
  });

  it("crafted headers: entries, offsets, dtypes, metadata values and prototype keys", async () => {
    await runs("crafted headers", treeEdit, (e) => withHeader(base, (h) => JSON.stringify(edit(h as Json, e))), 700);
    // Two tensors of one size trade places: the header stays valid, the checksums do not.
    const { tensors } = readSafetensorsIndependently(base);
    const pairs = tensors.flatMap((a, i) => tensors.slice(i + 1).flatMap((b) => (a.end - a.begin === b.end - b.begin ? [[a.name, b.name] as const] : [])));
    await runs(
      "swapped tensors",
      fc.constantFrom(...pairs),
      ([a, b]) =>
        withHeader(base, (h) => {
          const [ea, eb] = [h[a] as { data_offsets: number[] }, h[b] as { data_offsets: number[] }];
          [ea.data_offsets, eb.data_offsets] = [eb.data_offsets, ea.data_offsets];
        }),
      pairs.length,
    );
    expect(outcomes["swapped tensors"]!.accepted).toBe(0);
  });

  it("crafted metadata, re-signed so the schema must reject it, or not re-signed", async () => {
    const meta = JSON.parse(decodeSafetensors(base).metadata.nbit!) as Json;
    await runs("crafted metadata (re-signed)", treeEdit, (e) => withMeta(base, () => JSON.stringify(edit(meta, e))), 900);
    // An edit that leaves the text as it was (a value set to itself) is no change at all.
    const changes = treeEdit.filter((e) => JSON.stringify(edit(meta, e)) !== JSON.stringify(meta));
    await runs("crafted metadata (unsigned)", changes, (e) => withMeta(base, () => JSON.stringify(edit(meta, e)), false), 100);
    expect(outcomes["crafted metadata (unsigned)"]!.accepted).toBe(0);
  });

  it("new weights with their checksums re-signed load whole", async () => {
    const read = readSafetensorsIndependently(base);
    const dataStart = 8 + read.headerLength;
    await runs(
      "re-signed tensor data",
      fc.tuple(fc.nat(), fc.nat(), fc.nat({ max: 255 })),
      ([t, at, v]) => {
        const tensor = read.tensors[t % read.tensors.length]!;
        const bytes = Uint8Array.from(base);
        bytes[dataStart + tensor.begin + (at % (tensor.end - tensor.begin))] = v;
        return withHeader(bytes, (h) => {
          const entry = readSafetensorsIndependently(bytes).tensors.find((x) => x.name === tensor.name)!;
          (h.__metadata__ as Record<string, string>)[`sha256:${tensor.name}`] = sha256Hex(entry.bytes);
        });
      },
      60,
    );
  });
});
