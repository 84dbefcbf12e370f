import { defineConfig } from "tsup";
import base from "../../tsup.base";

// The library entry and the `nbit` executable (package.json "bin" runs the ESM one).
export default defineConfig({ ...base, entry: ["src/index.ts", "src/bin.ts"], dts: { entry: "src/index.ts" } });
