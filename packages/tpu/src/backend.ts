import {
  KernelRegistry,
  ReferenceBackend,
  referenceKernels,
  roundFloat32ArrayToBfloat16,
  type BackendCapabilities,
  type DType,
  type HostKernel,
  type PrimitiveOp,
} from "@nbit/core";

const STORED: DType[] = ["float32", "bfloat16", "int32", "bool", "uint8", "int8"];

/** Ops that run on the MXU: float32 inputs are rounded to bfloat16, products accumulate in float32. */
const MXU_OPS: PrimitiveOp[] = ["matmul", "conv2d", "convTranspose2d"];

function onMxu(kernel: HostKernel): HostKernel {
  return (ins, inputs, infos) =>
    kernel(
      ins,
      inputs.map((x, i) => (infos[i]!.dtype === "float32" ? roundFloat32ArrayToBfloat16(Float32Array.from(x as Float32Array)) : x)),
      infos,
    );
}

const base = new KernelRegistry<HostKernel>("tpu", referenceKernels(["float32"], STORED));

/**
 * The TPU-style backend's kernels: core's host kernels in float32, data movement in every dtype
 * it holds, and MXU semantics for matmul and the convolutions.
 */
export const TPU_KERNELS = base.register(
  ...MXU_OPS.map((op) => ({ op, dtypes: ["float32"] as DType[], kernel: onMxu(base.get(op, "float32")), inputRounding: { float32: "bfloat16" as const } })),
);

/**
 * It holds float32 and bfloat16 (as 16-bit storage, so bf16 parameters take half the memory) but
 * no float16 or float64, and computes in float32.
 */
export const TPU_CAPABILITIES: BackendCapabilities = TPU_KERNELS.capabilities("eager", Object.fromEntries(STORED.map((d) => [d, "native"])));

export class TpuBackend extends ReferenceBackend {
  override readonly name = "tpu";
  protected override readonly kernels = TPU_KERNELS;
  override readonly capabilities = TPU_CAPABILITIES;
}
