import type { DType } from "../dtype.js";
import { NbitError } from "../errors.js";
import { defaultParamDType } from "../engine/context.js";

/** PyTorch's complex dtypes: complex64 has float32 parts, complex128 float64 parts. */
export const COMPLEX_DTYPES = ["complex64", "complex128"] as const;
export type ComplexDType = (typeof COMPLEX_DTYPES)[number];
export type ComplexPartDType = "float32" | "float64";

export const COMPLEX_PART_DTYPE: Readonly<Record<ComplexDType, ComplexPartDType>> = { complex64: "float32", complex128: "float64" };

const HINT =
  'PyTorch has no complex bfloat16 and its complex32 is experimental: use "32-true" (complex64) or "64-true" (complex128), or pass a complex dtype explicitly.';

/** A complex dtype was asked of parts (or of a precision) that have none. */
export class ComplexDTypeError extends NbitError {
  constructor(
    readonly received: string,
    detail: string,
  ) {
    super("UNSUPPORTED_COMPLEX_DTYPE", `${detail} Expected "complex64" (float32 parts) or "complex128" (float64 parts), got "${received}". ${HINT}`);
  }
}

/** The complex dtype whose parts are `part`. */
export function complexDTypeOf(part: DType, context = "Complex tensor:"): ComplexDType {
  if (part === "float32") return "complex64";
  if (part === "float64") return "complex128";
  throw new ComplexDTypeError(part, context);
}

export function isComplexDType(value: unknown): value is ComplexDType {
  return (COMPLEX_DTYPES as readonly unknown[]).includes(value);
}

/**
 * The complex dtype new complex tensors take when none is given: the one whose parts are the
 * parameter dtype the active precision sets (float64 under 64-true: complex128; float32 under
 * 32-true and the mixed precisions: complex64). 16-bit parameter dtypes have none.
 */
export function defaultComplexDType(): ComplexDType {
  const part = defaultParamDType();
  return complexDTypeOf(part, `Complex tensors take the precision's parameter dtype, here "${part}", which has no complex dtype.`);
}

/** Resolves an explicit complex dtype (validated: it may come from untyped callers) or the default. */
export function resolveComplexDType(dtype: ComplexDType | undefined): ComplexDType {
  if (dtype === undefined) return defaultComplexDType();
  if (!isComplexDType(dtype)) throw new ComplexDTypeError(String(dtype), "Unknown complex dtype.");
  return dtype;
}
