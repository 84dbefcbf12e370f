// What glibc's malloc settings (tuneMalloc) change: the same measurements in two child processes,
// one with the tuning and one with NBIT_MALLOC_TUNING=0, run one after the other in rounds. Each
// child measures a fresh 1 MiB Float32Array, a one-node onnxruntime session with a 1 MiB output
// (the binding copies it into a fresh ArrayBuffer, as it does a step's new parameters), and nbit's
// 32-true MLP step, recorded and captured; minor page faults per call come from
// process.resourceUsage(). npm run bench -w @nbit/cpu -- malloc [small|medium|standard]
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { tuneMalloc } from "../src/index.js";
import { loadNativeBinding } from "../src/native.js";
import { encodeModel, OnnxType } from "../src/onnx-proto.js";
import { env, nbitPath, ort, spread, STANDARD, shapeArg } from "./common.js";

const [ROUNDS, CALLS, STEPS] = [env("BENCH_ROUNDS", 3), env("BENCH_CALLS", 300), env("BENCH_STEPS", 200)];
const shape = shapeArg(STANDARD);
interface Figures {
  tuning: string;
  arrayUs: number;
  arrayFaults: number;
  outputUs: number;
  outputFaults: number;
  recorded: number;
  captured: number;
}

async function measure(): Promise<Figures> {
  // The tuning as a backend makes it for a program with outputs above MALLOC_TUNING_OUTPUT_BYTES.
  const tuned = tuneMalloc();
  const tuning = tuned.applied ? "tuned" : `not tuned (${tuned.reason})`;
  const timed = async (calls: number, f: (i: number) => unknown) => {
    const faults = process.resourceUsage().minorPageFault;
    const t = performance.now();
    for (let i = 0; i < calls; i++) await f(i);
    return { us: ((performance.now() - t) / calls) * 1000, faults: (process.resourceUsage().minorPageFault - faults) / calls };
  };
  const n = 512 * 512;
  const kept: Float32Array[] = [];
  // After as many warm-up calls; kept eight at a time, as a step's outputs live until the next step's replace them.
  const allocate = (i: number) => (kept[i % 8] = new Float32Array(n));
  await timed(CALLS, allocate);
  const array = await timed(CALLS, allocate);
  const native = loadNativeBinding();
  if (!native) throw new Error("this onnxruntime-node has no binding of the shape nbit knows");
  const value = (name: string) => ({ name, type: OnnxType.FLOAT, dims: [512, 512] });
  const session = native.createSession(
    encodeModel({ nodes: [{ op: "Neg", inputs: ["x"], outputs: ["y"] }], initializers: [], inputs: [value("x")], outputs: [value("y")] }),
    { intraOpNumThreads: 1, executionMode: "sequential" },
  );
  const x = new ort.Tensor("float32", new Float32Array(n), [512, 512]);
  const run = () => session.run({ x }, { y: null }, {});
  await timed(CALLS, run);
  const output = await timed(CALLS, run);
  session.dispose();
  const recordedPath = nbitPath(shape, "32-true");
  const capturedPath = nbitPath(shape, "32-true", {}, { captured: true });
  for (let i = 0; i < 20; i++) {
    await recordedPath.step(i);
    await capturedPath.step(i);
  }
  const recorded = await timed(STEPS, (i) => recordedPath.step(i));
  const captured = await timed(STEPS, (i) => capturedPath.step(i));
  return {
    tuning,
    arrayUs: array.us,
    arrayFaults: array.faults,
    outputUs: output.us,
    outputFaults: output.faults,
    recorded: 1e6 / recorded.us,
    captured: 1e6 / captured.us,
  };
}

if (process.env.BENCH_MALLOC_CHILD) {
  console.log(JSON.stringify(await measure()));
} else {
  const runs: Record<"tuned" | "untuned", Figures[]> = { tuned: [], untuned: [] };
  for (let r = 0; r < ROUNDS; r++)
    for (const which of ["untuned", "tuned"] as const) {
      const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "malloc", process.argv[3] ?? "standard"], {
        env: { ...process.env, BENCH_MALLOC_CHILD: "1", ...(which === "untuned" ? { NBIT_MALLOC_TUNING: "0" } : {}) },
        encoding: "utf8",
      });
      if (child.status !== 0) throw new Error(`child failed: ${child.stderr}`);
      runs[which].push(JSON.parse(child.stdout.trim().split("\n").at(-1)!) as Figures);
    }
  console.log(`glibc malloc tuning on and off, ${ROUNDS} rounds of one process each (min / median / max)`);
  for (const which of ["untuned", "tuned"] as const) {
    const f = runs[which];
    const col = (key: Exclude<keyof Figures, "tuning">, digits = 0) =>
      spread(
        f.map((x) => x[key]),
        digits,
      );
    console.log(`\n${f[0]!.tuning}`);
    console.log(`  new Float32Array(1 MiB):          ${col("arrayUs")} us, ${col("arrayFaults", 1)} page faults`);
    console.log(`  run with a 1 MiB output:          ${col("outputUs")} us, ${col("outputFaults", 1)} page faults`);
    console.log(`  MLP ${shape.name}, 32-true, recorded: ${col("recorded", 1)} steps/s`);
    console.log(`  MLP ${shape.name}, 32-true, captured: ${col("captured", 1)} steps/s`);
  }
}
