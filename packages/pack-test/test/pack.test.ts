import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = fileURLToPath(new URL("../../..", import.meta.url));
const fixtures = fileURLToPath(new URL("../fixtures", import.meta.url));
const PACKAGES = ["@nbit/core", "@nbit/cpu", "@nbit/tpu", "@nbit/cuda", "@nbit/conformance", "@nbit/cli"];

interface Packed {
  readonly name: string;
  readonly filename: string;
  readonly files: readonly { path: string }[];
}

/** The temporary folder this run made (removed afterwards), and the consumer project inside it. */
let scratch: string | undefined;
let dir = "";
let packed: Packed[] = [];

// Asynchronous, so the test worker keeps answering vitest's RPCs while npm packs and installs.
const execFileAsync = promisify(execFile);
async function run(file: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await execFileAsync(file, args, { cwd, env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}
const node = async (script: string) => JSON.parse((await run(process.execPath, [script], dir)).trim().split("\n").at(-1)!);

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "nbit-pack-"));
  const tarballs = join(scratch, "tarballs");
  mkdirSync(tarballs);
  packed = JSON.parse(await run("npm", ["pack", "--json", "--pack-destination", tarballs, ...PACKAGES.flatMap((p) => ["-w", p])], repo));
  const project = join(scratch, "project");
  mkdirSync(project);
  // An outside user's project. It lets onnxruntime-node's install step run (npm before 11.19 always
  // does), so the documented offline route, ONNXRUNTIME_NODE_INSTALL=skip, is what keeps it offline.
  const manifest = { name: "nbit-consumer", version: "1.0.0", private: true, allowScripts: { "onnxruntime-node": true } };
  writeFileSync(join(project, "package.json"), JSON.stringify(manifest));
  const tgz = packed.map((p) => join(tarballs, p.filename));
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", ...tgz], project, { ONNXRUNTIME_NODE_INSTALL: "skip" });
  cpSync(fixtures, project, { recursive: true });
  dir = project;
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("the published tarballs", () => {
  it("each hold both builds, their types, LICENSE and README", async () => {
    expect(packed.map((p) => p.name).sort()).toEqual([...PACKAGES].sort());
    for (const p of packed) {
      const files = p.files.map((f) => f.path);
      // The conformance kit is vitest suites, and vitest is ESM only.
      const commonjs = p.name !== "@nbit/conformance";
      const expected = [
        "LICENSE",
        "README.md",
        "package.json",
        "dist/index.js",
        "dist/index.d.ts",
        ...(commonjs ? ["dist/index.cjs", "dist/index.d.cts"] : []),
      ];
      for (const f of expected) expect(files, p.name).toContain(f);
      const manifest = JSON.parse(readFileSync(join(dir, "node_modules", p.name, "package.json"), "utf8"));
      expect(manifest.exports["."].import).toEqual({ types: "./dist/index.d.ts", default: "./dist/index.js" });
      expect(manifest.exports["."].require).toEqual(commonjs ? { types: "./dist/index.d.cts", default: "./dist/index.cjs" } : undefined);
      expect(manifest.license).toBe("MIT");
      expect(manifest.engines.node).toBe(">=20");
      if (p.name !== "@nbit/core") expect(manifest.peerDependencies["@nbit/core"]).toBeDefined();
    }
  });

  it("installs a single @nbit/core for every package", async () => {
    const listed = JSON.parse(await run("npm", ["ls", "@nbit/core", "--all", "--json"], dir));
    const versions = new Set<string>();
    const walk = (deps: Record<string, { version: string; dependencies?: object }> = {}) => {
      for (const [name, d] of Object.entries(deps)) {
        if (name === "@nbit/core") versions.add(d.version);
        walk(d.dependencies as never);
      }
    };
    walk(listed.dependencies);
    expect([...versions]).toEqual(["0.0.0"]);
  });

  it("trains a step through require()", async () => {
    const r = await node("require.cjs");
    expect(r.accelerator).toBe("cpu");
    expect(r.cpuEntry).toMatch(/node_modules\/@nbit\/cpu\/dist\/index\.cjs$/);
    expect(r.losses).toHaveLength(1);
    expect(Number.isFinite(r.losses[0])).toBe(true);
  });

  it("trains the same step through import", async () => {
    const r = await node("import.mjs");
    expect(r.cpuEntry).toMatch(/node_modules\/@nbit\/cpu\/dist\/index\.js$/);
    expect(r.losses).toEqual((await node("require.cjs")).losses);
  });

  it("shares one accelerator registry between the ESM and CommonJS copies of core", async () => {
    const r = await node("twin.mjs");
    expect(r.distinctModules).toBe(true);
    expect(r.accelerator).toBe("cpu");
    expect(r.losses).toHaveLength(1);
  });

  it("says so when a backend registered into a second copy of core", async () => {
    const nested = join(dir, "node_modules", "@nbit", "cpu", "node_modules", "@nbit", "core");
    cpSync(join(dir, "node_modules", "@nbit", "core"), nested, { recursive: true });
    const manifest = join(nested, "package.json");
    writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, "utf8")), version: "0.0.1-other" }));
    try {
      const r = await node("second-core.mjs");
      expect(r.unknown).toBe(true);
      expect(r.error).toContain('Unknown accelerator "cpu". Registered accelerators: (none). A second copy of @nbit/core was loaded: 0.0.1-other at ');
      expect(r.error).toContain('node_modules/@nbit/cpu/node_modules/@nbit/core/dist/index.js (registered there: "cpu")');
      expect(r.error).toMatch(/this copy is 0\.0\.0 at \S+node_modules\/@nbit\/core\/dist\/index\.js\./);
    } finally {
      rmSync(join(dir, "node_modules", "@nbit", "cpu", "node_modules"), { recursive: true, force: true });
    }
  });

  it("types resolve for import and require, with the backends' accelerator names", async () => {
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    expect(await run(process.execPath, [tsc, "-p", "types"], dir)).toBe("");
  });

  it("runs the nbit command from the installed package", async () => {
    const bin = join(dir, "node_modules", ".bin", "nbit");
    expect((await run(bin, ["--version"], dir)).trim()).toBe("0.0.0");
    expect(await run(bin, ["matrix"], dir)).toMatch(/^cpu\s+yes\s+yes\s+-\s+-\s+-\s+yes\s+bf16-mixed\s+yes \(1 device\)$/m);
  });
});
