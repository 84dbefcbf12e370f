import { isHalfDType, type DType, type HostArray } from "../dtype.js";
import { NbitError, RuntimeMismatchError, UnsupportedOpError } from "../errors.js";
import type { Backend, BackendBuffer, CompiledProgram, Instruction, Program, ValueInfo } from "./backend.js";
import { withRuntime } from "./context.js";
import { LazyNode } from "./node.js";
import { attrKey, OPS, type PrimitiveOp } from "./ops.js";

export interface RuntimeStats {
  programsCompiled: number;
  programsRun: number;
  instructionsRun: number;
}

/** Runs lazy graphs on one backend: lowers them to programs, caches compiled ones, holds buffers. */
export class Runtime {
  private readonly compiled = new Map<string, Promise<CompiledProgram>>();
  /** Frees a buffer once the node that owns it is garbage-collected (tfjs tensors need an explicit dispose). */
  private readonly finalizer: FinalizationRegistry<BackendBuffer> | null;
  readonly stats: RuntimeStats = { programsCompiled: 0, programsRun: 0, instructionsRun: 0 };

  constructor(readonly backend: Backend) {
    this.finalizer = backend.dispose ? new FinalizationRegistry((buffer) => backend.dispose!(buffer)) : null;
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
    const builder = new ProgramBuilder(this);
    const program = builder.build(pending);
    const buffers = await this.execute(program, builder.inputBuffers);
    pending.forEach((n, i) => {
      n.realizeAs(this, buffers[i]!);
      this.finalizer?.register(n, buffers[i]!);
    });
    for (const leaf of builder.uploadedLeaves) leaf.host = undefined;
  }

  async download(node: LazyNode): Promise<HostArray> {
    if (node.isLeaf && node.host) return node.host;
    await this.realize([node]);
    return this.backend.download(node.device!.buffer, node.dtype, node.shape);
  }

  upload(node: LazyNode): BackendBuffer {
    if (node.device?.runtime === this) return node.device.buffer;
    if (node.device) throw new RuntimeMismatchError(this.backend.name, node.device.runtime.backend.name, node.shape);
    if (!node.host) throw new NbitError("INTERNAL", `A leaf of shape [${node.shape.join(", ")}] holds no data`);
    this.checkStorage("upload", node.dtype);
    const buffer = this.backend.upload(node.host, node.dtype, node.shape);
    node.device = { runtime: this, buffer };
    this.finalizer?.register(node, buffer);
    return buffer;
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
    this.stats.programsRun++;
    if (this.backend.capabilities.execution === "graph") {
      let exe = this.compiled.get(program.key);
      if (!exe) {
        this.stats.programsCompiled++;
        exe = Promise.resolve(this.backend.compile!(program));
        this.compiled.set(program.key, exe);
      }
      this.stats.instructionsRun += program.instructions.length;
      return (await exe).run(inputs);
    }
    return this.interpret(program, inputs);
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
      values[base + i] = this.backend.execute!(ins, args, ins.inputs.map((v) => infos[v]!));
      this.stats.instructionsRun++;
      if (this.backend.dispose)
        for (const v of new Set(ins.inputs)) if (v >= base && lastUse[v] === i) this.backend.dispose(values[v]!);
    });
    return program.outputs.map((o) => values[o]!);
  }
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

  /** Lowers the graph under `roots`; leaves become the program's inputs, numbered first. */
  build(roots: readonly LazyNode[]): Program {
    const order: LazyNode[] = [];
    const seen = new Set<LazyNode>();
    // Iterative post-order walk: graphs of long training runs are deeper than the call stack.
    const stack: [LazyNode, boolean][] = roots.map((r) => [r, false] as [LazyNode, boolean]).reverse();
    while (stack.length) {
      const [node, expanded] = stack.pop()!;
      if (expanded) {
        order.push(node);
        continue;
      }
      if (seen.has(node)) continue;
      seen.add(node);
      stack.push([node, true]);
      if (!node.isLeaf) for (let i = node.src.length - 1; i >= 0; i--) if (!seen.has(node.src[i]!)) stack.push([node.src[i]!, false]);
    }
    for (const node of order) if (node.isLeaf) this.ids.set(node, this.addInput(node));
    for (const node of order) if (!node.isLeaf) this.ids.set(node, this.lower(node));
    // Every output gets a buffer of its own: a value that is an input (an elided cast) or is
    // returned twice is copied by a same-shape reshape, so no two nodes own one buffer.
    const taken = new Set<number>();
    const outputs = roots.map((r) => {
      let id = this.ids.get(r)!;
      if (id < this.inputs.length || taken.has(id))
        id = this.emit({ op: "reshape", inputs: [id], attrs: { shape: r.shape }, dtype: r.dtype, shape: r.shape });
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
