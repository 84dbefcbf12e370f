import { UnknownOptionError } from "./errors.js";

/** Lower case without separators, so "max_epochs", "max-epochs" and "maxEpochs" compare equal. */
const normalize = (name: string) => name.toLowerCase().replace(/[_\-\s]/g, "");

/** Edit distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known name closest to `name`: the same name in another case or separator style
 * (Lightning's snake_case), else the nearest by edit distance when it is close enough to be a typo.
 */
export function closestName(name: string, known: readonly string[]): string | undefined {
  const key = normalize(name);
  const same = known.find((k) => normalize(k) === key);
  if (same) return same;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const distance = editDistance(key, normalize(k));
    if (distance < bestDistance) [best, bestDistance] = [k, distance];
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 4)) ? best : undefined;
}

/**
 * Throws UnknownOptionError for the first own key of `options` that is not in `known`, naming the
 * closest known option. Types catch these in TypeScript; this catches them from JavaScript.
 */
export function rejectUnknownOptions(owner: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new UnknownOptionError(owner, key, closestName(key, known), known);
  }
}
