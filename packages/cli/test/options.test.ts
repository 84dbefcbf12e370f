import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import pkg from "../package.json" with { type: "json" };
import { run } from "./run-cli.js";

const scratch: string[] = [];
const scratchDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

describe("nbit help and version", () => {
  it.each(["demo", "fit", "compare", "matrix"])("%s --help prints its usage and runs nothing", async (command) => {
    const { code, out, err } = await run(command, "--help");
    expect(code).toBe(0);
    expect(out).toMatch(new RegExp(`^Usage: nbit ${command} \\[options\\]`));
    expect(out).not.toMatch(/test accuracy|accelerator\s+64-true/);
    expect(err).toBe("");
  });

  it("help <command> prints that command's usage", async () => {
    const { code, out } = await run("help", "compare");
    expect(code).toBe(0);
    expect(out).toMatch(/^Usage: nbit compare \[options\]/);
    expect(out).toContain("--precisions <list>");
    expect(out).toContain("--plot <file.svg>");
  });

  it("--help lists the commands and --version prints the package version", async () => {
    const help = await run("--help");
    expect(help.code).toBe(0);
    for (const command of ["demo", "fit", "compare", "matrix", "help"]) expect(help.out).toMatch(new RegExp(`^  ${command} `, "m"));
    expect(await run("--version")).toEqual({ code: 0, out: pkg.version, err: "" });
  });
});

describe("nbit refuses bad command lines before training", () => {
  it("rejects an unknown option with the closest one", async () => {
    const { code, out, err } = await run("fit", "--max-epoch", "1");
    expect(code).toBe(2);
    expect(err).toBe("error: unknown option '--max-epoch'\n(Did you mean --max-epochs?)");
    expect(out).toBe("");
  });

  it.each([
    [["--lr="], `error: option '--lr <x>' argument '' is invalid. expected a number greater than 0, got "".`],
    [["--lr", "0"], `error: option '--lr <x>' argument '0' is invalid. expected a number greater than 0, got "0".`],
    [["--lr", "fast"], `error: option '--lr <x>' argument 'fast' is invalid. expected a number greater than 0, got "fast".`],
    [["--max-epochs", "-2"], `error: option '--max-epochs <n>' argument '-2' is invalid. expected an integer of at least -1, got "-2".`],
    [["--max-epochs", "1.5"], `error: option '--max-epochs <n>' argument '1.5' is invalid. expected an integer of at least -1, got "1.5".`],
    [["--max-steps", ""], `error: option '--max-steps <n>' argument '' is invalid. expected an integer of at least -1, got "".`],
    [["--batch-size", "0"], `error: option '--batch-size <n>' argument '0' is invalid. expected an integer of at least 1, got "0".`],
    [["--limit-batches", "1e9x"], `error: option '--limit-batches <n>' argument '1e9x' is invalid. expected an integer of at least 1, got "1e9x".`],
    [["--seed", "-1"], `error: option '--seed <n>' argument '-1' is invalid. expected an integer from 0 to 4294967295, got "-1".`],
    [
      ["--precision", "17-true"],
      "error: option '--precision <p>' argument '17-true' is invalid. Allowed choices are 64-true, 32-true, 16-true, bf16-true, 16-mixed, bf16-mixed, 64, 32, 16, bf16.",
    ],
    [["stray"], "error: too many arguments for 'fit'. Expected 0 arguments but got 1."],
  ])("fit %j", async (args, message) => {
    const { code, out, err } = await run("fit", ...args);
    expect(code).toBe(2);
    expect(err).toBe(message);
    expect(out).toBe("");
  });

  it("checks the accelerator and its precision before training", async () => {
    const unknown = await run("fit", "--accelerator", "cpuu");
    expect(unknown).toMatchObject({ code: 1, out: "" });
    expect(unknown.err).toMatch(/^Unknown accelerator "cpuu"\. Registered accelerators: .*"cpu"/);
    const unsupported = await run("fit", "--accelerator", "cpu", "--precision", "16-true");
    expect(unsupported).toMatchObject({ code: 1, out: "" });
    expect(unsupported.err).toMatch(/^Accelerator "cpu" does not support precision "16-true"/);
  });

  it.each([
    [["--precisions", "32-true,17-true"], /^Precision "17-true" is not supported\. Expected one of: /],
    [["--precisions", "32-true,16-mixed"], /^Accelerator "cpu" does not support precision "16-mixed"/],
    [["--precisions", "32-true,,bf16-mixed"], /^--precisions expects a comma-separated list such as "32-true,bf16-mixed", got "32-true,,bf16-mixed"\.$/],
    [["--precisions", "32,32-true"], /^--precisions names 32-true twice \("32,32-true"\)\.$/],
    [["--plot", "curves.png"], /^--plot expects a file name ending in \.svg, got "curves\.png"\.$/],
    [["--plot", "/no/such/folder/curves.svg"], /^--plot "\/no\/such\/folder\/curves\.svg": the folder \/no\/such\/folder does not exist\.$/],
  ])("compare %j fails before any training", async (args, message) => {
    const { code, out, err } = await run("compare", "--accelerator", "cpu", ...args);
    expect(code).toBe(1);
    expect(out).toBe("");
    expect(err).toMatch(message);
    expect(err).not.toContain("training with");
  });

  it("compare refuses a plot path that is a folder", async () => {
    const dir = scratchDir("nbit-plotdir-");
    mkdirSync(join(dir, "taken.svg"));
    const { code, err } = await run("compare", "--accelerator", "cpu", "--plot", join(dir, "taken.svg"));
    expect(code).toBe(1);
    expect(err).toBe(`--plot "${join(dir, "taken.svg")}": ${join(dir, "taken.svg")} exists and is not a file.`);
  });
});

