import {
  apply,
  DTYPE_INFO,
  DTYPES,
  FLOAT_FORMATS,
  Generator,
  isFloatDType,
  isHalfDType,
  numbersToHost,
  OPS,
  PRIMITIVE_OPS,
  roundScalar,
  roundToFormat,
  tensor,
  Tensor,
  UnsupportedOpError,
  type BackendCapabilities,
  type DType,
  type FloatDType,
  type HostArray,
  type RoundedFloatDType,
} from "@nbit/core";
import { expect } from "vitest";
import { OP_CASES } from "./op-cases.js";

/*
 * Checks of the kit that are more than a comparison with an oracle, as functions: the suite runs
 * them on the backend under test (the current runtime), and the kit's own tests run them on
 * deliberately broken backends, which they must reject.
 */

const FLOATS: FloatDType[] = ["float64", "float32", "float16", "bfloat16"];

/** float32 bit patterns: quiet and signalling NaNs with payloads, of both signs. */
const NAN_BITS = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7f802000, 0x7fbfffff, 0x7fc00001];

function float32Inputs(): Float32Array {
  const edge = [
    1,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    1 + 2 ** -10,
    65504,
    65519.99,
    65520,
    70000,
    -65520,
    2 ** -24,
    2 ** -25,
    3 * 2 ** -25,
    2 ** -14 - 2 ** -25,
    1e-8,
    -0,
    0,
    Infinity,
    -Infinity,
    3.4028234663852886e38,
    1.1754943508222875e-38,
    1e-40,
    -1e-45,
    0.1,
    -0.3,
    3.14159,
    123456.789,
    -2.5e-6,
  ];
  const g = new Generator(99);
  const random = Array.from({ length: 4096 }, () => (g.random() - 0.5) * 2 ** (g.int(60) - 30));
  const inputs = new Float32Array(NAN_BITS.length + edge.length + random.length);
  // NaNs are written as bits: going through a JavaScript number may quieten them.
  new Uint32Array(inputs.buffer, 0, NAN_BITS.length).set(NAN_BITS);
  inputs.set([...edge, ...random], NAN_BITS.length);
  return inputs;
}

/**
 * float32 -> `dtype` casts round to nearest even, bit for bit, and every NaN stays a NaN of the same
 * sign (a NaN whose payload sits in the low mantissa bits must not become Infinity).
 */
export async function checkNarrowCasts(dtype: RoundedFloatDType): Promise<void> {
  const format = FLOAT_FORMATS[dtype];
  const inputs = float32Inputs();
  const inputBits = new Uint32Array(inputs.buffer);
  const bits = (await Tensor.fromHost(inputs, [inputs.length], "float32").cast(dtype).toHost()) as Uint16Array;
  const want = format.encode(inputs);
  const signBit = 1 << (format.exponentBits + format.mantissaBits);
  for (let i = 0; i < inputs.length; i++) {
    const got = format.fromBits(bits[i]!);
    const hex = `0x${bits[i]!.toString(16)}`;
    if (Number.isNaN(inputs[i]!)) {
      const what = `${dtype}(NaN 0x${inputBits[i]!.toString(16)}) = ${hex} (${got})`;
      if (!Number.isNaN(got)) expect.fail(`${what}, which is not a NaN`);
      if ((bits[i]! & signBit) !== (want[i]! & signBit)) expect.fail(`${what}, which lost the NaN's sign`);
    } else if (bits[i] !== want[i] || !Object.is(got, roundToFormat(inputs[i]!, format)))
      expect.fail(`${dtype}(${inputs[i]}) = ${hex}, expected 0x${want[i]!.toString(16)}`);
  }
}

