// Child process of malloc-tuning.test.ts (run with --expose-gc): tunes malloc unless
// NBIT_MALLOC_TUNING=0, then allocates and frees 64 MiB in 1 MiB Float32Arrays four times and
// prints the minor page faults of the last two rounds.
import { tuneMalloc } from "../src/malloc-tuning.js";

const tuning = tuneMalloc();
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");
let faults = 0;
for (let round = 0; round < 4; round++) {
  const before = process.resourceUsage().minorPageFault;
  let held: Float32Array[] = [];
  for (let i = 0; i < 64; i++) held.push(new Float32Array(2 ** 18));
  held = [];
  gc();
  // V8 may free the buffers on a background thread after the collection.
  await new Promise((resolve) => setTimeout(resolve, 20));
  if (round >= 2) faults += process.resourceUsage().minorPageFault - before;
}
console.log(JSON.stringify({ applied: tuning.applied, faults }));
