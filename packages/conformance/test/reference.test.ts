import { referenceAccelerator } from "@nbit/core";
import { describeBackendConformance } from "../src/index.js";
import { graphReferenceAccelerator } from "./graph-backend.js";

// Core's reference kernels hold every dtype, so this run exercises every part of the kit.
const reference = referenceAccelerator();

describeBackendConformance("reference", () => reference);

describeBackendConformance("unavailable", () => referenceAccelerator({ unavailableReason: "not here" }));

describeBackendConformance("graph-reference", () => graphReferenceAccelerator());
