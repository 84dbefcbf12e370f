import { defineConfig } from "vitest/config";

// Packing and installing the tarballs (onnxruntime-node is about 290 MB unpacked) takes most of the time.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 180_000 } });
