import { crossEntropy, Generator, Linear, manualSeed, precisionPluginFor, ReLU, Runtime, Sequential, SGD, Tensor, withRuntime, type Program } from "@nbit/core";
import { describe, expect, it } from "vitest";
import { CPU_KERNELS, CpuAccelerator, lowerProgram, type CpuBackendOptions } from "../src/index.js";
import { OnnxType, type OnnxGraph } from "../src/onnx-proto.js";
import { PACKED_OUTPUT_BYTES, packOutputs } from "../src/pack.js";

const value = (name: string, type: number, dims: number[]) => ({ name, type, dims });

describe("packOutputs", () => {
  const graph: OnnxGraph = {
    nodes: [
      { op: "Neg", inputs: ["x"], outputs: ["out0"] },
      { op: "Cast", inputs: ["x"], outputs: ["out1"], attributes: [{ name: "to", int: OnnxType.INT32 }] },
      { op: "ReduceSum", inputs: ["out0"], outputs: ["out2"], attributes: [{ name: "keepdims", int: 0 }] },
      { op: "Abs", inputs: ["x"], outputs: ["out3"] },
    ],
    initializers: [],
    inputs: [value("x", OnnxType.FLOAT, [2, 3])],
    outputs: [
      value("out0", OnnxType.FLOAT, [2, 3]),
      value("out1", OnnxType.INT32, [2, 3]),
      value("out2", OnnxType.FLOAT, []),
      value("out3", OnnxType.FLOAT, [2, 3]),
    ],
  };

  it("concatenates the outputs of one type, flattened, into one output, and says where each lies", () => {
    const { graph: packed, outputs } = packOutputs(graph, PACKED_OUTPUT_BYTES);
    // The lone int32 output stays as it was; the three float outputs become one of 6 + 1 + 6 values.
    expect(packed.outputs).toEqual([value("out1", OnnxType.INT32, [2, 3]), value(`packed_${OnnxType.FLOAT}`, OnnxType.FLOAT, [13])]);
    expect(outputs).toEqual([
      { output: `packed_${OnnxType.FLOAT}`, offset: 0, length: 6, dims: [2, 3] },
      { output: "out1" },
      { output: `packed_${OnnxType.FLOAT}`, offset: 6, length: 1, dims: [] },
      { output: `packed_${OnnxType.FLOAT}`, offset: 7, length: 6, dims: [2, 3] },
    ]);
    const concat = packed.nodes.at(-1)!;
    expect(concat).toMatchObject({ op: "Concat", inputs: ["out0_flat", "out2_flat", "out3_flat"], outputs: [`packed_${OnnxType.FLOAT}`] });
    // The original outputs stay values of the graph, so the nodes that read them still find them.
    expect(packed.nodes.slice(0, 4)).toEqual(graph.nodes);
  });

  it("leaves outputs that would exceed the byte budget, or that have no company, as they are", () => {
    expect(packOutputs(graph, 13 * 4 - 1).graph).toBe(graph);
    expect(packOutputs(graph, 0).graph).toBe(graph);
    const single: OnnxGraph = { ...graph, nodes: graph.nodes.slice(0, 1), outputs: graph.outputs.slice(0, 1) };
    expect(packOutputs(single, PACKED_OUTPUT_BYTES).graph).toBe(single);
    // An empty output leaves its lone float companion unpacked.
    const empty: OnnxGraph = { ...single, outputs: [...single.outputs, value("out9", OnnxType.FLOAT, [0, 3])] };
    expect(packOutputs(empty, PACKED_OUTPUT_BYTES).graph).toBe(empty);
  });
});

/** Six SGD steps of a small MLP on the cpu backend: losses, final parameters and the programs compiled. */
async function train(options: CpuBackendOptions) {
  const backend = new CpuAccelerator({ threads: 1, ...options }).createBackend();
  const programs: Program[] = [];
  const compile = backend.compile.bind(backend);
  backend.compile = (p) => (programs.push(p), compile(p));
  return withRuntime(new Runtime(backend), async () => {
    manualSeed(0);
    const model = new Sequential(new Linear(12, 24), new ReLU(), new Linear(24, 5));
    const optimizer = new SGD(model.parameters(), { lr: 0.1 });
    const plugin = precisionPluginFor("32-true");
    const g = new Generator(4);
    const losses: number[] = [];
    for (let s = 0; s < 6; s++) {
      const x = Tensor.fromHost(
        new Float32Array(8 * 12).map(() => g.normal()),
        [8, 12],
        "float32",
      );
      const loss = plugin.forwardContext(() =>
        crossEntropy(
          model.forward(x),
          Tensor.fromHost(
            new Int32Array(8).map(() => g.int(5)),
            [8],
            "int32",
          ),
        ),
      );
      // The Trainer's step: the loss and the updated parameters realized as one program.
      losses.push((await plugin.optimizerStep(optimizer, loss)).loss);
    }
    const params = await Promise.all(model.parameters().map(async (p) => Array.from(await p.data())));
    return { losses, params, programs };
  });
}

describe("packed outputs on the cpu backend", () => {
  it("train to the same losses and parameters, bit for bit, as unpacked outputs", async () => {
    const packed = await train({});
    const unpacked = await train({ packedOutputBytes: 0 });
    expect(packed.losses).toEqual(unpacked.losses);
    expect(packed.params).toEqual(unpacked.params);
    // The training step (its largest program: loss and four updated parameters) left its session as one output.
    const step = packed.programs.reduce((a, p) => (p.outputs.length > a.outputs.length ? p : a));
    expect(step.outputs.length).toBeGreaterThanOrEqual(5);
    expect(packOutputs(lowerProgram(step, CPU_KERNELS), PACKED_OUTPUT_BYTES).graph.outputs).toHaveLength(1);
  });
});
