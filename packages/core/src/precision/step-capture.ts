import { isHalfDType, type HostArray } from "../dtype.js";
import { hostToNumbers, numbersToHost } from "../numerics/convert.js";
import { NbitError } from "../errors.js";
import type { BackendBuffer } from "../engine/backend.js";
import { currentRuntime } from "../engine/context.js";
import { LazyNode } from "../engine/node.js";
import { sameSignature, type RealizedGraph, type Runtime } from "../engine/runtime.js";
import { Tensor } from "../engine/tensor.js";
import { checkHostLabels, collectHostLabelChecks } from "../nn/labels.js";
import type { Module } from "../nn/module.js";
import type { Optimizer } from "../optim/optimizer.js";
import { checkInteger } from "../validation.js";
import type { GradientClipAlgorithm, OptimizerStepOutcome, PrecisionPlugin } from "./plugins.js";
import { buildRecord, CaptureRefusal, classifyInputs, type ObservedStep, type PreviousStep, type StateSlot, type StepRecord } from "./step-record.js";

type AnyOptimizer = Optimizer<{ lr: number }>;

export interface StepCaptureOptions {
  /** The model: its buffers (batch norm's running statistics) are step state, and its train/eval mode is part of the step. */
  readonly module?: Module;
  /** Record a normal step every this many replays and check it still matches the captured one (default 200; 0: never). */
  readonly verifyEvery?: number;
  /** Where the reason a step cannot be captured goes, once per reason (default: process warnings). */
  readonly warn?: (message: string) => void;
}

/** What the step function returns: the loss, and any other values to compute with the step (logged metrics). */
export type CapturedForwardResult =
  | Tensor
  | {
      readonly loss: Tensor;
      readonly outputs?: readonly Tensor[];
      /** Anything the caller needs back on replay (what the outputs are); returned as recorded. */
      readonly meta?: unknown;
      /** Set when this step must not be captured, with the reason (the step is still run normally). */
      readonly uncapturable?: string;
    };

export interface CapturedStepOutcome extends OptimizerStepOutcome {
  /** The `outputs` of the step function, computed with the step. */
  readonly outputs: readonly Tensor[];
  readonly meta: unknown;
  /** True when the step was replayed rather than recorded. */
  readonly replayed: boolean;
}

export interface StepCaptureStats {
  /** Steps recorded (forward, autograd and update built in JS). */
  recorded: number;
  /** Steps replayed from a captured program. */
  replayed: number;
  /** Times a step was captured (again). */
  captures: number;
  /** Recorded steps that checked a capture (every `verifyEvery` replays). */
  verified: number;
  /** Why steps are not captured (null while they are, or before two steps were seen). */
  refusal: string | null;
}

/** A verification step's structure differs from the captured step's: the step is not a function of shapes and dtypes alone. */
export class StepCaptureMismatchError extends NbitError {
  constructor(
    readonly replays: number,
    readonly reason: string,
  ) {
    super(
      "STEP_CAPTURE_MISMATCH",
      `A recorded check of a captured training step, after ${replays} replays, does not match the capture: ${reason}. The step depends on something other than the batch's shapes and dtypes, the state and the step scalars (data-dependent control flow, a value made on the host), which captured steps do not allow. The replayed steps may have trained wrongly; turn step capture off for this model.`,
    );
  }
}

const DEFAULT_VERIFY_EVERY = 200;

/**
 * Whole-step capture and replay, after CUDA graphs / torch.compile(mode="reduce-overhead"): once
 * two consecutive recorded steps build the same graph, later steps bind the new batch, the current
 * state and the next step scalars (learning rate, bias corrections, loss scale) to the compiled
 * program and run it, without recording the forward pass, autograd or the update in JS.
 *
 * The contract: the step's ops depend only on the batch's shapes and dtypes; values that change
 * from step to step come only from the batch, the parameters, the optimizer state, the module's
 * buffers and the optimizers' and scaler's step scalars. Anything else made inside the step must be
 * the same every step (a dropout mask is not: such a step is run normally, with a warning).
 * A step is recorded again when the batch's shapes or dtypes, the optimizer's hyperparameters
 * (other than scheduled learning rates), the train/eval mode or the state tensors (a checkpoint
 * load) change, and every `verifyEvery` replays, to check the capture still holds.
 */
