import { createHash } from "node:crypto";
import { NbitError } from "../errors.js";
import type { Generator } from "../engine/random.js";
import type { Module } from "../nn/module.js";
import { Sequential } from "../nn/layers.js";
import { checkGradScalerState } from "../optim/grad-scaler-checks.js";
import type { Optimizer, OptimizerStateDict, SerializedTensor } from "../optim/optimizer.js";
import type { PrecisionPlugin, PrecisionPluginState } from "../precision/plugins.js";
import { checkInteger, describe, FORBIDDEN_KEYS, InvalidArgumentError, isPlainObject } from "../validation.js";
import { checkHyperparameters, type Hyperparameters } from "./hparams.js";
import type { Callback } from "./callbacks.js";
import { CheckpointError, encodeSafetensors, readSafetensors, writeFileAtomic, type StoredTensor } from "./safetensors.js";
import type { LRScheduler } from "./schedulers.js";

/**
 * Checkpoint files, after Lightning's checkpoint connector: what a training run saves, the
 * schema and checksums a file must pass, and a restore that applies all of it or none of it.
 *
 * A checkpoint is a standard safetensors file. Weights are named as PyTorch's state_dict names
 * them (`module.stateDict()`: `net.0.weight`), in their own dtypes; optimizer state as Lightning's
 * `optimizer_states.0.state.<param index>.<name>`, with PyTorch's names (`exp_avg`, `momentum_buffer`).
 * `__metadata__` (string values only, as the format requires) holds `nbit`, the JSON of everything
 * else (hyperparameters included), and a SHA-256 per tensor and for `nbit` (`sha256:<tensor name>`,
 * `sha256:nbit`), so any changed byte is caught and named.
 *
 * Format 3 (this one) replaced format 2's `model.<name>` / `optimizer.<index>.<name>` names (with a
 * Sequential's children under `layers.<i>`) and added `hparams`. Format-2 files are still read, by
 * their old names; format 1 is refused with a CheckpointError that says so.
 */
export const CHECKPOINT_FORMAT = 3;
/** The previous format, still read. */
const FORMAT_2 = 2;

/** Tensor names per format: the module's weights and the optimizer's state tensors. */
interface Naming {
  /** Prefix of every optimizer state tensor. */
  readonly optimizerRoot: string;
  readonly optimizerKey: (index: string, name: string) => string;
  /** Names of the module's state dict entries in the file. */
  readonly weightKeys: (module: Module) => Map<string, string>;
}

const NAMING: Record<number, Naming> = {
  [CHECKPOINT_FORMAT]: {
    optimizerRoot: "optimizer_states.",
    // nbit's camelCase state names in PyTorch's snake_case: expAvg -> exp_avg.
    optimizerKey: (index, name) => `optimizer_states.0.state.${index}.${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`,
    weightKeys: (module) => new Map(Object.keys(module.stateDict()).map((n) => [n, n])),
  },
  [FORMAT_2]: {
    optimizerRoot: "optimizer.",
    optimizerKey: (index, name) => `optimizer.${index}.${name}`,
    weightKeys: (module) => {
      // Format 2 named a Sequential's children "layers.<i>" and prefixed every weight with "model.".
      const prefixes = new Map<string, string>();
      const walk = (m: Module, now: string, then: string) => {
        prefixes.set(now, then);
        for (const [name, child] of m.namedChildren()) walk(child, `${now}${name}.`, `${then}${m instanceof Sequential ? `layers.${name}` : name}.`);
      };
      walk(module, "", "");
      return new Map(
        Object.keys(module.stateDict()).map((n) => {
          const prefix = [...prefixes.keys()].filter((p) => n.startsWith(p)).reduce((a, b) => (b.length > a.length ? b : a), "");
          return [n, `model.${prefixes.get(prefix)}${n.slice(prefix.length)}`];
        }),
      );
    },
  },
};
const NEW = NAMING[CHECKPOINT_FORMAT]!;

