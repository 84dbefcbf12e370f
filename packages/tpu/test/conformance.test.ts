import { describeBackendConformance } from "@nbit/conformance";
import { TpuAccelerator } from "../src/index.js";

describeBackendConformance("tpu", () => new TpuAccelerator());
