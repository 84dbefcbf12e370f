import { isFloatDType, type Instruction, type Program } from "@nbit/core";
import type { LoweringContext } from "./lower.js";
import { OnnxType } from "./onnx-proto.js";

/**
 * Several instructions lowered as one onnxruntime op. `inputs` are the program values it reads;
 * the instructions between them and the fused value are then dead unless something else reads them.
 */
export interface Fusion {
  readonly inputs: readonly number[];
  readonly lower: (ctx: LoweringContext, args: readonly string[], out: string) => void;
}

const GEMM_DTYPES = new Set(["float32", "float64"]);

/** Finds core's decomposed patterns that onnxruntime has one fused op for, keyed by the value each defines. */
export function findFusions(program: Program, uses: readonly number[]): Map<number, Fusion> {
  const base = program.inputs.length;
  const instruction = (v: number): Instruction | undefined => (v >= base ? program.instructions[v - base] : undefined);
  const shapeOf = (v: number) => (v >= base ? program.instructions[v - base]!.shape : program.inputs[v]!.shape);
  const fusions = new Map<number, Fusion>();

  /** A 2-D matmul whose operands may be 2-D transposes: Gemm with transA / transB reads the untransposed values. */
  const gemmOperands = (ins: Instruction) => {
    if (ins.op !== "matmul" || !GEMM_DTYPES.has(ins.dtype) || ins.shape.length !== 2) return undefined;
    const [a, b] = ins.inputs as [number, number];
    if (shapeOf(a).length !== 2 || shapeOf(b).length !== 2) return undefined;
    const untransposed = (v: number): [number, number] => {
      const t = instruction(v);
      return t?.op === "transpose" && t.shape.length === 2 && t.attrs.perm?.[0] === 1 ? [t.inputs[0]!, 1] : [v, 0];
    };
    const [[x, transA], [y, transB]] = [untransposed(a), untransposed(b)];
    return { x, y, transA, transB };
  };
  const gemm =
    (transA: number, transB: number): Fusion["lower"] =>
    (ctx, args, out) =>
      ctx.node(
        "Gemm",
        args,
        [out],
        [
          { name: "transA", int: transA },
          { name: "transB", int: transB },
        ],
      );

  // Max pools by input, for pairing a gradient's maxPool2dIndices with its forward maxPool2d.
  const maxPools = new Map<number, number[]>();

  // Instructions already seen, by what they compute; a repeat (the backward pass often multiplies
  // the same two values twice) reads the first one's value instead of computing it again.
  const seen = new Map<string, number>();
  const same = new Map<number, number>();

  // Float32 values lowered as the output of a Conv or of a Gemm with its bias: onnxruntime sums
  // their products from +0, so they are never -0 (see the ReLU below).
  const summedFromZero = new Set<number>();

  program.instructions.forEach((ins, i) => {
    const v = base + i;
    if (ins.op === "conv2d" && ins.dtype === "float32") summedFromZero.add(v);
    const key = `${ins.op}|${ins.dtype}|${ins.shape.join(",")}|${ins.inputs.map((u) => same.get(u) ?? u).join(",")}|${JSON.stringify(ins.attrs)}|${ins.value ?? ""}`;
    const first = seen.get(key);
    if (first !== undefined) {
      same.set(v, first);
      fusions.set(v, { inputs: [first], lower: (ctx, args, out) => ctx.node("Identity", args, [out]) });
      return;
    }
    seen.set(key, v);
    if (ins.op === "maxPool2d") maxPools.set(ins.inputs[0]!, [...(maxPools.get(ins.inputs[0]!) ?? []), v]);
    // maxPool2dIndices over the same input and window as an earlier maxPool2d: that MaxPool also
    // gives the indices, and no second pass over the input picks each window's maximum again.
    if (ins.op === "maxPool2dIndices") {
      const x = ins.inputs[0]!;
      const pooled = maxPools.get(x)?.find((p) => sameAttrs(instruction(p)!, ins));
      if (pooled !== undefined) {
        const argmax = `v${pooled}_argmax`;
        const [h, w] = shapeOf(x).slice(2) as [number, number];
        fusions.set(pooled, { inputs: [x], lower: (ctx, args, out) => ctx.node("MaxPool", args, [out, argmax], poolAttributes(instruction(pooled)!)) });
        // MaxPool's indices count over the whole NCHW tensor; core's are per H x W plane.
        fusions.set(v, {
          inputs: [pooled],
          lower: (ctx, _args, out) => {
            const local = ctx.temp();
            ctx.node("Mod", [argmax, ctx.int64s([h * w])], [local]);
            ctx.node("Cast", [local], [out], [{ name: "to", int: OnnxType.INT32 }]);
          },
        });
        return;
      }
    }
    // conv2d + a per-channel bias [1, C, 1, 1]: Conv's own bias input, which onnxruntime can then fuse a Relu into.
    if (ins.op === "add" && ins.dtype === "float32" && ins.shape.length === 4) {
      for (const [c, b] of [ins.inputs, [...ins.inputs].reverse()] as [number, number][]) {
        const conv = instruction(c);
        const bias = shapeOf(b);
        const channels = ins.shape[1]!;
        if (conv?.op !== "conv2d" || uses[c] !== 1 || !sameShape(conv.shape, ins.shape)) continue;
        if (!sameShape(bias, [1, channels, 1, 1])) continue;
        const reshaped = instruction(b);
        const flat = reshaped?.op === "reshape" && sameShape(shapeOf(reshaped.inputs[0]!), [channels]) ? reshaped.inputs[0]! : undefined;
        summedFromZero.add(v);
        fusions.set(v, {
          inputs: [conv.inputs[0]!, conv.inputs[1]!, flat ?? b],
          lower: (ctx, [x, weight, bias], out) => {
            let b1 = bias!;
            if (flat === undefined) ctx.node("Reshape", [bias!, ctx.int64s([channels])], [(b1 = ctx.temp())]);
            convNode(ctx, conv, [x!, weight!, b1], out);
          },
        });
        return;
      }
    }
    // ReLU of a convolution or of a linear layer: onnxruntime's Conv and Gemm sum their products
    // from +0, so they never give -0 (+0 + -0 is +0, and so is adding a -0 bias to it), and Relu
    // alone has no -0 to turn into +0: no Sum of +0 after it (see kernels.ts).
    if (ins.op === "relu" && summedFromZero.has(ins.inputs[0]!)) {
      fusions.set(v, { inputs: [ins.inputs[0]!], lower: (ctx, args, out) => ctx.node("Relu", args, [out]) });
      return;
    }
    // reshape(transpose(reshape(x))) that only moves x's axes (the convolution weight gradient's
    // 5-D group split with one group): one 4-D Transpose, or a Reshape when the order is unchanged.
    if (ins.op === "reshape") {
      const moved = axisMove(ins, instruction, shapeOf);
      if (moved) {
        const identity = moved.perm.every((a, k) => a === k);
        fusions.set(v, {
          inputs: [moved.x],
          lower: identity
            ? (ctx, [x], out) => ctx.node("Reshape", [x!, ctx.int64s(ins.shape)], [out])
            : (ctx, [x], out) => ctx.node("Transpose", [x!], [out], [{ name: "perm", ints: moved.perm }]),
        });
        return;
      }
    }
    // A reshape of a reshape: one Reshape of the first one's input.
    if (ins.op === "reshape") {
      let source = ins.inputs[0]!;
      while (instruction(source)?.op === "reshape") source = instruction(source)!.inputs[0]!;
      if (source !== ins.inputs[0]) {
        fusions.set(v, { inputs: [source], lower: (ctx, [x], out) => ctx.node("Reshape", [x!, ctx.int64s(ins.shape)], [out]) });
        return;
      }
    }
    // x W^T + b: the bias enters Gemm as C (a row [N] or [1, N] broadcast over the rows).
    if (ins.op === "add" && GEMM_DTYPES.has(ins.dtype) && ins.shape.length === 2) {
      for (const [m, c] of [ins.inputs, [...ins.inputs].reverse()] as [number, number][]) {
        const product = instruction(m);
        const operands = product && uses[m] === 1 && gemmOperands(product);
        const bias = shapeOf(c);
        const row = (bias.length === 1 || (bias.length === 2 && bias[0] === 1)) && bias.at(-1) === ins.shape[1];
        if (!operands || !row || product.shape[0] !== ins.shape[0] || product.shape[1] !== ins.shape[1]) continue;
        if (ins.dtype === "float32") summedFromZero.add(v);
        fusions.set(v, { inputs: [operands.x, operands.y, c], lower: gemm(operands.transA, operands.transB) });
        return;
      }
    }
    // A sum of zero-padded pieces that tile one axis (the gradient of slices that split a tensor,
    // such as attention's q, k and v): one Concat of the pieces. Every element is then one piece's
    // value plus zeros, which is the value itself except that -0 + 0 is +0: adding +0 once keeps
    // that, as a Sum (onnxruntime drops an Add of a zero scalar as a no-op, keeping the -0).
    // (Floats only: onnxruntime's Sum has no integer kernel, and integers have no -0.)
    const tiled = ins.op === "add" && isFloatDType(ins.dtype) ? matchTiledPads(v, instruction, uses) : undefined;
    if (tiled) {
      fusions.set(v, {
        inputs: tiled.pieces,
        lower: (ctx, args, out) => {
          const joined = ctx.temp();
          ctx.node("Concat", args, [joined], [{ name: "axis", int: tiled.axis }]);
          ctx.node("Sum", [joined, ctx.scalar(0, ins.dtype)], [out]);
        },
      });
      return;
    }
    // A product with a transposed operand: Gemm reads it untransposed, with no transposed copy.
    const operands = gemmOperands(ins);
    if (operands && (operands.transA || operands.transB)) fusions.set(v, { inputs: [operands.x, operands.y], lower: gemm(operands.transA, operands.transB) });
    // log_softmax as core writes it: s - log(sum(exp(s))) with s = x - max(x), over one axis.
    const logSoftmaxOf = ins.op === "sub" && GEMM_DTYPES.has(ins.dtype) ? matchLogSoftmax(ins, instruction) : undefined;
    if (logSoftmaxOf)
      fusions.set(v, { inputs: [logSoftmaxOf.x], lower: (ctx, args, out) => ctx.node("LogSoftmax", args, [out], [{ name: "axis", int: logSoftmaxOf.axis }]) });
    // softmax as core writes it: e / sum(e) with e = exp(x - max(x)), over one axis.
    // (Only when nothing else reads the exponentials or their sum, as a backward pass through the division does.)
    const softmaxOf =
      ins.op === "div" && GEMM_DTYPES.has(ins.dtype) && uses[ins.inputs[0]!] === 2 && uses[ins.inputs[1]!] === 1 ? matchSoftmax(ins, instruction) : undefined;
    if (softmaxOf)
      fusions.set(v, { inputs: [softmaxOf.x], lower: (ctx, args, out) => ctx.node("Softmax", args, [out], [{ name: "axis", int: softmaxOf.axis }]) });
    // An elementwise op with an expanded operand: ONNX broadcasting reads the unexpanded value.
    const broadcastOp = BROADCASTING[ins.op];
    if (broadcastOp && !fusions.has(v)) {
      const operands = ins.inputs.map((u) => {
        const e = instruction(u);
        return e?.op === "expand" ? e.inputs[0]! : u;
      });
      // One operand keeps the full shape, so the result's shape never rests on the expanded ones (an export's symbolic dims).
      const full = operands.some((u, k) => u === ins.inputs[k] && sameShape(shapeOf(u), ins.shape));
      if (full && operands.some((u, k) => u !== ins.inputs[k]) && sameShape(broadcastShape(operands.map(shapeOf)), ins.shape))
        fusions.set(v, { inputs: operands, lower: (ctx, args, out) => ctx.node(broadcastOp, args, [out]) });
    }
  });
  return fusions;
}