/** What a checkpoint saves and restores besides the loop position. */
export interface CheckpointTargets {
  readonly module: Module;
  readonly optimizer: Optimizer<{ lr: number }> | null;
  readonly scheduler: LRScheduler | null;
  readonly plugin: PrecisionPlugin;
  readonly callbacks: readonly Callback[];
  readonly generator: Generator;
  /** The module's saved hyperparameters (LightningModule.hparams). */
  readonly hparams?: Hyperparameters;
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
  readonly hparams: Hyperparameters;
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
  for (const [name, t] of Object.entries(targets.module.stateDict())) {
    if (name.startsWith(NEW.optimizerRoot) || name === "__metadata__")
      throw new CheckpointError(
        path,
        `cannot be saved: the module's tensor ${JSON.stringify(name)} uses a name the checkpoint reserves; rename that attribute`,
      );
    tensors[name] = { dtype: t.dtype, shape: [...t.shape], data: await t.toHost() };
  }
  let optimizer: SavedOptimizer | null = null;
  if (targets.optimizer) {
    const { state, steps, paramGroups, scalars } = await targets.optimizer.stateDict();
    const stateNames: Record<string, string[]> = {};
    for (const [i, entries] of Object.entries(state)) {
      stateNames[i] = Object.keys(entries);
      for (const [k, t] of Object.entries(entries)) tensors[NEW.optimizerKey(i, k)] = t;
    }
    optimizer = { paramGroups, steps, scalars: scalars ?? {}, stateNames };
  }
  const callbacks: Record<string, unknown> = {};
  for (const c of targets.callbacks) {
    if (!c.stateDict) continue;
    const key = callbackKey(c);
    if (Object.hasOwn(callbacks, key))
      throw new CheckpointError(path, `cannot be saved: two callbacks share the state key ${JSON.stringify(key)}; give one a distinct stateKey`);
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
    hparams: checkHyperparameters(targets.hparams ?? {}),
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
export function loadCheckpoint(path: string, targets: CheckpointTargets, { weightsOnly = false }: { weightsOnly?: boolean } = {}): LoopPosition {
  const plan = planRestore(path, targets, weightsOnly);
  plan.apply();
  return plan.loop;
}

/** A checkpoint whose structure, format, checksums, top-level schema and hyperparameters passed. */
interface OpenedCheckpoint {
  readonly tensors: Record<string, StoredTensor>;
  readonly meta: Record<string, unknown>;
  readonly hparams: Hyperparameters;
  readonly naming: Naming;
  readonly fail: (detail: string, cause?: unknown) => never;
  readonly checked: <T>(fn: () => T, who?: string) => T;
}

function openCheckpoint(path: string): OpenedCheckpoint {
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
  if (raw.format !== CHECKPOINT_FORMAT && raw.format !== FORMAT_2) {
    const older = Number.isInteger(raw.format) && (raw.format as number) >= 1 && (raw.format as number) < FORMAT_2;
    fail(
      `format ${describe(raw.format)} is not supported (expected ${CHECKPOINT_FORMAT}, or ${FORMAT_2}, which is still read)` +
        (older ? ": it was written by an older nbit whose layout this version no longer reads; resume it with the nbit version that wrote it" : ""),
    );
  }
  const format = raw.format as number;

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

  const fields = ["format", "precision", "loop", "optimizer", "scheduler", "plugin", "callbacks", "rng"];
  const meta = checked(() => record("", raw, format === FORMAT_2 ? fields : [...fields, "hparams"]));
  const hparams = format === FORMAT_2 ? checkHyperparameters({}) : checked(() => checkHyperparameters(meta.hparams, 'metadata field "hparams"'));
  return { tensors, meta, hparams, naming: NAMING[format]!, fail, checked };
}

/** The module's weights in the file, checked against `module.stateDict()` by name and shape (and dtype when `sameDType`). */
function moduleWeights(opened: OpenedCheckpoint, module: Module, sameDType: boolean): { weights: Record<string, StoredTensor>; used: Set<string> } {
  const { tensors, fail, naming } = opened;
  const weights: Record<string, StoredTensor> = Object.create(null);
  const used = new Set<string>();
  const keys = naming.weightKeys(module);
  for (const [name, p] of Object.entries(module.stateDict())) {
    const key = keys.get(name)!;
    const t = Object.hasOwn(tensors, key) ? tensors[key] : undefined;
    const expected = `${p.dtype}[${p.shape.join(", ")}]`;
    if (!t) return fail(`tensor "${key}" is missing; expected ${expected}`);
    const found = `${t.dtype}[${t.shape.join(", ")}]`;
    if (sameDType ? found !== expected : t.shape.join(",") !== p.shape.join(",")) fail(`tensor "${key}" expected ${expected}, found ${found}`);
    weights[name] = t;
    used.add(key);
  }
  const unexpected = Object.keys(tensors).filter((k) => !k.startsWith(naming.optimizerRoot) && !used.has(k));
  if (unexpected.length) fail(`has tensors this module does not: ${unexpected.join(", ")}`);
  return { weights, used };
}

/**
 * Verifies the checkpoint at `path` whole, then returns its hyperparameters and, for `module`,
 * its weights (checked by name and shape; loadStateDict casts them to the module's dtypes).
 * Optimizer and loop state are left unread, as Lightning's load_from_checkpoint does.
 */
export function readModuleCheckpoint(path: string): { hparams: Hyperparameters; weightsFor: (module: Module) => Record<string, StoredTensor> } {
  const opened = openCheckpoint(path);
  return { hparams: opened.hparams, weightsFor: (module) => moduleWeights(opened, module, false).weights };
}

/** With `weightsOnly` (validate/test from a checkpoint), only the module's weights are restored. */
function planRestore(path: string, targets: CheckpointTargets, weightsOnly: boolean): RestorePlan {
  const opened = openCheckpoint(path);
  const { tensors, meta, fail, checked } = opened;

  // Precision first: a checkpoint of another precision is a mismatch, not a corrupt file.
  const precision = targets.plugin.precision;
  if (meta.precision !== precision) fail(`was written with precision ${describe(meta.precision)}, this run uses "${precision}"`);

  // Weights: every entry of the module's state dict, in its own dtype and shape.
  const { weights: modelState, used } = moduleWeights(opened, targets.module, true);

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
  if (weightsOnly) return { apply: () => targets.module.loadStateDict(modelState), loop };

  // Optimizer: the saved dict is rebuilt from the metadata and the named tensors, then the
  // optimizer validates it against its own groups, rules, state names and shapes.
  let optimizerState: OptimizerStateDict | null = null;
  if ((meta.optimizer === null) !== (targets.optimizer === null))
    fail(
      meta.optimizer === null
        ? "has no optimizer state (it was saved outside fit), but this run has an optimizer"
        : "has optimizer state, but this run has no optimizer",
    );
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
          const key = opened.naming.optimizerKey(index, n);
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
    fail(
      meta.scheduler === null
        ? "has no learning-rate scheduler state, but this run configures a scheduler"
        : "has learning-rate scheduler state, but this run configures no scheduler",
    );
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
