import { autocastPolicyOf, resolvePrecision, type Accelerator } from "../accelerator.js";
import { NbitError } from "../errors.js";
import { MasterWeightsPrecision, precisionPluginForAmpLevel, type AmpLevel } from "../precision/apex.js";
import { parsePrecision, type Precision, type PrecisionInput, type Warn } from "../precision/parse.js";
import { precisionPluginFor, PrecisionPlugin } from "../precision/plugins.js";
import { checkOneOf, describe, InvalidArgumentError } from "../validation.js";

/** Lightning 1.x's `amp_backend`: "native" autocast plugins, or "apex" optimization levels. */
export type AmpBackend = "native" | "apex";
export const AMP_BACKENDS: readonly AmpBackend[] = ["native", "apex"];

/** The Trainer options that choose the precision plugin. */
export interface PrecisionOptions {
  readonly precision?: PrecisionInput;
  readonly plugin?: PrecisionPlugin;
  readonly plugins?: readonly PrecisionPlugin[];
  readonly ampLevel?: AmpLevel;
  readonly ampBackend?: AmpBackend;
}

/** Two precision options ask for different things; nbit never lets one silently override the other. */
export class PrecisionConflictError extends NbitError {
  constructor(message: string) {
    super("PRECISION_CONFLICT", message);
  }
}

const pluginName = (p: PrecisionPlugin) => `${p.constructor.name}("${p.precision}")`;

/**
 * Picks the precision plugin from `precision`, `plugin`/`plugins`, `ampLevel` and `ampBackend`, as
 * Lightning's accelerator connector does, and checks that its precision runs on `accelerator`:
 *
 * - one precision plugin at most, given as `plugin` or in the `plugins` list;
 * - `ampBackend: "apex"` or an `ampLevel` selects Apex at that level (default "O2", as Lightning 1.x),
 *   and Lightning 1.x's own form `{ ampLevel: "O2", precision: 16 }` is Apex O2;
 * - an explicit `precision` that names another precision than the plugin's is a PrecisionConflictError.
 */
export function selectPrecisionPlugin(
  options: PrecisionOptions,
  accelerator: Accelerator,
  warn: Warn | null,
): { precision: Precision; plugin: PrecisionPlugin } {
  const { plugins, ampBackend, ampLevel } = options;
  if (plugins !== undefined && (!Array.isArray(plugins) || !plugins.every((p) => p instanceof PrecisionPlugin)))
    throw new InvalidArgumentError("Trainer plugins", "a list of PrecisionPlugin instances", plugins);
  if (ampBackend !== undefined) checkOneOf("Trainer ampBackend", ampBackend, AMP_BACKENDS);
  const given = [...(options.plugin ? [options.plugin] : []), ...(plugins ?? [])];
  if (given.length > 1) throw new PrecisionConflictError(`Received ${given.length} precision plugins (${given.map(pluginName).join(", ")}); pass one.`);
  if (ampBackend === "native" && ampLevel !== undefined)
    throw new PrecisionConflictError(
      `ampLevel ${describe(ampLevel)} is an Apex optimization level, but ampBackend is "native"; drop ampLevel or set ampBackend: "apex".`,
    );

  const apex = ampBackend === "apex" || ampLevel !== undefined;
  let plugin = given[0];
  if (apex) {
    if (plugin) throw new PrecisionConflictError(`Both Apex (ampLevel/ampBackend) and the plugin ${pluginName(plugin)} choose the precision plugin; pass one.`);
    plugin = precisionPluginForAmpLevel(ampLevel ?? "O2");
  } else if (plugin instanceof MasterWeightsPrecision && ampBackend === "native")
    throw new PrecisionConflictError(`The plugin ${pluginName(plugin)} is Apex O2, but ampBackend is "native".`);

  if (!plugin) {
    const precision = resolvePrecision(accelerator, options.precision ?? "32-true", warn).precision;
    return { precision, plugin: precisionPluginFor(precision, autocastPolicyOf(accelerator)) };
  }
  if (options.precision !== undefined) {
    const requested = resolvePrecision(accelerator, options.precision, null).precision;
    // Lightning 1.x's precision=16 with Apex: the level decides which half (O1, O2: 16-mixed; O3: 16-true).
    const halfForApex = apex && parsePrecision(options.precision, null).legacyHalf && plugin.precision !== "32-true";
    if (requested !== plugin.precision && !halfForApex) {
      const chooser = apex ? `Apex level ${ampLevel ?? "O2"}` : `the plugin ${pluginName(plugin)}`;
      throw new PrecisionConflictError(
        `precision=${JSON.stringify(options.precision)} means "${requested}" on "${accelerator.name}", but ${chooser} runs "${plugin.precision}"; pass one of them, or make them agree.`,
      );
    }
  }
  // A given plugin must still run on this accelerator: its precision is checked like a requested one.
  return { precision: resolvePrecision(accelerator, plugin.precision, warn).precision, plugin };
}
