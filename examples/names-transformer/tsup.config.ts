import { defineConfig } from "tsup";
import base from "../../tsup.base";

// An executable script, not a library: one ESM file (it awaits at the top level).
export default defineConfig({ ...base, format: ["esm"], dts: false });
