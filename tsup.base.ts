import { defineConfig } from "tsup";

/** The build every package shares: ESM with .d.ts from src/index.ts, for Node 20. */
export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
