import {
  CORE_LOCATION,
  CORE_VERSION,
  newAcceleratorStore,
  secondCoreHint,
  sharedAcceleratorStore,
  type AcceleratorEntry,
  type AcceleratorStore,
} from "./accelerator-store.js";
import { resolveAutocastPolicy, type AutocastDeviceType, type AutocastPolicy } from "./engine/autocast-policy.js";
import type { Backend } from "./engine/backend.js";
import {
  AcceleratorUnavailableError,
  DuplicateAcceleratorError,
  UnknownAcceleratorError,
  UnsupportedPrecisionError,
  type AcceleratorAttempt,
} from "./errors.js";
import { CANONICAL_PRECISIONS, defaultWarn, parsePrecision, type Precision, type Warn } from "./precision/parse.js";

export type Availability = { readonly available: true } | { readonly available: false; readonly reason: string };

/**
 * A device family (cpu, cuda, tpu, ...). What it supports is data, declared here, so that core
 * can validate a run before it starts and print the support matrix.
 */
export interface Accelerator {
  readonly name: string;
  readonly description: string;
  /** Canonical precisions this accelerator runs. */
  readonly supportedPrecisions: readonly Precision[];
  /** What Lightning's legacy 16 / "16" means here (e.g. "bf16-mixed" on TPU and CPU). */
  readonly legacyHalfPrecision: Precision;
  /**
   * Whose autocast lists the mixed precisions use here: a device type ("cuda", "cpu", "tpu"; see
   * AUTOCAST_POLICIES) or a table of its own. Default "cuda".
   */
  readonly autocastPolicy?: AutocastDeviceType | AutocastPolicy;
  /** Extra advice printed when an unsupported precision is asked for. */
  readonly precisionHints?: Readonly<Partial<Record<Precision, string>>>;
  isAvailable(): Availability;
  deviceCount(): number;
  /** The kernel backend; called only when the accelerator is available. */
  createBackend(): Backend;
}

/**
 * Accelerator names known when type-checking. Each backend package adds its own by declaration
 * merging, so that a name is accepted once the package that registers it is imported, and a typo
 * such as "cpuu" fails to compile:
 *
 * ```ts
 * declare module "@nbit/core" {
 *   interface AcceleratorNames { mine: true }
 * }
 * ```
 */
// biome-ignore lint/suspicious/noEmptyInterface: backend packages add their names by declaration merging.
export interface AcceleratorNames {}

/** "auto" or the name of an accelerator whose package is imported. */
export type AcceleratorName = "auto" | (keyof AcceleratorNames & string);

export type AcceleratorFactory = () => Accelerator;

export interface RegisterOptions {
  /** Higher wins when "auto" picks among available accelerators. */
  readonly priority?: number;
  /** Replace an accelerator registered under the same name. */
  readonly override?: boolean;
  /** Other names the accelerator answers to (e.g. "gpu" for "cuda"). */
  readonly aliases?: readonly string[];
}

type Entry = AcceleratorEntry;

/** Named accelerator factories with priorities, after onnxruntime-common's backend registry. */
export class AcceleratorRegistry {
  private readonly entries: Map<string, Entry>;
  private readonly aliases: Map<string, string>;
  private readonly hint: (wanted?: string) => string;

  /** A new, empty registry. `shared` is how the process-wide `accelerators` registry is built. */
  constructor(shared?: { readonly store: AcceleratorStore; readonly hint: (wanted?: string) => string }) {
    const store = shared?.store ?? newAcceleratorStore();
    this.entries = store.entries;
    this.aliases = store.aliases;
    this.hint = shared?.hint ?? (() => "");
  }

  register(name: string, factory: AcceleratorFactory, options: RegisterOptions = {}): void {
    const key = name.toLowerCase();
    const aliases = (options.aliases ?? []).map((a) => a.toLowerCase());
    for (const n of [key, ...aliases]) {
      const owner = this.entries.has(n) ? n : this.aliases.get(n);
      if (owner !== undefined && !options.override) throw new DuplicateAcceleratorError(n);
      if (owner !== undefined && owner !== key) this.unregister(owner);
    }
    if (key === "auto") throw new DuplicateAcceleratorError("auto");
    this.unregister(key);
    this.entries.set(key, { name: key, factory, priority: options.priority ?? 0, aliases });
    for (const a of aliases) this.aliases.set(a, key);
  }

  unregister(name: string): void {
    const entry = this.entries.get(name.toLowerCase());
    if (!entry) return;
    this.entries.delete(entry.name);
    for (const a of entry.aliases) this.aliases.delete(a);
  }

  /** Registered names, highest priority first. */
  names(): string[] {
    return [...this.entries.values()].sort((a, b) => b.priority - a.priority).map((e) => e.name);
  }

  has(name: string): boolean {
    return this.lookup(name) !== undefined;
  }

  /** The accelerator registered under `name` (or an alias), available or not. */
  get(name: string): Accelerator {
    const entry = this.lookup(name);
    if (!entry) throw new UnknownAcceleratorError(name, this.names(), this.hint(name.toLowerCase()));
    entry.instance ??= entry.factory();
    return entry.instance;
  }

