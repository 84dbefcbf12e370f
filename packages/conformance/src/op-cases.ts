import { Generator, isFloatDType, roundScalar, type DType, type OpAttrs, type PrimitiveOp } from "@nbit/core";
import { broadcastIndex, randomValues } from "./reference.js";

type Shape = readonly number[];

export interface CaseInput {
  readonly values: Float64Array;
  readonly shape: Shape;
  readonly dtype: DType;
}

/** What a case expects: exact values, or values within a tolerance that grows with `terms` summed per output. */
export interface Expected {
  readonly values: Float64Array;
  /** Sum of the absolute values of the terms behind each output (accumulating ops). */
  readonly magnitude?: Float64Array;
  /** Terms summed into each output (accumulating ops). */
  readonly terms?: number;
}

/**
 * One numerics case of a primitive: inputs for an operand dtype, the attributes, and an
 * independent float64 oracle. `check` says how results are compared: bit for bit (after
 * rounding the oracle into the output dtype), within a few roundings (transcendental ops), or
 * within an accumulation bound (reductions, matmul, convolutions).
 */
export interface OpCase {
  readonly op: PrimitiveOp;
  readonly label: string;
  readonly check: "exact" | "rounded" | "accumulated";
  /** Operand dtypes this case applies to (default: any the op takes). */
  readonly kinds?: "float" | "numeric";
  inputs(dtype: DType, g: Generator): { inputs: CaseInput[]; attrs: OpAttrs };
  oracle(inputs: readonly CaseInput[], attrs: OpAttrs, outShape: Shape): Expected;
}

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);
const stridesOf = (s: Shape) => s.map((_, i) => size(s.slice(i + 1)));

/** Values representable in `dtype`: gaussian floats, small integers, or 0/1. */
export function valuesFor(dtype: DType, n: number, g: Generator, options: { positive?: boolean; scale?: number } = {}): Float64Array {
  switch (dtype) {
    case "bool":
      return Float64Array.from({ length: n }, () => g.int(2));
    case "int32":
    case "int8":
      return Float64Array.from({ length: n }, () => g.int(41) - 20 + (options.positive ? 21 : 0));
    case "uint8":
      return Float64Array.from({ length: n }, () => g.int(50) + (options.positive ? 1 : 0));
    default:
      return randomValues(n, dtype, g, options.scale ?? 1, options.positive ?? false);
  }
}

const input = (dtype: DType, shape: Shape, g: Generator, options?: { positive?: boolean; scale?: number }): CaseInput => ({
  values: valuesFor(dtype, size(shape), g, options),
  shape,
  dtype,
});
const ints = (values: readonly number[], shape: Shape = [values.length]): CaseInput => ({ values: Float64Array.from(values), shape, dtype: "int32" });

const map = (values: Float64Array, f: (v: number) => number) => ({ values: values.map(f) });

function unary(op: PrimitiveOp, f: (x: number) => number, check: OpCase["check"], positive = false): OpCase {
  return {
    op,
    label: "",
    check,
    kinds: "float",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [8, 8], g, { positive, scale: 1.5 })], attrs: {} }),
    oracle: ([x]) => map(x!.values, f),
  };
}

function binary(
  op: PrimitiveOp,
  f: (x: number, y: number) => number,
  check: OpCase["check"],
  shapes: [Shape, Shape],
  options: { positiveRight?: boolean; kinds?: "float" | "numeric" } = {},
): OpCase {
  return {
    op,
    label: ` broadcasting [${shapes[0]}] with [${shapes[1]}]`,
    check,
    ...(options.kinds ? { kinds: options.kinds } : {}),
    inputs: (dtype, g) => {
      const a = input(dtype, shapes[0], g);
      // Equal values in a third of the places, so equal/less/maximum meet ties.
      const b = input(dtype, shapes[1], g, { positive: options.positiveRight ?? false });
      if (op === "equal" || op === "less" || op === "maximum") b.values.forEach((_, i) => i % 3 === 0 && (b.values[i] = a.values[i % a.values.length]!));
      return { inputs: [a, b], attrs: {} };
    },
    oracle: ([a, b], _attrs, out) => {
      const [ia, ib] = [broadcastIndex(a!.shape, out), broadcastIndex(b!.shape, out)];
      return { values: Float64Array.from({ length: size(out) }, (_, i) => f(a!.values[ia(i)]!, b!.values[ib(i)]!)) };
    },
  };
}