export class StepCapture {
  readonly stats: StepCaptureStats = { recorded: 0, replayed: 0, captures: 0, verified: 0, refusal: null };
  private readonly verifyEvery: number;
  private readonly warn: (message: string) => void;
  private readonly warned = new Set<string>();
  private disabled = false;
  private previous: PreviousStep | null = null;
  private record: StepRecord | null = null;
  private meta: unknown;
  private hyperparameters: unknown[][] = [];
  private modes: { readonly modules: readonly Module[]; readonly training: readonly boolean[] } | null = null;
  private replaysSinceCheck = 0;

  constructor(
    readonly plugin: PrecisionPlugin,
    readonly optimizer: AnyOptimizer,
    private readonly options: StepCaptureOptions = {},
  ) {
    this.verifyEvery = checkInteger("StepCapture verifyEvery", options.verifyEvery ?? DEFAULT_VERIFY_EVERY, 0);
    this.warn = options.warn ?? ((m) => process.emitWarning(m));
  }

  /** Whether steps may still be captured (false once refused for good). */
  get enabled(): boolean {
    return !this.disabled;
  }

  /** Whether the next step with matching shapes replays. */
  get captured(): boolean {
    return this.record !== null;
  }

  /** Stops capturing for good, with the reason (stats.refusal, and one warning). */
  refuse(reason: string): void {
    this.disabled = true;
    this.record = null;
    this.previous = null;
    this.note(reason);
  }

  /** Forgets the captured step: the next two steps are recorded (and captured again). */
  reset(): void {
    this.record = null;
    this.previous = null;
  }

  /**
   * One training step on `batch`: replayed when captured and the batch matches, else `forward`
   * (run under the plugin's forward context) records the loss and the plugin's optimizerStep runs it.
   */
  step(
    batch: readonly Tensor[],
    forward: (batch: readonly Tensor[]) => CapturedForwardResult,
    options: { readonly clipValue?: number; readonly clipAlgorithm?: GradientClipAlgorithm } = {},
  ): Promise<CapturedStepOutcome> {
    // Not an async function: a replay's promise is returned as it is, without another one around it.
    try {
      const runtime = currentRuntime();
      const record = this.record;
      if (record) {
        const mismatch = this.replayMismatch(record, batch, runtime);
        if (mismatch === null) {
          if (this.verifyEvery === 0 || this.replaysSinceCheck < this.verifyEvery) return this.replay(record, batch);
          return this.recordStep(batch, forward, options, runtime, record);
        }
        // Another batch shape (a last smaller batch) keeps the capture for the next matching batch.
        if (mismatch !== "batch") this.reset();
      }
      return this.recordStep(batch, forward, options, runtime, null);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private note(reason: string): void {
    this.stats.refusal = reason;
    if (this.warned.has(reason)) return;
    this.warned.add(reason);
    this.warn(`Step capture: ${reason}; these steps are recorded as usual.`);
  }

  private stateSlots(): StateSlot[] {
    const slots: StateSlot[] = [];
    const optimizerState = this.optimizer.state;
    this.optimizer.params.forEach((param, i) => {
      slots.push({ key: `param:${i}`, tensor: param, read: () => param, param });
      const state = optimizerState.get(param);
      if (state)
        for (const [name, tensor] of Object.entries(state)) slots.push({ key: `state:${i}:${name}`, tensor, read: () => optimizerState.get(param)?.[name] });
    });
    // Buffers and parameters are updated in place (assign): a load changes their node, which replay checks.
    const module = this.options.module;
    if (module) {
      const optimized = new Set<Tensor>(this.optimizer.params);
      // Parameters the optimizer does not update (frozen ones) are state too: a load may change them.
      module.parameters().forEach((tensor, i) => optimized.has(tensor) || slots.push({ key: `frozen:${i}`, tensor, read: () => tensor }));
      module.buffers().forEach((tensor, i) => slots.push({ key: `buffer:${i}`, tensor, read: () => tensor }));
    }
    return slots;
  }

  /** Every hyperparameter but the learning rate, which enters as a step scalar (a scheduler may move it between replays). */
  private hyperparameterSnapshot(): unknown[][] {
    return this.optimizer.paramGroups.map((group) => {
      const values: unknown[] = [group.params.length];
      for (const key in group) if (key !== "params" && key !== "lr") values.push(key, group[key as keyof typeof group]);
      return values;
    });
  }

  private sameHyperparameters(snapshot: readonly (readonly unknown[])[]): boolean {
    const groups = this.optimizer.paramGroups;
    if (groups.length !== snapshot.length) return false;
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g]!;
      const values = snapshot[g]!;
      if (group.params.length !== values[0]) return false;
      let i = 1;
      for (const key in group) {
        if (key === "params" || key === "lr") continue;
        const now: unknown = group[key as keyof typeof group];
        const then = values[i + 1];
        if (values[i] !== key) return false;
        if (Array.isArray(now) ? !Array.isArray(then) || then.length !== now.length || now.some((v, j) => !Object.is(v, then[j])) : !Object.is(now, then))
          return false;
        i += 2;
      }
      if (i !== values.length) return false;
    }
    return true;
  }

