import { isHalfDType, type DType, type Instruction, type Program } from "@nbit/core";
import { encodeModel, OnnxType, type OnnxGraph, type OnnxNode, type OnnxTensor, type OnnxTypeCode } from "./onnx-proto.js";

/** The ONNX type a value travels in: 16-bit floats live as float32 holding exactly-rounded values. */
export function physicalType(dtype: DType): OnnxTypeCode {
  switch (dtype) {
    case "float64":
      return OnnxType.DOUBLE;
    case "float32":
    case "float16":
    case "bfloat16":
      return OnnxType.FLOAT;
    case "int32":
      return OnnxType.INT32;
    case "int8":
      return OnnxType.INT8;
    case "uint8":
      return OnnxType.UINT8;
    case "bool":
      return OnnxType.BOOL;
  }
}

const SIMPLE: Partial<Record<Instruction["op"], string>> = {
  neg: "Neg",
  exp: "Exp",
  log: "Log",
  sqrt: "Sqrt",
  tanh: "Tanh",
  add: "Add",
  sub: "Sub",
  mul: "Mul",
  div: "Div",
  maximum: "Max",
  less: "Less",
  equal: "Equal",
  where: "Where",
  matmul: "MatMul",
};

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

const int64s = (values: readonly number[]): Uint8Array => new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);

/**
 * Translates a core program into one ONNX graph. Rounding to a 16-bit type is a Cast into it and
 * a Cast back to float32; onnxruntime keeps such pairs (its cast-chain elimination is off by
 * default and nbit never turns it on), and the conformance kit checks that they round.
 */
export function programToOnnx(program: Program): Uint8Array {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const infos = [...program.inputs, ...program.instructions];
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

  program.instructions.forEach((ins, i) => {
    const out = name(base + i);
    const args = ins.inputs.map(name);
    // max(x, 0) is ReLU; as Relu, onnxruntime fuses it into the preceding Gemm.
    const second = ins.inputs[1]! >= base ? program.instructions[ins.inputs[1]! - base] : undefined;
    if (ins.op === "maximum" && second?.op === "const" && second.value === 0 && !Object.is(second.value, -0))
      return nodes.push({ op: "Relu", inputs: [args[0]!], outputs: [out] });
    const simple = SIMPLE[ins.op];
    if (simple) return nodes.push({ op: simple, inputs: args, outputs: [out] });
    switch (ins.op) {
      case "const":
        initializers.push({ name: out, type: physicalType(ins.dtype), dims: ins.shape, raw: scalarRaw(ins.value!, physicalType(ins.dtype)) });
        return;
      case "sum":
      case "max":
        return nodes.push({
          op: ins.op === "sum" ? "ReduceSum" : "ReduceMax",
          inputs: [args[0]!, constant(int64s(ins.attrs.axes!), OnnxType.INT64, [ins.attrs.axes!.length])],
          outputs: [out],
          attributes: [{ name: "keepdims", int: ins.attrs.keepDims ? 1 : 0 }],
        });
      case "reshape":
      case "expand":
        return nodes.push({
          op: ins.op === "reshape" ? "Reshape" : "Expand",
          inputs: [args[0]!, constant(int64s(ins.shape), OnnxType.INT64, [ins.shape.length])],
          outputs: [out],
        });
      case "transpose":
        return nodes.push({ op: "Transpose", inputs: args, outputs: [out], attributes: [{ name: "perm", ints: ins.attrs.perm! }] });
      case "cast": {
        const from = infos[ins.inputs[0]!]!.dtype;
        const to = ins.dtype;
        if (!isHalfDType(to)) return nodes.push({ op: "Cast", inputs: args, outputs: [out], attributes: [{ name: "to", int: physicalType(to) }] });
        // To a 16-bit type: from float32 (float64 goes through float32 first, as in core), then back.
        let src = args[0]!;
        if (physicalType(from) !== OnnxType.FLOAT) {
          const f = `t${temp++}`;
          nodes.push({ op: "Cast", inputs: [src], outputs: [f], attributes: [{ name: "to", int: OnnxType.FLOAT }] });
          src = f;
        }
        const narrow = `t${temp++}`;
        nodes.push({ op: "Cast", inputs: [src], outputs: [narrow], attributes: [{ name: "to", int: to === "float16" ? OnnxType.FLOAT16 : OnnxType.BFLOAT16 }] });
        return nodes.push({ op: "Cast", inputs: [narrow], outputs: [out], attributes: [{ name: "to", int: OnnxType.FLOAT }] });
      }
      default:
        throw new Error(`cpu backend: no ONNX lowering for op "${ins.op}"`);
    }
  });

  // Distinct graph outputs, even when a program returns an input or one value twice.
  const outputs = program.outputs.map((v, k) => {
    if (name(v) !== `out${k}`) nodes.push({ op: "Identity", inputs: [name(v)], outputs: [`out${k}`] });
    return { name: `out${k}`, type: physicalType(infos[v]!.dtype), dims: infos[v]!.shape };
  });
  const graph: OnnxGraph = {
    nodes,
    initializers,
    inputs: program.inputs.map((v, i) => ({ name: name(i), type: physicalType(v.dtype), dims: v.shape })),
    outputs,
  };
  return encodeModel(graph);
}
