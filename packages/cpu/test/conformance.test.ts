import { describeBackendConformance } from "@nbit/conformance";
import { CpuAccelerator } from "../src/index.js";

describeBackendConformance("cpu", () => new CpuAccelerator({ threads: 2 }));
