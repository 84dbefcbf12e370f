import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { Accelerator, AcceleratorFactory } from "./accelerator.js";

export interface AcceleratorEntry {
  readonly name: string;
  readonly factory: AcceleratorFactory;
  readonly priority: number;
  readonly aliases: readonly string[];
  instance?: Accelerator;
}

/** What an accelerator registry holds: entries by name, and aliases pointing at names. */
export interface AcceleratorStore {
  readonly entries: Map<string, AcceleratorEntry>;
  readonly aliases: Map<string, string>;
}

/** One copy of @nbit/core loaded in this process, with the store its registry uses. */
export interface LoadedCore {
  readonly version: string;
  readonly from: string;
  readonly store: AcceleratorStore;
}

/** The process-wide record of loaded cores, kept on globalThis under a registered symbol. */
interface Slot {
  readonly protocol: number;
  readonly cores: LoadedCore[];
}

export const ACCELERATOR_SLOT = Symbol.for("nbit.accelerators");
/** Layout of the slot; a core that changes it must bump this and keep reading older slots. */
const SLOT_PROTOCOL = 1;

/** This copy's version, read from its package.json (one folder up from both src/ and dist/). */
export const CORE_VERSION: string = readVersion();

function readVersion(): string {
  try {
    const { version } = createRequire(import.meta.url)("../package.json") as { version?: unknown };
    return typeof version === "string" ? version : "unknown";
  } catch {
    return "unknown";
  }
}
/** The file this copy of @nbit/core was loaded from. */
export const CORE_LOCATION: string = fileURLToPath(import.meta.url);

export function newAcceleratorStore(): AcceleratorStore {
  return { entries: new Map(), aliases: new Map() };
}

function isStore(value: unknown): value is AcceleratorStore {
  const s = value as Partial<AcceleratorStore> | null;
  return typeof s === "object" && s !== null && s.entries instanceof Map && s.aliases instanceof Map;
}

function isLoadedCore(value: unknown): value is LoadedCore {
  const c = value as Partial<LoadedCore> | null;
  return typeof c === "object" && c !== null && typeof c.version === "string" && typeof c.from === "string" && isStore(c.store);
}

export interface SharedStore {
  readonly store: AcceleratorStore;
  /** Cores of other versions loaded in this process, each with its own store. */
  otherCores(): readonly LoadedCore[];
  /** True when the slot was written by a core whose layout this one cannot read. */
  readonly unreadableSlot: boolean;
}

/**
 * The accelerator store for a core of `version` loaded from `from`. Copies of the same version (an
 * ESM import and a CommonJS require, or two installs of one version) share one store, so a backend
 * that registers through either is visible to both. A copy of another version keeps its own store:
 * its Backend and Program types may differ, so it is listed in errors instead of being mixed in.
 */
export function sharedAcceleratorStore(version: string, from: string, host: object = globalThis): SharedStore {
  const holder = host as Record<symbol, unknown>;
  const found = holder[ACCELERATOR_SLOT] as Partial<Slot> | undefined;
  if (found !== undefined && (found?.protocol !== SLOT_PROTOCOL || !Array.isArray(found.cores))) {
    return { store: newAcceleratorStore(), otherCores: () => [], unreadableSlot: true };
  }
  const slot: Slot = (found as Slot | undefined) ?? { protocol: SLOT_PROTOCOL, cores: [] };
  if (found === undefined) Object.defineProperty(holder, ACCELERATOR_SLOT, { value: slot, enumerable: false, configurable: false, writable: false });
  let own = slot.cores.find((c) => isLoadedCore(c) && c.version === version);
  if (!own) {
    own = { version, from, store: newAcceleratorStore() };
    slot.cores.push(own);
  }
  const store = own.store;
  return { store, otherCores: () => slot.cores.filter((c) => isLoadedCore(c) && c.store !== store), unreadableSlot: false };
}

/**
 * Explains a missing accelerator when more than one @nbit/core is loaded: backends register into
 * the core they import, which is not the one asking.
 */
export function secondCoreHint(shared: SharedStore, version: string, from: string, wanted?: string): string {
  const self = `this copy is ${version} at ${from}`;
  if (shared.unreadableSlot)
    return ` Another copy of @nbit/core with an incompatible registry is loaded in this process (${self}). Install a single version of @nbit/core (check with \`npm ls @nbit/core\`).`;
  const others = shared.otherCores();
  if (others.length === 0) return "";
  const described = others.map((c) => {
    const names = [...c.store.entries.keys()];
    const owner = wanted === undefined ? undefined : c.store.aliases.get(wanted);
    const alias = owner !== undefined ? `; "${owner}" answers to "${wanted}"` : "";
    return `${c.version} at ${c.from} (registered there: ${names.length ? names.map((n) => JSON.stringify(n)).join(", ") : "(none)"}${alias})`;
  });
  return (
    ` A second copy of @nbit/core was loaded: ${described.join("; ")}; ${self}.` +
    " A backend registers into the @nbit/core it imports, so install a single version (check with `npm ls @nbit/core`, then `npm dedupe` or align the versions)."
  );
}