/** Elementwise ops whose ONNX op broadcasts its operands numpy-style, and that op. */
const BROADCASTING: Partial<Record<Instruction["op"], string>> = {
  add: "Add",
  sub: "Sub",
  mul: "Mul",
  div: "Div",
  maximum: "Max",
  less: "Less",
  equal: "Equal",
  where: "Where",
};

/** Numpy-style broadcast of shapes, or [-1] when they do not broadcast. */
function broadcastShape(shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes)
    for (let k = 0; k < s.length; k++) {
      const [d, a] = [s[s.length - 1 - k]!, rank - 1 - k];
      if (d !== 1 && out[a] !== 1 && out[a] !== d) return [-1];
      if (d !== 1) out[a] = d;
    }
  return out;
}

function matchSoftmax(ins: Instruction, instruction: (v: number) => Instruction | undefined): { x: number; axis: number } | undefined {
  const [ev, sv] = ins.inputs as [number, number];
  const exp = instruction(ev);
  const sum = instruction(sv);
  const shift = exp?.op === "exp" ? instruction(exp.inputs[0]!) : undefined;
  if (sum?.op !== "sum" || sum.inputs[0] !== ev || shift?.op !== "sub") return undefined;
  return matchMaxShift(shift, sum, instruction);
}

function matchLogSoftmax(ins: Instruction, instruction: (v: number) => Instruction | undefined): { x: number; axis: number } | undefined {
  const [sv, lv] = ins.inputs as [number, number];
  const shift = instruction(sv);
  const log = instruction(lv);
  const sum = log?.op === "log" ? instruction(log.inputs[0]!) : undefined;
  const exp = sum?.op === "sum" ? instruction(sum.inputs[0]!) : undefined;
  if (shift?.op !== "sub" || !sum || exp?.op !== "exp" || exp.inputs[0] !== sv) return undefined;
  return matchMaxShift(shift, sum, instruction);
}

