import { DTYPES, isHalfDType, type DType, type HostArray } from "../dtype.js";
import { NbitError, RuntimeMismatchError, UnsupportedOpError } from "../errors.js";
import { InvalidArgumentError } from "../validation.js";
import type { Backend, BackendBuffer, CompiledProgram, Instruction, Program, ValueInfo } from "./backend.js";
import { outsideScopes, withRuntime } from "./context.js";
import { eventLoopTurnIfDue } from "./event-loop.js";
import { LazyNode } from "./node.js";
import { attrKey, OPS, PRIMITIVE_OPS, pushAttrNumbers, pushScalarNumber, type PrimitiveOp } from "./ops.js";

export interface RuntimeStats {
  programsCompiled: number;
  programsRun: number;
  /** Runs that matched an earlier graph's signature and skipped lowering and keying. */
  programsReplayed: number;
  instructionsRun: number;
}

export interface RuntimeOptions {
  /** Compiled programs kept (least recently used evicted first, their sessions released); default 16. */
  readonly programCacheSize?: number;
  /** Run a graph whose structure, shapes and dtypes match an earlier one without lowering it again (default true). */
  readonly replay?: boolean;
}

/** The compiled-program cache: `size` of `capacity` programs held; hits, misses and evictions so far. */
export interface ProgramCacheStats {
  readonly size: number;
  readonly capacity: number;
  readonly hits: number;
  readonly misses: number;
  readonly evictions: number;
}

export const DEFAULT_PROGRAM_CACHE_SIZE = 16;

/** What one realization ran, as seen by a step capture: its inputs, outputs and program. */
export interface RealizedGraph {
  /** The program's inputs, in input order (leaves still hold their host data when observed). */
  readonly leaves: readonly LazyNode[];
  /** The nodes the program computes, in output order. */
  readonly roots: readonly LazyNode[];
  readonly signature: readonly number[];
  readonly program: Program;
}

interface CachedProgram {
  readonly compiled: Promise<CompiledProgram>;
  /** The compiled program once `compiled` resolved: a run then starts without waiting on a promise. */
  ready: CompiledProgram | null;
  /** Runs in flight: an evicted program is released once the last one settles. */
  running: number;
  evicted: boolean;
}

/** Runs lazy graphs on one backend: lowers them to programs, caches compiled ones, holds buffers. */
export class Runtime {
  /** Insertion order is recency order: a hit moves its entry to the end; eviction takes the first. */
  private readonly compiled = new Map<string, CachedProgram>();
  private readonly cacheCounts = { hits: 0, misses: 0, evictions: 0 };
  private mostRecent: CachedProgram | null = null;
  readonly programCacheSize: number;
  /** Buffers this runtime placed and has not freed, on backends whose buffers need an explicit dispose (tfjs). */
  private readonly live: Set<BackendBuffer> | null;
  private disposed = false;
  readonly stats: RuntimeStats = { programsCompiled: 0, programsRun: 0, programsReplayed: 0, instructionsRun: 0 };
  /** Lowered programs by graph signature hash (a full signature compare confirms a hit). */
  private readonly replays = new Map<number, { readonly signature: readonly number[]; readonly program: Program }>();
  private readonly replay: boolean;
  private observer: ((graph: RealizedGraph) => void) | null = null;

  constructor(
    readonly backend: Backend,
    options: RuntimeOptions = {},
  ) {
    const size = options.programCacheSize ?? DEFAULT_PROGRAM_CACHE_SIZE;
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError("Runtime programCacheSize", "an integer >= 1", size);
    this.programCacheSize = size;
    this.replay = options.replay ?? true;
    this.live = backend.dispose ? new Set() : null;
    // A Runtime dropped without dispose() still releases its compiled programs once collected.
    programsOfCollectedRuntimes.register(this, this.compiled, this);
    const { execution } = backend.capabilities;
    if (execution === "eager" && !backend.execute)
      throw new NbitError("INVALID_BACKEND", `Backend "${backend.name}" declares eager execution but has no execute()`);
    if (execution === "graph" && !backend.compile)
      throw new NbitError("INVALID_BACKEND", `Backend "${backend.name}" declares graph execution but has no compile()`);
  }

