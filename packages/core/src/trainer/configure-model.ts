import type { PrecisionPlugin } from "../precision/plugins.js";
import type { LightningModule } from "./lightning-module.js";

const configured = new WeakSet<LightningModule>();

/** Runs the module's configureModel hook once, in the plugin's init context, so what it creates takes the precision's dtype. */
export function configureModelOnce(module: LightningModule, plugin: PrecisionPlugin): void {
  if (!module.configureModel || configured.has(module)) return;
  plugin.initContext(() => module.configureModel!());
  configured.add(module);
}

/** Runs configureModel now, in the current init context, and marks it done (loadFromCheckpoint builds the layers before loading weights). */
export function configureModelHere(module: LightningModule): void {
  if (!module.configureModel || configured.has(module)) return;
  module.configureModel();
  configured.add(module);
}
