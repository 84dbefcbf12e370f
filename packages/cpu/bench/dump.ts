// Writes onnxruntime's optimized graphs of nbit's 32-true step and the hand-built step (to
// $DUMP_DIR/{nbit,hand}-<size>.onnx) for comparing their nodes: npm run bench -w @nbit/cpu -- dump small
import { join } from "node:path";
import { env, handBuiltPath, nbitPath, SMALL, shapeArg } from "./common.js";

const shape = shapeArg(SMALL);
const dir = process.env.DUMP_DIR ?? "/tmp";
const size = (process.argv[3] ?? "small").toLowerCase();
process.env.HAND_DUMP = join(dir, `hand-${size}.onnx`);
const hand = await handBuiltPath(shape, { threads: 1 });
await hand.step(0);
// The step program is the last one compiled.
process.env.NBIT_DUMP = join(dir, `nbit-${size}.onnx`);
const nbit = nbitPath(shape, "32-true", { threads: 1 });
for (let i = 0; i < env("DUMP_STEPS", 2); i++) await nbit.step(i);
console.log(`wrote ${process.env.HAND_DUMP} and ${process.env.NBIT_DUMP}`);
