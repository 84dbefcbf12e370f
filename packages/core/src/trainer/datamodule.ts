import { NbitError } from "../errors.js";
import type { TrainerStage } from "./callbacks.js";
import { rejectUnknownOptions } from "../options.js";
import { describe, InvalidArgumentError, isPlainObject } from "../validation.js";
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

/** The loader a Trainer call was given, or its datamodule: exactly one of them, checked with the call's options. */
export function dataSource(
  call: string,
  loader: DataLoader | LightningDataModule | undefined,
  options: unknown,
  known: readonly string[],
): { loader: DataLoader | undefined; datamodule: LightningDataModule | null } {
  if (!isPlainObject(options)) throw new InvalidArgumentError(`${call} options`, `an object with ${known.join(", ")}`, options);
  rejectUnknownOptions(`${call}()`, options, known);
  const given = options.datamodule;
  if (given !== undefined && !(given instanceof LightningDataModule)) throw new InvalidArgumentError(`${call} datamodule`, "a LightningDataModule", given);
  if (loader instanceof LightningDataModule && given !== undefined)
    throw new NbitError("INVALID_ARGUMENT", `${call}() was given two datamodules: pass it once, as the loader argument or as datamodule.`);
  const datamodule = loader instanceof LightningDataModule ? loader : (given ?? null);
  if (datamodule && loader !== undefined && !(loader instanceof LightningDataModule))
    throw new NbitError("INVALID_ARGUMENT", `${call}() was given both a DataLoader and a datamodule: pass one of them.`);
  if (!datamodule && loader === undefined) throw new NbitError("INVALID_ARGUMENT", `${call}() needs a DataLoader or a datamodule.`);
  return { loader: loader instanceof LightningDataModule ? undefined : loader, datamodule };
}
