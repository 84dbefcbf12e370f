import { Generator, roundScalar, type FloatDType } from "@nbit/core";

/** Random values already representable in `dtype`, so the reference sees exactly the backend's inputs. */
export function randomValues(n: number, dtype: FloatDType, g: Generator, scale = 1, positive = false): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = g.normal() * scale;
    out[i] = roundScalar(positive ? Math.abs(v) + 0.1 : v, dtype);
  }
  return out;
}

export function broadcastIndex(shape: readonly number[], outShape: readonly number[]): (i: number) => number {
  const rank = outShape.length;
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const o = rank - shape.length + d;
    strides[o] = shape[d] === 1 ? 0 : stride;
    stride *= shape[d]!;
  }
  return (i) => {
    let idx = 0;
    for (let d = rank - 1; d >= 0; d--) {
      const size = outShape[d]!;
      idx += (i % size) * strides[d]!;
      i = Math.floor(i / size);
    }
    return idx;
  };
}

export function matmulReference(a: Float64Array, b: Float64Array, m: number, k: number, n: number): { value: Float64Array; magnitude: Float64Array } {
  const value = new Float64Array(m * n);
  const magnitude = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        const t = a[i * k + p]! * b[p * n + j]!;
        s += t;
        mag += Math.abs(t);
      }
      value[i * n + j] = s;
      magnitude[i * n + j] = mag;
    }
  return { value, magnitude };
}
