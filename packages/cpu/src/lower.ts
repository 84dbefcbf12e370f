import { OPS, type DType, type Instruction, type KernelRegistry, type Program, type ValueInfo } from "@nbit/core";
import { findFusions, type Fusion } from "./fuse.js";
import { encodeModel, OnnxType, type Attribute, type OnnxNode, type OnnxTensor, type OnnxTypeCode } from "./onnx-proto.js";

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

/**
 * Translates a core program into one ONNX graph, each instruction by the lowering kernel the
 * backend registered for its op and operand dtype (core already refused ops it lacks). With
 * `fuse` (the default), patterns onnxruntime has one op for are lowered to it (see fuse.ts).
 */
export function programToOnnx(program: Program, kernels: KernelRegistry<OnnxLowering>, { fuse = true }: { fuse?: boolean } = {}): Uint8Array {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const infos: readonly ValueInfo[] = [...program.inputs, ...program.instructions];
  const base = program.inputs.length;
  // Computed outputs are written straight into the graph's output names; an output that is an
  // input, or a value returned twice, goes through an Identity.
  const outputName = new Map<number, string>();
  program.outputs.forEach((v, k) => {
    if (v >= base && !outputName.has(v)) outputName.set(v, `out${k}`);
  });
  const name = (v: number) => outputName.get(v) ?? `v${v}`;
  let temp = 0;
  const constant = (raw: Uint8Array, type: OnnxTypeCode, dims: readonly number[]) => {
    const n = `c${initializers.length}`;
    initializers.push({ name: n, type, dims, raw });
    return n;
  };
  const ctx: LoweringContext = {
    node: (op, inputs, outputs, attributes) => void nodes.push({ op, inputs, outputs, ...(attributes ? { attributes } : {}) }),
    temp: () => `t${temp++}`,
    int64s: (values) => constant(new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer), OnnxType.INT64, [values.length]),
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
  const outputs = program.outputs.map((v, k) => {
    if (name(v) !== `out${k}`) nodes.push({ op: "Identity", inputs: [name(v)], outputs: [`out${k}`] });
    return { name: `out${k}`, type: physicalType(infos[v]!.dtype), dims: infos[v]!.shape };
  });
  return encodeModel({
    nodes,
    initializers,
    inputs: program.inputs.map((v, i) => ({ name: name(i), type: physicalType(v.dtype), dims: v.shape })),
    outputs,
  });
}

/** The dtype whose kernel runs a value: narrow floats are float32 values here. */
const physicalDType = (dtype: DType): DType => (physicalType(dtype) === OnnxType.FLOAT ? "float32" : dtype);
