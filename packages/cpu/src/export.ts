import {
  autocast,
  FLOAT_FORMATS,
  hostToFloat32,
  isFloatDType,
  isHalfDType,
  LazyNode,
  NbitError,
  noGrad,
  numbersToHost,
  OPS,
  Tensor,
  type DType,
  type HostArray,
  type Instruction,
  type Module,
  type PrimitiveOp,
  type Program,
  type ValueInfo,
} from "@nbit/core";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { CPU_CAPABILITIES } from "./backend.js";
import { CPU_KERNELS } from "./kernels.js";
import { lowerProgram, physicalType, type LoweringContext } from "./lower.js";
import { encodeModel, OnnxType, type OnnxTensor } from "./onnx-proto.js";

/** A model nbit cannot write as an ONNX inference graph; the message says what and why. */
export class ExportError extends NbitError {
  constructor(message: string) {
    super("EXPORT_UNSUPPORTED", `exportOnnx: ${message}`);
  }
}

export interface ExportOnnxOptions {
  /** How weights are stored in the file: float32, or float16 (half the size, cast to float32 as the session loads). Default float32. */
  readonly dtype?: "float32" | "float16";
  /** A symbolic batch dim (default true): the graph takes any batch size. False: the example's shape only. */
  readonly dynamicBatch?: boolean;
  /** Names of the graph's input and output (default "input" and "output"). */
  readonly inputName?: string;
  readonly outputName?: string;
}

const BATCH = "batch";

interface Trace {
  readonly program: Program;
  /** The leaf behind each program input (the example input is input 0). */
  readonly leaves: readonly LazyNode[];
}

/**
 * Writes `model`'s eval-mode forward as a standard ONNX inference model at `path`: the traced
 * graph of primitives (whatever layers produced it), its weights and buffers as initializers,
 * one float32 input and one float32 output. onnxruntime-node and onnxruntime-web run the file.
 */
export async function exportOnnx(model: Module, exampleInput: Tensor, path: string, options: ExportOnnxOptions = {}): Promise<void> {
  const bytes = await exportOnnxBytes(model, exampleInput, options);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
}

/** The ONNX model bytes exportOnnx writes. */
export async function exportOnnxBytes(model: Module, exampleInput: Tensor, options: ExportOnnxOptions = {}): Promise<Uint8Array> {
  const weightType = options.dtype ?? "float32";
  if (weightType !== "float32" && weightType !== "float16") throw new ExportError(`dtype must be "float32" or "float16", got ${JSON.stringify(weightType)}`);
  if (!(exampleInput instanceof Tensor) || exampleInput.rank < 1) throw new ExportError("the example input must be a Tensor with a batch axis");
  if (!isFloatDType(exampleInput.dtype)) throw new ExportError(`the example input must be floating point, got ${exampleInput.dtype}`);
  const dynamic = options.dynamicBatch ?? true;
  const batch = exampleInput.shape[0]!;
  const first = trace(model, exampleInput.shape, exampleInput.dtype);
  // A second trace at another batch size shows which shapes follow the batch: each such value must be a*batch + c.
  const second = dynamic ? trace(model, [batch + 1, ...exampleInput.shape.slice(1)], exampleInput.dtype) : null;
  const dynamicShapes = second ? batchDependentShapes(first.program, second.program, batch) : new Map<readonly number[], Linear[]>();

  const weights = await Promise.all(first.leaves.slice(1).map((leaf) => leafHost(leaf)));
  const inputName = options.inputName ?? "input";
  const outputName = options.outputName ?? "output";
  let batchVector: string | null = null;
  const batchOf = (ctx: LoweringContext): string => {
    if (batchVector) return batchVector;
    const [shape, b] = [ctx.temp(), ctx.temp()];
    ctx.node("Shape", [inputName], [shape]);
    ctx.node("Slice", [shape, ctx.int64s([0]), ctx.int64s([1])], [b]);
    batchVector = b;
    return b;
  };
  const symbolic = (dims: readonly number[], other: readonly number[] | undefined): (number | string)[] =>
    dims.map((d, i) => (other && other[i] !== d ? (other[i]! - d === 1 && d === batch ? BATCH : `${BATCH}_dim${i}`) : d));

  const graph = lowerProgram(first.program, CPU_KERNELS, {
    bindInput: (i) => {
      if (i === 0)
        return {
          input: {
            name: inputName,
            type: physicalType(exampleInput.dtype),
            dims: symbolic(first.program.inputs[0]!.shape, second ? second.program.inputs[0]!.shape : undefined),
          },
        };
      const info = first.program.inputs[i]!;
      return { ...initializer(`w${i}`, weights[i - 1]!, info, weightType) };
    },
    output: (k, info) => {
      const v = first.program.outputs[k]!;
      const other = second ? infoOf(second.program, v).shape : undefined;
      return { name: outputName, type: physicalType(info.dtype), dims: symbolic(info.shape, other) };
    },
    int64s: (values, ctx) => {
      const linear = dynamicShapes.get(values);
      if (!linear) return undefined;
      // values[i] = a_i * batch + c_i, computed from the input's batch size.
      const [scaled, out] = [ctx.temp(), ctx.temp()];
      ctx.node("Mul", [batchOf(ctx), ctx.int64s(linear.map((l) => l.a))], [scaled]);
      ctx.node("Add", [scaled, ctx.int64s(linear.map((l) => l.c))], [out]);
      return out;
    },
  });
  return encodeModel(graph, 18, "nbit_export");
}

