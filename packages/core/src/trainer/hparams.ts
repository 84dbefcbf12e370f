import { FORBIDDEN_KEYS, InvalidArgumentError, isPlainObject } from "../validation.js";

/** A hyperparameter: a plain JSON value (what a checkpoint can hold and give back unchanged). */
export type HyperparameterValue = null | boolean | number | string | readonly HyperparameterValue[] | { readonly [key: string]: HyperparameterValue };
export type Hyperparameters = { readonly [key: string]: HyperparameterValue };

/** Bounds on what is read from a file: nesting depth and number of values. */
const MAX_DEPTH = 32;
const MAX_VALUES = 100_000;

/**
 * A deep, frozen copy of `value` when it is plain JSON: an object of null, booleans, finite numbers,
 * strings, arrays and plain objects, without prototype keys, at most 32 levels deep and 100,000
 * values. Anything else (a function, a tensor, a module, NaN, a class instance) is an
 * InvalidArgumentError naming the path to it. Checkpoints are untrusted: loading runs this too.
 */
export function checkHyperparameters(value: unknown, where = "hparams"): Hyperparameters {
  let count = 0;
  const copy = (v: unknown, path: string, depth: number): HyperparameterValue => {
    if (++count > MAX_VALUES) throw new InvalidArgumentError(where, `at most ${MAX_VALUES} values`, value);
    if (depth > MAX_DEPTH) throw new InvalidArgumentError(path, `nested at most ${MAX_DEPTH} levels deep`, v);
    if (v === null || typeof v === "boolean" || typeof v === "string") return v;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new InvalidArgumentError(path, "a finite number (JSON has no NaN or Infinity)", v);
      return v;
    }
    if (Array.isArray(v)) return Object.freeze(v.map((item, i) => copy(item, `${path}[${i}]`, depth + 1)));
    if (!isPlainObject(v)) throw new InvalidArgumentError(path, "a plain JSON value (null, boolean, finite number, string, array or plain object)", v);
    const out: Record<string, HyperparameterValue> = {};
    for (const key of Object.keys(v)) {
      if (FORBIDDEN_KEYS.has(key)) throw new InvalidArgumentError(`${path} key ${JSON.stringify(key)}`, "not a prototype key", key);
      out[key] = copy(v[key], `${path}.${key}`, depth + 1);
    }
    return Object.freeze(out);
  };
  if (!isPlainObject(value)) throw new InvalidArgumentError(where, "a plain object of hyperparameters", value);
  return copy(value, where, 0) as Hyperparameters;
}
