import { allocHost, DTYPES, isFloatDType, isHalfDType, type DType, type FloatDType, type HostArray } from "../dtype.js";
import { NbitError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import { LazyNode } from "../engine/node.js";
import { heldBytes, type StorageMap } from "../engine/memory.js";
import { stepScalar } from "../engine/step-scalars.js";
import { Tensor, where } from "../engine/tensor.js";
import type { Parameter } from "../nn/module.js";
import { checkInteger, checkNumber, describe, InvalidArgumentError, isPlainObject } from "../validation.js";

export interface SerializedTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

export interface OptimizerStateDict {
  readonly state: Record<number, Record<string, SerializedTensor>>;
  readonly steps: Record<number, number>;
  /** Step scalars of the last step (informational: step scalars are program inputs, never baked constants). */
  readonly scalars?: Record<string, number>;
  readonly paramGroups: readonly (Record<string, unknown> & { params: number[] })[];
}

export type ParamGroup<H> = H & { params: Parameter[] };

export interface StepOptions {
  /** A bool scalar: the update applies only where it is true (set by the gradient scaler). */
  readonly applyIf?: Tensor;
}

export interface ParamUpdate {
  readonly param: Tensor;
  readonly state: Record<string, Tensor>;
}

/** What a committed step leaves pending: nothing (shared, so a replayed step allocates no array for it). */
const NO_PARAMS: readonly Parameter[] = Object.freeze([]);

/**
 * Base of all optimizers. Updates are lazy: `step()` records new parameter and state values,
 * which the next realization computes together with the forward and backward pass. Math for
 * 16-bit parameters runs in float32 and rounds once, back to the parameter's dtype.
 */
export abstract class Optimizer<H extends { lr: number }> {
  readonly paramGroups: ParamGroup<H>[];
  readonly state = new Map<Parameter, Record<string, Tensor>>();
  /** Steps taken per parameter (PyTorch's state["step"]). */
  readonly steps = new Map<Parameter, number>();
  private pending: readonly Parameter[] = [];
  private scalars = new Map<string, Tensor>();
  private currentScalars = new Map<string, number>();
  /** The group and parameter whose update `step()` is recording (step scalars remember them). */
  private updating: { group: H; param: Parameter } | null = null;
  // Method syntax keeps Optimizer<AdamOptions> assignable to Optimizer<{ lr: number }>.
  private readonly rules: { check(group: H, where: string): void };

  /**
   * `checkHyperparameters` holds every group (and every restored group) to the optimizer's rules,
   * e.g. a non-negative learning rate; it throws an InvalidArgumentError naming the field.
   */
  constructor(
    params: readonly Parameter[] | readonly (Partial<H> & { params: Parameter[] })[],
    defaults: H,
    checkHyperparameters: (group: H, where: string) => void = (g, where) => checkNumber(`${where} lr`, g.lr, { min: 0 }),
  ) {
    this.rules = { check: checkHyperparameters };
    const name = new.target.name;
    if (!Array.isArray(params) || params.length === 0)
      throw new InvalidArgumentError(`${name} params`, "a non-empty list of parameters or of parameter groups", params);
    const groups = !(params[0] instanceof Tensor) ? (params as (Partial<H> & { params: Parameter[] })[]) : [{ params: params as Parameter[] }];
    this.paramGroups = groups.map((g, i) => {
      const where = groups.length > 1 ? `${name} paramGroups[${i}]` : name;
      if (!isPlainObject(g) || !Array.isArray(g.params) || !g.params.every((p) => p instanceof Tensor))
        throw new InvalidArgumentError(`${where} params`, "a list of parameters", isPlainObject(g) ? g.params : g);
      const group = { ...defaults, ...g } as ParamGroup<H>;
      checkHyperparameters(group, where);
      return group;
    });
    const all = this.paramGroups.flatMap((g) => g.params);
    if (new Set(all).size !== all.length) throw new NbitError("INVALID_ARGUMENT", "A parameter appears in more than one parameter group");
  }

  /** True for optimizers whose update runs on the host after the gradients are computed (8-bit ones). */
  readonly updatesOnHost: boolean = false;

  /** The host update of `updatesOnHost` optimizers; gradients are computed when it is called. */
  async hostStep(): Promise<void> {
    throw new NbitError("INTERNAL", `${this.constructor.name} records its update lazily with step()`);
  }

  get params(): Parameter[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }

  /**
   * A per-step scalar (learning rate, bias correction) shared by every parameter that uses it in
   * one step. It always enters the program as an input: a scheduled value never creates a new
   * program, and graph engines cannot fold it into a narrower constant (a float32 matmul alpha).
   * `valueAt` gives the value from the group's hyperparameters and the step count, so a captured
   * step (StepCapture) can compute the next one without recording; without it the step cannot be
   * captured. It must agree with `value`.
   */
  protected scalar(name: string, value: number, dtype: DType, valueAt?: (group: H, step: number) => number): Tensor {
    const at = this.updating;
    // A scalar with a formula belongs to its group: a scheduler may move one group's lr alone.
    const key = `${name}:${dtype}:${value}:${valueAt && at ? this.paramGroups.indexOf(at.group as ParamGroup<H>) : ""}`;
    let t = this.scalars.get(key);
    if (!t) {
      const label = `${this.constructor.name} ${name}`;
      const current = `${name}:${dtype}`;
      const next =
        valueAt && at
          ? () => {
              const v = valueAt(at.group, (this.steps.get(at.param) ?? 0) + 1);
              this.currentScalars.set(current, v);
              return v;
            }
          : null;
      t = stepScalar(value, dtype, { label, next });
      this.scalars.set(key, t);
      this.currentScalars.set(current, value);
    }
    return t;
  }

  protected abstract update(param: Tensor, grad: Tensor, state: Record<string, Tensor>, group: H, step: number): ParamUpdate;
  protected abstract initState(param: Parameter): Record<string, Tensor>;

  /** Records the update of every parameter that has a gradient. */
  step(options: StepOptions = {}): void {
    noGrad(() => {
      const pending: Parameter[] = [];
      this.pending = pending;
      // A new Map, not clear(): V8 keeps a cleared Map's old table (and its entries) linked to the
      // new one, so step after step of scalars outlived young-generation collections once one table
      // was in the old generation (bench/rss.ts in @nbit/cpu).
      this.scalars = new Map();
      this.currentScalars = new Map();
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          if (!p.grad) continue;
          const step = (this.steps.get(p) ?? 0) + 1;
          const state = this.state.get(p) ?? this.initState(p);
          const opmath: FloatDType = p.dtype === "float64" ? "float64" : "float32";
          const up = (t: Tensor) => (isHalfDType(t.dtype) ? t.cast(opmath) : t);
          const widened = Object.fromEntries(Object.entries(state).map(([k, v]) => [k, up(v)]));
          this.updating = { group, param: p };
          const result = this.update(up(p), up(p.grad), widened, group, step);
          this.updating = null;
          const guard = (next: Tensor, old: Tensor) => {
            const rounded = next.cast(old.dtype);
            return options.applyIf ? where(options.applyIf, rounded, old) : rounded;
          };
          p.assign(guard(result.param, p));
          this.state.set(p, Object.fromEntries(Object.entries(result.state).map(([k, v]) => [k, guard(v, state[k] ?? v)])));
          this.steps.set(p, step);
          pending.push(p);
        }
      }
    });
  }

  /** Called once the step is computed: an update the scaler skipped does not count as a step. */
  commit(applied: boolean): void {
    if (!applied) for (const p of this.pending) this.steps.set(p, this.steps.get(p)! - 1);
    this.pending = NO_PARAMS;
  }

  /**
   * Counts a step that a step capture replayed for `params` (those its program updates), as
   * `step()` would have; `commit` follows once the outcome is known.
   */
  replayedStep(params: readonly Parameter[]): void {
    for (const p of params) this.steps.set(p, (this.steps.get(p) ?? 0) + 1);
    this.pending = params;
  }

  /** Parameters and state tensors: what a training step must realize. */
  tensors(): Tensor[] {
    return [...this.params, ...[...this.state.values()].flatMap((s) => Object.values(s))];
  }

  /** Bytes the optimizer state actually takes where it is held (see Module.parameterBytes), or on a backend with `storage`. */
  stateBytes(storage?: StorageMap): number {
    return [...this.state.values()].reduce(
      (n, s) => n + Object.values(s).reduce((m, t) => m + heldBytes(t, storage ?? t.node.device?.runtime.backend.capabilities.storage), 0),
      0,
    );
  }

  async stateDict(): Promise<OptimizerStateDict> {
    const index = new Map(this.params.map((p, i) => [p, i]));
    const state: Record<number, Record<string, SerializedTensor>> = {};
    const steps: Record<number, number> = {};
    for (const [p, s] of this.state) {
      const i = index.get(p)!;
      state[i] = {};
      for (const [k, t] of Object.entries(s)) state[i][k] = { dtype: t.dtype, shape: [...t.shape], data: await t.toHost() };
      steps[i] = this.steps.get(p) ?? 0;
    }
    const paramGroups = this.paramGroups.map(({ params, ...hyper }) => ({ ...hyper, params: params.map((p) => index.get(p)!) }));
    return { state, steps, paramGroups, scalars: Object.fromEntries(this.currentScalars) };
  }

  /**
   * Throws unless `loadStateDict(dict)` would accept `dict`: the same groups and parameter indices,
   * hyperparameters that pass the constructor's rules, the state names and shapes this optimizer
   * keeps, integer step counts and finite step scalars. Changes nothing.
   */
  validateStateDict(dict: unknown): void {
    this.parseStateDict(dict);
  }

  /** Restores a saved state, all of it or (when anything is invalid) none of it. */
  loadStateDict(dict: OptimizerStateDict): void {
    const { hyperparameters, state, scalars } = this.parseStateDict(dict);
    this.paramGroups.forEach((group, gi) => {
      for (const [key, value] of hyperparameters[gi]!) (group as Record<string, unknown>)[key] = Array.isArray(value) ? [...value] : value;
    });
    this.state.clear();
    this.steps.clear();
    this.currentScalars = scalars;
    for (const { param, tensors, step } of state) {
      this.state.set(param, Object.fromEntries(tensors.map(([name, t]) => [name, new Tensor(LazyNode.leaf(t.data, [...t.shape], t.dtype))])));
      this.steps.set(param, step);
    }
  }

  private parseStateDict(dict: unknown): {
    hyperparameters: Map<string, unknown>[];
    state: { param: Parameter; tensors: [string, SerializedTensor][]; step: number }[];
    scalars: Map<string, number>;
  } {
    const name = this.constructor.name;
    const invalid = (field: string, expected: string, received: unknown): never => {
      throw new InvalidArgumentError(`${name} state ${field}`, expected, received);
    };
    if (!isPlainObject(dict)) return invalid("", "an object with paramGroups, state, steps and scalars", dict);
    for (const key of Object.keys(dict))
      if (!["paramGroups", "state", "steps", "scalars"].includes(key)) invalid(`field ${JSON.stringify(key)}`, "absent (unknown field)", dict[key]);
    const { paramGroups, state, steps, scalars } = dict;
    if (!Array.isArray(paramGroups) || paramGroups.length !== this.paramGroups.length)
      throw new NbitError(
        "STATE_DICT_MISMATCH",
        `Optimizer state has ${Array.isArray(paramGroups) ? paramGroups.length : describe(paramGroups)} parameter groups, this optimizer has ${this.paramGroups.length}`,
      );
    let first = 0;
    const hyperparameters = this.paramGroups.map((group, gi) => {
      const saved: unknown = paramGroups[gi];
      if (!isPlainObject(saved)) return invalid(`paramGroups[${gi}]`, "an object", saved);
      const ids = saved.params;
      const expected = group.params.map((_, j) => first + j);
      first += expected.length;
      if (!Array.isArray(ids) || ids.length !== expected.length)
        throw new NbitError(
          "STATE_DICT_MISMATCH",
          `Parameter group ${gi} has ${Array.isArray(ids) ? ids.length : describe(ids)} parameters in the state, ${group.params.length} here`,
        );
      if (ids.some((id, j) => id !== expected[j])) invalid(`paramGroups[${gi}].params`, `the indices [${expected.join(", ")}]`, JSON.stringify(ids));
      return this.restoredHyperparameters(group, saved, `${name} state paramGroups[${gi}]`);
    });
    if (!isPlainObject(state)) return invalid("state", "an object keyed by parameter index", state);
    if (!isPlainObject(steps)) return invalid("steps", "an object keyed by parameter index", steps);
    const params = this.params;
    const restored = Object.entries(state).map(([key, entries]) => {
      const index = /^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : -1;
      const param = params[index];
      if (!param)
        throw new NbitError(
          "STATE_DICT_MISMATCH",
          `Optimizer state names parameter ${JSON.stringify(key)}, which does not exist (this optimizer has ${params.length})`,
        );
      if (!isPlainObject(entries)) return invalid(`state[${key}]`, "an object of tensors", entries);
      const expected = this.initState(param);
      const names = Object.keys(expected);
      const found = Object.keys(entries);
      if (found.length !== names.length || !found.every((n) => names.includes(n)))
        invalid(`state[${key}]`, `the tensors ${names.join(", ") || "(none)"}`, found.join(", ") || "(none)");
      const tensors = names.map((n): [string, SerializedTensor] => [n, checkSerializedTensor(entries[n], expected[n]!, `${name} state[${key}].${n}`)]);
      const step = Object.hasOwn(steps, key) ? steps[key] : undefined;
      return { param, tensors, step: checkInteger(`${name} state steps[${key}]`, step, 0) };
    });
    for (const key of Object.keys(steps))
      if (!Object.hasOwn(state, key)) invalid(`steps[${JSON.stringify(key)}]`, "absent (no state for that parameter)", steps[key]);
    const restoredScalars = new Map<string, number>();
    if (scalars !== undefined) {
      if (!isPlainObject(scalars)) return invalid("scalars", "an object of numbers", scalars);
      for (const [key, value] of Object.entries(scalars)) {
        if (!/^[A-Za-z][A-Za-z0-9]*:(float64|float32|float16|bfloat16)$/.test(key))
          invalid(`scalar ${JSON.stringify(key)}`, 'named "<name>:<float dtype>"', key);
        restoredScalars.set(key, checkNumber(`${name} state scalar ${JSON.stringify(key)}`, value));
      }
    }
    return { hyperparameters, state: restored, scalars: restoredScalars };
  }

  /** The saved hyperparameters of one group: exactly this group's keys, each of the same kind, then the constructor's rules. */
  private restoredHyperparameters(group: ParamGroup<H>, saved: Record<string, unknown>, where: string): Map<string, unknown> {
    const keys = Object.keys(group).filter((k) => k !== "params");
    for (const key of Object.keys(saved))
      if (key !== "params" && !keys.includes(key))
        throw new InvalidArgumentError(`${where} field ${JSON.stringify(key)}`, "absent (not a hyperparameter of this optimizer)", saved[key]);
    const restored = new Map<string, unknown>();
    for (const key of keys) {
      const live = (group as Record<string, unknown>)[key];
      const value = Object.hasOwn(saved, key) ? saved[key] : undefined;
      const sameKind = Array.isArray(live)
        ? Array.isArray(value) && value.length === live.length && value.every((v) => typeof v === "number")
        : typeof value === typeof live && (typeof value !== "number" || Number.isFinite(value)) && typeof value !== "object";
      if (!sameKind)
        throw new InvalidArgumentError(
          `${where} ${key}`,
          Array.isArray(live) ? `a list of ${live.length} numbers` : `a ${typeof live === "number" ? "finite number" : typeof live}`,
          value,
        );
      restored.set(key, value);
    }
    this.rules.check(Object.fromEntries(restored) as H, where);
    return restored;
  }
}

