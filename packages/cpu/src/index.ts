import { registerCpu } from "./accelerator.js";

export { CpuAccelerator, registerCpu } from "./accelerator.js";
export { CpuBackend, CPU_CAPABILITIES, defaultThreads, programFlops, SMALL_PROGRAM_FLOPS, type CpuBackendOptions } from "./backend.js";
export { programToOnnx, physicalType, type OnnxLowering, type LoweringContext } from "./lower.js";
export { CPU_KERNELS } from "./kernels.js";

registerCpu();
