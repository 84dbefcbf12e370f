import { InvalidPrecisionError } from "../errors.js";
import type { DType, FloatDType } from "../dtype.js";

/** Canonical precision names, as in Lightning 2.x. New families (e.g. fp8) extend this list. */
export const CANONICAL_PRECISIONS = ["64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"] as const;
export type Precision = (typeof CANONICAL_PRECISIONS)[number];

/** Lightning's historical aliases. 16 means "half" and each accelerator decides which half. */
export const LEGACY_PRECISIONS = [64, 32, 16, "64", "32", "16", "bf16"] as const;
export type LegacyPrecision = (typeof LEGACY_PRECISIONS)[number];
export type PrecisionInput = Precision | LegacyPrecision;

export const ALLOWED_PRECISION_INPUTS: readonly (string | number)[] = [...CANONICAL_PRECISIONS, ...LEGACY_PRECISIONS];

const LEGACY_MAP: Record<string, Precision> = {
  "64": "64-true",
  "32": "32-true",
  "16": "16-mixed",
  bf16: "bf16-mixed",
};

/** Aliases Lightning still accepts but asks users to replace. */
const DISCOURAGED_ALIASES = new Set(["16", "bf16"]);

export interface ParsedPrecision {
  readonly precision: Precision;
  /** The legacy alias the user wrote, when they wrote one. */
  readonly alias?: string;
  /** True when the user asked for "half" via legacy 16, so an accelerator may pick its own half type. */
  readonly legacyHalf: boolean;
  /** The deprecation message for discouraged aliases (already emitted when a warn function was given). */
  readonly deprecation?: string;
}

export type Warn = (message: string) => void;

export const defaultWarn: Warn = (message) => process.emitWarning(message, { type: "DeprecationWarning", code: "NBIT_PRECISION_ALIAS" });

export function isPrecision(value: unknown): value is Precision {
  return typeof value === "string" && (CANONICAL_PRECISIONS as readonly string[]).includes(value);
}

/** True for every value `parsePrecision` accepts: the canonical names and Lightning's legacy aliases. */
export function isPrecisionInput(value: unknown): value is PrecisionInput {
  return (ALLOWED_PRECISION_INPUTS as readonly unknown[]).includes(value);
}

/**
 * Parses a canonical precision or a legacy alias (64, 32, 16, "64", "32", "16", "bf16").
 * 16/"16" map to "16-mixed" and "bf16" to "bf16-mixed", with a deprecation warning as in Lightning.
 */
export function parsePrecision(input: unknown, warn: Warn | null = defaultWarn): ParsedPrecision {
  if (isPrecision(input)) return { precision: input, legacyHalf: false };
  const key = typeof input === "number" && Number.isInteger(input) ? String(input) : input;
  if (typeof key === "string" && Object.hasOwn(LEGACY_MAP, key) && (typeof input === "string" || key !== "bf16")) {
    const precision = LEGACY_MAP[key]!;
    let deprecation: string | undefined;
    if (DISCOURAGED_ALIASES.has(key)) {
      deprecation = `precision=${JSON.stringify(input)} is supported for historical reasons but its usage is discouraged. Please set your precision to "${precision}" instead.`;
      warn?.(deprecation);
    }
    return { precision, alias: key, legacyHalf: key === "16", ...(deprecation ? { deprecation } : {}) };
  }
  throw new InvalidPrecisionError(input, ALLOWED_PRECISION_INPUTS);
}

export interface PrecisionInfo {
  /** dtype parameters are created and stored in. */
  readonly paramDType: FloatDType;
  /** dtype matmul-type ops run in under autocast, or null when autocast is off. */
  readonly autocastDType: FloatDType | null;
  /** Whether a dynamic gradient scaler is used (16-mixed only). */
  readonly gradScaler: boolean;
}

export const PRECISION_INFO: Readonly<Record<Precision, PrecisionInfo>> = {
  "64-true": { paramDType: "float64", autocastDType: null, gradScaler: false },
  "32-true": { paramDType: "float32", autocastDType: null, gradScaler: false },
  "16-true": { paramDType: "float16", autocastDType: null, gradScaler: false },
  "bf16-true": { paramDType: "bfloat16", autocastDType: null, gradScaler: false },
  "16-mixed": { paramDType: "float32", autocastDType: "float16", gradScaler: true },
  "bf16-mixed": { paramDType: "float32", autocastDType: "bfloat16", gradScaler: false },
};

/** Every dtype a precision needs a backend to hold. */
export function dtypesOfPrecision(precision: Precision): DType[] {
  const info = PRECISION_INFO[precision];
  const needed = new Set<DType>([info.paramDType, "float32"]);
  if (info.autocastDType) needed.add(info.autocastDType);
  if (precision === "64-true") needed.delete("float32");
  return [...needed];
}
