import { createHash } from "node:crypto";
import { NbitError } from "../errors.js";
import type { Generator } from "../engine/random.js";
import type { Module } from "../nn/module.js";
import { checkGradScalerState } from "../optim/grad-scaler-checks.js";
import type { Optimizer, OptimizerStateDict, SerializedTensor } from "../optim/optimizer.js";
import type { PrecisionPlugin, PrecisionPluginState } from "../precision/plugins.js";
import { checkInteger, describe, FORBIDDEN_KEYS, InvalidArgumentError, isPlainObject } from "../validation.js";
import type { Callback } from "./callbacks.js";
import { CheckpointError, encodeSafetensors, readSafetensors, writeFileAtomic, type StoredTensor } from "./safetensors.js";
import type { LRScheduler } from "./schedulers.js";

/**
 * Checkpoint files, after Lightning's checkpoint connector: what a training run saves, the
 * schema and checksums a file must pass, and a restore that applies all of it or none of it.
 *
 * A checkpoint is a standard safetensors file. Weights are `model.<name>` in their own dtypes,
 * optimizer state `optimizer.<param index>.<name>`. `__metadata__` (string values only, as the
 * format requires) holds `nbit`, the JSON of everything else, and a SHA-256 per tensor and for
 * `nbit` (`sha256:<tensor name>`, `sha256:nbit`), so any changed byte is caught and named.
 */
export const CHECKPOINT_FORMAT = 2;

/** What a checkpoint saves and restores besides the loop position. */
export interface CheckpointTargets {
  readonly module: Module;
  readonly optimizer: Optimizer<{ lr: number }> | null;
  readonly scheduler: LRScheduler | null;
  readonly plugin: PrecisionPlugin;
  readonly callbacks: readonly Callback[];
  readonly generator: Generator;
}

/** Where a resumed fit continues: the next batch to train and the step counters. */
export interface LoopPosition {
  readonly epoch: number;
  readonly batch: number;
  readonly globalStep: number;
  /** Optimizer steps the gradient scaler skipped so far (counted in globalStep). */
  readonly skippedSteps: number;
}

interface SavedOptimizer {
  readonly paramGroups: OptimizerStateDict["paramGroups"];
  readonly steps: OptimizerStateDict["steps"];
  readonly scalars: Record<string, number>;
  /** Names of each parameter's state tensors, keyed by parameter index. */
  readonly stateNames: Record<string, string[]>;
}

interface CheckpointMeta {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly precision: string;
  readonly loop: LoopPosition;
  readonly optimizer: SavedOptimizer | null;
  readonly scheduler: unknown;
  readonly plugin: PrecisionPluginState;
  readonly callbacks: Record<string, unknown>;
  readonly rng: number[];
}

const META_KEY = "nbit";
const CHECKSUM = "sha256:";
const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");
const bytesOf = (data: StoredTensor["data"]): Uint8Array => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

const callbackKey = (c: Callback): string => c.stateKey ?? c.constructor.name;

/** JSON of the metadata; refuses what could not be read back (NaN, Infinity, prototype keys). */
function stringifyMeta(meta: CheckpointMeta, path: string): string {
  return JSON.stringify(meta, (key: string, value: unknown) => {
    if (FORBIDDEN_KEYS.has(key)) throw new CheckpointError(path, `cannot be saved: the state uses the reserved key ${JSON.stringify(key)}`);
    if (typeof value === "number" && !Number.isFinite(value))
      throw new CheckpointError(path, `cannot be saved: state field ${JSON.stringify(key)} is ${value}; JSON holds finite numbers only`);
    return value;
  });
}

