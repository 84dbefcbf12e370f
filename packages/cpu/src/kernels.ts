import { FLOAT_FORMATS, isHalfDType, KernelRegistry, type DType, type Instruction, type KernelSpec, type PrimitiveOp } from "@nbit/core";
import { OnnxType, type Attribute } from "./onnx-proto.js";
import { physicalType, type OnnxLowering } from "./lower.js";

const FLOATS: DType[] = ["float64", "float32"];
const NUMERIC: DType[] = [...FLOATS, "int32"];
const STORED: DType[] = [...NUMERIC, "bool", "uint8", "int8"];

/** One ONNX node with the instruction's inputs and output, and optional attributes. */
const simple =
  (onnxOp: string, attributes?: (ins: Instruction) => Attribute[]): OnnxLowering =>
  (ctx, ins, args, out) =>
    ctx.node(onnxOp, args, [out], attributes?.(ins));

const spec = (op: PrimitiveOp, dtypes: readonly DType[], kernel: OnnxLowering): KernelSpec<OnnxLowering> => ({ op, dtypes, kernel });
const pads = ([h, w]: readonly [number, number]) => [h, w, h, w];

/**
 * Relu, which onnxruntime fuses into the preceding Gemm. Its Relu keeps -0 (max(-0, 0) = -0), so
 * floats add +0 after it: -0 + 0 is +0 and every other value passes unchanged, the bits of the
 * other backends. The addition is a Sum: onnxruntime removes an Add of a zero scalar as a no-op
 * wherever its result is not a graph output.
 */
const relu: OnnxLowering = (ctx, ins, [x], out) => {
  if (ins.dtype === "int32") return ctx.node("Relu", [x!], [out]);
  const r = ctx.temp();
  ctx.node("Relu", [x!], [r]);
  ctx.node("Sum", [r, ctx.scalar(0, ins.dtype)], [out]);
};

const reduce =
  (onnxOp: string): OnnxLowering =>
  (ctx, ins, [x], out) =>
    ctx.node(onnxOp, [x!, ctx.int64s(ins.attrs.axes!)], [out], [{ name: "keepdims", int: ins.attrs.keepDims ? 1 : 0 }]);

const withShape =
  (onnxOp: string): OnnxLowering =>
  (ctx, ins, [x], out) =>
    ctx.node(onnxOp, [x!, ctx.int64s(ins.shape)], [out]);

/**
 * Casts. Rounding to a narrow float is a Cast into it and a Cast back to float32 (from float32;
 * float64 goes through float32 first, as in core); onnxruntime keeps such pairs (its cast-chain
 * elimination is off by default and nbit never turns it on), and the conformance kit checks
 * that they round.
 */
const cast: OnnxLowering = (ctx, ins, [x], out) => {
  const from = ctx.info(ins.inputs[0]!).dtype;
  if (!isHalfDType(ins.dtype)) return ctx.node("Cast", [x!], [out], [{ name: "to", int: physicalType(ins.dtype) }]);
  let src = x!;
  if (physicalType(from) !== OnnxType.FLOAT) {
    const f = ctx.temp();
    ctx.node("Cast", [src], [f], [{ name: "to", int: OnnxType.FLOAT }]);
    src = f;
  }
  const narrow = ctx.temp();
  ctx.node("Cast", [src], [narrow], [{ name: "to", int: FLOAT_FORMATS[ins.dtype].onnxType }]);
  ctx.node("Cast", [narrow], [out], [{ name: "to", int: OnnxType.FLOAT }]);
};

const conv: OnnxLowering = (ctx, ins, args, out) =>
  ctx.node(
    ins.op === "conv2d" ? "Conv" : "ConvTranspose",
    args,
    [out],
    [
      { name: "strides", ints: ins.attrs.stride! },
      { name: "pads", ints: pads(ins.attrs.padding!) },
      { name: "dilations", ints: ins.attrs.dilation! },
      { name: "group", int: ins.attrs.groups! },
      ...(ins.op === "convTranspose2d" ? [{ name: "output_padding", ints: ins.attrs.outputPadding! }] : []),
    ],
  );

const poolAttributes = (ins: Instruction): Attribute[] => [
  { name: "kernel_shape", ints: ins.attrs.kernel! },
  { name: "strides", ints: ins.attrs.stride! },
  { name: "pads", ints: pads(ins.attrs.padding!) },
];

const maxPool: OnnxLowering = (ctx, ins, [x], out) => {
  const attributes = [...poolAttributes(ins), { name: "dilations", ints: ins.attrs.dilation! }];
  if (ins.op === "maxPool2d") return ctx.node("MaxPool", [x!], [out], attributes);
  // MaxPool's Indices count over the whole NCHW tensor; core's are per H x W plane.
  const [values, flat, local] = [ctx.temp(), ctx.temp(), ctx.temp()];
  ctx.node("MaxPool", [x!], [values, flat], attributes);
  const info = ctx.info(ins.inputs[0]!);
  const plane = info.shape[2]! * info.shape[3]!;
  ctx.node("Mod", [flat, ctx.int64s([plane])], [local]);
  ctx.node("Cast", [local], [out], [{ name: "to", int: OnnxType.INT32 }]);
};