  /** Whether the backend can hold `dtype`. */
  holds(dtype: DType): boolean {
    return this.backend.capabilities.storage[dtype] !== undefined;
  }

  /** Computes every node that is not yet a leaf on this runtime, as one program. */
  async realize(nodes: readonly LazyNode[]): Promise<void> {
    const pending = [...new Set(nodes)].filter((n) => !(n.isLeaf && n.device?.runtime === this));
    if (pending.length === 0) return;
    this.checkOpen();
    const graph = captureGraph(pending);
    const known = this.replay ? this.replays.get(graph.hash) : undefined;
    let program: Program;
    let inputBuffers: BackendBuffer[];
    let uploadedLeaves: LazyNode[];
    if (known && sameSignature(known.signature, graph.signature)) {
      this.stats.programsReplayed++;
      program = known.program;
      uploadedLeaves = graph.leaves.filter((leaf) => leaf.device?.runtime !== this);
      inputBuffers = graph.leaves.map((leaf) => this.upload(leaf));
    } else {
      const builder = new ProgramBuilder(this);
      program = builder.build(pending, graph.order);
      ({ inputBuffers, uploadedLeaves } = builder);
      if (this.replay) this.remember(graph, program);
    }
    this.observer?.({ leaves: graph.leaves, roots: pending, signature: graph.signature, program });
    const buffers = await this.execute(program, inputBuffers);
    this.discardIfDisposed(buffers);
    pending.forEach((n, i) => {
      n.realizeAs(this, buffers[i]!);
      this.track(n, buffers[i]!);
    });
    for (const leaf of uploadedLeaves) leaf.host = undefined;
  }

  /**
   * Calls `observer` with each realization until the returned function is called (a step
   * capture watching the one program a training step runs).
   */
  observeRealizations(observer: (graph: RealizedGraph) => void): () => void {
    this.observer = observer;
    return () => {
      if (this.observer === observer) this.observer = null;
    };
  }

  /**
   * Runs a program realized earlier on new input buffers, without walking, lowering or keying a
   * graph, and returns its outputs as new leaves (`outputs` gives their dtypes and shapes). The
   * compiled program comes from the cache as for `realize`, so eviction and dispose hold. The
   * outputs come back at once (not as a promise) when the backend's compiled program returns them
   * at once: a replayed step then waits on no promise the backend does not make (each promise
   * costs more while an AsyncLocalStorage watches promises).
   */
  runProgram(program: Program, inputs: readonly BackendBuffer[], outputs: readonly ValueInfo[]): LazyNode[] | Promise<LazyNode[]> {
    this.checkOpen();
    const buffers = this.executeNow(program, inputs);
    return isPromiseLike(buffers) ? Promise.resolve(buffers).then((b) => this.outputLeaves(b, outputs)) : this.outputLeaves(buffers, outputs);
  }

  /** Frees outputs that arrived after dispose() (their runtime can no longer hold them) and throws. */
  private discardIfDisposed(buffers: readonly BackendBuffer[]): void {
    if (!this.disposed) return;
    for (const b of buffers) this.backend.dispose?.(b);
    this.checkOpen();
  }

  private outputLeaves(buffers: readonly BackendBuffer[], outputs: readonly ValueInfo[]): LazyNode[] {
    this.discardIfDisposed(buffers);
    const nodes = new Array<LazyNode>(buffers.length);
    for (let i = 0; i < buffers.length; i++) {
      const buffer = buffers[i]!;
      const node = LazyNode.placed(this, buffer, outputs[i]!.shape, outputs[i]!.dtype);
      this.track(node, buffer);
      nodes[i] = node;
    }
    return nodes;
  }

  async download(node: LazyNode): Promise<HostArray> {
    if (node.isLeaf && node.host) return node.host;
    // A value the step just computed (the loss) is already here: no realize round trip.
    if (!(node.isLeaf && node.device?.runtime === this)) await this.realize([node]);
    this.checkOpen();
    return this.backend.download(node.device!.buffer, node.dtype, node.shape);
  }

