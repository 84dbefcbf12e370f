// Conversion throughput over 1M values. Prints figures; compare ratios within one run.
import {
  bfloat16ArrayToFloat32,
  float16ArrayToFloat32,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  Generator,
  roundFloat32ArrayToBfloat16,
  roundFloat32ArrayToFloat16,
} from "../src/index.js";

const N = 1_000_000;
const g = new Generator(1);
const src = new Float32Array(N).map(() => (g.random() - 0.5) * 2 ** (g.int(40) - 20));

function time(label: string, fn: () => void, repeats = 20): void {
  fn();
  const samples: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const median = samples[samples.length >> 1]!;
  console.log(`${label.padEnd(44)} ${median.toFixed(2).padStart(7)} ms  ${(N / median / 1e3).toFixed(0).padStart(5)} M values/s`);
}

const bf = new Uint16Array(N);
const half = new Uint16Array(N);
const back = new Float32Array(N);
console.log(`1M float32 values, median of 20 runs (Node ${process.version})`);
time("f32 -> bf16 -> f32 (encode + decode)", () => bfloat16ArrayToFloat32(float32ArrayToBfloat16(src, bf), back));
time("f32 -> bf16 -> f32 (in place rounding)", () => roundFloat32ArrayToBfloat16(back.set(src) ?? back));
time("f32 -> f16 -> f32 (encode + decode)", () => float16ArrayToFloat32(float32ArrayToFloat16(src, half), back));
time("f32 -> f16 -> f32 (in place rounding)", () => roundFloat32ArrayToFloat16(back.set(src) ?? back));
time("copy only (baseline)", () => back.set(src));