function trace(model: Module, shape: readonly number[], dtype: DType): Trace {
  const input = Tensor.fromHost(numbersToHost(new Array<number>(shape.reduce((a, b) => a * b, 1)).fill(0), dtype), shape, dtype);
  const wasTraining = model.training;
  model.eval();
  let out: unknown;
  try {
    out = noGrad(() => autocast(null, () => model.forward(input)));
  } finally {
    model.train(wasTraining);
  }
  if (!(out instanceof Tensor)) throw new ExportError(`${model.constructor.name}.forward must return one Tensor, got ${out === null ? "null" : typeof out}`);
  if (out.node === input.node) throw new ExportError(`${model.constructor.name}.forward returns its input unchanged`);
  // Parameters and buffers are the graph's weights even while they are still lazy (updated, not yet computed).
  const state = new Set(Object.values(model.stateDict()).map((t) => t.node));
  return lower(out.node, input.node, state);
}

/** Lowers the graph under `root` as the CPU backend would (narrow floats held as float32, rounded after inexact ops). */
function lower(root: LazyNode, input: LazyNode, weights: ReadonlySet<LazyNode>): Trace {
  const isInput = (node: LazyNode) => node.isLeaf || weights.has(node);
  const order: LazyNode[] = [];
  const seen = new Set<LazyNode>();
  const stack: [LazyNode, boolean][] = [[root, false]];
  while (stack.length) {
    const [node, expanded] = stack.pop()!;
    if (expanded) {
      order.push(node);
      continue;
    }
    if (seen.has(node)) continue;
    seen.add(node);
    stack.push([node, true]);
    if (!isInput(node)) for (let i = node.src.length - 1; i >= 0; i--) if (!seen.has(node.src[i]!)) stack.push([node.src[i]!, false]);
  }
  const leaves = [input, ...order.filter((n) => isInput(n) && n !== input)];
  const inputs: ValueInfo[] = leaves.map((n) => ({ dtype: n.dtype, shape: n.shape }));
  const instructions: Instruction[] = [];
  const ids = new Map<LazyNode, number>(leaves.map((n, i) => [n, i]));
  const emit = (ins: Instruction) => instructions.push(ins) + inputs.length - 1;
  const storage = CPU_CAPABILITIES.storage;
  for (const node of order) {
    if (isInput(node)) continue;
    const args = node.src.map((s) => ids.get(s)!);
    if (!storage[node.dtype]) throw new ExportError(`a ${node.op} of dtype ${node.dtype}: ONNX on the CPU holds ${Object.keys(storage).join(", ")}`);
    if (node.op === "const") {
      ids.set(node, emit({ op: "const", inputs: [], attrs: {}, dtype: node.dtype, shape: node.shape, value: node.value! }));
      continue;
    }
    const op = node.op as PrimitiveOp;
    if (op === "cast") {
      const from = node.src[0]!.dtype;
      const free = from === node.dtype || (isHalfDType(from) && node.dtype === "float32");
      ids.set(node, free ? args[0]! : emit({ op, inputs: args, attrs: node.attrs, dtype: node.dtype, shape: node.shape }));
      continue;
    }
    const operand = node.src[OPS[op].operand]!.dtype;
    const kernelDType = isHalfDType(operand) ? "float32" : operand;
    const kernels = CPU_CAPABILITIES.ops[op] ?? [];
    if (!kernels.includes(kernelDType))
      throw new ExportError(`the traced forward uses ${op} on ${operand}; ONNX export has ${op} for ${kernels.join(", ") || "no dtype"} only`);
    if (isHalfDType(operand) && node.dtype === operand && !OPS[op].exact) {
      const wide = emit({ op, inputs: args, attrs: node.attrs, dtype: "float32", shape: node.shape });
      ids.set(node, emit({ op: "cast", inputs: [wide], attrs: { to: operand }, dtype: operand, shape: node.shape }));
    } else ids.set(node, emit({ op, inputs: args, attrs: node.attrs, dtype: node.dtype, shape: node.shape }));
  }
  return { program: { inputs, instructions, outputs: [ids.get(root)!], key: "" }, leaves };
}

