// onnxruntime's native run alone: nbit's 32-true step session against the hand-built session of
// the same step, each called straight through onnxruntime-node's binding with the feeds of a
// captured step (no graph recording, no event-loop turn), alternating call by call, median of
// per-round medians (a call preempted by another process does not count). What the graph and the session options cost, apart from any JS.
// An optional size after the name picks the MLP: npm run bench -w @nbit/cpu -- native medium
import { createRequire } from "node:module";
import type { Program } from "@nbit/core";
import { CPU_KERNELS, CpuBackend, lowerProgram, physicalType } from "../src/index.js";
import { encodeModel, OnnxType, type OnnxGraph } from "../src/onnx-proto.js";
import { PACKED_OUTPUT_BYTES, packOutputs } from "../src/pack.js";
import type * as ort from "onnxruntime-node";
import { env, handBuiltPath, ort as onnxruntime, median, nbitPath, SMALL, shapeArg } from "./common.js";

type Run = (feeds: object, fetches: object, options?: object) => unknown;
interface NativeSessionLike {
  run(...args: Parameters<Run>): unknown;
}
const { binding } = createRequire(import.meta.url)("onnxruntime-node/dist/binding.js") as {
  binding: { InferenceSession: new () => NativeSessionLike };
};
// The last call of each native session: its arguments and how often it ran.
const calls = new Map<object, { args: Parameters<Run>; runs: number }>();
const NativeSession = binding.InferenceSession;
const run = NativeSession.prototype.run;
binding.InferenceSession = class extends NativeSession {
  override run(...args: Parameters<Run>) {
    calls.set(this, { args, runs: (calls.get(this)?.runs ?? 0) + 1 });
    return super.run(...args);
  }
};
const busiest = () => [...calls].sort((a, b) => b[1].runs - a[1].runs)[0]!;

const shape = shapeArg(SMALL);
const [ROUNDS, CALLS, WARMUP] = [env("BENCH_ROUNDS", 7), env("BENCH_STEPS", 400), env("BENCH_WARMUP", 100)];
const hand = await handBuiltPath(shape, { threads: 1 });
await hand.step(0);
const [handSession, handCall] = busiest();
calls.clear();
// The step program, for variants of its graph.
let program: Program | undefined;
let backend: CpuBackend | undefined;
const compile = CpuBackend.prototype.compile;
CpuBackend.prototype.compile = function (p) {
  [program, backend] = [p, this];
  return compile.call(this, p);
};
const nbit = nbitPath(shape, "32-true", { threads: 1 });
for (let i = 0; i < 3; i++) await nbit.step(i);
const [nbitSession, nbitCall] = busiest();

