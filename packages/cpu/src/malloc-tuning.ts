import { createRequire } from "node:module";

/**
 * glibc malloc settings for a training process. onnxruntime-node copies every run output into a
 * fresh ArrayBuffer (its binding has no pre-allocated or external output path), so each step
 * allocates its new parameters anew: 1.5 MiB for the standard MLP. V8 frees those buffers only at
 * a garbage collection, tens of MiB at once, and glibc then returns the top of its heap to the
 * kernel, so the next steps page-fault the same memory in again. On this workplace's VMs a fresh
 * 1 MiB Float32Array cost 245-528 us with glibc's defaults and 52-77 us with these settings
 * (bench/malloc.ts). Freed memory stays with the process instead, as in PyTorch's caching
 * allocators: up to `MALLOC_TRIM_THRESHOLD` of free heap is kept rather than returned, so resident
 * memory stays at its high-water mark.
 */
export const MALLOC_TRIM_THRESHOLD = 256 * 2 ** 20;
/** Allocations above this size still get their own mapping: glibc's largest mmap threshold on 64-bit. */
export const MALLOC_MMAP_THRESHOLD = 32 * 2 ** 20;
/**
 * A cpu backend tunes malloc once it compiles a program with an output larger than this: glibc's
 * default mmap threshold, above which a buffer gets fresh pages of its own until glibc raises the
 * threshold. Measured (bench/malloc.ts, 32-true captured steps): the 128-256-256-10 MLP, largest
 * output 256 KiB, 1598 -> 1987 steps/s; the standard MLP, 1 MiB, 326 -> 391; the 64-64-64-10 MLP,
 * whose outputs leave packed in 36 KB, no gain (6415 and 6333), so small models keep glibc's
 * defaults and resident memory that shrinks after collections.
 */
export const MALLOC_TUNING_OUTPUT_BYTES = 128 * 1024;

// mallopt parameters from glibc's malloc.h.
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

export type MallocTuning =
  | { readonly applied: true; readonly trimThreshold: number; readonly mmapThreshold: number }
  | { readonly applied: false; readonly reason: string };

/** What the process looks like to `tuneMalloc`: its environment and platform. */
export interface MallocTuningContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly platform: string;
}

const USER_MALLOC_SETTINGS = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"];

/** Why the tuning does not apply in `context`, or undefined when it may (on glibc, which `tuneMalloc` checks). */
export function mallocTuningRefusal({ env, platform }: MallocTuningContext): string | undefined {
  if (env.NBIT_MALLOC_TUNING === "0") return "turned off by NBIT_MALLOC_TUNING=0";
  if (platform !== "linux") return `the settings are glibc's, and this platform is ${platform}`;
  const own = USER_MALLOC_SETTINGS.find((name) => env[name] !== undefined);
  if (own) return `the process sets its own malloc settings (${own})`;
  if (env.GLIBC_TUNABLES?.includes("glibc.malloc.")) return "the process sets its own malloc settings (GLIBC_TUNABLES)";
  return undefined;
}

let tuning: MallocTuning | undefined;

/**
 * Sets glibc's trim and mmap thresholds for this process (once; later calls return the first
 * result) through mallopt, called with koffi. Skipped, with the reason, off glibc, when
 * NBIT_MALLOC_TUNING=0, when the process sets its own malloc settings, or when koffi cannot load.
 * glibc is recognised by its `gnu_get_libc_version`, not by `process.report`: a report builds
 * hundreds of KB of JavaScript objects, enough surviving garbage to make V8 grow its young
 * generation during training (bench/rss.ts).
 */
export function tuneMalloc(): MallocTuning {
  if (tuning) return tuning;
  const refusal = mallocTuningRefusal({ env: process.env, platform: process.platform });
  if (refusal) return (tuning = { applied: false, reason: refusal });
  let libc: { func(signature: string): (...args: number[]) => unknown };
  try {
    const koffi = createRequire(import.meta.url)("koffi") as { load(path: string): typeof libc };
    libc = koffi.load("libc.so.6");
  } catch (e) {
    return (tuning = { applied: false, reason: `koffi could not load libc.so.6: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}` });
  }
  try {
    libc.func("const char *gnu_get_libc_version()");
  } catch {
    return (tuning = { applied: false, reason: "the settings are glibc's, and this process's libc is not glibc" });
  }
  const mallopt = libc.func("int mallopt(int param, int value)");
  if (mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) !== 1 || mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD) !== 1)
    return (tuning = { applied: false, reason: "glibc's mallopt refused the settings" });
  return (tuning = { applied: true, trimThreshold: MALLOC_TRIM_THRESHOLD, mmapThreshold: MALLOC_MMAP_THRESHOLD });
}
