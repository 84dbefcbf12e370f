import { describeBackendConformance } from "@nbit/conformance";
import { CudaAccelerator } from "../src/index.js";

// No GPU here: this runs the CUDA backend's tfjs code on tfjs's JavaScript CPU kernels.
describeBackendConformance("cuda on tfjs-cpu kernels", () => new CudaAccelerator("tfjs-cpu"));
