import {
  hostToFloat32,
  isHalfDType,
  numbersToHost,
  referenceCapabilities,
  type Backend,
  type BackendCapabilities,
  type DType,
  type HostArray,
  type Instruction,
  type Shape,
  type ValueInfo,
} from "@nbit/core";
import type * as tfc from "@tensorflow/tfjs-core";
import { roundToHalf } from "./rounding.js";

type Tf = typeof tfc;
type T = tfc.Tensor;

/**
 * What tfjs offers: float32, int32 and bool tensors; no float64, float16, bfloat16 or 8-bit
 * types. 16-bit floats are held as float32 values that are exactly representable, rounded on
 * the device by `roundToHalf`.
 */
export const CUDA_CAPABILITIES: BackendCapabilities = {
  ...referenceCapabilities(["float32", "int32", "bool"], ["float32"]),
  storage: { float32: "native", float16: "float32", bfloat16: "float32", int32: "native", bool: "native" },
};

const physical = (d: DType): "float32" | "int32" | "bool" => (d === "int32" ? "int32" : d === "bool" ? "bool" : "float32");

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
    // tidy frees every temporary an op makes; only the result survives.
    return this.tf.tidy(() => this.kernel(ins, inputs as T[], infos));
  }

  private kernel(ins: Instruction, inputs: readonly T[], infos: readonly ValueInfo[]): T {
    const tf = this.tf;
    const [a, b, c] = inputs;
    switch (ins.op) {
      case "const":
        return tf.fill([...ins.shape], ins.value!, physical(ins.dtype));
      case "neg":
        return tf.neg(a!);
      case "exp":
        return tf.exp(a!);
      case "log":
        return tf.log(a!);
      case "sqrt":
        return tf.sqrt(a!);
      case "tanh":
        return tf.tanh(a!);
      case "add":
        return tf.add(a!, b!);
      case "sub":
        return tf.sub(a!, b!);
      case "mul":
        return tf.mul(a!, b!);
      case "div":
        return tf.div(a!, b!);
      case "maximum":
        // tf.maximum drops NaN; keep it, as torch.maximum does.
        return tf.where(tf.isNaN(tf.broadcastTo(a!, [...ins.shape])), tf.broadcastTo(a!, [...ins.shape]), tf.where(tf.isNaN(tf.broadcastTo(b!, [...ins.shape])), tf.broadcastTo(b!, [...ins.shape]), tf.maximum(a!, b!)));
      case "less":
        return tf.less(a!, b!);
      case "equal":
        return tf.equal(a!, b!);
      case "where":
        return tf.where(tf.broadcastTo(a!, [...ins.shape]), tf.broadcastTo(b!, [...ins.shape]), tf.broadcastTo(c!, [...ins.shape]));
      case "sum":
        return tf.sum(a!, [...ins.attrs.axes!], ins.attrs.keepDims);
      case "max":
        return tf.max(a!, [...ins.attrs.axes!], ins.attrs.keepDims);
      case "reshape":
        return tf.reshape(a!, [...ins.shape]);
      case "transpose":
        return tf.transpose(a!, [...ins.attrs.perm!]);
      case "expand":
        return tf.broadcastTo(a!, [...ins.shape]);
      case "matmul":
        return tf.matMul(a! as tfc.Tensor2D, b! as tfc.Tensor2D);
      case "cast": {
        const from = infos[0]!.dtype;
        if (isHalfDType(ins.dtype)) return roundToHalf(tf, physical(from) === "float32" ? a! : tf.cast(a!, "float32"), ins.dtype);
        // float -> int truncates toward zero, as core and PyTorch do.
        if (ins.dtype === "int32" && physical(from) === "float32") return tf.cast(tf.mul(tf.sign(a!), tf.floor(tf.abs(a!))), "int32");
        return tf.cast(a!, physical(ins.dtype));
      }
    }
  }
}
