import { describe, expect, it } from "vitest";
import { TensorDataset, type DType, type HostArray } from "../src/index.js";

const bytesOf = (a: HostArray) => [...new Uint8Array(a.buffer, a.byteOffset, a.byteLength)];

describe("TensorDataset.batch", () => {
  const nan32 = new Float32Array(new Uint32Array([0x7fc00001]).buffer)[0]!;
  const cases: [DType, number[]][] = [
    ["float32", [1.5, -0, nan32, 3]],
    ["float64", [1.5, -0, Number.NaN, 3]],
    ["float16", [1.5, -0, 2, 3]],
    ["int8", [1, -2, 3, -4]],
    ["int32", [1, -2, 3, -4]],
  ];
  for (const [dtype, values] of cases)
    it(`copies ${dtype} samples bit for bit, small and large samples`, () => {
      for (const sampleSize of [2, 600]) {
        const samples = 5;
        const data = Array.from({ length: samples * sampleSize }, (_, i) => values[i % values.length]!);
        const dataset = new TensorDataset({ data, sampleShape: [sampleSize], dtype });
        const whole = dataset.batch([0, 1, 2, 3, 4])[0]!.node.host!;
        const indices = [3, 0, 3, 4];
        const [batch] = dataset.batch(indices);
        expect(batch!.shape).toEqual([indices.length, sampleSize]);
        const expected = indices.flatMap((s) => bytesOf(whole.subarray(s * sampleSize, (s + 1) * sampleSize)));
        expect(bytesOf(batch!.node.host!)).toEqual(expected);
      }
    });

  // A signaling NaN turns quiet when read as a number: the copy must move bits, not values.
  it("keeps a signaling NaN's bits", () => {
    const dataset = new TensorDataset({ data: new Float32Array(new Uint32Array([0x7f800001, 0x3f800000]).buffer), sampleShape: [1] });
    const host = dataset.batch([1, 0])[0]!.node.host!;
    expect([...new Uint32Array(host.buffer, host.byteOffset, 2)]).toEqual([0x3f800000, 0x7f800001]);
  });
});
