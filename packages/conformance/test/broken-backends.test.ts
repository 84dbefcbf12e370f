import {
  FLOAT_FORMATS,
  isHalfDType,
  ReferenceBackend,
  Runtime,
  withRuntime,
  type DType,
  type HostArray,
  type Instruction,
  type TypedBuffer,
  type ValueInfo,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { checkDeclaredCapabilities, checkNarrowCasts } from "../src/checks.js";
import { GraphReferenceBackend } from "./graph-backend.js";

/** The reference backend with its 16-bit casts post-processed bit by bit. */
class BrokenCastBackend extends ReferenceBackend {
  constructor(
    override readonly name: string,
    private readonly breakBits: (bits: number, dtype: "float16" | "bfloat16", input: number) => number,
  ) {
    super();
  }

  override execute(ins: Instruction, inputs: readonly object[], infos: readonly ValueInfo[]): TypedBuffer {
    const out = super.execute(ins, inputs, infos);
    if (ins.op !== "cast" || !isHalfDType(ins.dtype) || infos[0]!.dtype !== "float32") return out;
    const source = (inputs[0] as TypedBuffer).data as Float32Array;
    const sourceBits = new Uint32Array(source.buffer, source.byteOffset, source.length);
    const dtype = ins.dtype;
    return { data: (out.data as Uint16Array).map((b, i) => this.breakBits(b, dtype, sourceBits[i]!)) };
  }
}

const isNaNBits = (bits: number, dtype: "float16" | "bfloat16") => Number.isNaN(FLOAT_FORMATS[dtype].fromBits(bits));
const infinity = (dtype: "float16" | "bfloat16", negative: boolean) => (negative ? 0x8000 : 0) | (dtype === "float16" ? 0x7c00 : 0x7f80);

const run = (backend: ConstructorParameters<typeof Runtime>[0], check: () => Promise<void>) => withRuntime(new Runtime(backend), check);

describe("the kit rejects broken backends", () => {
  it("passes the reference and graph-reference backends (the checks can pass)", async () => {
    for (const backend of [new ReferenceBackend(), new GraphReferenceBackend()]) {
      await run(backend, () => checkNarrowCasts("float16"));
      await run(backend, () => checkNarrowCasts("bfloat16"));
      await run(backend, () => checkDeclaredCapabilities(backend.capabilities));
    }
  });

  it("rejects a backend that turns every NaN into Infinity on 16-bit casts (float16 and bfloat16)", async () => {
    const broken = new BrokenCastBackend("nan-to-inf", (bits, dtype) => (isNaNBits(bits, dtype) ? infinity(dtype, (bits & 0x8000) !== 0) : bits));
    await expect(run(broken, () => checkNarrowCasts("float16"))).rejects.toThrow(/float16\(NaN 0x7fc00000\) = 0x7c00 \(Infinity\), which is not a NaN/);
    await expect(run(broken, () => checkNarrowCasts("bfloat16"))).rejects.toThrow(/bfloat16\(NaN 0x7fc00000\) = 0x7f80 \(Infinity\), which is not a NaN/);
  });

  it("rejects a bfloat16 cast that truncates (a NaN with only low payload bits becomes Infinity)", async () => {
    const broken = new BrokenCastBackend("truncating-bf16", (bits, dtype, input) => (dtype === "bfloat16" ? input >>> 16 : bits));
    await expect(run(broken, () => checkNarrowCasts("bfloat16"))).rejects.toThrow(/bfloat16\(NaN 0x7f800001\) = 0x7f80 \(Infinity\), which is not a NaN/);
  });

  it("rejects a 16-bit cast that drops a NaN's sign", async () => {
    const broken = new BrokenCastBackend("unsigned-nan", (bits, dtype) => (isNaNBits(bits, dtype) ? bits & 0x7fff : bits));
    await expect(run(broken, () => checkNarrowCasts("float16"))).rejects.toThrow(/float16\(NaN 0xffc00000\) = 0x7e00 \(NaN\), which lost the NaN's sign/);
  });

  it("rejects a backend that holds every float dtype but keeps its declared float64 as float32", async () => {
    // It holds every float dtype, so the old check (refusing a float dtype it does not hold) returned early.
    class Float32InDisguise extends ReferenceBackend {
      override readonly name = "float64-as-float32";
      override upload(data: HostArray): TypedBuffer {
        // Only float64 has a Float64Array as its host array.
        return data instanceof Float64Array ? { data: Float64Array.from(Float32Array.from(data)) } : super.upload(data);
      }
    }
    const broken = new Float32InDisguise();
    expect(Object.keys(broken.capabilities.storage)).toEqual(expect.arrayContaining(["float64", "float32", "float16", "bfloat16"]));
    await expect(run(broken, () => checkDeclaredCapabilities(broken.capabilities))).rejects.toThrow(
      /float64 value 0\.1 came back as 0\.10000000149011612: the backend declares float64 storage but does not keep it/,
    );
  });

  it("rejects a backend that declares int32 storage but keeps int32 in float32 (as the custom-backend example did)", async () => {
    class Int32AsFloat32 extends GraphReferenceBackend {
      override upload(data: HostArray, dtype: DType): TypedBuffer {
        return dtype === "int32" ? { data: Int32Array.from(Float32Array.from(data)) } : super.upload(data, dtype);
      }
    }
    const broken = new Int32AsFloat32();
    await expect(run(broken, () => checkDeclaredCapabilities(broken.capabilities))).rejects.toThrow(/int32 value 2147483647 came back as -2147483648/);
  });
});
