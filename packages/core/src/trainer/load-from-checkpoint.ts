import { InvalidArgumentError, isPlainObject } from "../validation.js";
import { readModuleCheckpoint } from "./checkpoint.js";
import { configureModelHere } from "./configure-model.js";
import { checkHyperparameters } from "./hparams.js";
import type { LightningModule } from "./lightning-module.js";

export interface LoadFromCheckpointOptions<H extends object = Record<string, unknown>> {
  /** Laid over the saved hyperparameters before the module is built (Lightning's **kwargs). */
  readonly hparams?: Partial<H>;
  /** Require every weight of the module to be in the file and nothing else (default true). */
  readonly strict?: boolean;
}

/** See LightningModule.loadFromCheckpoint. */
export function loadModuleFromCheckpoint<M extends LightningModule, H extends object>(
  Module: new (hparams: H) => M,
  path: string,
  options: LoadFromCheckpointOptions<H> = {},
): M {
  if (typeof path !== "string" || path === "") throw new InvalidArgumentError("loadFromCheckpoint path", "a checkpoint path", path);
  if (options.hparams !== undefined && !isPlainObject(options.hparams))
    throw new InvalidArgumentError("loadFromCheckpoint hparams", "a plain object", options.hparams);
  const checkpoint = readModuleCheckpoint(path);
  const hparams = { ...checkpoint.hparams, ...checkHyperparameters(options.hparams ?? {}, "loadFromCheckpoint hparams") } as unknown as H;
  const module = new Module(hparams);
  configureModelHere(module);
  module.loadStateDict(checkpoint.weightsFor(module), options.strict ?? true);
  return module;
}