describe("nbit fit", () => {
  it("--max-epochs -1 means no epoch limit, as in Lightning", async () => {
    const dir = scratchDir("nbit-unlimited-");
    // 40 batches an epoch: 150 steps need 4 epochs, more than the default 3.
    const args = ["fit", "--accelerator", "cpu", "--max-epochs", "-1", "--max-steps", "150", "--limit-batches", "40", "--no-progress-bar", "--log-dir", dir];
    const { code } = await run(...args);
    expect(code).toBe(0);
    expect(readdirSync(join(dir, "default", "version_0", "checkpoints"))).toEqual(["epoch=3-step=150.safetensors"]);
  }, 60_000);

  it("replays captured steps by default, with the same results as --no-capture-steps", async () => {
    const args = ["fit", "--accelerator", "cpu", "--max-epochs", "1", "--limit-batches", "30", "--no-progress-bar"];
    const [captured, recorded] = [await run(...args), await run(...args, "--no-capture-steps")];
    expect([captured.code, recorded.code, captured.err, recorded.err]).toEqual([0, 0, "", ""]);
    // 30 batches: Adam's first step (fresh state) differs; steps 2 and 3 build the capture, the rest replay.
    expect(captured.out).toMatch(/\(27 steps replayed\)/);
    expect(recorded.out).toMatch(/\(0 steps replayed\)/);
    const results = (out: string) => /test accuracy [\d.]+%, test loss [\d.]+/.exec(out)![0];
    expect(results(captured.out)).toBe(results(recorded.out));
  }, 60_000);

  it("prints one correct warning for legacy 16 on tpu", async () => {
    const { code, out, err } = await run("fit", "--accelerator", "tpu", "--precision", "16", "--max-steps", "2", "--no-progress-bar");
    expect(code).toBe(0);
    expect(out).toMatch(/^tpu bf16-mixed: test accuracy/);
    expect(err).toBe(
      'warning: precision="16" is supported for historical reasons but its usage is discouraged. On accelerator "tpu" it means "bf16-mixed": set precision="bf16-mixed" instead.',
    );
  }, 60_000);
});