/**
 * Up to this many update elements, index_add over the first axis of a tensor of rank 2 or more
 * scatters whole rows with ScatterND. onnxruntime runs a ScatterND whose slices cost less than
 * its thread pool's threshold for a second thread (1e5 element operations) on the calling
 * thread, slice by slice in index order, so every output element receives its updates in the
 * order ScatterElements (and the reference backend) adds them: the same bits, without
 * ScatterElements' per-element index checks and its strided walk down each column. Beyond it,
 * ScatterND would hand slices to other threads that may add into one row at the same time.
 */
export const SCATTER_ROWS_LIMIT = 65536;

/** index_add as ScatterElements with reduction "add": the 1-D index broadcast to the updates' shape (or ScatterND, see SCATTER_ROWS_LIMIT). */
const indexAdd: OnnxLowering = (ctx, ins, [base, index, updates], out) => {
  const axis = ins.attrs.axis!;
  const shape = ctx.info(ins.inputs[2]!).shape;
  if (axis === 0 && shape.length > 1 && shape.reduce((a, b) => a * b, 1) <= SCATTER_ROWS_LIMIT) {
    const [wide, rows] = [ctx.temp(), ctx.temp()];
    ctx.node("Cast", [index!], [wide], [{ name: "to", int: OnnxType.INT64 }]);
    ctx.node("Reshape", [wide, ctx.int64s([shape[0]!, 1])], [rows]);
    return ctx.node("ScatterND", [base!, rows, updates!], [out], [{ name: "reduction", string: "add" }]);
  }
  // 1-D updates (the cross-entropy gradient's scatter) take the index as it is.
  let expanded = index!;
  if (shape.length > 1) {
    const column = ctx.temp();
    expanded = ctx.temp();
    ctx.node("Reshape", [index!, ctx.int64s(shape.map((d, i) => (i === axis ? d : 1)))], [column]);
    ctx.node("Expand", [column, ctx.int64s(shape)], [expanded]);
  }
  ctx.node(
    "ScatterElements",
    [base!, expanded, updates!],
    [out],
    [
      { name: "axis", int: axis },
      { name: "reduction", string: "add" },
    ],
  );
};

/**
 * The CPU backend's kernels: each lowers one primitive to onnxruntime's native ops. Convolutions
 * and average pooling are float32 only: onnxruntime's CPU provider has no float64 Conv,
 * ConvTranspose or AveragePool.
 */
export const CPU_KERNELS = new KernelRegistry<OnnxLowering>("cpu", [
  spec("neg", FLOATS, simple("Neg")),
  spec("exp", FLOATS, simple("Exp")),
  spec("log", FLOATS, simple("Log")),
  spec("sqrt", FLOATS, simple("Sqrt")),
  spec("tanh", FLOATS, simple("Tanh")),
  spec("relu", NUMERIC, relu),
  spec("add", NUMERIC, simple("Add")),
  spec("sub", NUMERIC, simple("Sub")),
  spec("mul", NUMERIC, simple("Mul")),
  spec("div", FLOATS, simple("Div")),
  spec("maximum", NUMERIC, simple("Max")),
  spec("less", NUMERIC, simple("Less")),
  spec("equal", [...NUMERIC, "bool"], simple("Equal")),
  // onnxruntime's Where has no int8 or bool kernel.
  spec("where", [...NUMERIC, "uint8"], simple("Where")),
  spec("sum", NUMERIC, reduce("ReduceSum")),
  spec("max", NUMERIC, reduce("ReduceMax")),
  spec("reshape", STORED, withShape("Reshape")),
  spec("expand", STORED, withShape("Expand")),
  spec(
    "transpose",
    STORED,
    simple("Transpose", (ins) => [{ name: "perm", ints: ins.attrs.perm! }]),
  ),
  spec("matmul", FLOATS, simple("MatMul")),
  spec("cast", STORED, cast),
  spec("conv2d", ["float32"], conv),
  spec("convTranspose2d", ["float32"], conv),
  spec("maxPool2d", FLOATS, maxPool),
  spec("maxPool2dIndices", FLOATS, maxPool),
  spec(
    "avgPool2d",
    ["float32"],
    simple("AveragePool", (ins) => [...poolAttributes(ins), { name: "count_include_pad", int: 1 }]),
  ),
  spec(
    "gather",
    STORED,
    simple("Gather", (ins) => [{ name: "axis", int: ins.attrs.axis! }]),
  ),
  spec("indexAdd", NUMERIC, indexAdd),
  spec("slice", STORED, (ctx, ins, [x], out) =>
    ctx.node("Slice", [x!, ctx.int64s(ins.attrs.starts!), ctx.int64s(ins.attrs.ends!), ctx.int64s(ins.shape.map((_, i) => i))], [out]),
  ),
  spec("pad", STORED, (ctx, ins, [x], out) =>
    ctx.node(
      "Pad",
      [x!, ctx.int64s([...ins.attrs.before!, ...ins.attrs.after!]), ctx.scalar(ins.attrs.fill!, ins.dtype)],
      [out],
      [{ name: "mode", string: "constant" }],
    ),
  ),
  spec(
    "concat",
    STORED,
    simple("Concat", (ins) => [{ name: "axis", int: ins.attrs.axis! }]),
  ),
]);
