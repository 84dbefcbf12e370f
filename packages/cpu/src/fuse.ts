import type { Instruction, Program } from "@nbit/core";
import type { LoweringContext } from "./lower.js";

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
      ctx.node("Gemm", args, [out], [
        { name: "transA", int: transA },
        { name: "transB", int: transB },
      ]);

  program.instructions.forEach((ins, i) => {
    const v = base + i;
    // x W^T + b: the bias enters Gemm as C (a row [N] or [1, N] broadcast over the rows).
    if (ins.op === "add" && GEMM_DTYPES.has(ins.dtype) && ins.shape.length === 2) {
      for (const [m, c] of [ins.inputs, [...ins.inputs].reverse()] as [number, number][]) {
        const product = instruction(m);
        const operands = product && uses[m] === 1 && gemmOperands(product);
        const bias = shapeOf(c);
        const row = (bias.length === 1 || (bias.length === 2 && bias[0] === 1)) && bias.at(-1) === ins.shape[1];
        if (!operands || !row || product.shape[0] !== ins.shape[0] || product.shape[1] !== ins.shape[1]) continue;
        fusions.set(v, { inputs: [operands.x, operands.y, c], lower: gemm(operands.transA, operands.transB) });
        return;
      }
    }
    // A product with a transposed operand: Gemm reads it untransposed, with no transposed copy.
    const operands = gemmOperands(ins);
    if (operands && (operands.transA || operands.transB)) fusions.set(v, { inputs: [operands.x, operands.y], lower: gemm(operands.transA, operands.transB) });
    // log_softmax as core writes it: s - log(sum(exp(s))) with s = x - max(x), over one axis.
    const logSoftmaxOf = ins.op === "sub" && GEMM_DTYPES.has(ins.dtype) ? matchLogSoftmax(ins, instruction) : undefined;
    if (logSoftmaxOf) fusions.set(v, { inputs: [logSoftmaxOf.x], lower: (ctx, args, out) => ctx.node("LogSoftmax", args, [out], [{ name: "axis", int: logSoftmaxOf.axis }]) });
  });
  return fusions;
}

function matchLogSoftmax(ins: Instruction, instruction: (v: number) => Instruction | undefined): { x: number; axis: number } | undefined {
  const [sv, lv] = ins.inputs as [number, number];
  const shift = instruction(sv);
  const log = instruction(lv);
  const sum = log?.op === "log" ? instruction(log.inputs[0]!) : undefined;
  const exp = sum?.op === "sum" ? instruction(sum.inputs[0]!) : undefined;
  if (shift?.op !== "sub" || !sum || exp?.op !== "exp" || exp.inputs[0] !== sv) return undefined;
  const [x, mv] = shift.inputs as [number, number];
  const max = instruction(mv);
  if (max?.op !== "max" || max.inputs[0] !== x) return undefined;
  const axes = sum.attrs.axes;
  const sameAxis = (a: readonly number[] | undefined) => a?.length === 1 && a[0] === axes?.[0];
  if (!sameAxis(axes) || !sameAxis(max.attrs.axes) || !sum.attrs.keepDims || !max.attrs.keepDims) return undefined;
  return { x, axis: axes![0]! };
}
