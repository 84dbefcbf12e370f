import { defineConfig } from "vitest/config";

// --expose-gc lets the memory test collect dropped tensors before it counts them.
export default defineConfig({ test: { pool: "forks", poolOptions: { forks: { execArgv: ["--expose-gc"] } } } });
