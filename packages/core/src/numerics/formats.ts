import { bfloat16ArrayToFloat32, float32ArrayToBfloat16, fromBfloat16Bits, roundFloat32ArrayToBfloat16, toBfloat16Bits } from "./bfloat16.js";
import { float16ArrayToFloat32, float32ArrayToFloat16, fromFloat16Bits, roundFloat32ArrayToFloat16, toFloat16Bits } from "./float16.js";

/**
 * A narrow binary floating-point format that values are rounded into from float32: round to
 * nearest even, subnormals kept, overflow to Infinity, NaN kept. One row per format; backends,
 * the ONNX lowering, checkpoints and the conformance kit read these rows instead of naming
 * formats, so a new format is one row (plus its tests).
 */
export interface FloatFormat {
  readonly exponentBits: number;
  /** Explicit (stored) mantissa bits. */
  readonly mantissaBits: number;
  /** Exponent of the smallest normal value (1 - bias). */
  readonly minExponent: number;
  /** Largest finite value; values that round above it become Infinity. */
  readonly maxFinite: number;
  /** Unit roundoff: half the distance from 1 to the next value. */
  readonly epsilon: number;
  /** The dtype name in safetensors headers. */
  readonly safetensors: string;
  /** ONNX TensorProto.DataType code. */
  readonly onnxType: number;
  /** Bits of float32 values, rounded to this format, as raw bit patterns. */
  encode(src: Float32Array, dst?: Uint16Array): Uint16Array;
  decode(src: Uint16Array, dst?: Float32Array): Float32Array;
  /** Rounds float32 values to this format in place. */
  roundInPlace(values: Float32Array): Float32Array;
  toBits(value: number): number;
  fromBits(bits: number): number;
}

const row = (
  exponentBits: number,
  mantissaBits: number,
  maxFinite: number,
  names: { safetensors: string; onnxType: number },
  codec: Pick<FloatFormat, "encode" | "decode" | "roundInPlace" | "toBits" | "fromBits">,
): FloatFormat => ({
  exponentBits,
  mantissaBits,
  minExponent: 2 - 2 ** (exponentBits - 1),
  maxFinite,
  epsilon: 2 ** -(mantissaBits + 1),
  ...names,
  ...codec,
});

export const FLOAT_FORMATS = {
  float16: row(
    5,
    10,
    65504,
    { safetensors: "F16", onnxType: 10 },
    {
      encode: float32ArrayToFloat16,
      decode: float16ArrayToFloat32,
      roundInPlace: roundFloat32ArrayToFloat16,
      toBits: toFloat16Bits,
      fromBits: fromFloat16Bits,
    },
  ),
  bfloat16: row(
    8,
    7,
    3.3895313892515355e38,
    { safetensors: "BF16", onnxType: 16 },
    {
      encode: float32ArrayToBfloat16,
      decode: bfloat16ArrayToFloat32,
      roundInPlace: roundFloat32ArrayToBfloat16,
      toBits: toBfloat16Bits,
      fromBits: fromBfloat16Bits,
    },
  ),
} as const satisfies Record<string, FloatFormat>;

export type RoundedFloatDType = keyof typeof FLOAT_FORMATS;
export const ROUNDED_FLOAT_DTYPES = Object.keys(FLOAT_FORMATS) as RoundedFloatDType[];

/**
 * The nearest value of `format` to `value` (first rounded to float32, as every backend does),
 * computed from the row's widths alone: a slow, independent reference for the fast codecs.
 */
export function roundToFormat(value: number, format: Pick<FloatFormat, "mantissaBits" | "minExponent" | "maxFinite">): number {
  const x = Math.fround(value);
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, format.minExponent) - format.mantissaBits);
  const scaled = a / ulp;
  let q = Math.floor(scaled);
  const rest = scaled - q;
  if (rest > 0.5 || (rest === 0.5 && q % 2 === 1)) q++;
  const rounded = q * ulp;
  const magnitude = rounded > format.maxFinite ? Infinity : rounded;
  return x < 0 ? -magnitude : magnitude;
}
