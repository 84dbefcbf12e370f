import { OPS, type DType, type Instruction, type KernelRegistry, type Program, type ValueInfo } from "@nbit/core";
import { findFusions, type Fusion } from "./fuse.js";
import { encodeModel, OnnxType, type Attribute, type OnnxGraph, type OnnxNode, type OnnxTensor, type OnnxTypeCode, type OnnxValue } from "./onnx-proto.js";

/** The ONNX type a value travels in: narrow floats live as float32 holding exactly-rounded values. */
export function physicalType(dtype: DType): OnnxTypeCode {
  switch (dtype) {
    case "float64":
      return OnnxType.DOUBLE;
    case "int32":
      return OnnxType.INT32;
    case "int8":
      return OnnxType.INT8;
    case "uint8":
      return OnnxType.UINT8;
    case "bool":
      return OnnxType.BOOL;
    default:
      return OnnxType.FLOAT;
  }
}

function scalarRaw(value: number, type: OnnxTypeCode): Uint8Array {
  switch (type) {
    case OnnxType.DOUBLE:
      return new Uint8Array(Float64Array.of(value).buffer);
    case OnnxType.FLOAT:
      return new Uint8Array(Float32Array.of(value).buffer);
    case OnnxType.INT32:
      return new Uint8Array(Int32Array.of(value).buffer);
    case OnnxType.INT8:
      return new Uint8Array(Int8Array.of(value).buffer);
    default:
      return Uint8Array.of(value);
  }
}

/** What a lowering kernel may do while it translates one instruction. */
export interface LoweringContext {
  /** Appends an ONNX node. */
  node(op: string, inputs: readonly string[], outputs: readonly string[], attributes?: readonly Attribute[]): void;
  /** A fresh name for an intermediate value. */
  temp(): string;
  /** A 1-D int64 constant (shapes, axes, pads). */
  int64s(values: readonly number[]): string;
  /** A scalar constant of `dtype`'s physical type. */
  scalar(value: number, dtype: DType): string;
  /** Dtype and shape of program value `v`. */
  info(v: number): ValueInfo;
  /** The instruction that defines value `v`, or undefined for a program input. */
  producer(v: number): Instruction | undefined;
}

/** Translates one instruction (inputs already named `args`) into ONNX nodes that define `out`. */
export type OnnxLowering = (ctx: LoweringContext, ins: Instruction, args: readonly string[], out: string) => void;

/** How `lowerProgram` names the graph's inputs and outputs and which values it computes at run time (export uses these). */
export interface LoweringOptions {
  /** Program input `i` as a graph input (name and dims, a string dim being symbolic) or as a constant initializer. */
  readonly bindInput?: (i: number) => { readonly input: OnnxValue } | { readonly initializer: OnnxTensor; readonly cast?: OnnxTypeCode };
  /** The graph's k-th output: name and dims (default `out${k}` with the program's dims). */
  readonly output?: (k: number, info: ValueInfo) => OnnxValue;
  /**
   * Replaces the int64 constant a kernel asks for with a value computed in the graph (a shape that
   * depends on a symbolic dim); `values` is the very array the kernel passed (ins.shape, an attribute).
   */
  readonly int64s?: (values: readonly number[], ctx: LoweringContext) => string | undefined;
  /** Lower patterns onnxruntime has one op for to that op (see fuse.ts); default true. */
  readonly fuse?: boolean;
}

/**
 * Translates a core program into one ONNX graph, each instruction by the lowering kernel the
 * backend registered for its op and operand dtype (core already refused ops it lacks). With
 * `fuse` (the default), patterns onnxruntime has one op for are lowered to it (see fuse.ts).
 */
export function programToOnnx(program: Program, kernels: KernelRegistry<OnnxLowering>, { fuse = true }: { fuse?: boolean } = {}): Uint8Array {
  return encodeModel(lowerProgram(program, kernels, { fuse }));
}

