import { isFloatDType, type DType, type FloatDType } from "../dtype.js";
import { AUTOCAST_POLICIES, type AutocastPolicy } from "./autocast-policy.js";
import { autocast as engineAutocast } from "./context.js";

/** A training step being watched for manual casts: what autocast is on, and where a warning goes. */
interface CastWatch {
  readonly precision: string;
  readonly autocast: FloatDType;
  readonly warn: (message: string) => void;
  /** Calls already warned about, so each is reported once per Trainer. */
  readonly warned: Set<string>;
}

let active: CastWatch | null = null;
const warnedBy = new WeakMap<object, Set<string>>();

/**
 * Runs `fn`, a training step under a mixed precision (autocast on), so that a manual cast between
 * floating dtypes or an `autocast` with another dtype in user code warns once per call per `owner`
 * (the Trainer). Without autocast it just runs `fn`.
 */
export function watchManualCasts<T>(owner: object, precision: string, autocastDType: FloatDType | null, warn: (message: string) => void, fn: () => T): T {
  if (autocastDType === null) return fn();
  let warned = warnedBy.get(owner);
  if (!warned) warnedBy.set(owner, (warned = new Set()));
  const previous = active;
  active = { precision, autocast: autocastDType, warn, warned };
  try {
    return fn();
  } finally {
    active = previous;
  }
}

function report(call: string): void {
  const watch = active;
  if (!watch || watch.warned.has(call)) return;
  watch.warned.add(call);
  watch.warn(
    `${call} inside trainingStep under precision "${watch.precision}": Lightning's precision docs say: do not cast manually. ` +
      `Autocast already runs each op in ${watch.autocast} or float32 as suits it; remove the cast, or choose a precision that keeps the dtype you need.`,
  );
}

/** Called by Tensor's cast methods: a float-to-float cast that changes the dtype is a manual cast. */
export function noteManualCast(call: string, from: DType, to: DType): void {
  if (active && isFloatDType(from) && isFloatDType(to) && from !== to) report(call);
}

/**
 * Runs `fn` with autocast to `dtype` under `policy`'s lists (null: autocast off). The same scope as
 * the engine's, but inside a watched training step a dtype other than the precision's warns once.
 */
export function autocast<T>(dtype: FloatDType | null, fn: () => T, policy: AutocastPolicy = AUTOCAST_POLICIES.cuda): T {
  if (active && dtype !== active.autocast) report(`autocast(${JSON.stringify(dtype)})`);
  return engineAutocast(dtype, fn, policy);
}
