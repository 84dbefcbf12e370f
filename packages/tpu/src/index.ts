import { registerTpu } from "./accelerator.js";

export { TpuAccelerator, registerTpu } from "./accelerator.js";
export { TpuBackend, TPU_CAPABILITIES, TPU_KERNELS } from "./backend.js";

registerTpu();
