import {
  hostToFloat32,
  isHalfDType,
  numbersToHost,
  OPS,
  ROUNDED_FLOAT_DTYPES,
  type Backend,
  type BackendCapabilities,
  type DType,
  type HostArray,
  type Instruction,
  type Shape,
  type ValueInfo,
} from "@nbit/core";
import type * as tfc from "@tensorflow/tfjs-core";
import { CUDA_KERNELS, physical, type Tf } from "./kernels.js";

type T = tfc.Tensor;

/**
 * What tfjs offers: float32, int32 and bool tensors; no float64 or 8-bit types. Narrow floats are
 * held as float32 values that are exactly representable, rounded on the device by `roundToHalf`.
 */
export const CUDA_CAPABILITIES: BackendCapabilities = CUDA_KERNELS.capabilities("eager", {
  float32: "native",
  ...Object.fromEntries(ROUNDED_FLOAT_DTYPES.map((d) => [d, "float32"])),
  int32: "native",
  bool: "native",
});

/** Runs core programs op by op with tfjs kernels (CUDA with tfjs-node-gpu; tfjs's CPU kernels otherwise). */
export class TfjsBackend implements Backend {
  readonly capabilities = CUDA_CAPABILITIES;

  constructor(
    readonly tf: Tf,
    readonly name = "cuda",
  ) {}

  upload(data: HostArray, dtype: DType, shape: Shape): T {
    const values = isHalfDType(dtype) ? hostToFloat32(data, dtype) : dtype === "bool" ? Int32Array.from(data) : data;
    return this.tf.tensor(values as Float32Array | Int32Array, [...shape], physical(dtype));
  }

  download(buffer: object, dtype: DType): HostArray {
    const data = (buffer as T).dataSync();
    if (isHalfDType(dtype)) return numbersToHost(data as Float32Array, dtype);
    return numbersToHost(data as Float32Array | Int32Array | Uint8Array, dtype);
  }

  dispose(buffer: object): void {
    (buffer as T).dispose();
  }

  execute(ins: Instruction, inputs: readonly object[], infos: readonly ValueInfo[]): T {
    if (ins.op === "const") return this.tf.fill([...ins.shape], ins.value!, physical(ins.dtype));
    const kernel = CUDA_KERNELS.get(ins.op, physical(infos[OPS[ins.op].operand]!.dtype));
    // tidy frees every temporary an op makes; only the result survives.
    return this.tf.tidy(() => kernel(this.tf, ins, inputs as T[], infos));
  }
}
