import { CANONICAL_PRECISIONS, ReferenceBackend, type Accelerator } from "@nbit/core";
import { describeBackendConformance } from "../src/index.js";
import { graphReferenceAccelerator } from "./graph-backend.js";

// Core's reference kernels hold every dtype, so this run exercises every part of the kit.
const reference: Accelerator = {
  name: "reference",
  description: "core's TypeScript reference kernels",
  supportedPrecisions: CANONICAL_PRECISIONS,
  legacyHalfPrecision: "16-mixed",
  isAvailable: () => ({ available: true }),
  deviceCount: () => 1,
  createBackend: () => new ReferenceBackend(),
};

describeBackendConformance("reference", () => reference);

describeBackendConformance("unavailable", () => ({ ...reference, isAvailable: () => ({ available: false, reason: "not here" }) }));

describeBackendConformance("graph-reference", () => graphReferenceAccelerator());