/** `shift` = x - max(x, axis, keepDims) with `sum` over that same single axis, keepDims: the stable (log-)softmax's frame. */
function matchMaxShift(shift: Instruction, sum: Instruction, instruction: (v: number) => Instruction | undefined): { x: number; axis: number } | undefined {
  const [x, mv] = shift.inputs as [number, number];
  const max = instruction(mv);
  if (max?.op !== "max" || max.inputs[0] !== x) return undefined;
  const axes = sum.attrs.axes;
  const sameAxis = (a: readonly number[] | undefined) => a?.length === 1 && a[0] === axes?.[0];
  if (!sameAxis(axes) || !sameAxis(max.attrs.axes) || !sum.attrs.keepDims || !max.attrs.keepDims) return undefined;
  return { x, axis: axes![0]! };
}

/**
 * `v` an add of same-shape adds (each read only by the next) whose leaves are pads with fill 0
 * along one axis that, sorted by offset, tile that axis: the pads' inputs in that order.
 */
function matchTiledPads(
  v: number,
  instruction: (v: number) => Instruction | undefined,
  uses: readonly number[],
): { pieces: number[]; axis: number } | undefined {
  const root = instruction(v)!;
  const pads: Instruction[] = [];
  const walk = (u: number, top: boolean): boolean => {
    const ins = instruction(u);
    if (ins?.op === "add" && (top || uses[u] === 1) && ins.inputs.every((w) => sameShape(instruction(w)?.shape ?? [], ins.shape)))
      return ins.inputs.every((w) => walk(w, false));
    if (ins?.op !== "pad" || ins.attrs.fill !== 0 || uses[u] !== 1) return false;
    pads.push(ins);
    return true;
  };
  if (!walk(v, true) || pads.length < 2) return undefined;
  const padded = (p: Instruction) => p.shape.flatMap((_, a) => (p.attrs.before![a]! !== 0 || p.attrs.after![a]! !== 0 ? [a] : []));
  const axis = padded(pads[0]!)[0];
  if (axis === undefined || pads.some((p) => !sameShape(p.shape, root.shape) || padded(p).some((a) => a !== axis))) return undefined;
  pads.sort((a, b) => a.attrs.before![axis]! - b.attrs.before![axis]!);
  let next = 0;
  for (const p of pads) {
    if (p.attrs.before![axis] !== next) return undefined;
    next = root.shape[axis]! - p.attrs.after![axis]!;
  }
  return next === root.shape[axis] ? { pieces: pads.map((p) => p.inputs[0]!), axis } : undefined;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

const sameAttrs = (a: Instruction, b: Instruction) =>
  (["kernel", "stride", "padding", "dilation"] as const).every((k) => sameShape(a.attrs[k] ?? [], b.attrs[k] ?? []));

const pads = ([h, w]: readonly number[]) => [h!, w!, h!, w!];

/** MaxPool's attributes for a maxPool2d instruction. */
const poolAttributes = (ins: Instruction) => [
  { name: "kernel_shape", ints: ins.attrs.kernel! },
  { name: "strides", ints: ins.attrs.stride! },
  { name: "pads", ints: pads(ins.attrs.padding!) },
  { name: "dilations", ints: ins.attrs.dilation! },
];

const convNode = (ctx: LoweringContext, conv: Instruction, args: readonly string[], out: string) =>
  ctx.node(
    "Conv",
    args,
    [out],
    [
      { name: "strides", ints: conv.attrs.stride! },
      { name: "pads", ints: pads(conv.attrs.padding!) },
      { name: "dilations", ints: conv.attrs.dilation! },
      { name: "group", int: conv.attrs.groups! },
    ],
  );

/**
 * reshape(transpose(reshape(x, s1), p), s2) where both reshapes only add or drop axes of size 1:
 * the result is x with its axes permuted, `perm` over x's axes (x and the result have equal rank).
 */
function axisMove(
  outer: Instruction,
  instruction: (v: number) => Instruction | undefined,
  shapeOf: (v: number) => readonly number[],
): { x: number; perm: number[] } | undefined {
  const transpose = instruction(outer.inputs[0]!);
  const inner = transpose?.op === "transpose" ? instruction(transpose.inputs[0]!) : undefined;
  if (inner?.op !== "reshape") return undefined;
  const x = inner.inputs[0]!;
  const xShape = shapeOf(x);
  const s1 = inner.shape;
  const perm = transpose!.attrs.perm!;
  if (xShape.length !== outer.shape.length) return undefined;
  // Axes of size > 1, in order: x's, s1's, after the transpose.
  const big = (shape: readonly number[]) => shape.flatMap((d, a) => (d > 1 ? [a] : []));
  const xBig = big(xShape);
  const s1Big = big(s1);
  if (
    !sameShape(
      xBig.map((a) => xShape[a]!),
      s1Big.map((a) => s1[a]!),
    )
  )
    return undefined;
  // s1's axis a is x's axis xOf[a].
  const xOf = new Map(s1Big.map((a, k) => [a, xBig[k]!]));
  const order = perm.filter((a) => s1[a]! > 1).map((a) => xOf.get(a)!);
  const outBig = big(outer.shape);
  if (
    !sameShape(
      outBig.map((a) => outer.shape[a]!),
      order.map((a) => xShape[a]!),
    )
  )
    return undefined;
  const ones = xShape.flatMap((d, a) => (d > 1 ? [] : [a]));
  let [nextBig, nextOne] = [0, 0];
  return { x, perm: outer.shape.map((d) => (d > 1 ? order[nextBig++]! : ones[nextOne++]!)) };
}
