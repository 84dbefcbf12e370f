import { float32ToBits } from "./bits.js";

/**
 * bfloat16 bits from float32 bits, rounding to nearest even. Subnormals round like any other
 * value (bfloat16 shares float32's exponent range); the largest finite values round up to
 * Infinity; NaN stays a quiet NaN with its sign.
 */
export function float32BitsToBfloat16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export const bfloat16BitsToFloat32Bits = (b: number): number => ((b & 0xffff) << 16) >>> 0;

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

export const toBfloat16Bits = (value: number): number => float32BitsToBfloat16Bits(float32ToBits(value));
export function fromBfloat16Bits(bits: number): number {
  scratchBits[0] = (bits & 0xffff) << 16;
  return scratch[0]!;
}
/** The nearest bfloat16 value to `value` (rounded through float32), as a number. */
export const roundToBfloat16 = (value: number): number => fromBfloat16Bits(toBfloat16Bits(value));

export function float32ArrayToBfloat16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return dst;
}

export function bfloat16ArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return dst;
}

/** Rounds every element to its nearest bfloat16 value in place. */
export function roundFloat32ArrayToBfloat16(values: Float32Array): Float32Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    bits[i] = (x & 0x7fffffff) > 0x7f800000 ? (x | 0x400000) & 0xffff0000 : ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return values;
}
