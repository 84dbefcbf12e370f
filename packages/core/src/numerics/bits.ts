const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

export function float32ToBits(value: number): number {
  scratchF32[0] = value;
  return scratchU32[0]!;
}

export function bitsToFloat32(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}