  /** Names of the accelerators that are available now, highest priority first. */
  available(): string[] {
    return this.names().filter((n) => this.get(n).isAvailable().available);
  }

  /**
   * The accelerator to run on: "auto" picks the available one with the highest priority; a
   * name must be registered and available. Errors list every attempt and what is available.
   */
  resolve(name = "auto"): Accelerator {
    if (name.toLowerCase() === "auto") {
      const attempts: AcceleratorAttempt[] = [];
      for (const n of this.names()) {
        const acc = this.get(n);
        const status = acc.isAvailable();
        if (status.available) return acc;
        attempts.push({ name: n, reason: status.reason });
      }
      throw new AcceleratorUnavailableError("auto", attempts.length ? attempts : [{ name: "auto", reason: `no accelerator is registered.${this.hint()}` }], []);
    }
    const acc = this.get(name);
    const status = acc.isAvailable();
    if (!status.available) throw new AcceleratorUnavailableError(name, [{ name: acc.name, reason: status.reason }], this.available());
    return acc;
  }

  private lookup(name: string): Entry | undefined {
    const key = name.toLowerCase();
    return this.entries.get(key) ?? this.entries.get(this.aliases.get(key) ?? "");
  }
}

const sharedStore = sharedAcceleratorStore(CORE_VERSION, CORE_LOCATION);

/**
 * The registry backends register themselves into when imported. Its entries live on globalThis,
 * shared by every copy of this version of @nbit/core in the process (ESM and CommonJS alike).
 */
export const accelerators = new AcceleratorRegistry({
  store: sharedStore.store,
  hint: (wanted) => secondCoreHint(sharedStore, CORE_VERSION, CORE_LOCATION, wanted),
});

export interface ResolvedPrecision {
  readonly precision: Precision;
  readonly warnings: readonly string[];
}

/**
 * Turns a user's precision into the canonical one this accelerator will run, or throws an
 * UnsupportedPrecisionError naming the accelerator, the request and what it supports.
 * Legacy 16 follows the accelerator's `legacyHalfPrecision` (with a warning when that is not
 * "16-mixed"); an explicit "16-mixed" is never silently changed.
 */
export function resolvePrecision(accelerator: Accelerator, input: unknown, warn: Warn | null = defaultWarn): ResolvedPrecision {
  const warnings: string[] = [];
  const emit = (m: string) => {
    warnings.push(m);
    warn?.(m);
  };
  const parsed = parsePrecision(input, null);
  let precision = parsed.precision;
  // One warning: where legacy 16 means another half type here, the generic advice ("16-mixed") would be wrong.
  if (parsed.legacyHalf && accelerator.legacyHalfPrecision !== precision) {
    precision = accelerator.legacyHalfPrecision;
    emit(
      `precision=${JSON.stringify(input)} is supported for historical reasons but its usage is discouraged. ` +
        `On accelerator "${accelerator.name}" it means "${precision}": set precision="${precision}" instead.`,
    );
  } else if (parsed.deprecation) emit(parsed.deprecation);
  if (!accelerator.supportedPrecisions.includes(precision))
    throw new UnsupportedPrecisionError(accelerator.name, precision, accelerator.supportedPrecisions, accelerator.precisionHints?.[precision]);
  return { precision, warnings };
}

export interface SupportMatrixRow {
  readonly accelerator: string;
  readonly available: boolean;
  readonly reason?: string;
  readonly devices: number;
  readonly legacy16: Precision;
  readonly precisions: Readonly<Record<Precision, boolean>>;
}

export function supportMatrix(registry: AcceleratorRegistry = accelerators): SupportMatrixRow[] {
  return registry.names().map((name) => {
    const acc = registry.get(name);
    const status = acc.isAvailable();
    const precisions = Object.fromEntries(CANONICAL_PRECISIONS.map((p) => [p, acc.supportedPrecisions.includes(p)])) as Record<Precision, boolean>;
    return {
      accelerator: name,
      available: status.available,
      ...(status.available ? {} : { reason: status.reason }),
      devices: status.available ? acc.deviceCount() : 0,
      legacy16: acc.legacyHalfPrecision,
      precisions,
    };
  });
}

/** The support matrix as a text table, one row per registered accelerator. */
export function formatSupportMatrix(rows: readonly SupportMatrixRow[] = supportMatrix()): string {
  const header = ["accelerator", ...CANONICAL_PRECISIONS, "legacy 16", "available"];
  const body = rows.map((r) => [
    r.accelerator,
    ...CANONICAL_PRECISIONS.map((p) => (r.precisions[p] ? "yes" : "-")),
    r.legacy16,
    r.available ? `yes (${r.devices} device${r.devices === 1 ? "" : "s"})` : `no: ${r.reason}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** The autocast lists an accelerator's mixed precisions use. */
export const autocastPolicyOf = (accelerator: Accelerator): AutocastPolicy => resolveAutocastPolicy(accelerator.autocastPolicy ?? "cuda");