function reduction(op: "sum" | "max", axes: number[]): OpCase {
  return {
    op,
    label: ` over [${axes}]`,
    check: op === "sum" ? "accumulated" : "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [12, 9], g)], attrs: { axes, keepDims: axes.length === 1 } }),
    oracle: ([x]) => {
      const keep = [axes.includes(0) ? 1 : 12, axes.includes(1) ? 1 : 9];
      const out = new Float64Array(keep[0]! * keep[1]!).fill(op === "sum" ? 0 : -Infinity);
      const magnitude = new Float64Array(out.length);
      x!.values.forEach((v, i) => {
        const o = (keep[0] === 1 ? 0 : Math.floor(i / 9)) * keep[1]! + (keep[1] === 1 ? 0 : i % 9);
        out[o] = op === "sum" ? out[o]! + v : Math.max(out[o]!, v);
        magnitude[o]! += Math.abs(v);
      });
      return { values: out, magnitude, terms: 108 / out.length };
    },
  };
}

/** Reads `values` (of `shape`) at a multi-index. */
const at = (values: Float64Array, shape: Shape, index: readonly number[]) => values[index.reduce((o, v, d) => o + v * stridesOf(shape)[d]!, 0)]!;

function forEachIndex(shape: Shape, f: (index: number[], flat: number) => void): void {
  const n = size(shape);
  for (let flat = 0; flat < n; flat++) {
    let rest = flat;
    const index = new Array<number>(shape.length);
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d] = rest % shape[d]!;
      rest = Math.floor(rest / shape[d]!);
    }
    f(index, flat);
  }
}

function matmulCase(a: Shape, b: Shape): OpCase {
  return {
    op: "matmul",
    label: ` [${a}] x [${b}]`,
    check: "accumulated",
    inputs: (dtype, g) => ({ inputs: [input(dtype, a, g), input(dtype, b, g)], attrs: {} }),
    oracle: ([x, y], _attrs, out) => {
      const k = a.at(-1)!;
      const values = new Float64Array(size(out));
      const magnitude = new Float64Array(size(out));
      const batch = out.slice(0, -2);
      const [ia, ib] = [broadcastIndex(a.slice(0, -2), batch), broadcastIndex(b.slice(0, -2), batch)];
      const [m, n] = out.slice(-2) as [number, number];
      for (let t = 0; t < size(batch); t++)
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++)
            for (let p = 0; p < k; p++) {
              const term = x!.values[ia(t) * m * k + i * k + p]! * y!.values[ib(t) * k * n + p * n + j]!;
              values[(t * m + i) * n + j]! += term;
              magnitude[(t * m + i) * n + j]! += Math.abs(term);
            }
      return { values, magnitude, terms: k };
    },
  };
}

const CONV = { stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2 } as const;

/** out[n, o, y, z] = sum over the group's channels and the kernel of w * x at y*s - p + u*d. */
function convOracle([x, w]: readonly CaseInput[], attrs: OpAttrs, out: Shape): Expected {
  const [h, wd] = [x!.shape[2]!, x!.shape[3]!];
  const [o, cg, kh, kw] = w!.shape as [number, number, number, number];
  const [s, p, d, groups] = [attrs.stride!, attrs.padding!, attrs.dilation!, attrs.groups!];
  const values = new Float64Array(size(out));
  const magnitude = new Float64Array(size(out));
  forEachIndex(out, ([b, oc, y, z], flat) => {
    const group = Math.floor(oc! / (o / groups));
    for (let ic = 0; ic < cg; ic++)
      for (let u = 0; u < kh; u++)
        for (let v = 0; v < kw; v++) {
          const [iy, iz] = [y! * s[0] - p[0] + u * d[0], z! * s[1] - p[1] + v * d[1]];
          if (iy < 0 || iy >= h || iz < 0 || iz >= wd) continue;
          const term = at(w!.values, w!.shape, [oc!, ic, u, v]) * at(x!.values, x!.shape, [b!, group * cg + ic, iy, iz]);
          values[flat]! += term;
          magnitude[flat]! += Math.abs(term);
        }
  });
  return { values, magnitude, terms: cg * kh * kw };
}