// NATIVE_THRASH=<KiB>: overwrite that much memory before each call, as a step's JS work would, so both runs start with cold caches.
const junk = new Float64Array(env("NATIVE_THRASH", 0) * 128);
const JS_WORK = env("NATIVE_JS", 0);
const thrash = () => {
  for (let i = 0; i < junk.length; i += 8) junk[i]! += 1;
  for (let k = 0; k < JS_WORK; k++) {
    const objs = Array.from({ length: 50 }, (_, i) => ({ id: i, name: `n${i}`, shape: [i, k], attrs: { axes: [1], keep: i % 2 === 0 } }));
    const m = new Map(objs.map((o) => [JSON.stringify(o), o]));
    objs.sort((a, b) => (b.name < a.name ? -1 : 1));
    if (m.size < 0) console.log(objs);
  }
};
const variants: Record<string, [object, Parameters<Run>]> = { "hand-built": [handSession, handCall.args], nbit: [nbitSession, nbitCall.args] };
// NATIVE_PREALLOCATED=1: also nbit's session with its outputs written into tensors allocated once (onnxruntime-node's fetches).
if (process.env.NATIVE_PREALLOCATED) {
  const [feeds, fetches, options] = nbitCall.args as [Record<string, unknown>, Record<string, unknown>, object];
  const outputs = run.call(nbitSession, feeds, fetches, options) as Record<string, { type: "float32"; dims: number[]; data: Float32Array }>;
  const preallocated = Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, new onnxruntime.Tensor(t.type, t.data.slice(), t.dims)]));
  variants["nbit, preallocated"] = [nbitSession, [feeds, preallocated, options]];
}
/** Adds a variant: nbit's step as `graph` in a session of its own with `options` over nbit's, fed as nbit's session is. */
async function addVariant(name: string, graph: OnnxGraph, options: ort.InferenceSession.SessionOptions = {}) {
  const [feeds] = nbitCall.args as unknown as [Record<string, ort.Tensor>];
  const session = await onnxruntime.InferenceSession.create(encodeModel(graph), { ...backend!.sessionOptions(program!), ...options });
  const known = new Set(calls.keys());
  // Copies of the feeds: a session reading the very buffers the previous call read would find them in cache.
  await session.run(
    Object.fromEntries(session.inputNames.map((k) => [k, new onnxruntime.Tensor(feeds[k]!.type, feeds[k]!.data.slice() as Float32Array, feeds[k]!.dims)])),
  );
  const [native, call] = [...calls].find(([s]) => !known.has(s))!;
  variants[name] = [native, call.args];
  if (!native) throw new Error(name);
}
// NATIVE_LR_CONSTANT=1: also nbit's graph with its scalar inputs (the learning rate) baked in as constants, as the hand-built graph has it.
if (process.env.NATIVE_LR_CONSTANT) {
  const [feeds] = nbitCall.args as unknown as [Record<string, ort.Tensor>];
  const scalars = new Set(program!.inputs.flatMap((v, i) => (v.shape.length === 0 ? [i] : [])));
  const bindInput = (i: number) => {
    const info = program!.inputs[i]!;
    if (!scalars.has(i)) return { input: { name: `v${i}`, type: physicalType(info.dtype), dims: info.shape } };
    const raw = new Uint8Array((feeds[`v${i}`]!.data as Float32Array).slice().buffer);
    return { initializer: { name: `s${i}`, type: OnnxType.FLOAT, dims: [] as number[], raw } };
  };
  await addVariant("nbit, lr constant", packOutputs(lowerProgram(program!, CPU_KERNELS, { bindInput }), PACKED_OUTPUT_BYTES).graph);
}
// NATIVE_UNPACKED=1: also nbit's graph with each output its own (packedOutputBytes: 0), as before outputs were packed.
if (process.env.NATIVE_UNPACKED) await addVariant("nbit, unpacked", lowerProgram(program!, CPU_KERNELS));
// NATIVE_OPTIONS='<json>': also nbit's graph in a session with these session options over nbit's own,
// its outputs packed up to NATIVE_PACK_BYTES (default PACKED_OUTPUT_BYTES, as nbit's session).
if (process.env.NATIVE_OPTIONS)
  await addVariant(
    "nbit, options",
    packOutputs(lowerProgram(program!, CPU_KERNELS), env("NATIVE_PACK_BYTES", PACKED_OUTPUT_BYTES)).graph,
    JSON.parse(process.env.NATIVE_OPTIONS),
  );
const names = Object.keys(variants);
const perRound = Object.fromEntries(names.map((k) => [k, [] as number[]]));
for (let r = -1; r < ROUNDS; r++) {
  const times = Object.fromEntries(names.map((k) => [k, [] as number[]]));
  const n = r < 0 ? WARMUP : CALLS;
  for (let i = 0; i < n; i++)
    // Each call in turn goes first: a call after another one finds caches in a different state.
    for (const k of [...names.slice(i % names.length), ...names.slice(0, i % names.length)]) {
      const [session, args] = variants[k]!;
      thrash();
      const t = performance.now();
      run.apply(session, args);
      times[k]!.push(performance.now() - t);
    }
  if (r >= 0) for (const k of names) perRound[k]!.push(median(times[k]!) * 1000);
}
console.log(`MLP ${shape.name}, 32-true, 1 thread: native run, us per call (min / median / max of ${ROUNDS} rounds' median calls, ${CALLS} calls a round)`);
for (const k of names) {
  const xs = perRound[k]!;
  console.log(
    `  ${k.padEnd(20)}${Math.min(...xs)
      .toFixed(1)
      .padStart(8)} ${median(xs).toFixed(1).padStart(8)} ${Math.max(...xs)
      .toFixed(1)
      .padStart(8)}`,
  );
}
for (const k of names.slice(1)) {
  const ratio = perRound["hand-built"]!.map((h, r) => h / perRound[k]![r]!);
  console.log(`  hand-built / ${k}: ${median(ratio).toFixed(3)} (min ${Math.min(...ratio).toFixed(3)}, max ${Math.max(...ratio).toFixed(3)})`);
}
