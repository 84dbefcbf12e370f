// What onnxruntime-node's binding costs per graph input and per output, apart from the graph's
// work: a graph whose only node is one Identity (K inputs, K - 1 of them unused), and one whose K
// outputs are each a Neg of one 4-float input; binding called directly, median per call of 7
// rounds. npm run bench -w @nbit/cpu -- binding
import { encodeModel, OnnxType, type OnnxNode, type OnnxValue } from "../src/onnx-proto.js";
import { loadNativeBinding } from "../src/native.js";
import { env, median, ort } from "./common.js";

const native = loadNativeBinding();
if (!native) throw new Error("this onnxruntime-node has no binding of the shape nbit knows");
const [ROUNDS, CALLS] = [env("BENCH_ROUNDS", 7), env("BENCH_STEPS", 2000)];
const options = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", logSeverityLevel: 3 } as const;
const float = (name: string): OnnxValue => ({ name, type: OnnxType.FLOAT, dims: [4] });
const tensor = () => new ort.Tensor("float32", new Float32Array(4), [4]);

function time(inputs: OnnxValue[], outputs: OnnxValue[], nodes: OnnxNode[]) {
  const session = native!.createSession(encodeModel({ nodes, initializers: [], inputs, outputs }), options);
  const feeds = Object.fromEntries(inputs.map((v) => [v.name, tensor()]));
  const fetches = Object.fromEntries(outputs.map((v) => [v.name, null]));
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const calls: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      void session.run(feeds, fetches, {});
      calls.push(performance.now() - t);
    }
    rounds.push(median(calls) * 1000);
  }
  session.dispose();
  return median(rounds);
}

console.log("onnxruntime-node binding, us per run (median):");
for (const k of [1, 2, 10, 20]) {
  const inputs = Array.from({ length: k }, (_, i) => float(`i${i}`));
  const byInputs = time(inputs, [float("o")], [{ op: "Identity", inputs: ["i0"], outputs: ["o"] }]);
  const outputs = Array.from({ length: k }, (_, i) => float(`o${i}`));
  const byOutputs = time(
    [float("i0")],
    outputs,
    outputs.map((o) => ({ op: "Neg", inputs: ["i0"], outputs: [o.name] })),
  );
  console.log(
    `  ${String(k).padStart(2)} inputs: ${byInputs.toFixed(1).padStart(6)}    ${String(k).padStart(2)} outputs (a Neg each): ${byOutputs.toFixed(1).padStart(6)}`,
  );
}
