// A minimal protobuf writer for the parts of ONNX's ModelProto that nbit emits.

class Writer {
  private chunks: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: Writer) => void): this {
    const inner = new Writer();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }
}

/** ONNX TensorProto.DataType codes. */
export const OnnxType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11 } as const;
/** A TensorProto.DataType code: one of OnnxType, or a narrow float's code from core's FLOAT_FORMATS. */
export type OnnxTypeCode = number;

export type Attribute =
  | { name: string; int: number }
  | { name: string; float: number }
  | { name: string; ints: readonly number[] }
  | { name: string; string: string };

export interface OnnxNode {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes?: readonly Attribute[];
}

export interface OnnxTensor {
  readonly name: string;
  readonly type: OnnxTypeCode;
  readonly dims: readonly number[];
  readonly raw: Uint8Array;
}

export interface OnnxValue {
  readonly name: string;
  readonly type: OnnxTypeCode;
  /** Sizes; a string is a symbolic dim (dim_param), such as the batch size of an exported model. */
  readonly dims: readonly (number | string)[];
}

export interface OnnxGraph {
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly inputs: readonly OnnxValue[];
  readonly outputs: readonly OnnxValue[];
}

const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

function valueInfo(w: Writer, v: OnnxValue): void {
  w.string(1, v.name).message(2, (type) =>
    type.message(1, (tensor) =>
      tensor.int(1, v.type).message(2, (shape) => v.dims.forEach((d) => shape.message(1, (dim) => (typeof d === "string" ? dim.string(2, d) : dim.int(1, d))))),
    ),
  );
}

/** Serialises a single-graph ModelProto (IR version 8, default-domain opset `opset`). */
export function encodeModel(graph: OnnxGraph, opset = 18, graphName = "step"): Uint8Array {
  return new Writer()
    .int(1, 8)
    .string(2, "nbit")
    .message(7, (g) => {
      graph.nodes.forEach((n, i) =>
        g.message(1, (node) => {
          n.inputs.forEach((s) => node.string(1, s));
          n.outputs.forEach((s) => node.string(2, s));
          node.string(3, `n${i}`).string(4, n.op);
          for (const a of n.attributes ?? [])
            node.message(5, (attr) => {
              attr.string(1, a.name);
              if ("int" in a) attr.int(3, a.int).int(20, ATTR_INT);
              else if ("float" in a) attr.float(2, a.float).int(20, ATTR_FLOAT);
              else if ("string" in a) attr.string(4, a.string).int(20, ATTR_STRING);
              else {
                a.ints.forEach((v) => attr.int(8, v));
                attr.int(20, ATTR_INTS);
              }
            });
        }),
      );
      g.string(2, graphName);
      for (const t of graph.initializers)
        g.message(5, (tensor) => {
          t.dims.forEach((d) => tensor.int(1, d));
          tensor.int(2, t.type).string(8, t.name).bytes(9, t.raw);
        });
      graph.inputs.forEach((v) => g.message(11, (w) => valueInfo(w, v)));
      graph.outputs.forEach((v) => g.message(12, (w) => valueInfo(w, v)));
    })
    .message(8, (o) => o.string(1, "").int(2, opset))
    .finish();
}