/** A saved tensor whose dtype, shape and data agree with each other and with `expected` (float state may be any float dtype). */
function checkSerializedTensor(value: unknown, expected: Tensor, where: string): SerializedTensor {
  const want = `${expected.dtype}[${expected.shape.join(", ")}]`;
  if (!isPlainObject(value)) throw new InvalidArgumentError(where, `a tensor ${want}`, value);
  const { dtype, shape, data } = value;
  const knownDType = typeof dtype === "string" && (DTYPES as readonly string[]).includes(dtype);
  const dtypeFits = knownDType && (dtype === expected.dtype || (isFloatDType(dtype as DType) && isFloatDType(expected.dtype)));
  const shapeFits = Array.isArray(shape) && shape.length === expected.shape.length && shape.every((d, i) => d === expected.shape[i]);
  const dataFits =
    knownDType &&
    ArrayBuffer.isView(data) &&
    (data as HostArray).constructor === allocHost(dtype as DType, 0).constructor &&
    (data as HostArray).length === expected.size;
  if (!dtypeFits || !shapeFits || !dataFits)
    throw new InvalidArgumentError(
      where,
      `a tensor ${want}`,
      knownDType && Array.isArray(shape) ? `${String(dtype)}[${shape.map(String).join(", ")}]${dataFits ? "" : " with mismatched data"}` : value,
    );
  return { dtype: dtype as DType, shape: [...expected.shape], data: data as HostArray };
}
