import { describe, expect, it } from "vitest";
import {
  bfloat16ArrayToFloat32,
  float16ArrayToFloat32,
  float16BitsToFloat32Bits,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  float32BitsToBfloat16Bits,
  float32BitsToFloat16Bits,
  fromFloat16Bits,
  roundFloat32ArrayToBfloat16,
  roundFloat32ArrayToFloat16,
  roundToBfloat16,
  roundToFloat16,
  toBfloat16Bits,
  toFloat16Bits,
  Generator,
} from "../src/index.js";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (v: number) => ((f32[0] = v), u32[0]!);
const valueOf = (bits: number) => ((u32[0] = bits >>> 0), f32[0]!);

/** Collects mismatches instead of asserting per element, so exhaustive loops stay fast. */
function mismatches() {
  const found: string[] = [];
  return {
    check(got: number, want: number, what: () => string) {
      if (got !== want && found.length < 10) found.push(`${what()}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`);
    },
    assertNone() {
      expect(found).toEqual([]);
    },
  };
}

/** Every finite non-negative float16 value, computed from the format's definition in float64. */
const HALF_VALUES = (() => {
  const values: { value: number; bits: number }[] = [];
  for (let e = 0; e < 31; e++)
    for (let m = 0; m < 1024; m++) values.push({ bits: (e << 10) | m, value: e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15) });
  return values;
})();

/** Reference float16 rounding: nearest of the enumerated values, ties to the even mantissa. */
function referenceHalfBits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = HALF_VALUES.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (HALF_VALUES[mid]!.value <= a) lo = mid;
    else hi = mid - 1;
  }
  const below = HALF_VALUES[lo]!;
  const above = HALF_VALUES[lo + 1] ?? { value: 65536, bits: 0x7c00 };
  const dBelow = a - below.value;
  const dAbove = above.value - a;
  const pick = dBelow < dAbove ? below : dAbove < dBelow ? above : (below.bits & 1) === 0 ? below : above;
  return sign | pick.bits;
}

/** Reference bfloat16 rounding from the two neighbouring bfloat16 values, compared in float64. */
function referenceBfloatBits(v: number): number {
  const x = bitsOf(v);
  if ((x & 0x7fffffff) > 0x7f800000) return -1; // NaN: checked separately
  const sign = x & 0x80000000 ? 0x8000 : 0;
  const a = Math.abs(v);
  const lowBits = (x & 0x7fff0000) >>> 16;
  const below = valueOf(lowBits << 16);
  const above = lowBits + 1 >= 0x7f80 ? 2 ** 128 : valueOf((lowBits + 1) << 16);
  if (a === Infinity) return sign | 0x7f80;
  const dBelow = a - below;
  const dAbove = above - a;
  const pickBelow = dBelow < dAbove || (dBelow === dAbove && (lowBits & 1) === 0);
  return sign | (pickBelow ? lowBits : lowBits + 1);
}

