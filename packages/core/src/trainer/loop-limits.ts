import { checkInteger, checkNumber, InvalidArgumentError, isPlainObject } from "../validation.js";

/**
 * Lightning's loop limits: batch limits, fastDevRun, valCheckInterval and maxTime, each checked
 * (errors name the option, what was expected and what was received) and resolved to counts.
 */

/** A batch limit: an integer count (0 runs none) or, as Lightning, a fraction in (0, 1] of the batches. */
export function checkBatchLimit(name: string, value: unknown): number {
  const fraction = typeof value === "number" && value > 0 && value < 1;
  if (!fraction) checkInteger(name, value, 0);
  return value as number;
}

/**
 * The number of batches a limit allows out of `available`. An integer is a count (JavaScript has no
 * float 1.0: 1 is one batch); a fraction that rounds down to no batch at all is an error, as in Lightning.
 */
export function limitBatches(name: string, limit: number | undefined, available: number): number {
  if (limit === undefined) return available;
  if (Number.isInteger(limit)) return Math.min(limit, available);
  const count = Math.floor(limit * available);
  if (count < 1 && available > 0)
    throw new InvalidArgumentError(name, `at least ${1 / available} (${limit} of ${available} batches is less than one batch)`, limit);
  return count;
}

/** fastDevRun: true is 1 batch, an integer n is n batches, false or 0 is off (returns 0). */
export function checkFastDevRun(value: unknown): number {
  if (value === true) return 1;
  if (value === false) return 0;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
  throw new InvalidArgumentError("Trainer fastDevRun", "true, false or an integer >= 0 (the number of batches)", value);
}

/** valCheckInterval: an integer n (validate every n training batches) or a fraction in (0, 1] of the epoch. */
export function checkValCheckInterval(value: unknown): number {
  if (typeof value === "number" && value > 0 && value < 1) return value;
  return checkInteger("Trainer valCheckInterval", value, 1);
}

/** How many training batches pass between validations, as Lightning's `val_check_batch`. */
export function valCheckBatch(interval: number | undefined, numTrainingBatches: number): number {
  if (interval === undefined) return numTrainingBatches;
  if (!Number.isInteger(interval)) return Math.max(1, Math.floor(numTrainingBatches * interval));
  if (interval > numTrainingBatches)
    throw new InvalidArgumentError("Trainer valCheckInterval", `at most the number of training batches (${numTrainingBatches})`, interval);
  return interval;
}

/** A duration: milliseconds, "DD:HH:MM:SS" (as Lightning's max_time) or { days, hours, minutes, seconds }. */
export type Duration = number | string | { readonly days?: number; readonly hours?: number; readonly minutes?: number; readonly seconds?: number };

const UNIT_MS = { days: 86_400_000, hours: 3_600_000, minutes: 60_000, seconds: 1000 } as const;
const UNITS = Object.keys(UNIT_MS) as (keyof typeof UNIT_MS)[];

/** A positive duration in milliseconds. */
export function parseDuration(name: string, value: unknown): number {
  const expected = 'a positive number of milliseconds, "DD:HH:MM:SS" or { days, hours, minutes, seconds }';
  let ms: number;
  if (typeof value === "number") ms = value;
  else if (typeof value === "string") {
    const match = /^(\d+):(\d+):(\d+):(\d+)$/.exec(value);
    if (!match) throw new InvalidArgumentError(name, expected, value);
    ms = UNITS.reduce((sum, unit, i) => sum + Number(match[i + 1]) * UNIT_MS[unit], 0);
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value))
      if (!(UNITS as string[]).includes(key)) throw new InvalidArgumentError(`${name} field ${JSON.stringify(key)}`, `one of ${UNITS.join(", ")}`, key);
    ms = UNITS.reduce((sum, unit) => sum + (value[unit] === undefined ? 0 : checkNumber(`${name} ${unit}`, value[unit], { min: 0 })) * UNIT_MS[unit], 0);
  } else throw new InvalidArgumentError(name, expected, value);
  if (!(Number.isFinite(ms) && ms > 0)) throw new InvalidArgumentError(name, expected, value);
  return ms;
}
