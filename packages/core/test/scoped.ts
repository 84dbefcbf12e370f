import { it as vitestIt } from "vitest";
import { withRuntime, type Runtime } from "../src/index.js";

/** vitest's `it`, running each test body inside the scope of `runtime()` (read when the test starts). */
export function itOn(runtime: () => Runtime) {
  return (name: string, body: () => unknown, timeout?: number) => vitestIt(name, () => withRuntime(runtime(), body), timeout);
}
