import { defineConfig } from "vitest/config";

// --expose-gc lets the memory test collect dropped tensors before it counts them. CI runs every
// package's tests at once on two cores: allow slow tests time to finish.
export default defineConfig({ test: { testTimeout: 60_000, pool: "forks", poolOptions: { forks: { execArgv: ["--expose-gc"] } } } });
