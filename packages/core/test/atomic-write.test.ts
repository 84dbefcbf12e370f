import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { CheckpointError, writeFileAtomic } from "../src/index.js";

// A known "random" temp name, so the test can plant things where the next write will create its file.
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>();
  return { ...actual, randomBytes: vi.fn(actual.randomBytes) };
});
const FIXED = Buffer.from("0123456789abcdef", "hex");
const tempName = (file: string) => `.${file}.nbit-tmp-${process.pid}-${FIXED.toString("hex")}`;

describe("writeFileAtomic temp files", () => {
  it("creates its temp file exclusively: a FIFO planted at the name fails the write at once instead of blocking it", () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-excl-"));
    // A FIFO is not a stale temp file (only files and links are removed), so it stays in the way.
    execFileSync("mkfifo", [join(dir, tempName("a.safetensors"))]);
    vi.mocked(randomBytes).mockReturnValueOnce(FIXED as never);
    expect(() => writeFileAtomic(join(dir, "a.safetensors"), Uint8Array.of(1, 2, 3))).toThrow(CheckpointError);
    vi.mocked(randomBytes).mockReturnValueOnce(FIXED as never);
    expect(() => writeFileAtomic(join(dir, "a.safetensors"), Uint8Array.of(1, 2, 3))).toThrow(/cannot create a temporary file next to it: EEXIST/);
    expect(existsSync(join(dir, "a.safetensors"))).toBe(false);
  });

  it("never writes through a symlink planted at the temp name", () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-excl-"));
    const victim = join(dir, "victim.txt");
    writeFileSync(victim, "keep me");
    symlinkSync(victim, join(dir, tempName("b.safetensors")));
    vi.mocked(randomBytes).mockReturnValueOnce(FIXED as never);
    writeFileAtomic(join(dir, "b.safetensors"), Uint8Array.of(4, 5, 6));
    expect(readFileSync(victim, "utf8")).toBe("keep me");
    expect(Array.from(readFileSync(join(dir, "b.safetensors")))).toEqual([4, 5, 6]);
    expect(lstatSync(join(dir, "b.safetensors")).isFile()).toBe(true);
  });

  it("uses a fresh random name for each write", () => {
    const dir = mkdtempSync(join(tmpdir(), "nbit-excl-"));
    vi.mocked(randomBytes).mockClear();
    writeFileAtomic(join(dir, "c.safetensors"), Uint8Array.of(1));
    writeFileAtomic(join(dir, "c.safetensors"), Uint8Array.of(2));
    const names = vi.mocked(randomBytes).mock.results.map((r) => (r.value as Buffer).toString("hex"));
    expect(names).toHaveLength(2);
    expect(names[0]).not.toBe(names[1]);
  });
});
