import { accelerators, type Accelerator, type AcceleratorRegistry, type Availability } from "@nbit/core";
import { createRequire } from "node:module";
import type * as ort from "onnxruntime-node";
import { CpuBackend, type CpuBackendOptions } from "./backend.js";

const require = createRequire(import.meta.url);

function loadOrt(): { ort: typeof ort } | { error: string } {
  try {
    return { ort: require("onnxruntime-node") as typeof ort };
  } catch (e) {
    return { error: `onnxruntime-node could not be loaded: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}` };
  }
}

/** The CPU accelerator: bf16-mixed, 32-true and 64-true on onnxruntime-node. */
export class CpuAccelerator implements Accelerator {
  readonly name = "cpu";
  readonly description = "CPU via onnxruntime-node; one fused ONNX graph per training step";
  readonly supportedPrecisions = ["bf16-mixed", "32-true", "64-true"] as const;
  readonly legacyHalfPrecision = "bf16-mixed" as const;
  // PyTorch's CPU autocast lists: only matmul-type ops and the losses change dtype.
  readonly autocastPolicy = "cpu" as const;
  readonly precisionHints = {
    "16-mixed": 'AMP with float16 is not supported on CPU. Consider precision="bf16-mixed" instead.',
    "16-true": 'float16 parameters are not supported on CPU. Consider precision="bf16-mixed".',
    "bf16-true": 'bfloat16 parameters are not supported on CPU. Consider precision="bf16-mixed".',
  };
  private loaded: ReturnType<typeof loadOrt> | undefined;

  constructor(private readonly options: CpuBackendOptions = {}) {}

  private load() {
    return (this.loaded ??= loadOrt());
  }

  isAvailable(): Availability {
    const l = this.load();
    return "ort" in l ? { available: true } : { available: false, reason: l.error };
  }

  deviceCount(): number {
    return 1;
  }

  createBackend(): CpuBackend {
    const l = this.load();
    if (!("ort" in l)) throw new Error(l.error);
    return new CpuBackend(l.ort, this.options);
  }
}

declare module "@nbit/core" {
  /** Importing this package registers these names, so they type-check as Trainer accelerators. */
  interface AcceleratorNames {
    cpu: true;
  }
}

/** Registers the CPU accelerator (done on import for the default registry). */
export function registerCpu(registry: AcceleratorRegistry = accelerators, priority = 10): void {
  registry.register("cpu", () => new CpuAccelerator(), { priority, override: true });
}
