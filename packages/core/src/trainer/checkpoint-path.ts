import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { NbitError } from "../errors.js";
import { InvalidArgumentError } from "../validation.js";
import { ModelCheckpoint, type Callback } from "./callbacks.js";
import type { Trainer } from "./trainer.js";

/** A checkpoint file, or "last" / "best" as written by the Trainer's ModelCheckpoint callbacks. */
export type CheckpointPath = "last" | "best" | (string & {});

/** `ckptPath: "last"` or `"best"` named no checkpoint: no ModelCheckpoint has saved one (yet). */
export class CheckpointNotFoundError extends NbitError {
  constructor(
    readonly which: "last" | "best",
    readonly call: string,
    detail: string,
  ) {
    super("CHECKPOINT_NOT_FOUND", `${call}(ckptPath: "${which}"): ${detail}`);
  }
}

const modifiedAt = (path: string): number => statSync(path).mtimeMs;

/**
 * Resolves a `ckptPath` option to a file path, as Lightning's checkpoint connector: "best" is the
 * first ModelCheckpoint's best model; "last" is the most recently written of the ModelCheckpoints'
 * last files (their `lastModelPath`, or a `last.safetensors` left in their folder by an earlier run).
 */
export function resolveCheckpointPath(call: string, ckptPath: unknown, trainer: Trainer, callbacks: readonly Callback[]): string | undefined {
  if (ckptPath === undefined) return undefined;
  if (typeof ckptPath !== "string" || ckptPath === "" || ckptPath.includes("\0"))
    throw new InvalidArgumentError(`${call} ckptPath`, 'a checkpoint path, "last" or "best"', ckptPath);
  if (ckptPath !== "last" && ckptPath !== "best") return ckptPath;
  const checkpoints = callbacks.filter((c): c is ModelCheckpoint => c instanceof ModelCheckpoint);
  if (checkpoints.length === 0)
    throw new CheckpointNotFoundError(ckptPath, call, "the Trainer has no ModelCheckpoint callback (enableCheckpointing is false and none was passed).");
  if (ckptPath === "best") {
    const best = checkpoints[0]!.bestModelPath;
    if (best === "")
      throw new CheckpointNotFoundError("best", call, "the ModelCheckpoint has not saved a checkpoint yet (fit first, or give saveTopK a value other than 0).");
    return best;
  }
  const candidates = new Set<string>();
  for (const c of checkpoints) {
    if (c.lastModelPath !== "") candidates.add(c.lastModelPath);
    candidates.add(join(c.dirpath(trainer), "last.safetensors"));
  }
  const found = [...candidates].filter((p) => existsSync(p));
  if (found.length === 0)
    throw new CheckpointNotFoundError(
      "last",
      call,
      `no last checkpoint exists; looked for ${[...candidates].join(", ")}. Pass saveLast: true to the ModelCheckpoint to write one.`,
    );
  return found.reduce((a, b) => (modifiedAt(b) > modifiedAt(a) ? b : a));
}
