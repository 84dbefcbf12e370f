import type { FloatDType } from "../dtype.js";
import { NbitError } from "../errors.js";
import { AUTOCAST_POLICIES, type AutocastPolicy } from "./autocast-policy.js";
import type { Runtime } from "./runtime.js";

interface EngineState {
  gradEnabled: boolean;
  autocast: AutocastScope | null;
  paramDType: FloatDType;
  runtime: Runtime | null;
}

const state: EngineState = { gradEnabled: true, autocast: null, paramDType: "float32", runtime: null };

function withState<K extends keyof EngineState, T>(key: K, value: EngineState[K], fn: () => T): T {
  const previous = state[key];
  state[key] = value;
  try {
    const result = fn();
    if (result instanceof Promise) {
      // Async callbacks keep the setting until they settle; keep such scopes unnested.
      return result.finally(() => {
        state[key] = previous;
      }) as T;
    }
    state[key] = previous;
    return result;
  } catch (e) {
    state[key] = previous;
    throw e;
  }
}

export const isGradEnabled = (): boolean => state.gradEnabled;
export const noGrad = <T>(fn: () => T): T => withState("gradEnabled", false, fn);
export const enableGrad = <T>(fn: () => T): T => withState("gradEnabled", true, fn);

/** An autocast region: the low dtype and the device type's op lists. */
export interface AutocastScope {
  readonly dtype: FloatDType;
  readonly policy: AutocastPolicy;
}

/** The dtype matmul-type ops run in right now, or null outside autocast. */
export const autocastDType = (): FloatDType | null => state.autocast?.dtype ?? null;
export const autocastScope = (): AutocastScope | null => state.autocast;
/** Runs `fn` with autocast to `dtype` under `policy`'s lists (null: autocast off). */
export const autocast = <T>(dtype: FloatDType | null, fn: () => T, policy: AutocastPolicy = AUTOCAST_POLICIES.cuda): T =>
  withState("autocast", dtype ? { dtype, policy } : null, fn);

/** The dtype new parameters are created in (set by a precision plugin's init context). */
export const defaultParamDType = (): FloatDType => state.paramDType;
export const withParamDType = <T>(dtype: FloatDType, fn: () => T): T => withState("paramDType", dtype, fn);

/** Sets the runtime used to realize tensors whose data has not been placed on any runtime yet. */
export function setDefaultRuntime(runtime: Runtime | null): void {
  state.runtime = runtime;
}
export const withRuntime = <T>(runtime: Runtime, fn: () => T): T => withState("runtime", runtime, fn);
export function defaultRuntime(): Runtime {
  if (!state.runtime)
    throw new NbitError(
      "NO_RUNTIME",
      "No backend is selected: create a Trainer, or call setDefaultRuntime(new Runtime(backend)) before reading tensor data.",
    );
  return state.runtime;
}
export const peekDefaultRuntime = (): Runtime | null => state.runtime;