describe("float16", () => {
  it("round-trips all 65536 bit patterns exactly (NaN stays NaN)", () => {
    const m = mismatches();
    let checked = 0;
    for (let h = 0; h < 65536; h++) {
      const back = float32BitsToFloat16Bits(float16BitsToFloat32Bits(h));
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) m.check(Number.isNaN(fromFloat16Bits(h)) ? 1 : 0, 1, () => `NaN 0x${h.toString(16)}`);
      else m.check(back, h, () => `0x${h.toString(16)}`);
      checked++;
    }
    m.assertNone();
    expect(checked).toBe(65536);
  });

  it("decodes every finite value as the format defines it", () => {
    const m = mismatches();
    for (const { bits, value } of HALF_VALUES) {
      m.check(fromFloat16Bits(bits), value, () => `0x${bits.toString(16)}`);
      m.check(fromFloat16Bits(bits | 0x8000), -value, () => `-0x${bits.toString(16)}`);
    }
    m.assertNone();
  });

  it("rounds ties to even at every midpoint between neighbours, and just off each midpoint", () => {
    const m = mismatches();
    for (let i = 0; i + 1 < HALF_VALUES.length; i++) {
      const mid = (HALF_VALUES[i]!.value + HALF_VALUES[i + 1]!.value) / 2;
      for (const v of [mid, valueOf(bitsOf(mid) - 1), valueOf(bitsOf(mid) + 1)]) {
        m.check(float32BitsToFloat16Bits(bitsOf(v)), referenceHalfBits(v), () => `${v}`);
        m.check(float32BitsToFloat16Bits(bitsOf(-v)), referenceHalfBits(-v), () => `${-v}`);
      }
    }
    m.assertNone();
  });

  it("handles overflow, subnormals, signed zero and NaN", () => {
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(65519.99)).toBe(0x7bff);
    expect(toFloat16Bits(65520)).toBe(0x7c00);
    expect(toFloat16Bits(-65520)).toBe(0xfc00);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(Infinity)).toBe(0x7c00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(toFloat16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal: even is 0
    expect(toFloat16Bits(valueOf(bitsOf(2 ** -25) + 1))).toBe(0x0001);
    expect(toFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 units: even is 2
    expect(toFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the smallest normal
    expect(toFloat16Bits(-0)).toBe(0x8000);
    expect(toFloat16Bits(-(2 ** -30))).toBe(0x8000);
    expect(Number.isNaN(roundToFloat16(NaN))).toBe(true);
    expect(toFloat16Bits(NaN) & 0x7e00).toBe(0x7e00);
    expect(Object.is(roundToFloat16(-0), -0)).toBe(true);
  });

  it("matches the reference on random float32 values across the whole range", () => {
    const g = new Generator(42);
    const m = mismatches();
    for (let i = 0; i < 200_000; i++) {
      const v = valueOf(g.nextUint32());
      const got = float32BitsToFloat16Bits(bitsOf(v));
      if (Number.isNaN(v)) m.check(got & 0x7e00, 0x7e00, () => "NaN");
      else m.check(got, referenceHalfBits(v), () => `${v}`);
    }
    // Values near float16's range, where random bit patterns rarely land.
    for (let i = 0; i < 200_000; i++) {
      const v = Math.fround((g.random() - 0.5) * 2 ** (g.int(48) - 28));
      m.check(float32BitsToFloat16Bits(bitsOf(v)), referenceHalfBits(v), () => `${v}`);
    }
    m.assertNone();
  });

  it("bulk conversions agree with the scalar ones", () => {
    const g = new Generator(7);
    const src = new Float32Array(10_000).map(() => (g.random() - 0.5) * 2 ** (g.int(40) - 20));
    src[0] = NaN;
    src[1] = -0;
    src[2] = 70000;
    const bits = float32ArrayToFloat16(src);
    bits.forEach((b, i) => expect(b).toBe(toFloat16Bits(src[i]!)));
    const decoded = float16ArrayToFloat32(bits);
    const rounded = roundFloat32ArrayToFloat16(Float32Array.from(src));
    decoded.forEach((d, i) => expect(Object.is(d, rounded[i]) || (Number.isNaN(d) && Number.isNaN(rounded[i]!))).toBe(true));
  });
});

describe("bfloat16", () => {
  it("round-trips all 65536 bit patterns exactly (NaN stays NaN)", () => {
    const m = mismatches();
    for (let b = 0; b < 65536; b++) {
      const v = valueOf(b << 16);
      if (Number.isNaN(v)) m.check(Number.isNaN(roundToBfloat16(v)) ? 1 : 0, 1, () => `NaN 0x${b.toString(16)}`);
      else m.check(toBfloat16Bits(v), b, () => `0x${b.toString(16)}`);
    }
    m.assertNone();
  });

  it("rounds ties to even at midpoints and just off them", () => {
    const g = new Generator(5);
    const m = mismatches();
    for (let i = 0; i < 100_000; i++) {
      const base = g.nextUint32() & 0xffff0000;
      for (const x of [base | 0x8000, (base | 0x8000) - 1, (base | 0x8000) + 1, base | g.int(0x10000)]) {
        const v = valueOf(x);
        if (Number.isNaN(v)) continue;
        m.check(float32BitsToBfloat16Bits(x >>> 0), referenceBfloatBits(v), () => `${v}`);
      }
    }
    m.assertNone();
  });

  it("handles overflow, subnormals, signed zero and NaN", () => {
    const maxFloat = valueOf(0x7f7fffff);
    expect(toBfloat16Bits(maxFloat)).toBe(0x7f80); // rounds up past the largest bfloat16
    expect(toBfloat16Bits(valueOf(0x7f7f7fff))).toBe(0x7f7f);
    expect(toBfloat16Bits(valueOf(0x7f7f8000))).toBe(0x7f80); // tie, odd below: up to Infinity
    expect(toBfloat16Bits(valueOf(0x00008000))).toBe(0x0000); // subnormal tie to even
    expect(toBfloat16Bits(valueOf(0x00018000))).toBe(0x0002);
    expect(toBfloat16Bits(-0)).toBe(0x8000);
    expect(toBfloat16Bits(-Infinity)).toBe(0xff80);
    expect(Number.isNaN(roundToBfloat16(NaN))).toBe(true);
    expect(float32BitsToBfloat16Bits(0xff800001) & 0xffc0).toBe(0xffc0); // NaN keeps its sign, made quiet
    expect(roundToBfloat16(1 + 2 ** -8)).toBe(1); // tie to even
    expect(roundToBfloat16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
  });

  it("bulk conversions agree with the scalar ones", () => {
    const g = new Generator(9);
    const src = new Float32Array(10_000).map(() => valueOf(g.nextUint32()));
    const bits = float32ArrayToBfloat16(src);
    const rounded = roundFloat32ArrayToBfloat16(Float32Array.from(src));
    const decoded = bfloat16ArrayToFloat32(bits);
    src.forEach((v, i) => {
      if (Number.isNaN(v)) {
        expect(Number.isNaN(decoded[i]!) && Number.isNaN(rounded[i]!)).toBe(true);
        return;
      }
      expect(bits[i]).toBe(toBfloat16Bits(v));
      expect(Object.is(decoded[i], rounded[i])).toBe(true);
    });
  });
});