/** Each input value scattered through the kernel: out[n, o, y*s - p + u*d, ...] += x * w. */
function convTransposeOracle([x, w]: readonly CaseInput[], attrs: OpAttrs, out: Shape): Expected {
  const [cin, og, kh, kw] = w!.shape as [number, number, number, number];
  const [s, p, d, groups] = [attrs.stride!, attrs.padding!, attrs.dilation!, attrs.groups!];
  const values = new Float64Array(size(out));
  const magnitude = new Float64Array(size(out));
  const [oh, ow] = [out[2]!, out[3]!];
  forEachIndex(x!.shape, ([b, ic, y, z], flat) => {
    const group = Math.floor(ic! / (cin / groups));
    for (let oc = 0; oc < og; oc++)
      for (let u = 0; u < kh; u++)
        for (let v = 0; v < kw; v++) {
          const [ty, tz] = [y! * s[0] - p[0] + u * d[0], z! * s[1] - p[1] + v * d[1]];
          if (ty < 0 || ty >= oh || tz < 0 || tz >= ow) continue;
          const term = x!.values[flat]! * at(w!.values, w!.shape, [ic!, oc, u, v]);
          const target = ((b! * out[1]! + group * og + oc) * oh + ty) * ow + tz;
          values[target]! += term;
          magnitude[target]! += Math.abs(term);
        }
  });
  return { values, magnitude, terms: Math.ceil((kh * kw * cin) / groups) };
}

/** Window visits for pooling: valid input positions (plane index) of each output. */
function windows(shape: Shape, attrs: OpAttrs, out: Shape, visit: (flat: number, plane: number, positions: number[]) => void): void {
  const [h, w] = [shape[2]!, shape[3]!];
  const [k, s, p, d] = [attrs.kernel!, attrs.stride!, attrs.padding!, attrs.dilation ?? [1, 1]];
  forEachIndex(out, ([b, c, y, z], flat) => {
    const positions: number[] = [];
    for (let u = 0; u < k[0]; u++)
      for (let v = 0; v < k[1]; v++) {
        const [iy, iz] = [y! * s[0] - p[0] + u * d[0], z! * s[1] - p[1] + v * d[1]];
        if (iy >= 0 && iy < h && iz >= 0 && iz < w) positions.push(iy * w + iz);
      }
    visit(flat, (b! * shape[1]! + c!) * h * w, positions);
  });
}

const POOL = { kernel: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [1, 2] } as const;

function poolCase(op: "maxPool2d" | "maxPool2dIndices" | "avgPool2d"): OpCase {
  const attrs: OpAttrs = op === "avgPool2d" ? { kernel: POOL.kernel, stride: POOL.stride, padding: POOL.padding } : POOL;
  return {
    op,
    label: ` kernel [${attrs.kernel}] stride [${attrs.stride}] padding [${attrs.padding}]${attrs.dilation ? ` dilation [${attrs.dilation}]` : ""}`,
    check: op === "avgPool2d" ? "accumulated" : "exact",
    kinds: op === "avgPool2d" ? "float" : "numeric",
    inputs: (dtype, g) => {
      const x = input(dtype, [2, 3, 7, 6], g);
      // Repeated values, so windows meet ties and the first maximum must win.
      x.values.forEach((_, i) => i % 5 === 0 && (x.values[i] = x.values[Math.max(0, i - 1)]!));
      return { inputs: [x], attrs };
    },
    oracle: ([x], a, out) => {
      const values = new Float64Array(size(out));
      const magnitude = new Float64Array(size(out));
      windows(x!.shape, a, out, (flat, plane, positions) => {
        if (op === "avgPool2d") {
          for (const q of positions) {
            values[flat]! += x!.values[plane + q]! / (a.kernel![0] * a.kernel![1]);
            magnitude[flat]! += Math.abs(x!.values[plane + q]!) / (a.kernel![0] * a.kernel![1]);
          }
          return;
        }
        let best = positions[0]!;
        for (const q of positions) if (x!.values[plane + q]! > x!.values[plane + best]!) best = q;
        values[flat] = op === "maxPool2d" ? x!.values[plane + best]! : best;
      });
      return { values, magnitude, terms: a.kernel![0] * a.kernel![1] };
    },
  };
}

