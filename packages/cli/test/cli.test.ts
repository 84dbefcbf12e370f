import { describe, expect, it } from "vitest";
import { main } from "../src/index.js";

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("nbit cli", () => {
  it("matrix prints one row per registered accelerator", async () => {
    const { code, out } = await run("matrix");
    expect(code).toBe(0);
    const lines = out.split("\n");
    expect(lines[0]).toMatch(/^accelerator\s+64-true/);
    expect(out).toMatch(/^tpu\s+-\s+yes\s+-\s+yes\s+-\s+yes\s+bf16-mixed\s+yes \(1 device\)$/m);
  });

  it("rejects unknown commands with usage", async () => {
    const { code, err } = await run("nope");
    expect(code).toBe(2);
    expect(err).toContain('Unknown command "nope"');
  });
});
