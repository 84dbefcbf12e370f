import { describe, expect, it, vi } from "vitest";
import { ACCELERATOR_SLOT, CORE_VERSION, secondCoreHint, sharedAcceleratorStore } from "../src/accelerator-store.js";
import { AcceleratorRegistry, AcceleratorUnavailableError, ReferenceBackend, UnknownAcceleratorError, type Accelerator } from "../src/index.js";

const cpu: Accelerator = {
  name: "cpu",
  description: "test cpu",
  supportedPrecisions: ["32-true"],
  legacyHalfPrecision: "bf16-mixed",
  isAvailable: () => ({ available: true }),
  deviceCount: () => 1,
  createBackend: () => new ReferenceBackend(),
};

function registryFor(host: object, version: string, from: string) {
  const shared = sharedAcceleratorStore(version, from, host);
  return new AcceleratorRegistry({ store: shared.store, hint: (wanted) => secondCoreHint(shared, version, from, wanted) });
}

describe("the process-wide accelerator store", () => {
  it("is shared by copies of the same core version", () => {
    const host = {};
    const esm = registryFor(host, "1.2.0", "/app/node_modules/@nbit/core/dist/index.js");
    const cjs = registryFor(host, "1.2.0", "/app/node_modules/@nbit/core/dist/index.cjs");
    esm.register("cpu", () => cpu);
    expect(cjs.get("cpu")).toBe(cpu);
    expect(cjs.names()).toEqual(["cpu"]);
  });

  it("keeps a core of another version apart and names it in the errors", () => {
    const host = {};
    const app = registryFor(host, "1.2.0", "/app/node_modules/@nbit/core/dist/index.js");
    const nested = registryFor(host, "1.1.0", "/app/node_modules/@nbit/cpu/node_modules/@nbit/core/dist/index.js");
    nested.register("cpu", () => cpu, { aliases: ["host"] });
    expect(() => app.get("cpu")).toThrow(UnknownAcceleratorError);
    const message = (() => {
      try {
        app.get("cpu");
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(message).toMatch(/^Unknown accelerator "cpu"\. Registered accelerators: \(none\)\. A second copy of @nbit\/core was loaded: 1\.1\.0 at /);
    expect(message).toContain('/app/node_modules/@nbit/cpu/node_modules/@nbit/core/dist/index.js (registered there: "cpu")');
    expect(() => app.get("host")).toThrow('(registered there: "cpu"; "cpu" answers to "host")');
    expect(message).toContain("this copy is 1.2.0 at /app/node_modules/@nbit/core/dist/index.js");
    expect(message).toContain("npm ls @nbit/core");
    expect(() => app.resolve("auto")).toThrow(AcceleratorUnavailableError);
    expect(() => app.resolve("auto")).toThrow(/no accelerator is registered\. A second copy of @nbit\/core was loaded: 1\.1\.0/);
    // One core alone: the plain message.
    expect(() => registryFor({}, "1.2.0", "/x").get("cpu")).toThrow(/^Unknown accelerator "cpu"\. Registered accelerators: \(none\)\.$/);
  });

  it("does not trust a slot it cannot read", () => {
    const host = { [ACCELERATOR_SLOT]: { protocol: 99, cores: "?" } };
    const r = registryFor(host, "1.2.0", "/x");
    r.register("cpu", () => cpu);
    expect(r.get("cpu")).toBe(cpu);
    expect(() => r.get("tpu")).toThrow(/Another copy of @nbit\/core with an incompatible registry is loaded in this process \(this copy is 1\.2\.0 at \/x\)/);
  });

  it("holds the global registry's entries on globalThis, so a second load of this module sees them", async () => {
    const first = await import("../src/index.js");
    first.accelerators.register("store-test", () => cpu, { override: true });
    vi.resetModules();
    const second = await import("../src/index.js");
    expect(second.accelerators).not.toBe(first.accelerators);
    expect(second.accelerators.get("store-test")).toBe(cpu);
    first.accelerators.unregister("store-test");
    expect(second.accelerators.has("store-test")).toBe(false);
    expect(CORE_VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });
});
