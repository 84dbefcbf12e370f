import { registerCpu } from "./accelerator.js";

export { CpuAccelerator, registerCpu } from "./accelerator.js";
export { CpuBackend, CPU_CAPABILITIES, defaultThreads, programWork, SMALL_PROGRAM_WORK, type CpuBackendOptions } from "./backend.js";
export { programToOnnx, lowerProgram, physicalType, type OnnxLowering, type LoweringContext, type LoweringOptions } from "./lower.js";
export { encodeModel, OnnxType, type OnnxGraph, type OnnxNode, type OnnxTensor, type OnnxValue, type Attribute } from "./onnx-proto.js";
export { exportOnnx, exportOnnxBytes, ExportError, type ExportOnnxOptions } from "./export.js";
export { CPU_KERNELS } from "./kernels.js";
export {
  tuneMalloc,
  mallocTuningRefusal,
  MALLOC_MMAP_THRESHOLD,
  MALLOC_TRIM_THRESHOLD,
  MALLOC_TUNING_OUTPUT_BYTES,
  type MallocTuning,
  type MallocTuningContext,
} from "./malloc-tuning.js";

registerCpu();
