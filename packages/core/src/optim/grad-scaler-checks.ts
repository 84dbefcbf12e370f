import { checkBoolean, checkInteger, checkNumber, InvalidArgumentError, isPlainObject } from "../validation.js";
import type { GradScalerOptions, GradScalerState } from "./grad-scaler.js";

/** The largest finite float32: a scale the float32 loss multiply can hold. */
const FLOAT32_MAX = 3.4028234663852886e38;

/** The constructor's rules, shared by restored state: a checkpoint is held to the same bounds. */
export function checkGradScalerOptions(options: GradScalerOptions, where = "GradScaler"): void {
  checkNumber(`${where} initScale`, options.initScale, { min: 0, minOpen: true, max: FLOAT32_MAX });
  checkNumber(`${where} growthFactor`, options.growthFactor, { min: 1, minOpen: true });
  checkNumber(`${where} backoffFactor`, options.backoffFactor, { min: 0, max: 1, minOpen: true, maxOpen: true });
  checkInteger(`${where} growthInterval`, options.growthInterval, 1);
  checkBoolean(`${where} enabled`, options.enabled);
}

const STATE_KEYS = ["scale", "growthFactor", "backoffFactor", "growthInterval", "growthTracker"] as const;

/** Validates a saved scaler state field by field and returns a copy with only the known fields. */
export function checkGradScalerState(state: unknown, where = "GradScaler state"): GradScalerState {
  if (!isPlainObject(state)) throw new InvalidArgumentError(where, `an object with ${STATE_KEYS.join(", ")}`, state);
  for (const key of Object.keys(state))
    if (!(STATE_KEYS as readonly string[]).includes(key))
      throw new InvalidArgumentError(`${where} field ${JSON.stringify(key)}`, "absent (unknown field)", state[key]);
  const growthInterval = checkInteger(`${where} growthInterval`, state.growthInterval, 1);
  return {
    scale: checkNumber(`${where} scale`, state.scale, { min: 0, minOpen: true, max: FLOAT32_MAX }),
    growthFactor: checkNumber(`${where} growthFactor`, state.growthFactor, { min: 1, minOpen: true }),
    backoffFactor: checkNumber(`${where} backoffFactor`, state.backoffFactor, { min: 0, max: 1, minOpen: true, maxOpen: true }),
    growthInterval,
    growthTracker: checkInteger(`${where} growthTracker`, state.growthTracker, 0, growthInterval - 1),
  };
}
