import { isHalfDType, type DType, type FloatDType, type HostArray } from "../dtype.js";
import { NbitError, ShapeError } from "../errors.js";
import { noGrad } from "../engine/context.js";
import { LazyNode } from "../engine/node.js";
import { sameShape } from "../engine/primitives.js";
import { full, scalarInput, Tensor, where } from "../engine/tensor.js";
import type { Parameter } from "../nn/module.js";

export interface SerializedTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

export interface OptimizerStateDict {
  readonly state: Record<number, Record<string, SerializedTensor>>;
  readonly steps: Record<number, number>;
  /** Step scalars of the last step, so a resumed run bakes the same constants as an uninterrupted one. */
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
  private pending: Parameter[] = [];
  private scalars = new Map<string, Tensor>();
  private previousScalars = new Map<string, number>();
  private currentScalars = new Map<string, number>();

  constructor(params: readonly Parameter[] | readonly (Partial<H> & { params: Parameter[] })[], defaults: H) {
    const groups = params.length > 0 && !(params[0] instanceof Tensor) ? (params as (Partial<H> & { params: Parameter[] })[]) : [{ params: params as Parameter[] }];
    this.paramGroups = groups.map((g) => ({ ...defaults, ...g }) as ParamGroup<H>);
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
   * one step. A value that changes between steps (a scheduled learning rate) enters the program
   * as an input, so every step reuses one compiled program; a value that held still since the last
   * step is baked in as a constant, which lets graph engines fold it (e.g. into a matmul's alpha).
   */
  protected scalar(name: string, value: number, dtype: DType): Tensor {
    const key = `${name}:${dtype}:${value}`;
    let t = this.scalars.get(key);
    if (!t) {
      const steady = this.previousScalars.get(`${name}:${dtype}`) === value;
      t = steady ? full([], value, dtype) : scalarInput(value, dtype);
      this.scalars.set(key, t);
      this.currentScalars.set(`${name}:${dtype}`, value);
    }
    return t;
  }

  protected abstract update(param: Tensor, grad: Tensor, state: Record<string, Tensor>, group: H, step: number): ParamUpdate;
  protected abstract initState(param: Parameter): Record<string, Tensor>;

  /** Records the update of every parameter that has a gradient. */
  step(options: StepOptions = {}): void {
    noGrad(() => {
      this.pending = [];
      this.scalars.clear();
      this.previousScalars = this.currentScalars;
      this.currentScalars = new Map();
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          if (!p.grad) continue;
          const step = (this.steps.get(p) ?? 0) + 1;
          const state = this.state.get(p) ?? this.initState(p);
          const opmath: FloatDType = p.dtype === "float64" ? "float64" : "float32";
          const up = (t: Tensor) => (isHalfDType(t.dtype) ? t.cast(opmath) : t);
          const widened = Object.fromEntries(Object.entries(state).map(([k, v]) => [k, up(v)]));
          const result = this.update(up(p), up(p.grad), widened, group, step);
          const guard = (next: Tensor, old: Tensor) => {
            const rounded = next.cast(old.dtype);
            return options.applyIf ? where(options.applyIf, rounded, old) : rounded;
          };
          p.assign(guard(result.param, p));
          this.state.set(p, Object.fromEntries(Object.entries(result.state).map(([k, v]) => [k, guard(v, state[k] ?? v)])));
          this.steps.set(p, step);
          this.pending.push(p);
        }
      }
    });
  }

  /** Called once the step is computed: an update the scaler skipped does not count as a step. */
  commit(applied: boolean): void {
    if (!applied) for (const p of this.pending) this.steps.set(p, this.steps.get(p)! - 1);
    this.pending = [];
  }

  /** Parameters and state tensors: what a training step must realize. */
  tensors(): Tensor[] {
    return [...this.params, ...[...this.state.values()].flatMap((s) => Object.values(s))];
  }

  /** Bytes of optimizer state, in the states' dtypes. */
  stateBytes(): number {
    return [...this.state.values()].reduce((n, s) => n + Object.values(s).reduce((m, t) => m + t.nbytes, 0), 0);
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

  loadStateDict(dict: OptimizerStateDict): void {
    const params = this.params;
    if (dict.paramGroups.length !== this.paramGroups.length)
      throw new NbitError("STATE_DICT_MISMATCH", `Optimizer state has ${dict.paramGroups.length} parameter groups, this optimizer has ${this.paramGroups.length}`);
    dict.paramGroups.forEach((saved, gi) => {
      const { params: ids, ...hyper } = saved;
      const group = this.paramGroups[gi]!;
      if (ids.length !== group.params.length)
        throw new NbitError("STATE_DICT_MISMATCH", `Parameter group ${gi} has ${ids.length} parameters in the state, ${group.params.length} here`);
      Object.assign(group, hyper);
    });
    this.state.clear();
    this.steps.clear();
    this.currentScalars = new Map(Object.entries(dict.scalars ?? {}));
    for (const [key, entries] of Object.entries(dict.state)) {
      const p = params[Number(key)];
      if (!p) throw new NbitError("STATE_DICT_MISMATCH", `Optimizer state names parameter ${key}, which does not exist`);
      const restored: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(entries)) {
        if (!sameShape(t.shape, p.shape) && t.shape.length !== 0)
          throw new ShapeError("loadStateDict", [p.shape, t.shape], `optimizer state "${name}" of parameter ${key}`);
        restored[name] = new Tensor(LazyNode.leaf(t.data, t.shape, t.dtype));
      }
      this.state.set(p, restored);
      this.steps.set(p, dict.steps[Number(key)] ?? 0);
    }
  }
}
