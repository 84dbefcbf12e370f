import { registerCpu } from "./accelerator.js";

export { CpuAccelerator, registerCpu } from "./accelerator.js";
export { CpuBackend, CPU_CAPABILITIES, defaultThreads, programWork, SMALL_PROGRAM_WORK, type CpuBackendOptions } from "./backend.js";
export { programToOnnx, physicalType, type OnnxLowering, type LoweringContext } from "./lower.js";
export { CPU_KERNELS } from "./kernels.js";

registerCpu();
