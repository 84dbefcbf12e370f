import { registerCuda } from "./accelerator.js";

export { CudaAccelerator, registerCuda, type CudaEngine } from "./accelerator.js";
export { TfjsBackend, CUDA_CAPABILITIES } from "./backend.js";
export { CUDA_KERNELS, type TfjsKernel } from "./kernels.js";
export { roundToHalf } from "./rounding.js";

registerCuda();
