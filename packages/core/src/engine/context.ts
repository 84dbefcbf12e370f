import { AsyncLocalStorage } from "node:async_hooks";
import type { FloatDType } from "../dtype.js";
import { NbitError } from "../errors.js";
import { AUTOCAST_POLICIES, type AutocastPolicy } from "./autocast-policy.js";
import type { Runtime } from "./runtime.js";

interface EngineScope {
  readonly gradEnabled: boolean;
  readonly autocast: AutocastScope | null;
  readonly paramDType: FloatDType;
  readonly runtime: Runtime | null;
}

const ROOT: EngineScope = { gradEnabled: true, autocast: null, paramDType: "float32", runtime: null };

// Each async call chain sees its own settings, so concurrent Trainers (and their awaits) never see each other's.
const scopes = new AsyncLocalStorage<EngineScope>();
const current = (): EngineScope => scopes.getStore() ?? ROOT;

function withSetting<K extends keyof EngineScope, T>(key: K, value: EngineScope[K], fn: () => T): T {
  const scope = current();
  if (scope[key] === value) return fn();
  return scopes.run({ ...scope, [key]: value }, fn);
}

export const isGradEnabled = (): boolean => current().gradEnabled;
export const noGrad = <T>(fn: () => T): T => withSetting("gradEnabled", false, fn);
export const enableGrad = <T>(fn: () => T): T => withSetting("gradEnabled", true, fn);

/** An autocast region: the low dtype and the device type's op lists. */
export interface AutocastScope {
  readonly dtype: FloatDType;
  readonly policy: AutocastPolicy;
}

/** The dtype matmul-type ops run in right now, or null outside autocast. */
export const autocastDType = (): FloatDType | null => current().autocast?.dtype ?? null;
export const autocastScope = (): AutocastScope | null => current().autocast;
/** Runs `fn` with autocast to `dtype` under `policy`'s lists (null: autocast off). */
export const autocast = <T>(dtype: FloatDType | null, fn: () => T, policy: AutocastPolicy = AUTOCAST_POLICIES.cuda): T =>
  withSetting("autocast", dtype ? { dtype, policy } : null, fn);

/** The dtype new parameters are created in (set by a precision plugin's init context). */
export const defaultParamDType = (): FloatDType => current().paramDType;
export const withParamDType = <T>(dtype: FloatDType, fn: () => T): T => withSetting("paramDType", dtype, fn);

/**
 * Runs `fn` (and everything it awaits) with `runtime` realizing tensors whose data is not yet
 * placed on any runtime. There is no process-wide default: each Trainer runs in its own scope.
 */
export const withRuntime = <T>(runtime: Runtime, fn: () => T): T => withSetting("runtime", runtime, fn);

/** The runtime of the enclosing `withRuntime` scope; throws outside one. */
export function currentRuntime(): Runtime {
  const { runtime } = current();
  if (!runtime)
    throw new NbitError(
      "NO_RUNTIME",
      "No backend is selected: train with a Trainer (or trainer.run(fn)), or run the code inside withRuntime(runtime, fn) / runtime.run(fn).",
    );
  return runtime;
}
/** The runtime of the enclosing `withRuntime` scope, or null outside one. */
export const peekRuntime = (): Runtime | null => current().runtime;

/**
 * Runs `fn` outside every scope. Promises remember the scope they were made in, so one kept for
 * the process (a cached program a finalizer releases) would otherwise keep its runtime alive.
 */
export const outsideScopes = <T>(fn: () => T): T => scopes.exit(fn);