/** The ONNX graph of a program (see programToOnnx); `options` rebinds its inputs and outputs. */
export function lowerProgram(program: Program, kernels: KernelRegistry<OnnxLowering>, options: LoweringOptions = {}): OnnxGraph {
  const fuse = options.fuse ?? true;
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const infos: readonly ValueInfo[] = [...program.inputs, ...program.instructions];
  const base = program.inputs.length;
  // Computed outputs are written straight into the graph's output names; an output that is an
  // input, or a value returned twice, goes through an Identity.
  const outputs = program.outputs.map(
    (v, k) => options.output?.(k, infos[v]!) ?? { name: `out${k}`, type: physicalType(infos[v]!.dtype), dims: infos[v]!.shape },
  );
  const outputName = new Map<number, string>();
  program.outputs.forEach((v, k) => {
    if (v >= base && !outputName.has(v)) outputName.set(v, outputs[k]!.name);
  });
  const name = (v: number) => outputName.get(v) ?? `v${v}`;
  let temp = 0;
  const constant = (raw: Uint8Array, type: OnnxTypeCode, dims: readonly number[]) => {
    const n = `c${initializers.length}`;
    initializers.push({ name: n, type, dims, raw });
    return n;
  };
  const staticInt64s = (values: readonly number[]) => constant(new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer), OnnxType.INT64, [values.length]);
  const ctx: LoweringContext = {
    node: (op, inputs, outputs, attributes) => void nodes.push({ op, inputs, outputs, ...(attributes ? { attributes } : {}) }),
    temp: () => `t${temp++}`,
    int64s: (values) => options.int64s?.(values, { ...ctx, int64s: staticInt64s }) ?? staticInt64s(values),
    scalar: (value, dtype) => constant(scalarRaw(value, physicalType(dtype)), physicalType(dtype), []),
    info: (v) => infos[v]!,
    producer: (v) => (v >= base ? program.instructions[v - base] : undefined),
  };

  // Fused patterns replace their root instruction; whatever only they read is then dead.
  const uses = new Array<number>(infos.length).fill(0);
  for (const ins of program.instructions) for (const v of ins.inputs) uses[v]!++;
  for (const v of program.outputs) uses[v]!++;
  const fusions = fuse ? findFusions(program, uses) : new Map<number, Fusion>();
  const live = new Array<boolean>(infos.length).fill(false);
  for (const v of program.outputs) live[v] = true;
  for (let i = program.instructions.length - 1; i >= 0; i--)
    if (live[base + i]) for (const v of fusions.get(base + i)?.inputs ?? program.instructions[i]!.inputs) live[v] = true;

  const inputs: OnnxValue[] = [];
  program.inputs.forEach((v, i) => {
    const bound = options.bindInput?.(i) ?? { input: { name: name(i), type: physicalType(v.dtype), dims: v.shape } };
    if ("input" in bound) {
      if (bound.input.name !== name(i)) nodes.push({ op: "Identity", inputs: [bound.input.name], outputs: [name(i)] });
      inputs.push(bound.input);
    } else if (bound.cast === undefined) initializers.push({ ...bound.initializer, name: name(i) });
    else {
      // Weights stored narrower than they compute (float16 on disk): one Cast when the session loads.
      initializers.push(bound.initializer);
      nodes.push({ op: "Cast", inputs: [bound.initializer.name], outputs: [name(i)], attributes: [{ name: "to", int: bound.cast }] });
    }
  });

  program.instructions.forEach((ins, i) => {
    if (!live[base + i]) return;
    const out = name(base + i);
    const fusion = fusions.get(base + i);
    if (fusion) return fusion.lower(ctx, fusion.inputs.map(name), out);
    if (ins.op === "const") {
      initializers.push({ name: out, type: physicalType(ins.dtype), dims: ins.shape, raw: scalarRaw(ins.value!, physicalType(ins.dtype)) });
      return;
    }
    const operand = infos[ins.inputs[OPS[ins.op].operand]!]!.dtype;
    kernels.get(ins.op, physicalDType(operand))(ctx, ins, ins.inputs.map(name), out);
  });

  // Distinct graph outputs, even when a program returns an input or one value twice.
  program.outputs.forEach((v, k) => {
    if (name(v) !== outputs[k]!.name) nodes.push({ op: "Identity", inputs: [name(v)], outputs: [outputs[k]!.name] });
  });
  return { nodes, initializers, inputs, outputs };
}

/** The dtype whose kernel runs a value: narrow floats are float32 values here. */
const physicalDType = (dtype: DType): DType => (physicalType(dtype) === OnnxType.FLOAT ? "float32" : dtype);
