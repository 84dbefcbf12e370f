import { NbitError } from "../errors.js";
import { Tensor } from "../engine/tensor.js";
import type { Parameter } from "../nn/module.js";
import { checkAdamHyperparameters, type AdamOptions } from "./adam.js";
import { Optimizer, type ParamUpdate } from "./optimizer.js";

/**
 * bitsandbytes' dynamic quantization map: 256 sorted values in [-1, 1] (signed) or [0, 1]
 * (unsigned), dense near zero, sparse near one (create_dynamic_map with 7 exponent bits).
 */
export function dynamicMap(signed: boolean): Float32Array {
  const data: number[] = [];
  const nonSignBits = 7;
  const maxExponentBits = 7;
  for (let i = 0; i < maxExponentBits; i++) {
    const items = signed ? 2 ** (i + nonSignBits - maxExponentBits) + 1 : 2 ** (i + nonSignBits - maxExponentBits + 1) + 1;
    const scale = 10 ** (-(maxExponentBits - 1) + i);
    for (let k = 0; k + 1 < items; k++) {
      const a = 0.1 + (0.9 * k) / (items - 1);
      const b = 0.1 + (0.9 * (k + 1)) / (items - 1);
      data.push(scale * ((a + b) / 2));
      if (signed) data.push(-scale * ((a + b) / 2));
    }
  }
  data.push(0, 1);
  while (data.length < 256) data.push(0);
  return Float32Array.from(data.sort((x, y) => x - y));
}

/** Index of the map value nearest to `x` (binary search over the sorted map). */
function nearest(map: Float32Array, x: number): number {
  let lo = 0;
  let hi = map.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (map[mid]! <= x) lo = mid;
    else hi = mid;
  }
  return x - map[lo]! <= map[hi]! - x ? lo : hi;
}

export const BLOCK_SIZE = 2048;
/** Parameters smaller than this keep 32-bit state, as bitsandbytes' min_8bit_size. */
export const MIN_8BIT_SIZE = 4096;

/** Block-wise quantization: one float32 absmax per block of 2048 values, one byte per value. */
export function quantizeBlockwise(values: Float32Array, map: Float32Array, codes: Uint8Array, absmax: Float32Array): void {
  for (let b = 0; b < absmax.length; b++) {
    const start = b * BLOCK_SIZE;
    const end = Math.min(start + BLOCK_SIZE, values.length);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(values[i]!));
    absmax[b] = m;
    const inv = m > 0 ? 1 / m : 0;
    for (let i = start; i < end; i++) codes[i] = nearest(map, values[i]! * inv);
  }
}

export function dequantizeBlockwise(codes: Uint8Array, absmax: Float32Array, map: Float32Array, out: Float32Array): Float32Array {
  for (let i = 0; i < codes.length; i++) out[i] = map[codes[i]!]! * absmax[Math.floor(i / BLOCK_SIZE)]!;
  return out;
}

const SIGNED = dynamicMap(true);
const UNSIGNED = dynamicMap(false);

/**
 * Adam with 8-bit state, after bitsandbytes' Adam8bit: both moments are stored as uint8 codes
 * with block-wise dynamic quantization (blocks of 2048, a float32 absmax per block, the signed map
 * for the first moment, the unsigned map for the second); parameters under 4096 values keep
 * float32 state. The update runs on the host, after the gradients are computed, on float32
 * parameters (32-true, bf16-mixed, 16-mixed).
 */
export class Adam8bit extends Optimizer<AdamOptions> {
  override readonly updatesOnHost = true;
  protected readonly decoupled: boolean = false;

