import { describe, expect, it, vi } from "vitest";
import {
  ALLOWED_PRECISION_INPUTS,
  CANONICAL_PRECISIONS,
  InvalidPrecisionError,
  parsePrecision,
  PRECISION_INFO,
  precisionPluginFor,
  MixedPrecision,
} from "../src/index.js";

describe("parsePrecision", () => {
  it("accepts every canonical precision unchanged and silently", () => {
    const warn = vi.fn();
    for (const p of CANONICAL_PRECISIONS) expect(parsePrecision(p, warn)).toEqual({ precision: p, legacyHalf: false });
    expect(warn).not.toHaveBeenCalled();
  });

  it.each([
    [64, "64-true", false],
    ["64", "64-true", false],
    [32, "32-true", false],
    ["32", "32-true", false],
    [16, "16-mixed", true],
    ["16", "16-mixed", true],
    ["bf16", "bf16-mixed", true],
  ] as const)("maps legacy %j to %s (warns: %s)", (input, expected, warns) => {
    const warn = vi.fn();
    const parsed = parsePrecision(input, warn);
    expect(parsed.precision).toBe(expected);
    expect(parsed.alias).toBe(String(input));
    expect(warn).toHaveBeenCalledTimes(warns ? 1 : 0);
    if (warns) expect(warn.mock.calls[0]![0]).toContain(`Please set your precision to "${expected}" instead`);
  });

  it("marks only 16 as the accelerator-dependent half", () => {
    expect(parsePrecision(16, null).legacyHalf).toBe(true);
    expect(parsePrecision("bf16", null).legacyHalf).toBe(false);
  });

  it.each([8, "8", "fp16", "16-true-mixed", "BF16", 16.5, null, undefined, {}, "bf16-true "])("rejects %j listing every allowed value", (bad) => {
    let error: unknown;
    try {
      parsePrecision(bad, null);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidPrecisionError);
    const message = (error as Error).message;
    for (const allowed of ALLOWED_PRECISION_INPUTS) expect(message).toContain(JSON.stringify(allowed));
    expect((error as InvalidPrecisionError).code).toBe("INVALID_PRECISION");
  });

  it("describes each precision's dtypes", () => {
    expect(PRECISION_INFO["16-mixed"]).toEqual({ paramDType: "float32", autocastDType: "float16", gradScaler: true });
    expect(PRECISION_INFO["bf16-mixed"].gradScaler).toBe(false);
    expect(PRECISION_INFO["bf16-true"].paramDType).toBe("bfloat16");
    expect(PRECISION_INFO["64-true"].paramDType).toBe("float64");
  });

  it("picks the Lightning plugin for each precision", () => {
    expect(precisionPluginFor("64-true").constructor.name).toBe("DoublePrecision");
    expect(precisionPluginFor("32-true").constructor.name).toBe("FloatPrecision");
    expect(precisionPluginFor("16-true").constructor.name).toBe("HalfPrecision");
    const mixed16 = precisionPluginFor("16-mixed") as MixedPrecision;
    expect(mixed16.scaler?.scale).toBe(65536);
    expect((precisionPluginFor("bf16-mixed") as MixedPrecision).scaler).toBeNull();
  });
});