/** Values every `dtype` can hold, edges included. */
function storageValues(dtype: DType): number[] {
  switch (dtype) {
    case "bool":
      return [0, 1, 1, 0];
    case "uint8":
      return [0, 1, 127, 128, 255, 7];
    case "int8":
      return [-128, -1, 0, 1, 127, 42];
    case "int32":
      return [-(2 ** 31), -1, 0, 1, 2 ** 31 - 1, 65537];
    default: {
      const info = DTYPE_INFO[dtype];
      const tiny = dtype === "float64" ? 5e-324 : dtype === "float32" ? 1e-45 : dtype === "float16" ? 2 ** -24 : 1e-40;
      const max = dtype === "float64" ? Number.MAX_VALUE : isHalfDType(dtype) ? FLOAT_FORMATS[dtype].maxFinite : 3.4028234663852886e38;
      return [0, -0, 1, -2.5, 0.1, 1 + 2 * info.epsilon, tiny, -tiny, max, -max, Infinity, -Infinity, Number.NaN].map((v) => roundScalar(v, dtype));
    }
  }
}

const bytesOf = (a: HostArray) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Whether the backend runs `op` on operand `dtype`, natively or as core's float32 lowering of a narrow float. */
const runs = (caps: BackendCapabilities, op: (typeof PRIMITIVE_OPS)[number], dtype: DType) =>
  (caps.ops[op] ?? []).includes(dtype) || (isHalfDType(dtype) && caps.storage[dtype] !== undefined && (caps.ops[op] ?? []).includes("float32"));

/**
 * The declared capabilities are true in both directions. Every dtype it declares it holds goes
 * through the backend (a reshape it runs) and comes back bit for bit, edges included; and what it
 * does not declare (a float dtype it does not hold, or else an op it registers no kernel for on a
 * dtype it holds) is refused with an UnsupportedOpError before anything runs.
 */
export async function checkDeclaredCapabilities(caps: BackendCapabilities): Promise<void> {
  for (const dtype of DTYPES) {
    if (caps.storage[dtype] === undefined || !runs(caps, "reshape", dtype)) continue;
    const values = storageValues(dtype);
    const sent = numbersToHost(values, dtype);
    const back = await Tensor.fromHost(sent, [values.length], dtype).reshape([values.length, 1]).toHost();
    expect(back.constructor, `${dtype} comes back in its host array type`).toBe(sent.constructor);
    const [a, b] = [bytesOf(sent), bytesOf(back)];
    const width = a.length / values.length;
    for (let i = 0; i < values.length; i++) {
      // NaN payloads may change; NaN must stay NaN.
      if (isFloatDType(dtype) && Number.isNaN(values[i]!)) {
        const got = isHalfDType(dtype) ? FLOAT_FORMATS[dtype].fromBits((back as Uint16Array)[i]!) : back[i]!;
        if (!Number.isNaN(got)) expect.fail(`${dtype} NaN came back as ${got}`);
        continue;
      }
      for (let k = i * width; k < (i + 1) * width; k++)
        if (a[k] !== b[k])
          expect.fail(
            `${dtype} value ${Object.is(values[i], -0) ? "-0" : values[i]} came back as ${Object.is(back[i], -0) ? "-0" : back[i]}: the backend declares ${dtype} storage but does not keep it`,
          );
    }
  }

  const missing = FLOATS.find((d) => caps.storage[d] === undefined);
  if (missing) {
    await expect(tensor([1, 2], [2], missing).add(1).data(), `${missing}, which it does not hold`).rejects.toThrow(UnsupportedOpError);
    return;
  }
  for (const op of PRIMITIVE_OPS)
    for (const dtype of DTYPES) {
      const row = OPS[op];
      if (
        caps.storage[dtype] === undefined ||
        runs(caps, op, dtype) ||
        (row.accepts === "float" && !isFloatDType(dtype)) ||
        (row.accepts === "numeric" && dtype === "bool")
      )
        continue;
      const c = OP_CASES.find((k) => k.op === op && !(k.kinds === "float" && !isFloatDType(dtype)) && !(k.kinds === "numeric" && dtype === "bool"));
      if (!c) continue;
      const { inputs, attrs } = c.inputs(dtype, new Generator(1));
      if (inputs.some((i) => caps.storage[i.dtype] === undefined)) continue;
      const out = apply(
        op,
        inputs.map((i) => tensor(i.values, i.shape, i.dtype)),
        attrs,
      );
      await expect(out.data(), `${op} in ${dtype}, which it registers no kernel for`).rejects.toThrow(UnsupportedOpError);
      return;
    }
}