/** Writes the module's weights and the whole training state as one safetensors file, atomically. */
export async function saveCheckpoint(path: string, targets: CheckpointTargets, loop: LoopPosition): Promise<void> {
  const tensors: Record<string, StoredTensor> = Object.create(null);
  for (const [name, p] of targets.module.namedStateTensors()) tensors[`model.${name}`] = { dtype: p.dtype, shape: [...p.shape], data: await p.toHost() };
  let optimizer: SavedOptimizer | null = null;
  if (targets.optimizer) {
    const { state, steps, paramGroups, scalars } = await targets.optimizer.stateDict();
    const stateNames: Record<string, string[]> = {};
    for (const [i, entries] of Object.entries(state)) {
      stateNames[i] = Object.keys(entries);
      for (const [k, t] of Object.entries(entries)) tensors[`optimizer.${i}.${k}`] = t;
    }
    optimizer = { paramGroups, steps, scalars: scalars ?? {}, stateNames };
  }
  const callbacks: Record<string, unknown> = {};
  for (const c of targets.callbacks) {
    if (!c.stateDict) continue;
    const key = callbackKey(c);
    if (Object.hasOwn(callbacks, key)) throw new CheckpointError(path, `cannot be saved: two callbacks share the state key ${JSON.stringify(key)}; give one a distinct stateKey`);
    callbacks[key] = c.stateDict();
  }
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT,
    precision: targets.plugin.precision,
    loop: { epoch: loop.epoch, batch: loop.batch, globalStep: loop.globalStep, skippedSteps: loop.skippedSteps },
    optimizer,
    scheduler: targets.scheduler?.stateDict() ?? null,
    plugin: targets.plugin.stateDict(),
    callbacks,
    rng: targets.generator.getState(),
  };
  const json = stringifyMeta(meta, path);
  const metadata: Record<string, string> = { [META_KEY]: json, [`${CHECKSUM}${META_KEY}`]: sha256(new TextEncoder().encode(json)) };
  for (const name of Object.keys(tensors)) metadata[`${CHECKSUM}${name}`] = sha256(bytesOf(tensors[name]!.data));
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** An object with exactly `keys` (for the checkpoint's own records, which nbit writes whole). */
function record(where: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  const field = (key: string) => `metadata field "${where ? `${where}.` : ""}${key}"`;
  if (!isPlainObject(value)) throw new InvalidArgumentError(where ? `metadata field "${where}"` : "metadata", `an object with ${keys.join(", ")}`, value);
  for (const key of Object.keys(value)) if (!keys.includes(key)) throw new InvalidArgumentError(field(key), "absent (unknown field)", value[key]);
  for (const key of keys) if (!Object.hasOwn(value, key)) throw new InvalidArgumentError(field(key), "present", undefined);
  return value;
}

/** Parses the metadata JSON, refusing prototype keys anywhere in it. */
function parseMetaJson(text: string, fail: (detail: string) => never): unknown {
  let forbidden: string | null = null;
  try {
    return JSON.parse(text, (key: string, value: unknown) => {
      if (FORBIDDEN_KEYS.has(key)) {
        forbidden = key;
        throw new Error(key);
      }
      return value;
    });
  } catch {
    return fail(forbidden !== null ? `metadata uses the reserved key ${JSON.stringify(forbidden)}` : "metadata is not valid JSON (the file is corrupt)");
  }
}

interface RestorePlan {
  readonly apply: () => void;
  readonly loop: LoopPosition;
}

/**
 * Reads the checkpoint at `path` and checks all of it (structure, checksums, schema, and fit with
 * the module, optimizer, scheduler, precision plugin and callbacks) before changing anything; then
 * restores everything and returns the loop position. On any problem it throws a CheckpointError
 * naming the field or tensor, and nothing has changed.
 */
export function loadCheckpoint(path: string, targets: CheckpointTargets): LoopPosition {
  const plan = planRestore(path, targets);
  plan.apply();
  return plan.loop;
}

function planRestore(path: string, targets: CheckpointTargets): RestorePlan {
  const fail = (detail: string, cause?: unknown): never => {
    throw new CheckpointError(path, detail, cause === undefined ? undefined : { cause });
  };
  // Errors of the components' validators become CheckpointErrors that keep their message.
  const checked = <T>(fn: () => T, who = "a component"): T => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      return fail(e instanceof NbitError ? e.message : `${who} rejected its state: ${String((e as Error)?.message ?? e)}`, e);
    }
  };

  const { tensors, metadata } = readSafetensors(path);
  if (!Object.hasOwn(metadata, META_KEY)) fail("has no nbit metadata (not written by Trainer.saveCheckpoint)");
  const text = metadata[META_KEY]!;
  const raw = parseMetaJson(text, fail);
  if (!isPlainObject(raw)) return fail(`metadata is ${describe(raw)}, not an object`);
  if (raw.format !== CHECKPOINT_FORMAT) fail(`format ${describe(raw.format)} is not supported (expected ${CHECKPOINT_FORMAT})`);

  // Checksums first: a corrupt file is reported as corrupt, naming what changed.
  for (const key of Object.keys(metadata)) {
    if (key === META_KEY) continue;
    const subject = key.startsWith(CHECKSUM) ? key.slice(CHECKSUM.length) : null;
    if (subject === null) fail(`has unknown metadata key ${JSON.stringify(key)}`);
    else if (subject !== META_KEY && !Object.hasOwn(tensors, subject)) fail(`has a checksum for tensor ${JSON.stringify(subject)}, which is not in the file`);
  }
  const verify = (subject: string, what: string, bytes: Uint8Array) => {
    const stored = Object.hasOwn(metadata, `${CHECKSUM}${subject}`) ? metadata[`${CHECKSUM}${subject}`] : undefined;
    if (stored === undefined) fail(`${what} has no sha256 checksum`);
    if (sha256(bytes) !== stored) fail(`${what} does not match its sha256 checksum (the file is corrupt)`);
  };
  verify(META_KEY, "the nbit metadata", new TextEncoder().encode(text));
  for (const name of Object.keys(tensors)) verify(name, `tensor "${name}"`, bytesOf(tensors[name]!.data));

  const meta = checked(() => record("", raw, ["format", "precision", "loop", "optimizer", "scheduler", "plugin", "callbacks", "rng"]));
  const used = new Set<string>();

  // Precision first: a checkpoint of another precision is a mismatch, not a corrupt file.
  const precision = targets.plugin.precision;
  if (meta.precision !== precision) fail(`was written with precision ${describe(meta.precision)}, this run uses "${precision}"`);

  // Weights: every parameter and buffer, in its own dtype and shape.
  const modelState: Record<string, StoredTensor> = Object.create(null);
  for (const [name, p] of targets.module.namedStateTensors()) {
    const key = `model.${name}`;
    const t = Object.hasOwn(tensors, key) ? tensors[key] : undefined;
    const expected = `${p.dtype}[${p.shape.join(", ")}]`;
    if (!t) return fail(`tensor "${key}" is missing; expected ${expected}`);
    const found = `${t.dtype}[${t.shape.join(", ")}]`;
    if (found !== expected) fail(`tensor "${key}" expected ${expected}, found ${found}`);
    modelState[name] = t;
    used.add(key);
  }
  const unexpected = Object.keys(tensors).filter((k) => k.startsWith("model.") && !used.has(k));
  if (unexpected.length) fail(`has tensors this module does not: ${unexpected.join(", ")}`);

  const loop = checked((): LoopPosition => {
    const l = record("loop", meta.loop, ["epoch", "batch", "globalStep", "skippedSteps"]);
    const globalStep = checkInteger('metadata field "loop.globalStep"', l.globalStep, 0);
    return {
      epoch: checkInteger('metadata field "loop.epoch"', l.epoch, 0),
      batch: checkInteger('metadata field "loop.batch"', l.batch, 0),
      globalStep,
      skippedSteps: checkInteger('metadata field "loop.skippedSteps"', l.skippedSteps, 0, globalStep),
    };
  });

  const rng = meta.rng;
  if (!Array.isArray(rng) || rng.length !== 4 || !rng.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff) || rng.every((v) => v === 0))
    fail(`metadata field "rng" must be 4 integers in [0, 2^32) that are not all 0; got ${JSON.stringify(rng)}`);

  // Optimizer: the saved dict is rebuilt from the metadata and the named tensors, then the
  // optimizer validates it against its own groups, rules, state names and shapes.
  let optimizerState: OptimizerStateDict | null = null;
  if ((meta.optimizer === null) !== (targets.optimizer === null))
    fail(meta.optimizer === null ? "has no optimizer state (it was saved outside fit), but this run has an optimizer" : "has optimizer state, but this run has no optimizer");
  if (meta.optimizer !== null && targets.optimizer) {
    const optimizer = targets.optimizer;
    optimizerState = checked(() => {
      const o = record("optimizer", meta.optimizer, ["paramGroups", "steps", "scalars", "stateNames"]);
      if (!isPlainObject(o.stateNames)) throw new InvalidArgumentError('metadata field "optimizer.stateNames"', "an object of name lists", o.stateNames);
      const state: Record<string, Record<string, SerializedTensor>> = Object.create(null);
      for (const [index, names] of Object.entries(o.stateNames)) {
        if (!Array.isArray(names) || !names.every((n) => typeof n === "string"))
          throw new InvalidArgumentError(`metadata field "optimizer.stateNames.${index}"`, "a list of names", names);
        const entries: Record<string, SerializedTensor> = Object.create(null);
        for (const n of names as string[]) {
          const key = `optimizer.${index}.${n}`;
          if (!Object.hasOwn(tensors, key)) fail(`tensor "${key}" is missing`);
          if (used.has(key)) fail(`tensor "${key}" is named twice in the optimizer state`);
          used.add(key);
          entries[n] = tensors[key]!;
        }
        state[index] = entries;
      }
      const dict = { paramGroups: o.paramGroups, steps: o.steps, scalars: o.scalars, state } as unknown as OptimizerStateDict;
      optimizer.validateStateDict(dict);
      return dict;
    });
  }
  const stray = Object.keys(tensors).filter((k) => !used.has(k));
  if (stray.length) fail(`has tensors that neither the module nor the optimizer state names: ${stray.join(", ")}`);

  if ((meta.scheduler === null) !== (targets.scheduler === null))
    fail(meta.scheduler === null ? "has no learning-rate scheduler state, but this run configures a scheduler" : "has learning-rate scheduler state, but this run configures no scheduler");
  const schedulerState = targets.scheduler && checked(() => targets.scheduler!.validateStateDict(meta.scheduler));

  const pluginState = checked((): PrecisionPluginState => {
    const live = targets.plugin.stateDict();
    const keys = live.scaler ? ["precision", "scaler"] : ["precision"];
    const saved = record("plugin", meta.plugin, keys);
    if (saved.precision !== precision) fail(`metadata field "plugin.precision" is ${describe(saved.precision)}, this run uses "${precision}"`);
    return live.scaler ? { precision, scaler: checkGradScalerState(saved.scaler, 'metadata field "plugin.scaler"') } : { precision };
  });

  // Callbacks: those that can validate do so now; the others are restored first and rolled back on failure.
  const savedCallbacks = checked(() => {
    if (!isPlainObject(meta.callbacks)) throw new InvalidArgumentError('metadata field "callbacks"', "an object keyed by callback state key", meta.callbacks);
    return meta.callbacks;
  });
  const validated: [Callback, unknown][] = [];
  const unvalidated: [Callback, unknown][] = [];
  for (const c of targets.callbacks) {
    const key = callbackKey(c);
    if (!c.loadStateDict || !c.stateDict || !Object.hasOwn(savedCallbacks, key)) continue;
    const state = savedCallbacks[key];
    if (c.validateStateDict) {
      checked(() => c.validateStateDict!(state), `callback ${JSON.stringify(key)}`);
      validated.push([c, state]);
    } else unvalidated.push([c, state]);
  }

  const apply = () => {
    const undo: (() => void)[] = [];
    try {
      for (const [c, state] of unvalidated) {
        const before = c.stateDict!();
        checked(() => c.loadStateDict!(state), `callback ${JSON.stringify(callbackKey(c))}`);
        undo.push(() => c.loadStateDict!(before));
      }
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
    // Everything below was validated above and cannot fail.
    targets.module.loadStateDict(modelState);
    if (optimizerState) targets.optimizer!.loadStateDict(optimizerState);
    if (schedulerState) targets.scheduler!.loadStateDict(schedulerState);
    targets.plugin.loadStateDict(pluginState);
    for (const [c, state] of validated) c.loadStateDict!(state);
    targets.generator.setState(rng as number[]);
  };
  return { apply, loop };
}
