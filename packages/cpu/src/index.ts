import { registerCpu } from "./accelerator.js";

export { CpuAccelerator, registerCpu } from "./accelerator.js";
export { CpuBackend, CPU_CAPABILITIES, type CpuBackendOptions } from "./backend.js";
export { programToOnnx } from "./lower.js";

registerCpu();