interface Linear {
  readonly a: number;
  readonly c: number;
}

const infoOf = (program: Program, v: number): ValueInfo => (v < program.inputs.length ? program.inputs[v]! : program.instructions[v - program.inputs.length]!);

/**
 * Compares the traces at batch sizes b and b + 1 and returns, for every int array of the first
 * that changed (shapes, slice bounds), each entry as a * batch + c. Anything else that changed
 * (structure, constants, other attributes) means the graph is not one graph for every batch size.
 */
function batchDependentShapes(p1: Program, p2: Program, b: number): Map<readonly number[], Linear[]> {
  const notOneGraph = (what: string) =>
    new ExportError(`the traced forward changes with the batch size (${what}), so it has no graph for every batch size; export with { dynamicBatch: false }`);
  const found = new Map<readonly number[], Linear[]>();
  if (p1.inputs.length !== p2.inputs.length || p1.instructions.length !== p2.instructions.length || p1.outputs.join() !== p2.outputs.join())
    throw notOneGraph("a different number of operations");
  p1.inputs.slice(1).forEach((v, i) => {
    if (v.shape.join() !== p2.inputs[i + 1]!.shape.join()) throw notOneGraph(`weight ${i} has another shape`);
  });
  const compare = (x: readonly number[], y: readonly number[], where: string, dynamicAllowed: boolean) => {
    if (x.length !== y.length) throw notOneGraph(`${where} changes rank`);
    if (x.every((d, i) => d === y[i])) return;
    if (!dynamicAllowed) throw notOneGraph(`${where} changes`);
    // With batch sizes b and b + 1, the slope is the difference.
    found.set(
      x,
      x.map((d, i) => ({ a: y[i]! - d, c: d - (y[i]! - d) * b })),
    );
  };
  p1.instructions.forEach((ins, i) => {
    const other = p2.instructions[i]!;
    const where = `${ins.op} #${i}`;
    if (ins.op !== other.op || ins.dtype !== other.dtype || ins.inputs.join() !== other.inputs.join()) throw notOneGraph(`${where} differs`);
    if (ins.op === "const") {
      if (!Object.is(ins.value, other.value)) throw notOneGraph(`the constant ${ins.value} at ${where} becomes ${other.value}`);
      return;
    }
    // Output shapes follow from the inputs at run time, except where a kernel passes them as int64
    // constants (reshape and expand targets); those, and slice ends, are computed from the batch size.
    if (ins.op === "reshape" || ins.op === "expand") compare(ins.shape, other.shape, `the shape of ${where}`, true);
    for (const [name, value] of Object.entries(ins.attrs)) {
      const otherValue = (other.attrs as Record<string, unknown>)[name];
      const computable = (ins.op === "slice" && name === "ends") || ((ins.op === "reshape" || ins.op === "expand") && name === "shape");
      if (Array.isArray(value)) compare(value, otherValue as number[], `attribute ${name} of ${where}`, computable);
      else if (!Object.is(value, otherValue)) throw notOneGraph(`attribute ${name} of ${where} changes`);
    }
  });
  return found;
}

async function leafHost(leaf: LazyNode): Promise<HostArray> {
  return new Tensor(leaf).toHost();
}

function initializer(name: string, host: HostArray, info: ValueInfo, weightType: "float32" | "float16"): { initializer: OnnxTensor; cast?: number } {
  const dims = info.shape;
  if (!isFloatDType(info.dtype)) {
    const raw = new Uint8Array(host.buffer.slice(host.byteOffset, host.byteOffset + host.byteLength));
    return { initializer: { name, type: physicalType(info.dtype), dims, raw } };
  }
  if (info.dtype === "float64") {
    // float64 leaves keep their type (the graph computes in float64 there).
    const raw = new Uint8Array(host.buffer.slice(host.byteOffset, host.byteOffset + host.byteLength));
    return { initializer: { name, type: OnnxType.DOUBLE, dims, raw } };
  }
  const values = isHalfDType(info.dtype) ? hostToFloat32(host, info.dtype) : (host as Float32Array);
  if (weightType === "float16") {
    const bits = numbersToHost(values, "float16") as Uint16Array;
    return {
      initializer: {
        name,
        type: FLOAT_FORMATS.float16.onnxType,
        dims,
        raw: new Uint8Array(bits.buffer.slice(bits.byteOffset, bits.byteOffset + bits.byteLength)),
      },
      cast: OnnxType.FLOAT,
    };
  }
  return { initializer: { name, type: OnnxType.FLOAT, dims, raw: new Uint8Array(Float32Array.from(values).buffer) } };
}