  /** As download, but at once (not as a promise) for host data, and for a leaf this runtime holds when the backend downloads at once. */
  downloadNow(node: LazyNode): HostArray | Promise<HostArray> {
    if (node.isLeaf && node.host) return node.host;
    if (!(node.isLeaf && node.device?.runtime === this)) return this.download(node);
    this.checkOpen();
    return this.backend.download(node.device.buffer, node.dtype, node.shape);
  }

  upload(node: LazyNode): BackendBuffer {
    if (node.device?.runtime === this) return node.device.buffer;
    if (node.device) throw new RuntimeMismatchError(this.backend.name, node.device.runtime.backend.name, node.shape);
    if (!node.host) throw new NbitError("INTERNAL", `A leaf of shape [${node.shape.join(", ")}] holds no data`);
    this.checkOpen();
    this.checkStorage("upload", node.dtype);
    const buffer = this.backend.upload(node.host, node.dtype, node.shape);
    node.device = { runtime: this, buffer };
    this.track(node, buffer);
    return buffer;
  }

  /** Frees `buffer` once `node` is garbage-collected, even if this runtime is gone by then. */
  private track(node: LazyNode, buffer: BackendBuffer): void {
    if (!this.live) return;
    this.live.add(buffer);
    buffersOfCollectedNodes.register(node, { backend: this.backend, buffer, live: this.live }, buffer);
  }

  private checkOpen(): void {
    if (this.disposed)
      throw new NbitError("RUNTIME_DISPOSED", `The runtime on backend "${this.backend.name}" was disposed; its tensors can no longer be computed or read.`);
  }

  /** Whether dispose() was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Releases what this runtime holds on its backend: compiled programs (onnxruntime sessions) and
   * placed buffers (tfjs tensors). Its tensors cannot be read afterwards. Calling it again does nothing.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    programsOfCollectedRuntimes.unregister(this);
    const entries = [...this.compiled.values()];
    this.compiled.clear();
    for (const entry of entries) {
      entry.evicted = true;
      if (entry.running === 0) await release(entry);
    }
    if (this.live) {
      for (const buffer of this.live) {
        buffersOfCollectedNodes.unregister(buffer);
        this.backend.dispose!(buffer);
      }
      this.live.clear();
    }
  }

  checkStorage(op: string, dtype: DType): void {
    if (!this.holds(dtype)) {
      const held = Object.keys(this.backend.capabilities.storage);
      throw new UnsupportedOpError(this.backend.name, op, dtype, held);
    }
  }

  /** Runs `fn` (and everything it awaits) in this runtime's scope: unplaced tensors are realized here. */
  run<T>(fn: () => T): T {
    return withRuntime(this, fn);
  }

  private async execute(program: Program, inputs: readonly BackendBuffer[]): Promise<BackendBuffer[]> {
    return this.executeNow(program, inputs);
  }

  /**
   * Runs `program`, first letting the event loop turn when it has not for EVENT_LOOP_TURN_MS; the
   * outputs at once when no turn is due and the compiled program returns them at once.
   */
  private executeNow(program: Program, inputs: readonly BackendBuffer[]): BackendBuffer[] | PromiseLike<BackendBuffer[]> {
    const turn = eventLoopTurnIfDue();
    if (!turn) return this.executeProgram(program, inputs);
    return turn.then(() => {
      this.checkOpen();
      return this.executeProgram(program, inputs);
    });
  }

  private executeProgram(program: Program, inputs: readonly BackendBuffer[]): BackendBuffer[] | PromiseLike<BackendBuffer[]> {
    this.stats.programsRun++;
    if (this.backend.capabilities.execution !== "graph") return this.interpret(program, inputs);
    const entry = this.cachedProgram(program);
    this.stats.instructionsRun += program.instructions.length;
    entry.running++;
    let result: BackendBuffer[] | PromiseLike<BackendBuffer[]>;
    try {
      const ready = entry.ready;
      result = ready ? ready.run(inputs) : entry.compiled.then((compiled) => compiled.run(inputs));
    } catch (e) {
      settle(entry);
      throw e;
    }
    if (!isPromiseLike(result)) {
      settle(entry);
      return result;
    }
    return Promise.resolve(result).finally(() => settle(entry));
  }