  constructor(params: ConstructorParameters<typeof Optimizer<AdamOptions>>[0], options: Partial<AdamOptions> = {}, defaultWeightDecay = 0) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: defaultWeightDecay, ...options }, checkAdamHyperparameters);
  }

  protected initState(param: Parameter): Record<string, Tensor> {
    if (param.dtype !== "float32")
      throw new NbitError("UNSUPPORTED_DTYPE", `${this.constructor.name} updates float32 parameters; got ${param.dtype} (use 32-true or a mixed precision)`);
    const n = param.size;
    if (n < MIN_8BIT_SIZE)
      return { expAvg: Tensor.fromHost(new Float32Array(n), param.shape, "float32"), expAvgSq: Tensor.fromHost(new Float32Array(n), param.shape, "float32") };
    const blocks = Math.ceil(n / BLOCK_SIZE);
    // Zero state: every code points at the map's 0 entry.
    const zeroSigned = SIGNED.indexOf(0);
    const zeroUnsigned = UNSIGNED.indexOf(0);
    return {
      state1: Tensor.fromHost(new Uint8Array(n).fill(zeroSigned), param.shape, "uint8"),
      absmax1: Tensor.fromHost(new Float32Array(blocks), [blocks], "float32"),
      state2: Tensor.fromHost(new Uint8Array(n).fill(zeroUnsigned), param.shape, "uint8"),
      absmax2: Tensor.fromHost(new Float32Array(blocks), [blocks], "float32"),
    };
  }

  protected update(): ParamUpdate {
    throw new NbitError("INTERNAL", "Adam8bit updates on the host; call hostStep()");
  }

  override async hostStep(): Promise<void> {
    for (const group of this.paramGroups) {
      const [beta1, beta2] = group.betas;
      for (const p of group.params) {
        if (!p.grad) continue;
        const state = this.state.get(p) ?? this.initState(p);
        const step = (this.steps.get(p) ?? 0) + 1;
        const g = Float32Array.from(await p.grad.data());
        const w = Float32Array.from(await p.data());
        const n = w.length;
        const quantized = "state1" in state;
        const m = quantized
          ? dequantizeBlockwise((await state.state1!.toHost()) as Uint8Array, (await state.absmax1!.toHost()) as Float32Array, SIGNED, new Float32Array(n))
          : Float32Array.from(await state.expAvg!.data());
        const v = quantized
          ? dequantizeBlockwise((await state.state2!.toHost()) as Uint8Array, (await state.absmax2!.toHost()) as Float32Array, UNSIGNED, new Float32Array(n))
          : Float32Array.from(await state.expAvgSq!.data());
        const bc1 = 1 - beta1 ** step;
        const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
        const decay = this.decoupled ? 1 - group.lr * group.weightDecay : 1;
        for (let i = 0; i < n; i++) {
          const gi = this.decoupled ? g[i]! : g[i]! + group.weightDecay * w[i]!;
          m[i] = beta1 * m[i]! + (1 - beta1) * gi;
          v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
          w[i] = w[i]! * decay - (group.lr / bc1) * (m[i]! / (Math.sqrt(v[i]!) / bc2Sqrt + group.eps));
        }
        let next: Record<string, Tensor>;
        if (quantized) {
          const blocks = Math.ceil(n / BLOCK_SIZE);
          const [c1, a1, c2, a2] = [new Uint8Array(n), new Float32Array(blocks), new Uint8Array(n), new Float32Array(blocks)];
          quantizeBlockwise(m, SIGNED, c1, a1);
          quantizeBlockwise(v, UNSIGNED, c2, a2);
          next = {
            state1: Tensor.fromHost(c1, p.shape, "uint8"),
            absmax1: Tensor.fromHost(a1, [blocks], "float32"),
            state2: Tensor.fromHost(c2, p.shape, "uint8"),
            absmax2: Tensor.fromHost(a2, [blocks], "float32"),
          };
        } else next = { expAvg: Tensor.fromHost(m, p.shape, "float32"), expAvgSq: Tensor.fromHost(v, p.shape, "float32") };
        this.state.set(p, next);
        this.steps.set(p, step);
        p.assign(Tensor.fromHost(w, p.shape, "float32"));
      }
    }
  }
}

/** AdamW8bit: Adam8bit with decoupled weight decay (0.01 by default). */
export class AdamW8bit extends Adam8bit {
  protected override readonly decoupled: boolean = true;

  constructor(params: ConstructorParameters<typeof Optimizer<AdamOptions>>[0], options: Partial<AdamOptions> = {}) {
    super(params, options, 0.01);
  }
}