  private modeSnapshot(): { modules: Module[]; training: boolean[] } | null {
    const module = this.options.module;
    if (!module) return null;
    const modules = [...module.modules()];
    return { modules, training: modules.map((m) => m.training) };
  }

  /** Null when `record` can replay this step; "batch" when only the batch differs; else "state". */
  private replayMismatch(record: StepRecord, batch: readonly Tensor[], runtime: Runtime): "batch" | "state" | null {
    if (runtime !== record.runtime || runtime.isDisposed) return "state";
    if (!this.sameHyperparameters(this.hyperparameters)) return "state";
    if (this.modes) for (let i = 0; i < this.modes.modules.length; i++) if (this.modes.modules[i]!.training !== this.modes.training[i]) return "state";
    for (const slot of record.slots) if (slot.tensor.node !== slot.expected || slot.read() !== slot.tensor) return "state";
    if (batch.length !== record.batch.length) return "batch";
    for (let i = 0; i < batch.length; i++) {
      const want = record.batch[i]!;
      const node = batch[i]!.node;
      if (!node.isLeaf || node.dtype !== want.dtype || node.shape.length !== want.shape.length) return "batch";
      for (let d = 0; d < want.shape.length; d++) if (node.shape[d] !== want.shape[d]) return "batch";
    }
    return null;
  }

  private async recordStep(
    batch: readonly Tensor[],
    forward: (batch: readonly Tensor[]) => CapturedForwardResult,
    options: { readonly clipValue?: number; readonly clipAlgorithm?: GradientClipAlgorithm },
    runtime: Runtime,
    verifying: StepRecord | null,
  ): Promise<CapturedStepOutcome> {
    this.stats.recorded++;
    const capturing = !this.disabled;
    const nodesBefore = new Map(capturing ? this.stateSlots().map((s) => [s.key, s.tensor.node]) : []);
    const { result, hostChecks } = collectHostLabelChecks(() => this.plugin.forwardContext(() => forward(batch)));
    const { loss, outputs = [], meta, uncapturable } = result instanceof Tensor ? { loss: result } : result;
    const observed: ObservedStep["inputs"][] = [];
    let graph: RealizedGraph | null = null;
    const stop = capturing
      ? runtime.observeRealizations((g) => {
          graph = g;
          observed.push(classifyInputs(g, nodesBefore, batch));
        })
      : () => {};
    let outcome: OptimizerStepOutcome;
    try {
      const extra = [...outputs, ...(this.options.module?.buffers() ?? [])];
      outcome = await this.plugin.optimizerStep(this.optimizer, loss, { ...options, extra });
    } finally {
      stop();
    }
    const done = { ...outcome, outputs, meta, replayed: false };
    if (!capturing) return done;
    if (uncapturable) {
      this.refuse(uncapturable);
      return done;
    }
    if (this.optimizer.updatesOnHost) {
      this.refuse(`${this.optimizer.constructor.name} updates on the host`);
      return done;
    }
    if (observed.length !== 1 || !graph) {
      this.refuse(`the step ran ${observed.length} programs (a value was read inside it?), not one`);
      return done;
    }
    const realized: RealizedGraph = graph;
    const current: ObservedStep = {
      runtime,
      signature: realized.signature,
      program: realized.program,
      inputs: observed[0]!,
      roots: realized.roots,
      slotsAfter: this.stateSlots(),
      nodesBefore,
      batch,
      loss: loss.node,
      applied: outcome.applied?.node ?? null,
      outputs: outputs.map((t) => t.node),
      hostChecks,
    };
    const replays = this.replaysSinceCheck;
    if (verifying) {
      this.stats.verified++;
      if (!sameSignature(verifying.signature, current.signature)) throw new StepCaptureMismatchError(replays, "it built a different graph");
      this.replaysSinceCheck = 0;
    }
    const previous = verifying?.observed ?? this.previous;
    this.previous = { signature: current.signature, inputs: current.inputs };
    if (this.record && !verifying) {
      // A step of another batch shape ran in between: the capture resumes from the state it left.
      this.resync(this.record);
      return done;
    }
    if (!previous || !sameSignature(previous.signature, current.signature)) return done;
    const built = buildRecord(previous, current);
    // The replayed steps fed values this step no longer has (a constant that changed): they broke the contract.
    if (verifying && built instanceof CaptureRefusal) throw new StepCaptureMismatchError(replays, built.reason);
    if (built instanceof CaptureRefusal) {
      if (built.permanent) this.refuse(built.reason);
      else this.stats.refusal = built.reason;
      return done;
    }
    this.record = built;
    this.meta = meta;
    // Arrays (Adam's betas) are copied: an in-place edit must show as a change.
    this.hyperparameters = this.hyperparameterSnapshot().map((values) => values.map((v) => (Array.isArray(v) ? [...v] : v)));
    this.modes = this.modeSnapshot();
    this.stats.captures++;
    this.stats.refusal = null;
    return done;
  }

