import { PRIMITIVE_OPS, type Backend, type BackendCapabilities, type DType, type HostArray, type PrimitiveOp } from "@nbit/core";
import { executeInstruction, type TypedBuffer } from "./kernels.js";

const STORED: DType[] = ["float32", "bfloat16", "int32", "bool", "uint8", "int8"];
const FLOAT_ONLY: PrimitiveOp[] = ["neg", "exp", "log", "sqrt", "tanh", "div", "matmul"];
const NUMERIC: PrimitiveOp[] = ["add", "sub", "mul", "maximum", "less", "sum", "max"];

/**
 * The TPU-style backend's capabilities: it holds float32 and bfloat16 (as 16-bit storage, so
 * bf16 parameters take half the memory) but no float16 or float64; it computes in float32, and
 * its float32 matmul rounds inputs to bfloat16 and accumulates in float32, as a TPU MXU does.
 */
export const TPU_CAPABILITIES: BackendCapabilities = {
  execution: "eager",
  storage: { float32: "native", bfloat16: "native", int32: "native", bool: "native", uint8: "native", int8: "native" },
  ops: Object.fromEntries(
    PRIMITIVE_OPS.map((op) => {
      if (FLOAT_ONLY.includes(op)) return [op, ["float32"]];
      if (NUMERIC.includes(op)) return [op, ["float32", "int32"]];
      return [op, op === "equal" ? ["float32", "int32", "bool"] : STORED];
    }),
  ),
  matmulInputRounding: { float32: "bfloat16" },
};

export class TpuBackend implements Backend {
  readonly name = "tpu";
  readonly capabilities = TPU_CAPABILITIES;

  upload(data: HostArray): TypedBuffer {
    return { data: data.slice() };
  }

  download(buffer: object): HostArray {
    return (buffer as TypedBuffer).data.slice();
  }

  execute: NonNullable<Backend["execute"]> = (ins, inputs, infos) =>
    executeInstruction(ins, inputs as TypedBuffer[], infos, { roundMatmulInputsToBfloat16: true });
}
