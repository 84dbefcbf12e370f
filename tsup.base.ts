import { defineConfig } from "tsup";

/**
 * The build every package shares: ESM (.js, .d.ts) and CommonJS (.cjs, .d.cts) from src/index.ts,
 * for Node 20. `shims` gives the CommonJS build `import.meta.url`.
 */
export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm", "cjs"],
  dts: true,
  shims: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
