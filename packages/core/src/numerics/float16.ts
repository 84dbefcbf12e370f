import { bitsToFloat32, float32ToBits } from "./bits.js";

/**
 * IEEE 754 binary16 bits from float32 bits, rounding to nearest even. Values too small for the
 * smallest subnormal round to a signed zero, values from 65520 up overflow to Infinity, NaN stays
 * a quiet NaN and keeps its sign.
 */
export function float32BitsToFloat16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const halfExp = exp - 112; // rebias 127 -> 15
  if (halfExp >= 0x1f) return sign | 0x7c00;
  if (halfExp <= 0) {
    if (halfExp < -10) return sign;
    // Subnormal result: shift the full 24-bit significand so one unit is 2^-24.
    const significand = mant | 0x800000;
    const shift = 14 - halfExp;
    let q = significand >>> shift;
    const rem = significand & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++;
    return sign | q;
  }
  let q = (halfExp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, and from 30 that is exactly Infinity.
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q++;
  return sign | q;
}

export function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal half: normalise into a float32 normal.
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

const F16_TO_F32 = (() => {
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) bits[h] = float16BitsToFloat32Bits(h);
  return table;
})();

/** Rounds a number to float32 first, then to float16 bits (as every backend does). */
export const toFloat16Bits = (value: number): number => float32BitsToFloat16Bits(float32ToBits(value));
export const fromFloat16Bits = (bits: number): number => F16_TO_F32[bits & 0xffff]!;
/** The nearest float16 value to `value` (rounded through float32), as a number. */
export const roundToFloat16 = (value: number): number => F16_TO_F32[toFloat16Bits(value)]!;

export function float32ArrayToFloat16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = float32BitsToFloat16Bits(bits[i]!);
  return dst;
}

export function float16ArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = F16_TO_F32[src[i]!]!;
  return dst;
}

/** Rounds every element to its nearest float16 value in place. */
export function roundFloat32ArrayToFloat16(values: Float32Array): Float32Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) values[i] = F16_TO_F32[float32BitsToFloat16Bits(bits[i]!)]!;
  return values;
}

export { bitsToFloat32, float32ToBits };
