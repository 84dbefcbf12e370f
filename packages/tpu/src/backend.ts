import { ReferenceBackend, referenceCapabilities, type BackendCapabilities } from "@nbit/core";

/**
 * The TPU-style backend's capabilities: it holds float32 and bfloat16 (as 16-bit storage, so
 * bf16 parameters take half the memory) but no float16 or float64; it computes in float32, and
 * its float32 matmul rounds inputs to bfloat16 and accumulates in float32, as a TPU MXU does.
 */
export const TPU_CAPABILITIES: BackendCapabilities = {
  ...referenceCapabilities(["float32", "bfloat16", "int32", "bool", "uint8", "int8"], ["float32"]),
  matmulInputRounding: { float32: "bfloat16" },
};

export class TpuBackend extends ReferenceBackend {
  override readonly name = "tpu";
  override readonly capabilities = TPU_CAPABILITIES;
  protected override readonly kernelOptions = { roundMatmulInputsToBfloat16: true };
}
