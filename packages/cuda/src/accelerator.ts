import { accelerators, type Accelerator, type AcceleratorRegistry, type Availability } from "@nbit/core";
import type * as tfc from "@tensorflow/tfjs-core";
import { createRequire } from "node:module";
import { TfjsBackend } from "./backend.js";

const require = createRequire(import.meta.url);
type Tf = typeof tfc;

export type CudaEngine =
  /** @tensorflow/tfjs-node-gpu: TensorFlow's CUDA kernels on an NVIDIA GPU. */
  | "tfjs-node-gpu"
  /** @tensorflow/tfjs-backend-cpu: the same tfjs code on tfjs's JavaScript CPU kernels (for tests; not a GPU). */
  | "tfjs-cpu";

function loadNodeGpu(): { tf: Tf } | { error: string } {
  let tf: Tf & { backend(): unknown };
  try {
    tf = require("@tensorflow/tfjs-node-gpu") as Tf & { backend(): unknown };
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" && String((e as Error).message).includes("tfjs-node-gpu'");
    return {
      error: missing
        ? "@tensorflow/tfjs-node-gpu is not installed (an optional dependency: its install step downloads libtensorflow with CUDA, which needs network access and an NVIDIA driver)"
        : `@tensorflow/tfjs-node-gpu failed to load: ${String((e as Error).message).split("\n")[0]}`,
    };
  }
  const backend = tf.backend() as { isUsingGpuDevice?: () => boolean };
  if (!backend.isUsingGpuDevice?.()) return { error: "@tensorflow/tfjs-node-gpu loaded, but TensorFlow found no CUDA GPU" };
  return { tf };
}

function loadTfjsCpu(): { tf: Tf } {
  const tf = require("@tensorflow/tfjs-core") as Tf;
  require("@tensorflow/tfjs-backend-cpu");
  void tf.setBackend("cpu");
  return { tf };
}

/**
 * The GPU accelerator ("cuda", alias "gpu"). It needs @tensorflow/tfjs-node-gpu and a CUDA GPU;
 * without them it is unavailable and says why. Every precision but 64-true: tfjs has no float64.
 */
export class CudaAccelerator implements Accelerator {
  readonly name = "cuda";
  readonly supportedPrecisions = ["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"] as const;
  readonly legacyHalfPrecision = "16-mixed" as const;
  readonly autocastPolicy = "cuda" as const;
  readonly precisionHints = { "64-true": 'tfjs has no float64 tensors; use accelerator "cpu" for 64-true.' };
  readonly description: string;
  private loaded: { tf: Tf } | { error: string } | undefined;

  constructor(readonly engine: CudaEngine = "tfjs-node-gpu") {
    this.description =
      engine === "tfjs-cpu"
        ? "tfjs kernels on tfjs's JavaScript CPU backend (testing the CUDA backend's code; not a GPU)"
        : "NVIDIA GPU via @tensorflow/tfjs-node-gpu";
  }

  private load() {
    return (this.loaded ??= this.engine === "tfjs-cpu" ? loadTfjsCpu() : loadNodeGpu());
  }

  isAvailable(): Availability {
    const l = this.load();
    return "tf" in l ? { available: true } : { available: false, reason: l.error };
  }

  deviceCount(): number {
    return this.isAvailable().available ? 1 : 0;
  }

  createBackend(): TfjsBackend {
    const l = this.load();
    if (!("tf" in l)) throw new Error(l.error);
    return new TfjsBackend(l.tf, this.engine === "tfjs-cpu" ? "cuda (tfjs-cpu kernels)" : "cuda");
  }
}

declare module "@nbit/core" {
  /** Importing this package registers these names, so they type-check as Trainer accelerators. */
  interface AcceleratorNames {
    cuda: true;
    gpu: true;
  }
}

/** Registers "cuda" (alias "gpu") with the highest priority, so "auto" prefers a GPU when one works. */
export function registerCuda(registry: AcceleratorRegistry = accelerators, priority = 100): void {
  registry.register("cuda", () => new CudaAccelerator(), { priority, override: true, aliases: ["gpu"] });
}
