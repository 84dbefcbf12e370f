import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { lossCurvesSvg } from "../src/plot.js";
import { run } from "./run-cli.js";

describe("nbit cli", () => {
  it("matrix prints one row per registered accelerator", async () => {
    const { code, out } = await run("matrix");
    expect(code).toBe(0);
    expect(out.split("\n")[0]).toMatch(/^accelerator\s+64-true/);
    expect(out).toMatch(/^tpu\s+-\s+yes\s+-\s+yes\s+-\s+yes\s+bf16-mixed\s+yes \(1 device\)$/m);
    expect(out).toMatch(/^cpu\s+yes\s+yes\s+-\s+-\s+-\s+yes\s+bf16-mixed\s+yes \(1 device\)$/m);
    expect(out).toMatch(/^cuda\s+-\s+yes\s+yes\s+yes\s+yes\s+yes\s+16-mixed\s+no: @tensorflow\/tfjs-node-gpu is not installed/m);
    expect(out.split("\n")[2]).toMatch(/^cuda/); // highest priority first
  });

  it("the demo trains on real MNIST digits to over 90% test accuracy", async () => {
    const { code, out } = await run("demo", "--max-epochs", "4");
    expect(code).toBe(0);
    const accuracy = Number(/test accuracy ([\d.]+)%/.exec(out)![1]);
    expect(accuracy).toBeGreaterThan(90);
  }, 120_000);

  it("demo --model cnn trains the CNN and judges it against its 98% target", async () => {
    const { code, out, err } = await run("demo", "--model", "cnn", "--max-epochs", "1", "--limit-batches", "40", "--no-progress-bar");
    expect(out).toMatch(/^nbit demo: a CNN \(conv 1->8->16/);
    const accuracy = Number(/test accuracy ([\d.]+)%/.exec(out)![1]);
    // 40 batches learn the digits, but not to the full run's 98%.
    expect(accuracy).toBeGreaterThan(60);
    expect(code).toBe(accuracy < 98 ? 1 : 0);
    if (accuracy < 98) expect(err).toMatch(/is below 98%/);
  }, 300_000);

  it("demo refuses a model it does not have", async () => {
    const { code, err } = await run("demo", "--model", "resnet");
    expect(code).toBe(2);
    expect(err).toMatch(/Allowed choices are mlp, cnn/);
  });

  it("fit writes metrics and checkpoints under --log-dir", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-cli-"));
    const { code, out } = await run(
      "fit",
      "--accelerator",
      "tpu",
      "--precision",
      "bf16-mixed",
      "--max-epochs",
      "1",
      "--limit-batches",
      "60",
      "--log-dir",
      dir,
      "--no-progress-bar",
    );
    expect(code).toBe(0);
    expect(out).toMatch(/^tpu bf16-mixed: test accuracy/);
    const version = join(dir, "default", "version_0");
    expect(readFileSync(join(version, "metrics.csv"), "utf8")).toContain("train_loss");
    expect(readdirSync(join(version, "checkpoints"))[0]).toMatch(/^epoch=0-step=60\.safetensors$/);
  }, 60_000);

  it("compare prints a table and writes an SVG of the loss curves", async () => {
    const plot = join(mkdtempSync(join(tmpdir(), "nbit-plot-")), "cmp.svg");
    const { code, out } = await run("compare", "--accelerator", "cpu", "--precisions", "32-true,bf16-mixed,64", "--limit-batches", "30", "--plot", plot);
    expect(code).toBe(0);
    const rows = out.split("\n").filter((l) => /^(32-true|bf16-mixed|64-true)\s/.test(l));
    expect(rows).toHaveLength(3);
    expect(rows[2]).toMatch(/^64-true\s+[\d.]+\s+[\d.]+%\s+[\d.]+\s+814160\s+1628320\s+0$/);
    const svg = readFileSync(plot, "utf8");
    // Three loss curves, and three differences from 64-true (the highest precision compared).
    expect(svg.match(/<polyline/g)).toHaveLength(6);
    expect(svg).toContain(">bf16-mixed</text>");
    expect(svg).toContain(">loss minus 64-true loss, step by step</text>");
  }, 60_000);

  it("reports unsupported precisions and unknown commands", async () => {
    const bad = await run("compare", "--accelerator", "cpu", "--precisions", "16-mixed");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/Accelerator "cpu" does not support precision "16-mixed"/);
    const unknown = await run("nope");
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("error: unknown command 'nope'");
  });

  it("plots log-scale curves with one polyline per series", () => {
    const svg = lossCurvesSvg([
      { label: "a", values: [2, 1, 0.5] },
      { label: "b<c", values: [3, 2] },
    ]);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain("b&lt;c");
  });
});
