import { NbitError } from "./errors.js";

/** A short, safe rendering of a received value for error messages. */
export function describe(value: unknown): string {
  if (value === null || value === undefined || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value);
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  const { dtype, shape } = value as { dtype?: unknown; shape?: unknown };
  if (typeof dtype === "string" && Array.isArray(shape)) return `a ${dtype} tensor of shape [${shape.join(", ")}]`;
  return "an object";
}

/** An option, hyperparameter or restored state value outside what is allowed. */
export class InvalidArgumentError extends NbitError {
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly received: unknown,
  ) {
    super("INVALID_ARGUMENT", `${argument} must be ${expected}; got ${describe(received)}`);
  }
}

/** Keys that would reach an object's prototype when assigned (never accepted from untrusted input). */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

/** A JSON-style object: not null, not an array, with Object.prototype or no prototype. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

export function checkInteger(argument: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max)
    throw new InvalidArgumentError(argument, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, value);
  return value;
}

/** A finite number in [min, max] (bounds optional; `open` excludes them). */
export function checkNumber(
  argument: string,
  value: unknown,
  { min = -Infinity, max = Infinity, minOpen = false, maxOpen = false }: { min?: number; max?: number; minOpen?: boolean; maxOpen?: boolean } = {},
): number {
  const ok = typeof value === "number" && Number.isFinite(value) && (minOpen ? value > min : value >= min) && (maxOpen ? value < max : value <= max);
  if (!ok) {
    const lower = min === -Infinity ? "" : `${minOpen ? "(" : "["}${min}`;
    const upper = max === Infinity ? "" : `${max}${maxOpen ? ")" : "]"}`;
    const range = lower && upper ? ` in ${lower}, ${upper}` : lower ? ` ${minOpen ? ">" : ">="} ${min}` : upper ? ` ${maxOpen ? "<" : "<="} ${max}` : "";
    throw new InvalidArgumentError(argument, `a finite number${range}`, value);
  }
  return value as number;
}

export function checkBoolean(argument: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidArgumentError(argument, "true or false", value);
  return value;
}

export function checkOneOf<T extends string>(argument: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value))
    throw new InvalidArgumentError(argument, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`, value);
  return value as T;
}
