import { referenceAccelerator } from "@nbit/core";
import { describe, expect, it } from "vitest";
import { standardMlpRates } from "../src/bench.js";

describe("standardMlpRates", () => {
  it("times the standard MLP once per supported precision, each on its own backend", async () => {
    const accelerator = referenceAccelerator({ supportedPrecisions: ["32-true", "bf16-true"] });
    const rates = await standardMlpRates(accelerator, { steps: 1, warmup: 0 });
    expect(rates.map((r) => r.precision)).toEqual(["32-true", "bf16-true"]);
    expect(rates[0]!.backend).not.toBe(rates[1]!.backend);
    for (const r of rates) expect(r.stepsPerSecond).toBeGreaterThan(0);
    // 256*512 + 512 + 512*512 + 512 + 512*10 + 10 parameters, 4 bytes each in float32, 2 in bfloat16.
    const parameters = 256 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10;
    expect(rates.map((r) => r.parameterBytes)).toEqual([4 * parameters, 2 * parameters]);
  });
});