  private remember(graph: CapturedGraph, program: Program): void {
    // Lowered programs are small next to compiled ones: keep a few per cached compiled program.
    if (this.replays.size >= 4 * this.programCacheSize) this.replays.delete(this.replays.keys().next().value!);
    this.replays.set(graph.hash, { signature: graph.signature, program });
  }

  /** Hits, misses and evictions of the compiled-program cache, and how full it is. */
  cacheStats(): ProgramCacheStats {
    return { size: this.compiled.size, capacity: this.programCacheSize, ...this.cacheCounts };
  }

  private cachedProgram(program: Program): CachedProgram {
    const hit = this.compiled.get(program.key);
    if (hit) {
      this.cacheCounts.hits++;
      // A replayed step runs the most recent program again and again: it is already last.
      if (this.mostRecent !== hit) {
        this.compiled.delete(program.key);
        this.compiled.set(program.key, hit);
        this.mostRecent = hit;
      }
      return hit;
    }
    this.cacheCounts.misses++;
    this.stats.programsCompiled++;
    const compiled = outsideScopes(() => new Promise<CompiledProgram>((resolve) => resolve(this.backend.compile!(program))));
    const entry: CachedProgram = { compiled, ready: null, running: 0, evicted: false };
    compiled.then(
      (ready) => (entry.ready = ready),
      () => {},
    );
    // A program that failed to compile is not kept: the next attempt compiles again.
    entry.compiled.catch(() => this.compiled.get(program.key) === entry && this.compiled.delete(program.key));
    this.compiled.set(program.key, entry);
    this.mostRecent = entry;
    while (this.compiled.size > this.programCacheSize) {
      const [oldestKey, oldest] = this.compiled.entries().next().value as [string, CachedProgram];
      this.compiled.delete(oldestKey);
      this.cacheCounts.evictions++;
      oldest.evicted = true;
      if (oldest.running === 0) void release(oldest);
    }
    return entry;
  }

  private interpret(program: Program, inputs: readonly BackendBuffer[]): BackendBuffer[] {
    const values: (BackendBuffer | undefined)[] = [...inputs];
    const infos: ValueInfo[] = [...program.inputs, ...program.instructions];
    const lastUse = new Array<number>(infos.length).fill(-1);
    program.instructions.forEach((ins, i) => ins.inputs.forEach((v) => (lastUse[v] = i)));
    for (const o of program.outputs) lastUse[o] = Infinity;
    const base = inputs.length;
    program.instructions.forEach((ins, i) => {
      const args = ins.inputs.map((v) => values[v]!);
      values[base + i] = this.backend.execute!(
        ins,
        args,
        ins.inputs.map((v) => infos[v]!),
      );
      this.stats.instructionsRun++;
      if (this.backend.dispose) for (const v of new Set(ins.inputs)) if (v >= base && lastUse[v] === i) this.backend.dispose(values[v]!);
    });
    return program.outputs.map((o) => values[o]!);
  }
}

interface Placement {
  readonly backend: Backend;
  readonly buffer: BackendBuffer;
  readonly live: Set<BackendBuffer>;
}

// Process-wide, so they outlive the runtimes whose buffers and programs they free: a registry owned
// by a runtime dies with it, and its pending callbacks never run.
const buffersOfCollectedNodes = new FinalizationRegistry<Placement>(({ backend, buffer, live }) => {
  if (live.delete(buffer)) backend.dispose!(buffer);
});
const programsOfCollectedRuntimes = new FinalizationRegistry<Map<string, CachedProgram>>((cache) => {
  for (const entry of cache.values()) {
    entry.evicted = true;
    if (entry.running === 0) void release(entry);
  }
});

/** Ends one run of `entry`: an evicted program is released once its last run settles. */
function settle(entry: CachedProgram): void {
  entry.running--;
  if (entry.evicted && entry.running === 0) void release(entry);
}

const isPromiseLike = <T>(value: T | PromiseLike<T>): value is PromiseLike<T> => typeof (value as { then?: unknown } | null)?.then === "function";

/** Releases a compiled program's backend resources (an onnxruntime session); a failed compile has none. */
async function release(entry: CachedProgram): Promise<void> {
  const compiled = await entry.compiled.catch(() => null);
  compiled?.dispose?.();
}