  /** Points the capture at the state tensors a recorded step left (optimizer state records are new objects after each recorded step). */
  private resync(record: StepRecord): void {
    const now = new Map(this.stateSlots().map((s) => [s.key, s.tensor]));
    for (const slot of record.slots) {
      const tensor = now.get(slot.key);
      if (!tensor?.node.isLeaf || tensor.node.device?.runtime !== record.runtime) {
        this.reset();
        return;
      }
      slot.tensor = tensor;
      slot.expected = tensor.node;
    }
  }

  private async replay(record: StepRecord, batch: readonly Tensor[]): Promise<CapturedStepOutcome> {
    const runtime = record.runtime;
    for (const check of record.hostChecks) {
      const host = batch[check.index]!.node.host;
      if (host) checkHostLabels(check.op, host, check.classes);
    }
    const inputs = record.inputs;
    const buffers = new Array<BackendBuffer>(inputs.length);
    let uploaded: LazyNode[] | null = null;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      switch (input.kind) {
        case "state":
          buffers[i] = record.slots[input.slot]!.tensor.node.device!.buffer;
          break;
        case "batch": {
          const node = batch[input.index]!.node;
          if (!node.device) (uploaded ??= []).push(node);
          buffers[i] = runtime.upload(node);
          break;
        }
        case "scalar": {
          const value = input.next();
          if (!Object.is(value, input.last.value)) input.last = { value, node: LazyNode.leaf(numbersToHost([value], input.dtype), [], input.dtype) };
          buffers[i] = runtime.upload(input.last.node);
          break;
        }
        case "constant":
          buffers[i] = runtime.upload(input.node);
      }
    }
    // One await at most: none when the backend returns the outputs at once.
    const ran = runtime.runProgram(record.program, buffers, record.outputInfo);
    const out = Array.isArray(ran) ? ran : await ran;
    if (uploaded) for (const node of uploaded) node.host = undefined;
    for (const slot of record.slots) {
      if (slot.output < 0) continue;
      const node = out[slot.output]!;
      slot.tensor.node = node;
      slot.expected = node;
    }
    const applied = record.applied >= 0 ? readScalar(runtime, out[record.applied]!) : 1;
    const skipped = (typeof applied === "number" ? applied : await applied) === 0;
    this.optimizer.replayedStep(record.updatedParams);
    this.optimizer.commit(!skipped);
    this.plugin.finishReplayedStep(skipped);
    this.stats.replayed++;
    this.replaysSinceCheck++;
    const lossValue = readScalar(runtime, out[record.loss]!);
    const loss = typeof lossValue === "number" ? lossValue : await lossValue;
    const outputs = record.outputs.length === 0 ? NO_OUTPUTS : record.outputs.map((o) => new Tensor(out[o]!));
    return { loss, skipped, applied: null, outputs, meta: this.meta, replayed: true };
  }
}

const NO_OUTPUTS: readonly Tensor[] = Object.freeze([]);

/** The one value of a realized scalar (16-bit floats decoded): at once when the backend downloads at once, else a promise. */
function readScalar(runtime: Runtime, node: LazyNode): number | Promise<number> {
  const host = runtime.downloadNow(node);
  return "then" in host ? host.then((h) => scalarValue(node, h)) : scalarValue(node, host);
}

const scalarValue = (node: LazyNode, host: HostArray): number => (isHalfDType(node.dtype) ? hostToNumbers(host, node.dtype)[0]! : Number(host[0]));
