import { describe, expect, it, vi } from "vitest";
import {
  AcceleratorRegistry,
  AcceleratorUnavailableError,
  DuplicateAcceleratorError,
  formatSupportMatrix,
  ReferenceBackend,
  resolvePrecision,
  supportMatrix,
  UnknownAcceleratorError,
  UnsupportedPrecisionError,
  type Accelerator,
  type Precision,
} from "../src/index.js";

function fake(name: string, precisions: Precision[], options: { available?: boolean; legacy?: Precision; devices?: number } = {}): Accelerator {
  return {
    name,
    description: name,
    supportedPrecisions: precisions,
    legacyHalfPrecision: options.legacy ?? "16-mixed",
    precisionHints: { "16-mixed": 'Consider precision="bf16-mixed".' },
    isAvailable: () => (options.available === false ? { available: false, reason: `${name} driver not found` } : { available: true }),
    deviceCount: () => options.devices ?? 1,
    createBackend: () => new ReferenceBackend(),
  };
}

const CPU = fake("cpu", ["bf16-mixed", "32-true", "64-true"], { legacy: "bf16-mixed" });
const TPU = fake("tpu", ["bf16-mixed", "bf16-true", "32-true"], { legacy: "bf16-mixed" });
const GPU = fake("cuda", ["64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"], { available: false });

function registry() {
  const r = new AcceleratorRegistry();
  r.register("cpu", () => CPU, { priority: 10 });
  r.register("tpu", () => TPU, { priority: 1 });
  r.register("cuda", () => GPU, { priority: 100, aliases: ["gpu"] });
  return r;
}

describe("AcceleratorRegistry", () => {
  it("lists names by priority and resolves aliases", () => {
    const r = registry();
    expect(r.names()).toEqual(["cuda", "cpu", "tpu"]);
    expect(r.get("GPU")).toBe(GPU);
    expect(r.has("gpu")).toBe(true);
  });

  it("auto picks the highest-priority available accelerator", () => {
    expect(registry().resolve("auto")).toBe(CPU);
    const r = registry();
    r.register("cuda", () => fake("cuda", ["32-true"]), { priority: 100, override: true });
    expect(r.resolve().name).toBe("cuda");
  });

  it("refuses duplicate names and aliases unless overridden", () => {
    const r = registry();
    expect(() => r.register("cpu", () => CPU)).toThrow(DuplicateAcceleratorError);
    expect(() => r.register("gpu", () => CPU)).toThrow(/already registered.*override/);
    r.register("gpu", () => CPU, { override: true });
    expect(r.has("cuda")).toBe(false);
    expect(r.get("gpu")).toBe(CPU);
  });

  it("names the registered accelerators for an unknown one", () => {
    expect(() => registry().get("npu")).toThrow(UnknownAcceleratorError);
    expect(() => registry().get("npu")).toThrow('Unknown accelerator "npu". Registered accelerators: "cuda", "cpu", "tpu".');
  });

  it("says why an accelerator is unavailable and which ones are", () => {
    const error = (() => {
      try {
        registry().resolve("gpu");
      } catch (e) {
        return e as AcceleratorUnavailableError;
      }
    })();
    expect(error).toBeInstanceOf(AcceleratorUnavailableError);
    expect(error!.message).toContain("cuda: cuda driver not found");
    expect(error!.available).toEqual(["cpu", "tpu"]);
  });

  it("lists every attempt when auto finds nothing", () => {
    const r = new AcceleratorRegistry();
    r.register("a", () => fake("a", ["32-true"], { available: false }));
    r.register("b", () => fake("b", ["32-true"], { available: false }));
    expect(() => r.resolve()).toThrow(/a: a driver not found\n {2}- b: b driver not found/);
  });

  it("creates each accelerator once", () => {
    const factory = vi.fn(() => CPU);
    const r = new AcceleratorRegistry();
    r.register("cpu", factory);
    r.get("cpu");
    r.get("cpu");
    expect(factory).toHaveBeenCalledTimes(1);
  });
});

describe("resolvePrecision", () => {
  it("names accelerator, request and supported precisions when unsupported", () => {
    expect(() => resolvePrecision(CPU, "16-mixed", null)).toThrow(UnsupportedPrecisionError);
    expect(() => resolvePrecision(CPU, "16-mixed", null)).toThrow(
      'Accelerator "cpu" does not support precision "16-mixed". It supports: "bf16-mixed", "32-true", "64-true". Consider precision="bf16-mixed".',
    );
    expect(() => resolvePrecision(TPU, "64-true", null)).toThrow(/"tpu" does not support precision "64-true"/);
  });

  it("maps legacy 16 to the accelerator's half precision with a warning", () => {
    const warn = vi.fn();
    expect(resolvePrecision(TPU, 16, warn).precision).toBe("bf16-mixed");
    expect(warn.mock.calls.map((c) => c[0]).join("\n")).toMatch(/means "bf16-mixed"/);
    expect(resolvePrecision(fake("g", ["16-mixed"]), "16", null).precision).toBe("16-mixed");
  });

  it.each([CPU, TPU])("warns once, with the right advice, for legacy 16 on $name", (acc) => {
    for (const input of [16, "16"] as const) {
      const warn = vi.fn();
      const { warnings } = resolvePrecision(acc, input, warn);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warnings).toEqual([
        `precision=${JSON.stringify(input)} is supported for historical reasons but its usage is discouraged. On accelerator "${acc.name}" it means "bf16-mixed": set precision="bf16-mixed" instead.`,
      ]);
    }
  });

  it("keeps Lightning's deprecation advice where legacy 16 means 16-mixed", () => {
    const warn = vi.fn();
    expect(resolvePrecision(GPU, 16, warn).warnings).toEqual([
      'precision=16 is supported for historical reasons but its usage is discouraged. Please set your precision to "16-mixed" instead.',
    ]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(resolvePrecision(CPU, "bf16", null).warnings).toEqual([
      'precision="bf16" is supported for historical reasons but its usage is discouraged. Please set your precision to "bf16-mixed" instead.',
    ]);
  });

  it("accepts supported precisions and legacy aliases", () => {
    expect(resolvePrecision(CPU, 64, null).precision).toBe("64-true");
    expect(resolvePrecision(CPU, "bf16", null).precision).toBe("bf16-mixed");
    expect(resolvePrecision(TPU, "bf16-true", null).warnings).toEqual([]);
  });
});

describe("support matrix", () => {
  it("has one row per accelerator with each precision's support", () => {
    const rows = supportMatrix(registry());
    expect(rows.map((r) => r.accelerator)).toEqual(["cuda", "cpu", "tpu"]);
    expect(rows[1]!.precisions["16-mixed"]).toBe(false);
    expect(rows[1]!.precisions["bf16-mixed"]).toBe(true);
    expect(rows[0]!.available).toBe(false);
    expect(rows[0]!.reason).toBe("cuda driver not found");
  });

  it("prints as an aligned table", () => {
    const text = formatSupportMatrix(supportMatrix(registry()));
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^accelerator\s+64-true\s+32-true\s+16-true\s+bf16-true\s+16-mixed\s+bf16-mixed\s+legacy 16\s+available$/);
    expect(lines).toHaveLength(5);
    expect(lines[3]).toMatch(/^cpu\s+yes\s+yes\s+-\s+-\s+-\s+yes\s+bf16-mixed\s+yes \(1 device\)$/);
    expect(lines[2]).toContain("no: cuda driver not found");
  });
});
