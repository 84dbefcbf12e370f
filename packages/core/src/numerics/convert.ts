import { allocHost, type DType, type HostArray } from "../dtype.js";
import { bfloat16ArrayToFloat32, float32ArrayToBfloat16 } from "./bfloat16.js";
import { float16ArrayToFloat32, float32ArrayToFloat16 } from "./float16.js";

/** Decodes host storage of any dtype into float32 values (16-bit floats exactly; float64 rounded). */
export function hostToFloat32(src: HostArray, dtype: DType): Float32Array {
  if (dtype === "float16") return float16ArrayToFloat32(src as Uint16Array);
  if (dtype === "bfloat16") return bfloat16ArrayToFloat32(src as Uint16Array);
  return Float32Array.from(src as ArrayLike<number>);
}

/** Decodes host storage into plain numbers (float64 kept exact). */
export function hostToNumbers(src: HostArray, dtype: DType): Float64Array {
  if (dtype === "float16" || dtype === "bfloat16") return Float64Array.from(hostToFloat32(src, dtype));
  return Float64Array.from(src as ArrayLike<number>);
}

/**
 * Encodes numbers as host storage of `dtype`. float16/bfloat16 round through float32 with
 * round-to-nearest-even; integers truncate toward zero as a cast in PyTorch does; bool is x != 0.
 */
export function numbersToHost(values: ArrayLike<number>, dtype: DType): HostArray {
  switch (dtype) {
    case "float16":
      return float32ArrayToFloat16(values instanceof Float32Array ? values : Float32Array.from(values));
    case "bfloat16":
      return float32ArrayToBfloat16(values instanceof Float32Array ? values : Float32Array.from(values));
    case "bool": {
      const out = allocHost("bool", values.length);
      for (let i = 0; i < values.length; i++) out[i] = values[i] !== 0 ? 1 : 0;
      return out;
    }
    case "int32":
    case "int8":
    case "uint8": {
      const out = allocHost(dtype, values.length);
      for (let i = 0; i < values.length; i++) out[i] = Math.trunc(values[i]!);
      return out;
    }
    default: {
      const out = allocHost(dtype, values.length);
      (out as Float32Array | Float64Array).set(values);
      return out;
    }
  }
}

/** Casts host storage between dtypes with the same rules as the backends' cast kernel. */
export function castHost(src: HostArray, from: DType, to: DType): HostArray {
  if (from === to) return src.slice();
  if (to === "float16" || to === "bfloat16") return numbersToHost(hostToFloat32(src, from), to);
  return numbersToHost(from === "float16" || from === "bfloat16" ? hostToFloat32(src, from) : (src as ArrayLike<number>), to);
}
