import { NbitError } from "../errors.js";
import type { TrainerStage } from "./callbacks.js";
import { describe } from "../validation.js";
import { DataLoader } from "./data.js";
import type { Trainer } from "./trainer.js";

type DataloaderHook = "trainDataloader" | "valDataloader" | "testDataloader" | "predictDataloader";

/** The datamodule given to a Trainer call does not define the loader that call needs. */
export class MissingDataloaderError extends NbitError {
  constructor(
    readonly datamodule: string,
    readonly hook: DataloaderHook,
    readonly call: string,
  ) {
    super("MISSING_DATALOADER", `${call}() needs ${datamodule}.${hook}(), which it does not define.`);
  }
}

/**
 * Lightning's LightningDataModule: the data of a run in one place. The Trainer calls
 * `prepareData()` once (download or write files), then `setup(stage)` (build data sets), then the
 * stage's dataloader hooks, and `teardown(stage)` at the end. Pass it as `datamodule` (or in place
 * of the loaders) to fit, validate, test or predict.
 */
export abstract class LightningDataModule {
  /** The Trainer running it, set for the duration of each call. */
  trainer: Trainer | null = null;

  prepareData?(): void | Promise<void>;
  setup?(stage: TrainerStage): void | Promise<void>;
  teardown?(stage: TrainerStage): void | Promise<void>;
  trainDataloader?(): DataLoader;
  valDataloader?(): DataLoader;
  testDataloader?(): DataLoader;
  predictDataloader?(): DataLoader;
}

/** The loader from `datamodule`'s hook, or null when it has none and `required` is false. */
export function dataloaderOf(datamodule: LightningDataModule, hook: DataloaderHook, call: string, required: boolean): DataLoader | null {
  const fn = datamodule[hook];
  if (typeof fn !== "function") {
    if (required) throw new MissingDataloaderError(datamodule.constructor.name, hook, call);
    return null;
  }
  const loader: unknown = fn.call(datamodule);
  if (!(loader instanceof DataLoader))
    throw new NbitError("INVALID_RETURN_VALUE", `${datamodule.constructor.name}.${hook}() must return a DataLoader; got ${describe(loader)}`);
  return loader;
}