interface CapturedGraph {
  /** Every node under the roots, in post-order. */
  readonly order: LazyNode[];
  /** The leaves in `order`: the program's inputs, in input order. */
  readonly leaves: LazyNode[];
  /** Structure, shapes, dtypes, attributes and constants as numbers: equal signatures lower to the same program. */
  readonly signature: number[];
  readonly hash: number;
}

const NODE_KIND = new Map<string, number>(["leaf", "const", ...PRIMITIVE_OPS].map((op, i) => [op, i]));
const DTYPE_ID = new Map<DType, number>(DTYPES.map((d, i) => [d, i]));

let walks = 0;

/** Walks the graph under `roots` once, recording its order, leaves and signature. */
function captureGraph(roots: readonly LazyNode[]): CapturedGraph {
  const order: LazyNode[] = [];
  const leaves: LazyNode[] = [];
  const signature: number[] = [];
  // Each node records the walk that visited it and its post-order position (-1 while its inputs
  // are walked): no Map on the hot path.
  const walk = ++walks;
  // Iterative post-order walk (graphs of long training runs are deeper than the call stack); a
  // node is pushed once to expand it and once more, below its inputs, to emit it.
  const stack: LazyNode[] = [];
  const emit: boolean[] = [];
  for (let r = roots.length - 1; r >= 0; r--) {
    stack.push(roots[r]!);
    emit.push(false);
  }
  while (stack.length) {
    const node = stack.pop()!;
    if (emit.pop()) {
      node.position = order.length;
      order.push(node);
      const shape = node.shape;
      signature.push(NODE_KIND.get(node.op)!, DTYPE_ID.get(node.dtype)!, shape.length);
      for (let i = 0; i < shape.length; i++) signature.push(shape[i]!);
      if (node.isLeaf) leaves.push(node);
      else if (node.op === "const") pushScalarNumber(node.value!, signature);
      else {
        const src = node.src;
        signature.push(src.length);
        for (let i = 0; i < src.length; i++) signature.push(src[i]!.position);
        pushAttrNumbers(node.op as PrimitiveOp, node.attrs, signature);
      }
      continue;
    }
    if (node.walk === walk) continue;
    node.walk = walk;
    node.position = -1;
    stack.push(node);
    emit.push(true);
    if (node.isLeaf) continue;
    const src = node.src;
    for (let i = src.length - 1; i >= 0; i--) {
      if (src[i]!.walk === walk) continue;
      stack.push(src[i]!);
      emit.push(false);
    }
  }
  signature.push(-1, roots.length);
  for (const root of roots) signature.push(root.position);
  return { order, leaves, signature, hash: hashNumbers(signature) };
}

function hashNumbers(values: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const v of values) {
    h = Math.imul(h ^ (v | 0), 0x01000193);
    if (!Number.isInteger(v)) h = Math.imul(h ^ ((v * 0x10000) | 0), 0x01000193);
  }
  return h >>> 0;
}

