import { defineConfig } from "vitest/config";

// CI runs every package's tests at once on two cores: allow slow tests time to finish.
export default defineConfig({ test: { testTimeout: 60_000 } });
