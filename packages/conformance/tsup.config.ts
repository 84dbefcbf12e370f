import { defineConfig } from "tsup";
import base from "../../tsup.base";

// ESM only: the kit is vitest suites, and vitest cannot be loaded with require().
export default defineConfig({ ...base, entry: ["src/index.ts", "src/agreement.ts", "src/bench.ts"], format: ["esm"] });
