import { FLOAT_FORMATS, ROUNDED_FLOAT_DTYPES, type RoundedFloatDType } from "./numerics/formats.js";

/** A float format narrower than float32, held as exactly-rounded values (one row of FLOAT_FORMATS each). */
export type HalfDType = RoundedFloatDType;
export type FloatDType = "float64" | "float32" | HalfDType;
export type DType = FloatDType | "int32" | "int8" | "uint8" | "bool";
export const DTYPES: readonly DType[] = ["float64", "float32", ...ROUNDED_FLOAT_DTYPES, "int32", "int8", "uint8", "bool"];

export interface DTypeInfo {
  readonly itemSize: number;
  readonly isFloat: boolean;
  /** Unit roundoff: half the distance from 1 to the next representable value. */
  readonly epsilon: number;
}

export const DTYPE_INFO: Readonly<Record<DType, DTypeInfo>> = {
  float64: { itemSize: 8, isFloat: true, epsilon: 2 ** -53 },
  float32: { itemSize: 4, isFloat: true, epsilon: 2 ** -24 },
  ...(Object.fromEntries(ROUNDED_FLOAT_DTYPES.map((d) => [d, { itemSize: 2, isFloat: true, epsilon: FLOAT_FORMATS[d].epsilon }])) as Record<
    HalfDType,
    DTypeInfo
  >),
  int32: { itemSize: 4, isFloat: false, epsilon: 0 },
  int8: { itemSize: 1, isFloat: false, epsilon: 0 },
  uint8: { itemSize: 1, isFloat: false, epsilon: 0 },
  bool: { itemSize: 1, isFloat: false, epsilon: 0 },
};

export const isFloatDType = (d: DType): d is FloatDType => DTYPE_INFO[d].isFloat;
const HALF = new Set<string>(ROUNDED_FLOAT_DTYPES);
export const isHalfDType = (d: DType): d is HalfDType => HALF.has(d);
export const itemSize = (d: DType): number => DTYPE_INFO[d].itemSize;

/** Host storage used for each dtype; 16-bit floats hold their raw bit patterns. */
export type HostArray = Float64Array | Float32Array | Uint16Array | Int32Array | Int8Array | Uint8Array;
export type HostArrayFor<D extends DType> = D extends "float64"
  ? Float64Array
  : D extends "float32"
    ? Float32Array
    : D extends HalfDType
      ? Uint16Array
      : D extends "int32"
        ? Int32Array
        : D extends "int8"
          ? Int8Array
          : Uint8Array;

export function allocHost(dtype: DType, size: number): HostArray {
  switch (dtype) {
    case "float64":
      return new Float64Array(size);
    case "float32":
      return new Float32Array(size);
    case "int32":
      return new Int32Array(size);
    case "int8":
      return new Int8Array(size);
    case "uint8":
    case "bool":
      return new Uint8Array(size);
    default:
      return new Uint16Array(size);
  }
}

const FLOAT_RANK: Partial<Record<DType, number>> = { ...Object.fromEntries(ROUNDED_FLOAT_DTYPES.map((d) => [d, 1])), float32: 2, float64: 3 };

/**
 * Type promotion for binary ops, as in PyTorch: the wider float wins, float16 with
 * bfloat16 gives float32, any float beats any integer, and bool yields to everything.
 */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  const ra = FLOAT_RANK[a];
  const rb = FLOAT_RANK[b];
  if (ra !== undefined && rb !== undefined) {
    if (ra === rb) return "float32"; // two different narrow formats (float16 with bfloat16)
    return ra > rb ? a : b;
  }
  if (ra !== undefined) return a;
  if (rb !== undefined) return b;
  if (a === "bool") return b;
  if (b === "bool") return a;
  return "int32";
}

const category = (d: DType): number => (d === "bool" ? 0 : FLOAT_RANK[d] === undefined ? 1 : 2);

/**
 * The dtype of a binary op over two tensors, as torch.result_type: tensors with dimensions take
 * priority over 0-dim tensors of the same or a higher category (bool < integer < float), so a
 * bfloat16 tensor plus a 0-dim float32 tensor stays bfloat16, while a 0-dim float with an integer
 * tensor gives the float.
 */
export function resultType(a: { readonly dtype: DType; readonly rank: number }, b: { readonly dtype: DType; readonly rank: number }): DType {
  if ((a.rank === 0) === (b.rank === 0)) return promoteTypes(a.dtype, b.dtype);
  const [dimensioned, zeroDim] = a.rank === 0 ? [b.dtype, a.dtype] : [a.dtype, b.dtype];
  return category(zeroDim) > category(dimensioned) ? promoteTypes(dimensioned, zeroDim) : dimensioned;
}