/** Whether two graph signatures are equal (a hash hit is confirmed this way). */
export function sameSignature(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lowers a lazy graph into a program the backend can run, inserting exact rounding where needed. */
class ProgramBuilder {
  readonly inputs: ValueInfo[] = [];
  readonly inputBuffers: BackendBuffer[] = [];
  readonly uploadedLeaves: LazyNode[] = [];
  private readonly instructions: Instruction[] = [];
  private readonly ids = new Map<LazyNode, number>();

  constructor(private readonly runtime: Runtime) {}

  private get caps() {
    return this.runtime.backend.capabilities;
  }

  /** Lowers the graph under `roots` (in post-order `order`); leaves become the program's inputs, numbered first. */
  build(roots: readonly LazyNode[], order: readonly LazyNode[]): Program {
    for (const node of order) if (node.isLeaf) this.ids.set(node, this.addInput(node));
    for (const node of order) if (!node.isLeaf) this.ids.set(node, this.lower(node));
    // Every output gets a buffer of its own: a value that is an input (an elided cast) or is
    // returned twice is copied by a same-shape reshape, so no two nodes own one buffer.
    const taken = new Set<number>();
    const outputs = roots.map((r) => {
      let id = this.ids.get(r)!;
      if (id < this.inputs.length || taken.has(id)) id = this.emit({ op: "reshape", inputs: [id], attrs: { shape: r.shape }, dtype: r.dtype, shape: r.shape });
      taken.add(id);
      return id;
    });
    const key = this.caps.execution === "graph" ? this.structuralKey(outputs) : "";
    return { inputs: this.inputs, instructions: this.instructions, outputs, key };
  }

  private addInput(node: LazyNode): number {
    const hadDevice = node.device?.runtime === this.runtime;
    const buffer = this.runtime.upload(node);
    if (!hadDevice) this.uploadedLeaves.push(node);
    this.inputs.push({ dtype: node.dtype, shape: node.shape });
    this.inputBuffers.push(buffer);
    return this.inputs.length - 1;
  }

  private emit(ins: Instruction): number {
    this.instructions.push(ins);
    return this.inputs.length + this.instructions.length - 1;
  }

  private lower(node: LazyNode): number {
    const op = node.op as PrimitiveOp | "const";
    const inputs = node.src.map((s) => this.ids.get(s)!);
    if (op === "const") {
      this.runtime.checkStorage("const", node.dtype);
      return this.emit({ op, inputs, attrs: {}, dtype: node.dtype, shape: node.shape, value: node.value! });
    }
    if (op === "cast") return this.lowerCast(node, inputs[0]!, node.src[0]!.dtype);
    const row = OPS[op];
    const operand = node.src[row.operand]!.dtype;
    const native = this.caps.ops[op] ?? [];
    if (native.includes(operand)) return this.emit({ op, inputs, attrs: node.attrs, dtype: node.dtype, shape: node.shape });
    if (isHalfDType(operand) && native.includes("float32") && this.runtime.holds(operand)) {
      const widened = node.src.map((s, i) => (s.dtype === operand ? this.widen(inputs[i]!, s) : inputs[i]!));
      const outDType = node.dtype === operand ? "float32" : node.dtype;
      const result = this.emit({ op, inputs: widened, attrs: node.attrs, dtype: outDType, shape: node.shape });
      // Outputs of another dtype (comparisons, indices) need no rounding, nor do exact ops on float32-held values.
      if (node.dtype !== operand) return result;
      if (this.caps.storage[operand] === "float32" && row.exact) return result;
      return this.emit({ op: "cast", inputs: [result], attrs: { to: operand }, dtype: operand, shape: node.shape });
    }
    throw new UnsupportedOpError(this.runtime.backend.name, op, operand, native);
  }

  /** A 16-bit value as float32: free where the backend already stores it as float32. */
  private widen(id: number, node: LazyNode): number {
    if (this.caps.storage[node.dtype] === "float32") return id;
    return this.emit({ op: "cast", inputs: [id], attrs: { to: "float32" }, dtype: "float32", shape: node.shape });
  }

  private lowerCast(node: LazyNode, input: number, from: DType): number {
    const to = node.dtype;
    this.runtime.checkStorage("cast", from);
    this.runtime.checkStorage("cast", to);
    if (from === to) return input;
    // Widening a float32-stored 16-bit value to float32 changes nothing.
    if (isHalfDType(from) && to === "float32" && this.caps.storage[from] === "float32") return input;
    const operand = this.caps.storage[from] === "float32" ? "float32" : from;
    const native = this.caps.ops.cast ?? [];
    if (!native.includes(operand)) throw new UnsupportedOpError(this.runtime.backend.name, "cast", from, native);
    return this.emit({ op: "cast", inputs: [input], attrs: { to }, dtype: to, shape: node.shape });
  }

  private structuralKey(outputs: readonly number[]): string {
    let key = "";
    for (const v of this.inputs) key += `${v.dtype}[${v.shape.join(",")}];`;
    for (const ins of this.instructions) {
      key += `${ins.op}(${ins.inputs.join(",")})${ins.dtype}[${ins.shape.join(",")}]`;
      key += ins.op === "const" ? `=${Object.is(ins.value, -0) ? "-0" : ins.value}` : attrKey(ins.op, ins.attrs);
      key += ";";
    }
    return `${key}->${outputs.join(",")}`;
  }
}
