import { registerTpu } from "./accelerator.js";

export { TpuAccelerator, registerTpu } from "./accelerator.js";
export { TpuBackend, TPU_CAPABILITIES } from "./backend.js";

registerTpu();
