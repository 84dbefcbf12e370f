import { OnnxType, type OnnxGraph, type OnnxNode, type OnnxTensor, type OnnxTypeCode } from "./onnx-proto.js";

/**
 * Below this many bytes in all, a graph's outputs of one type leave the session as one output
 * (default of CpuBackendOptions.packedOutputBytes). onnxruntime-node converts each output on its
 * own, at about 1.5 us apiece on top of the copy it makes of every output; one Concat of small
 * outputs costs less than that (bench/native.ts: the small MLP's step, 7 outputs, 68.6 -> 61.0 us).
 */
export const PACKED_OUTPUT_BYTES = 64 * 1024;

const ELEMENT_BYTES: Partial<Record<OnnxTypeCode, number>> = {
  [OnnxType.FLOAT]: 4,
  [OnnxType.DOUBLE]: 8,
  [OnnxType.INT32]: 4,
  [OnnxType.INT64]: 8,
  [OnnxType.INT8]: 1,
  [OnnxType.UINT8]: 1,
  [OnnxType.BOOL]: 1,
};

/** Elements in a tensor of `dims`; NaN when a dimension is symbolic. */
const elementCount = (dims: readonly (number | string)[]) => dims.reduce<number>((a, d) => a * (typeof d === "number" ? d : Number.NaN), 1);

/** The bytes of `graph`'s largest output (0 when no output has a known size). */
export function largestOutputBytes(graph: OnnxGraph): number {
  let largest = 0;
  for (const o of graph.outputs) {
    const bytes = elementCount(o.dims) * (ELEMENT_BYTES[o.type] ?? Number.NaN);
    if (bytes > largest) largest = bytes;
  }
  return largest;
}

/** Where one of the original graph's outputs lies among the packed graph's outputs. */
export type PackedOutput =
  /** An output left as it was. */
  | { readonly output: string }
  /** `length` elements from `offset` of a packed 1-D output, of shape `dims`. */
  | { readonly output: string; readonly offset: number; readonly length: number; readonly dims: readonly number[] };

/**
 * `graph` with its outputs of each type concatenated, flattened, into one output when there are
 * two or more of them and they total at most `maxBytes`, and where each original output lies.
 * Concat and Reshape copy values unchanged.
 */
export function packOutputs(graph: OnnxGraph, maxBytes: number): { graph: OnnxGraph; outputs: PackedOutput[] } {
  const groups = new Map<OnnxTypeCode, number[]>();
  graph.outputs.forEach((o, k) => {
    const bytes = ELEMENT_BYTES[o.type];
    // Empty outputs stay as they are: nothing to save, and Reshape's -1 has nothing to divide.
    if (bytes !== undefined && elementCount(o.dims) > 0) groups.set(o.type, [...(groups.get(o.type) ?? []), k]);
  });
  const placed: PackedOutput[] = graph.outputs.map((o) => ({ output: o.name }));
  const nodes: OnnxNode[] = [...graph.nodes];
  const initializers: OnnxTensor[] = [...graph.initializers];
  const packed = new Set<number>();
  const outputs = [];
  for (const [type, ks] of groups) {
    const total = ks.reduce((a, k) => a + elementCount(graph.outputs[k]!.dims), 0);
    if (ks.length < 2 || total * ELEMENT_BYTES[type]! > maxBytes) continue;
    if (!initializers.some((t) => t.name === "pack_flat"))
      initializers.push({ name: "pack_flat", type: OnnxType.INT64, dims: [1], raw: new Uint8Array(BigInt64Array.of(-1n).buffer) });
    const name = `packed_${type}`;
    let offset = 0;
    for (const k of ks) {
      const o = graph.outputs[k]!;
      const length = elementCount(o.dims);
      nodes.push({ op: "Reshape", inputs: [o.name, "pack_flat"], outputs: [`${o.name}_flat`] });
      placed[k] = { output: name, offset, length, dims: o.dims as number[] };
      packed.add(k);
      offset += length;
    }
    nodes.push({ op: "Concat", inputs: ks.map((k) => `${graph.outputs[k]!.name}_flat`), outputs: [name], attributes: [{ name: "axis", int: 0 }] });
    outputs.push({ name, type, dims: [total] });
  }
  if (packed.size === 0) return { graph, outputs: placed };
  return { graph: { ...graph, nodes, initializers, outputs: [...graph.outputs.filter((_, k) => !packed.has(k)), ...outputs] }, outputs: placed };
}
