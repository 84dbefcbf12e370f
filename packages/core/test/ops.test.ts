import { describe, expect, it } from "vitest";
import {
  apply,
  attrKey,
  conv2d,
  FLOAT_FORMATS,
  Generator,
  KernelRegistry,
  NbitError,
  OPS,
  PRIMITIVE_OPS,
  ReferenceBackend,
  referenceKernels,
  ROUNDED_FLOAT_DTYPES,
  roundToFormat,
  Runtime,
  tensor,
  transposeShape,
  UnsupportedOpError,
  type Backend,
  type HostKernel,
  type Program,
} from "../src/index.js";

/** The reference kernels without some ops, counting what reaches the engine. */
function backendWithout(ops: readonly string[], execution: "eager" | "graph") {
  const kernels = new KernelRegistry<HostKernel>("no-conv", referenceKernels());
  for (const op of ops) kernels.unregister(op as never);
  const calls = { execute: 0, compile: 0 };
  const inner = new ReferenceBackend();
  const backend: Backend = {
    name: "no-conv",
    capabilities: kernels.capabilities(execution, { float64: "native", float32: "native", int32: "native", bool: "native" }),
    upload: (data) => inner.upload(data),
    download: (buffer) => inner.download(buffer),
    ...(execution === "eager"
      ? { execute: (ins, inputs, infos) => (calls.execute++, inner.execute(ins, inputs, infos)) }
      : { compile: (_program: Program) => (calls.compile++, { run: async () => [] }) }),
  };
  return { backend, calls };
}

describe("the op table", () => {
  it("has one row per primitive, and each row names the attributes it takes", () => {
    expect(Object.keys(OPS).sort()).toEqual([...PRIMITIVE_OPS].sort());
    expect(OPS.conv2d.attrs).toEqual(["stride", "padding", "dilation", "groups"]);
    expect(OPS.gather.exact).toBe(true);
    expect(OPS.avgPool2d.exact).toBe(false);
  });

  it("derives the attribute part of the program key from the row", () => {
    const at = { stride: [2, 1], padding: [1, 0], dilation: [1, 1], groups: 2 } as const;
    expect(attrKey("conv2d", at)).toBe("|2,1|1,0|1,1|2");
    expect(attrKey("conv2d", { ...at, stride: [1, 2] })).not.toBe(attrKey("conv2d", at));
    expect(attrKey("pad", { before: [0], after: [1], fill: -0 })).not.toBe(attrKey("pad", { before: [0], after: [1], fill: 0 }));
    // Attributes an op does not take never enter its key.
    expect(attrKey("add", { axes: [1] })).toBe("");
  });

  it("checks shapes and attributes when an op is recorded, before anything runs", () => {
    const x = tensor(new Float32Array(2 * 3 * 5 * 5), [2, 3, 5, 5]);
    expect(() => conv2d(x, tensor(new Float32Array(4 * 2 * 3 * 3), [4, 2, 3, 3]))).toThrow(/conv2d: with groups=1, the input's 3 channels/);
    expect(() => conv2d(x, tensor(new Float32Array(4 * 3 * 7 * 7), [4, 3, 7, 7]))).toThrow(/does not fit an input of 5/);
    expect(() => apply("slice", [x], { starts: [0, 0, 0, 0], ends: [2, 4, 5, 5] })).toThrow(/range 0:4 is outside axis 1 of size 3/);
    expect(() => apply("gather", [x, tensor([0], [1], "float32")], { axis: 0 })).toThrow(/indices must be int32/);
    expect(() => apply("concat", [x, tensor([1], [1])], { axis: 0 })).toThrow(NbitError);
  });
});

describe("declared kernels", () => {
  it("derives capabilities from what a backend registered, so they cannot drift", () => {
    const kernels = new KernelRegistry<HostKernel>("partial", referenceKernels(["float32"], ["float32", "int32", "bool"]));
    kernels.unregister("conv2d").unregister("exp", ["float32"]);
    const caps = kernels.capabilities("eager", { float32: "native" });
    expect(caps.ops.conv2d).toBeUndefined();
    expect(caps.ops.exp).toBeUndefined();
    expect(caps.ops.matmul).toEqual(["float32"]);
    expect(() => kernels.get("conv2d", "float32")).toThrow('Backend "partial" cannot run op "conv2d" in float32. It runs "conv2d" in: (no dtype).');
    expect(() => kernels.register({ op: "im2col" as never, dtypes: ["float32"], kernel: () => new Float32Array() })).toThrow(/not a primitive/);
  });

  for (const execution of ["eager", "graph"] as const)
    it(`rejects a program that needs a kernel the backend lacks when it is lowered (${execution})`, async () => {
      const { backend, calls } = backendWithout(["conv2d"], execution);
      const g = new Generator(1);
      const x = tensor(
        Float32Array.from({ length: 75 }, () => g.normal()),
        [1, 3, 5, 5],
      );
      const w = tensor(
        Float32Array.from({ length: 54 }, () => g.normal()),
        [2, 3, 3, 3],
      );
      const y = conv2d(x, w).relu().sum();
      const failure = await new Runtime(backend).run(() => y.data()).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(UnsupportedOpError);
      expect(failure).toMatchObject({ backend: "no-conv", op: "conv2d", dtype: "float32" });
      // Nothing of the program reached the engine.
      expect(calls).toEqual({ execute: 0, compile: 0 });
    });
});

describe("the float-format table", () => {
  for (const dtype of ROUNDED_FLOAT_DTYPES) {
    const format = FLOAT_FORMATS[dtype];
    it(`${dtype}: widths give the largest value, epsilon and the rounding of the fast codec`, () => {
      const biggest = (2 - 2 ** -format.mantissaBits) * 2 ** (2 ** (format.exponentBits - 1) - 1);
      expect(format.maxFinite).toBe(biggest);
      expect(format.epsilon).toBe(2 ** -(format.mantissaBits + 1));
      const g = new Generator(7);
      const values = [
        0,
        -0,
        Infinity,
        -Infinity,
        format.maxFinite,
        format.maxFinite * (1 + format.epsilon),
        2 ** (format.minExponent - format.mantissaBits - 1),
      ];
      for (let i = 0; i < 20_000; i++) values.push((g.random() - 0.5) * 2 ** (g.int(80) - 40));
      const fast = format.decode(format.encode(Float32Array.from(values)));
      values.forEach((v, i) => expect(Object.is(fast[i], roundToFormat(v, format)), `${dtype}(${v})`).toBe(true));
    });
  }
});

describe("transposeShape", () => {
  it("permutes the shape and rejects what is not a permutation of the axes", () => {
    expect(transposeShape([2, 3, 4], [2, 0, 1])).toEqual([4, 2, 3]);
    for (const perm of [
      [0, 0, 1],
      [0, 1],
      [0, 1, 3],
      [0, 1, -1],
      [0, 1.5, 2],
      [1, 1, 1],
    ])
      expect(() => transposeShape([2, 3, 4], perm)).toThrow(/not a permutation/);
  });

  it("checks ranks above 30 too", () => {
    const shape = Array.from({ length: 33 }, (_, i) => i + 1);
    const reversed = shape.map((_, i) => 32 - i);
    expect(transposeShape(shape, reversed)).toEqual([...shape].reverse());
    expect(() => transposeShape(shape, [...reversed.slice(0, 32), 31])).toThrow(/not a permutation/);
  });
});