function castCase(to: DType): OpCase {
  return {
    op: "cast",
    label: ` to ${to}`,
    check: "exact",
    inputs: (dtype, g) => {
      const x = input(dtype, [40], g, { scale: 30 });
      if (dtype !== "bool") x.values[0] = 0;
      return { inputs: [x], attrs: { to } };
    },
    oracle: ([x]) => map(x!.values, (v) => roundScalar(v, to)),
  };
}

/** The numerics cases, by primitive. */
export const OP_CASES: readonly OpCase[] = [
  unary("neg", (x) => -x, "exact"),
  unary("exp", Math.exp, "rounded"),
  unary("log", Math.log, "rounded", true),
  unary("sqrt", Math.sqrt, "rounded", true),
  unary("tanh", Math.tanh, "rounded"),
  {
    op: "relu",
    label: " (with -0 and NaN: +0 for -0 on every backend, as torch.relu)",
    check: "exact",
    kinds: "numeric",
    inputs: (dtype, g) => {
      const x = input(dtype, [8, 8], g);
      if (isFloatDType(dtype)) [0, 9, 30].forEach((i) => (x.values[i] = -0));
      if (isFloatDType(dtype)) x.values[17] = Number.NaN;
      return { inputs: [x], attrs: {} };
    },
    oracle: ([x]) => map(x!.values, (v) => (v > 0 || v !== v ? v : 0)),
  },
  ...(
    [
      [
        [6, 5],
        [6, 5],
      ],
      [[6, 5], [5]],
      [
        [6, 1],
        [1, 5],
      ],
    ] as [Shape, Shape][]
  ).flatMap((shapes) => [
    binary("add", (x, y) => x + y, "exact", shapes),
    binary("sub", (x, y) => x - y, "exact", shapes),
    binary("mul", (x, y) => x * y, "exact", shapes),
    binary("div", (x, y) => x / y, "rounded", shapes, { positiveRight: true, kinds: "float" }),
    binary("maximum", Math.max, "exact", shapes),
  ]),
  binary("less", (x, y) => (x < y ? 1 : 0), "exact", [[6, 5], [5]]),
  binary("equal", (x, y) => (x === y ? 1 : 0), "exact", [[6, 5], [5]]),
  {
    op: "where",
    label: "",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input("bool", [4, 1, 5], g), input(dtype, [3, 5], g), input(dtype, [4, 3, 1], g)], attrs: {} }),
    oracle: ([c, a, b], _attrs, out) => {
      const [ic, ia, ib] = [broadcastIndex(c!.shape, out), broadcastIndex(a!.shape, out), broadcastIndex(b!.shape, out)];
      return { values: Float64Array.from({ length: size(out) }, (_, i) => (c!.values[ic(i)] ? a!.values[ia(i)]! : b!.values[ib(i)]!)) };
    },
  },
  reduction("sum", [0]),
  reduction("sum", [1]),
  reduction("sum", [0, 1]),
  reduction("max", [0]),
  reduction("max", [0, 1]),
  {
    op: "reshape",
    label: "",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [2, 3, 4], g)], attrs: { shape: [4, 6] } }),
    oracle: ([x]) => ({ values: x!.values }),
  },
  {
    op: "transpose",
    label: " [2, 0, 1]",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [2, 3, 4], g)], attrs: { perm: [2, 0, 1] } }),
    oracle: ([x], _attrs, out) => {
      const values = new Float64Array(24);
      forEachIndex(out, ([l, i, j], flat) => (values[flat] = at(x!.values, x!.shape, [i!, j!, l!])));
      return { values };
    },
  },
  {
    op: "expand",
    label: "",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [3, 1, 4], g)], attrs: { shape: [2, 3, 5, 4] } }),
    oracle: ([x], _attrs, out) => {
      const ix = broadcastIndex(x!.shape, out);
      return { values: Float64Array.from({ length: size(out) }, (_, i) => x!.values[ix(i)]!) };
    },
  },
  matmulCase([7, 33], [33, 5]),
  matmulCase([2, 1, 3, 9], [4, 9, 2]),
  ...(["float64", "float32", "float16", "bfloat16", "int32", "bool"] as DType[]).map(castCase),
  {
    op: "conv2d",
    label: ` groups ${CONV.groups} stride [${CONV.stride}] padding [${CONV.padding}] dilation [${CONV.dilation}]`,
    check: "accumulated",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [2, 4, 7, 6], g), input(dtype, [6, 2, 3, 2], g)], attrs: CONV }),
    oracle: convOracle,
  },
  {
    op: "convTranspose2d",
    label: ` groups ${CONV.groups} stride [${CONV.stride}] padding [${CONV.padding}] dilation [${CONV.dilation}] output padding [1, 0]`,
    check: "accumulated",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [2, 4, 4, 3], g), input(dtype, [4, 3, 3, 2], g)], attrs: { ...CONV, outputPadding: [1, 0] } }),
    oracle: convTransposeOracle,
  },
  poolCase("maxPool2d"),
  poolCase("maxPool2dIndices"),
  poolCase("avgPool2d"),
  {
    op: "gather",
    label: " along axis 1 with a 2-D index",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [4, 5, 3], g), ints([4, 0, 4, 2, 1, 3], [2, 3])], attrs: { axis: 1 } }),
    oracle: ([x, index], _attrs, out) => {
      const values = new Float64Array(size(out));
      forEachIndex(out, ([p, i, j, q], flat) => (values[flat] = at(x!.values, x!.shape, [p!, index!.values[i! * 3 + j!]!, q!])));
      return { values };
    },
  },
  {
    op: "indexAdd",
    label: " along axis 1 with repeated indices",
    check: "accumulated",
    kinds: "numeric",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [4, 5, 3], g), ints([1, 4, 1, 0, 1, 3]), input(dtype, [4, 6, 3], g)], attrs: { axis: 1 } }),
    oracle: ([base, index, updates]) => {
      const values = Float64Array.from(base!.values);
      const magnitude = base!.values.map(Math.abs);
      forEachIndex(updates!.shape, ([p, k, q], flat) => {
        const target = (p! * 5 + index!.values[k!]!) * 3 + q!;
        values[target]! += updates!.values[flat]!;
        magnitude[target]! += Math.abs(updates!.values[flat]!);
      });
      return { values, magnitude, terms: 4 };
    },
  },
  {
    op: "slice",
    label: "",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [4, 6, 5], g)], attrs: { starts: [1, 0, 2], ends: [3, 6, 5] } }),
    oracle: ([x], _attrs, out) => {
      const values = new Float64Array(size(out));
      forEachIndex(out, ([i, j, l], flat) => (values[flat] = at(x!.values, x!.shape, [i! + 1, j!, l! + 2])));
      return { values };
    },
  },
  {
    op: "pad",
    label: "",
    check: "exact",
    inputs: (dtype, g) => ({
      inputs: [input(dtype, [3, 4], g)],
      attrs: { before: [1, 0], after: [2, 3], fill: dtype === "bool" ? 1 : dtype === "uint8" ? 7 : -2 },
    }),
    oracle: ([x], attrs, out) => {
      const values = new Float64Array(size(out)).fill(attrs.fill!);
      forEachIndex(x!.shape, ([i, j], flat) => (values[(i! + 1) * out[1]! + j!] = x!.values[flat]!));
      return { values };
    },
  },
  {
    op: "concat",
    label: " of three along axis 1",
    check: "exact",
    inputs: (dtype, g) => ({ inputs: [input(dtype, [2, 3, 2], g), input(dtype, [2, 1, 2], g), input(dtype, [2, 4, 2], g)], attrs: { axis: 1 } }),
    oracle: (inputs, _attrs, out) => {
      const values = new Float64Array(size(out));
      let offset = 0;
      for (const x of inputs) {
        forEachIndex(x.shape, ([i, j, l], flat) => (values[(i! * out[1]! + offset + j!) * out[2]! + l!] = x.values[flat]!));
        offset += x.shape[1]!;
      }
      return { values };
    },
  },
];
