import { allocHost, isHalfDType, type DType, type HostArray } from "../dtype.js";
import { FLOAT_FORMATS } from "./formats.js";

/** Decodes host storage of any dtype into float32 values (16-bit floats exactly; float64 rounded). */
export function hostToFloat32(src: HostArray, dtype: DType): Float32Array {
  if (isHalfDType(dtype)) return FLOAT_FORMATS[dtype].decode(src as Uint16Array);
  return Float32Array.from(src as ArrayLike<number>);
}

/** Decodes host storage into plain numbers (float64 kept exact). */
export function hostToNumbers(src: HostArray, dtype: DType): Float64Array {
  if (isHalfDType(dtype)) return Float64Array.from(hostToFloat32(src, dtype));
  return Float64Array.from(src as ArrayLike<number>);
}

/**
 * Encodes numbers as host storage of `dtype`. float16/bfloat16 round through float32 with
 * round-to-nearest-even; integers truncate toward zero as a cast in PyTorch does; bool is x != 0.
 */
export function numbersToHost(values: ArrayLike<number>, dtype: DType): HostArray {
  if (isHalfDType(dtype)) return FLOAT_FORMATS[dtype].encode(values instanceof Float32Array ? values : Float32Array.from(values));
  switch (dtype) {
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
  if (isHalfDType(to)) return numbersToHost(hostToFloat32(src, from), to);
  return numbersToHost(isHalfDType(from) ? hostToFloat32(src, from) : (src as ArrayLike<number>), to);
}
