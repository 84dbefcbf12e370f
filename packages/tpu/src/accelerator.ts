import { accelerators, type Accelerator, type AcceleratorRegistry } from "@nbit/core";
import { TpuBackend } from "./backend.js";

/** A bf16-only TPU-style accelerator, simulated in TypeScript: always available, one device. */
export class TpuAccelerator implements Accelerator {
  readonly name = "tpu";
  readonly description = "TPU-style bfloat16 device simulated in TypeScript (MXU matmul: bf16 inputs, float32 accumulation)";
  readonly supportedPrecisions = ["bf16-mixed", "bf16-true", "32-true"] as const;
  readonly legacyHalfPrecision = "bf16-mixed" as const;
  readonly autocastPolicy = "tpu" as const;
  readonly precisionHints = {
    "16-mixed": 'TPUs have no float16; use precision="bf16-mixed" (legacy 16 means bf16 here).',
    "16-true": 'TPUs have no float16; use precision="bf16-true".',
    "64-true": "TPUs have no float64.",
  };

  isAvailable() {
    return { available: true } as const;
  }

  deviceCount(): number {
    return 1;
  }

  createBackend(): TpuBackend {
    return new TpuBackend();
  }
}

declare module "@nbit/core" {
  /** Importing this package registers these names, so they type-check as Trainer accelerators. */
  interface AcceleratorNames {
    tpu: true;
  }
}

/** Registers the TPU accelerator (done on import for the default registry). */
export function registerTpu(registry: AcceleratorRegistry = accelerators, priority = 0): void {
  registry.register("tpu", () => new TpuAccelerator(), { priority, override: true });
}
