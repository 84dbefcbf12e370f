import {
  CANONICAL_PRECISIONS,
  DTYPE_INFO,
  GradScaler,
  Generator,
  Linear,
  MixedPrecision,
  PRECISION_INFO,
  ReLU,
  ReferenceBackend,
  Runtime,
  SGD,
  Sequential,
  Tensor,
  UnsupportedPrecisionError,
  UnsupportedOpError,
  autocast,
  crossEntropy,
  dtypesOfPrecision,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  isHalfDType,
  layerNorm,
  linear,
  manualSeed,
  mseLoss,
  precisionPluginFor,
  realize,
  resolvePrecision,
  roundScalar,
  setDefaultRuntime,
  tensor,
  where,
  type Accelerator,
  type Backend,
  type DType,
  type FloatDType,
  type Precision,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { broadcastIndex, matmulReference, randomValues } from "./reference.js";

export interface ConformanceOptions {
  /** Tests to skip in this environment (names or patterns), like tfjs's per-environment filters. */
  readonly exclude?: readonly (string | RegExp)[];
  /** Optimizer steps in the training check (default 60). */
  readonly trainSteps?: number;
  /** Per-test timeout in ms (default 60 000). */
  readonly timeout?: number;
}

const EPS32 = DTYPE_INFO.float32.epsilon;
const FLOATS: FloatDType[] = ["float64", "float32", "float16", "bfloat16"];

/**
 * Registers the conformance suite for one accelerator with vitest: op numerics per declared
 * dtype against float64 references, exact 16-bit rounding, autocast dtypes, gradients against
 * finite differences, gradient-scaler semantics, declared-vs-actual precision support, and a
 * small MLP that must train in every supported precision.
 */
export function describeBackendConformance(name: string, createAccelerator: () => Accelerator, options: ConformanceOptions = {}): void {
  const accelerator = createAccelerator();
  const status = accelerator.isAvailable();
  const timeout = options.timeout ?? 60_000;

  describe(`${name} conformance`, () => {
    if (!status.available) {
      it.skip(`accelerator unavailable: ${status.reason}`, () => {});
      return;
    }
    const backend = accelerator.createBackend();
    const runtime = new Runtime(backend);
    const reference = new Runtime(new ReferenceBackend());
    const caps = backend.capabilities;
    const held = (d: DType) => caps.storage[d] !== undefined;
    const floats = FLOATS.filter(held);
    const supported = (p: Precision) => accelerator.supportedPrecisions.includes(p);

    const skip = (title: string) => (options.exclude ?? []).some((f) => (typeof f === "string" ? title.includes(f) : f.test(title)));
    const test = (title: string, fn: () => Promise<void> | void) => {
      const run = async () => {
        setDefaultRuntime(runtime);
        try {
          await fn();
        } finally {
          setDefaultRuntime(null);
        }
      };
      if (skip(title)) it.skip(title, run);
      else it(title, run, timeout);
    };
    const values = async (t: Tensor) => Float64Array.from(await t.data());

    describe("capabilities", () => {
      test("declares float32, int32 and bool storage and every primitive in float32", () => {
        for (const d of ["float32", "int32", "bool"] as const) expect(held(d), `storage of ${d}`).toBe(true);
        for (const [op, dtypes] of Object.entries(caps.ops)) expect(dtypes!.length, `dtypes of ${op}`).toBeGreaterThan(0);
        for (const op of ["add", "mul", "matmul", "exp", "sum", "max", "where", "cast", "transpose"] as const)
          expect(caps.ops[op] ?? [], op).toContain("float32");
      });

      test("holds every dtype each supported precision needs", () => {
        for (const p of accelerator.supportedPrecisions)
          for (const d of dtypesOfPrecision(p)) expect(held(d), `${p} needs ${d}`).toBe(true);
      });

      test("refuses a dtype it does not hold with a typed error", async () => {
        const missing = FLOATS.find((d) => !held(d));
        if (!missing) return;
        await expect(tensor([1, 2], [2], missing).add(1).data()).rejects.toThrow(UnsupportedOpError);
      });

      test("resolves supported precisions and refuses the others, naming what is supported", () => {
        for (const p of CANONICAL_PRECISIONS) {
          if (supported(p)) expect(resolvePrecision(accelerator, p, null).precision).toBe(p);
          else {
            expect(() => resolvePrecision(accelerator, p, null)).toThrow(UnsupportedPrecisionError);
            expect(() => resolvePrecision(accelerator, p, null)).toThrow(new RegExp(`"${accelerator.name}".*"${p}".*It supports:`));
          }
        }
        expect(supported(accelerator.legacyHalfPrecision)).toBe(true);
        expect(resolvePrecision(accelerator, 16, null).precision).toBe(accelerator.legacyHalfPrecision);
      });
    });

    describe("op numerics", () => {
      for (const dtype of floats) {
        const eps = DTYPE_INFO[dtype].epsilon;
        const half = isHalfDType(dtype);
        // Tolerance for one rounding in `dtype` after float32 compute (backends' transcendental ops may be off by an ulp or two).
        const rtol = 2 * eps + 8 * (dtype === "float64" ? eps : EPS32);
        const atol = dtype === "float16" ? 2 ** -24 : dtype === "bfloat16" ? 1e-38 : 1e-300;
        const check = (got: Float64Array, ref: Float64Array, tol: (i: number) => number, label: string) => {
          expect(got.length, label).toBe(ref.length);
          for (let i = 0; i < ref.length; i++) {
            const err = Math.abs(got[i]! - ref[i]!);
            if (!(err <= tol(i)) && !(Number.isNaN(got[i]!) && Number.isNaN(ref[i]!)))
              expect.fail(`${label}[${i}]: got ${got[i]}, expected ${ref[i]} (tolerance ${tol(i)})`);
            if (half && roundScalar(got[i]!, dtype) !== got[i] && !Number.isNaN(got[i]!)) expect.fail(`${label}[${i}] = ${got[i]} is not a ${dtype} value`);
          }
        };

        const unary: [string, (t: Tensor) => Tensor, (x: number) => number, boolean][] = [
          ["neg", (t) => t.neg(), (x) => -x, false],
          ["exp", (t) => t.exp(), Math.exp, false],
          ["log", (t) => t.log(), Math.log, true],
          ["sqrt", (t) => t.sqrt(), Math.sqrt, true],
          ["tanh", (t) => t.tanh(), Math.tanh, false],
        ];
        for (const [op, fn, ref, positive] of unary)
          test(`${op} in ${dtype}`, async () => {
            const x = randomValues(64, dtype, new Generator(op.length), 1.5, positive);
            const out = fn(tensor(x, [8, 8], dtype));
            expect(out.dtype).toBe(dtype);
            const expected = x.map(ref);
            check(await values(out), expected, (i) => atol + rtol * Math.abs(expected[i]!), op);
          });

        const binary: [string, (a: Tensor, b: Tensor) => Tensor, (x: number, y: number) => number, boolean][] = [
          ["add", (a, b) => a.add(b), (x, y) => x + y, true],
          ["sub", (a, b) => a.sub(b), (x, y) => x - y, true],
          ["mul", (a, b) => a.mul(b), (x, y) => x * y, true],
          ["div", (a, b) => a.div(b), (x, y) => x / y, false],
          ["maximum", (a, b) => a.maximum(b), Math.max, true],
        ];
        for (const [op, fn, ref, exact] of binary)
          for (const [sa, sb] of [
            [[6, 5], [6, 5]],
            [[6, 5], [5]],
            [[6, 1], [1, 5]],
          ] as const)
            test(`${op} in ${dtype} broadcasting [${sa}] with [${sb}]`, async () => {
              const g = new Generator(op.length * 7 + sb.length);
              const a = randomValues(sa[0] * sa[1], dtype, g);
              const b = randomValues(sb.reduce((p: number, c: number) => p * c, 1), dtype, g, 1, op === "div");
              const out = fn(tensor(a, sa, dtype), tensor(b, sb, dtype));
              expect(out.shape).toEqual([6, 5]);
              const ia = broadcastIndex(sa, [6, 5]);
              const ib = broadcastIndex(sb, [6, 5]);
              const expected = Float64Array.from({ length: 30 }, (_, i) => ref(a[ia(i)]!, b[ib(i)]!));
              const got = await values(out);
              if (exact) {
                // Correctly rounded ops must match bit for bit on every backend.
                const want = expected.map((v) => roundScalar(dtype === "float64" ? v : Math.fround(v), dtype));
                for (let i = 0; i < 30; i++) expect(got[i], `${op}[${i}]`).toBe(want[i]);
              } else check(got, expected, (i) => atol + rtol * Math.abs(expected[i]!), op);
            });

        test(`less and equal in ${dtype}`, async () => {
          const a = randomValues(40, dtype, new Generator(3));
          const b = a.map((v, i) => (i % 3 === 0 ? v : -v));
          const lt = await values(tensor(a, [40], dtype).less(tensor(b, [40], dtype)));
          const eq = await values(tensor(a, [40], dtype).equal(tensor(b, [40], dtype)));
          a.forEach((v, i) => {
            expect(lt[i]).toBe(v < b[i]! ? 1 : 0);
            expect(eq[i]).toBe(v === b[i] ? 1 : 0);
          });
        });

        for (const axes of [[0], [1], [0, 1]] as const)
          test(`sum and max over [${axes}] in ${dtype}`, async () => {
            const x = randomValues(12 * 9, dtype, new Generator(11));
            const t = tensor(x, [12, 9], dtype);
            const keep = [axes.includes(0 as never) ? 1 : 12, axes.includes(1 as never) ? 1 : 9];
            const outSize = keep[0]! * keep[1]!;
            const sums = new Float64Array(outSize);
            const mags = new Float64Array(outSize);
            const maxes = new Float64Array(outSize).fill(-Infinity);
            for (let i = 0; i < x.length; i++) {
              const r = Math.floor(i / 9);
              const c = i % 9;
              const o = (keep[0] === 1 ? 0 : r) * keep[1]! + (keep[1] === 1 ? 0 : c);
              sums[o] = sums[o]! + x[i]!;
              mags[o] = mags[o]! + Math.abs(x[i]!);
              maxes[o] = Math.max(maxes[o]!, x[i]!);
            }
            const n = x.length / outSize;
            const sumOut = t.sum([...axes]);
            expect(sumOut.dtype).toBe(dtype);
            check(await values(sumOut), sums, (i) => atol + (rtol + n * EPS32) * mags[i]!, "sum");
            const maxOut = await values(t.max([...axes]));
            for (let i = 0; i < outSize; i++) expect(maxOut[i]).toBe(maxes[i]);
          });

        test(`matmul in ${dtype}`, async () => {
          const g = new Generator(21);
          const [m, k, n] = [7, 33, 5];
          const a = randomValues(m * k, dtype, g);
          const b = randomValues(k * n, dtype, g);
          const out = tensor(a, [m, k], dtype).matmul(tensor(b, [k, n], dtype));
          expect(out.dtype).toBe(dtype);
          const { value, magnitude } = matmulReference(a, b, m, k, n);
          const inputRounding = caps.matmulInputRounding?.[dtype];
          const inputTol = inputRounding ? 2 * DTYPE_INFO[inputRounding].epsilon : 0;
          const accTol = k * (dtype === "float64" ? DTYPE_INFO.float64.epsilon : EPS32);
          check(await values(out), value, (i) => atol + (2 * eps + accTol + inputTol) * magnitude[i]!, "matmul");
        });

        test(`transpose, reshape, expand and where in ${dtype}`, async () => {
          const x = randomValues(24, dtype, new Generator(5));
          const t = tensor(x, [2, 3, 4], dtype);
          const tr = await values(t.transpose([2, 0, 1]));
          for (let i = 0; i < 2; i++)
            for (let j = 0; j < 3; j++) for (let l = 0; l < 4; l++) expect(tr[l * 6 + i * 3 + j]).toBe(x[i * 12 + j * 4 + l]);
          expect(Array.from(await values(t.reshape([4, 6])))).toEqual(Array.from(x));
          const row = tensor(x.subarray(0, 4), [4], dtype);
          const ex = await values(row.expand([3, 4]));
          for (let i = 0; i < 12; i++) expect(ex[i]).toBe(x[i % 4]);
          const w = await values(where(t.less(0), t.neg(), t));
          x.forEach((v, i) => expect(w[i]).toBe(Math.abs(v)));
        });
      }
    });

    if (held("float16") || held("bfloat16")) describe("exact rounding", () => {
      const edge = new Float32Array([
        1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -10, 65504, 65519.99, 65520, 70000, -65520,
        2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14 - 2 ** -25, 1e-8, -0, 0, Infinity, -Infinity, NaN, 3.4028234663852886e38,
        1.1754943508222875e-38, 1e-40, -1e-45, 0.1, -0.3, 3.14159, 123456.789, -2.5e-6,
      ]);
      const g = new Generator(99);
      const random = new Float32Array(4096).map(() => (g.random() - 0.5) * 2 ** (g.int(60) - 30));
      const inputs = Float32Array.from([...edge, ...random]);
      for (const [dtype, encode] of [
        ["float16", float32ArrayToFloat16],
        ["bfloat16", float32ArrayToBfloat16],
      ] as const) {
        if (!held(dtype)) continue;
        test(`float32 -> ${dtype} casts round to nearest even, bit for bit`, async () => {
          const bits = (await tensor(inputs, [inputs.length]).cast(dtype).toHost()) as Uint16Array;
          const want = encode(inputs);
          for (let i = 0; i < inputs.length; i++) {
            const nan = Number.isNaN(inputs[i]!);
            if (nan) expect(bits[i]! & 0x7c00, `NaN at ${i}`).toBe(dtype === "float16" ? 0x7c00 : bits[i]! & 0x7c00);
            else if (bits[i] !== want[i]) expect.fail(`${dtype}(${inputs[i]}) = 0x${bits[i]!.toString(16)}, expected 0x${want[i]!.toString(16)}`);
          }
        });
        test(`a ${dtype} round trip really rounds (no cast pair is eliminated)`, async () => {
          const inputs = [1 + 2 ** -12, 1 + 2 ** -7 + 2 ** -9, 65520, 2 ** -26, 2 ** -140];
          const back = await values(tensor(inputs, [inputs.length]).cast(dtype).cast("float32"));
          expect(Array.from(back)).toEqual(inputs.map((v) => roundScalar(v, dtype)));
          expect(back[0]).toBe(1);
          expect(back[2]).toBe(dtype === "float16" ? Infinity : 65536);
        });
      }
    });

    if (supported("16-mixed") || supported("bf16-mixed")) describe("autocast", () => {
      for (const precision of ["16-mixed", "bf16-mixed"] as const) {
        if (!supported(precision)) continue;
        const low = PRECISION_INFO[precision].autocastDType!;
        test(`${precision}: matmul-type ops in ${low}, softmax/log/exp/reductions/losses in float32, binary ops promote`, async () => {
          const g = new Generator(8);
          const x = tensor(randomValues(24, "float32", g), [4, 6]);
          const w = tensor(randomValues(18, "float32", g), [3, 6]);
          const b = tensor(randomValues(3, "float32", g), [3]);
          const labels = tensor([0, 2, 1, 2], [4], "int32");
          const outputs = autocast(low, () => {
            const h = linear(x, w, b);
            return {
              linear: h,
              matmul: x.matmul(w.T),
              relu: h.relu(),
              softmax: h.softmax(1),
              logSoftmax: h.logSoftmax(1),
              exp: h.exp(),
              log: h.exp().log(),
              sum: h.sum(),
              mean: h.mean(),
              crossEntropy: crossEntropy(h, labels),
              mse: mseLoss(h, h.relu()),
              layerNorm: layerNorm(h, tensor([1, 1, 1], [3]), tensor([0, 0, 0], [3])),
              promoted: h.add(b),
              sameLow: h.mul(h),
            };
          });
          const expected: Record<string, DType> = {
            linear: low,
            matmul: low,
            relu: low,
            sameLow: low,
            softmax: "float32",
            logSoftmax: "float32",
            exp: "float32",
            log: "float32",
            sum: "float32",
            mean: "float32",
            crossEntropy: "float32",
            mse: "float32",
            layerNorm: "float32",
            promoted: "float32",
          };
          for (const [key, t] of Object.entries(outputs)) expect(t.dtype, key).toBe(expected[key]);
          await realize(Object.values(outputs));
          for (const v of await values(outputs.linear)) expect(roundScalar(v, low)).toBe(v);
          const sm = await values(outputs.softmax);
          for (let r = 0; r < 4; r++) expect(sm[r * 3]! + sm[r * 3 + 1]! + sm[r * 3 + 2]!).toBeCloseTo(1, 5);
        });
      }
    });

    describe("gradients", () => {
      const gradDTypes = floats.filter((d) => d === "float32" || d === "float64");
      const cases: [string, number[][], (xs: Tensor[]) => Tensor][] = [
        ["linear, tanh, mse", [[4, 5], [3, 5], [3], [4, 3]], ([x, w, b, t]) => mseLoss(linear(x!, w!, b!).tanh(), t!)],
        ["softmax cross-entropy", [[5, 4], [3, 4]], ([x, w]) => crossEntropy(linear(x!, w!), tensor([0, 1, 2, 1, 0], [5], "int32"))],
        ["layerNorm, sigmoid", [[3, 6], [6], [6]], ([x, w, b]) => layerNorm(x!, w!, b!).sigmoid().mul(tensor([1, -2, 3, 0.5, 1, 2], [6])).sum()],
        ["exp, log, div, sqrt", [[4, 3], [3]], ([x, y]) => x!.exp().add(1).log().div(y!.square().add(1).sqrt()).sum()],
        ["max, maximum, relu, gelu", [[4, 5], [4, 5]], ([x, y]) => x!.max(1).sum().add(x!.maximum(y!).relu().gelu().mean())],
        ["transpose, broadcast, softmax", [[3, 4], [3, 2], [2]], ([x, y, b]) => x!.T.matmul(y!).add(b!).softmax(1).square().sum()],
      ];
      for (const dtype of gradDTypes)
        for (const [label, shapes, fn] of cases)
          test(`${label} in ${dtype} matches float64 finite differences`, async () => {
            const g = new Generator(label.length);
            const data = shapes.map((s) => randomValues(s.reduce((a, c) => a * c, 1), dtype, g, 0.8));
            const inputs = data.map((d, i) => tensor(d, shapes[i]!, dtype));
            inputs.forEach((t) => (t.requiresGrad = true));
            fn(inputs).backward();
            const grads = await Promise.all(inputs.map((t) => values(t.grad!)));
            const f = async (d: Float64Array[]) => {
              const out = fn(d.map((v, i) => tensor(v, shapes[i]!, "float64")));
              await reference.realize([out.node]);
              return (await out.data())[0]!;
            };
            const h = 1e-6;
            for (let k = 0; k < inputs.length; k++)
              for (let trial = 0; trial < 3; trial++) {
                const dir = randomValues(data[k]!.length, "float64", g);
                const shifted = (s: number) => data.map((d, i) => (i === k ? d.map((v, j) => v + s * h * dir[j]!) : d));
                const numeric = ((await f(shifted(1))) - (await f(shifted(-1)))) / (2 * h);
                const analytic = grads[k]!.reduce((acc, v, j) => acc + v * dir[j]!, 0);
                const scale = grads[k]!.reduce((acc, v, j) => acc + Math.abs(v * dir[j]!), 0) + (dtype === "float64" ? 1e-9 : 1e-5);
                // Matmul inputs rounded to 16 bits (a TPU MXU) bound the agreement by that type's epsilon.
                const rounding = caps.matmulInputRounding?.[dtype];
                const tol = dtype === "float64" ? 1e-5 : rounding ? 8 * DTYPE_INFO[rounding].epsilon : 2e-3;
                if (Math.abs(numeric - analytic) > tol * scale)
                  expect.fail(`input ${k}: directional derivative ${analytic}, finite differences ${numeric}`);
              }
          });
    });

    if (supported("16-mixed")) describe("gradient scaler", () => {
      const setup = (scaler: ConstructorParameters<typeof GradScaler>[0]) => {
        manualSeed(0);
        const plugin = new MixedPrecision("16-mixed", scaler);
        const layer = new Linear(4, 2);
        const optimizer = new SGD(layer.parameters(), { lr: 0.1 });
        return { plugin, layer, optimizer, scaler: plugin.scaler! };
      };

      test("skips a step with Inf/NaN gradients and halves the scale", async () => {
        const { plugin, layer, optimizer, scaler } = setup({});
        const before = await Promise.all(layer.parameters().map(values));
        const x = tensor([1e5, 2e5, -3e5, 4e5, 1, 2, 3, 4], [2, 4]);
        const loss = plugin.forwardContext(() => layer.forward(x).sum().cast("float32"));
        const outcome = await plugin.optimizerStep(optimizer, loss);
        expect(outcome.skipped).toBe(true);
        expect(scaler.scale).toBe(2 ** 15);
        const after = await Promise.all(layer.parameters().map(values));
        expect(after).toEqual(before);
        expect(optimizer.steps.get(layer.weight) ?? 0).toBe(0);
      });

      test("doubles the scale after growthInterval clean steps and unscales gradients", async () => {
        const { plugin, layer, optimizer, scaler } = setup({ growthInterval: 3 });
        const x = tensor([0.5, -1, 0.25, 2], [1, 4]);
        const w0 = await values(layer.weight);
        for (let i = 0; i < 3; i++) {
          // A quarter of the sum keeps the scaled float16 gradients (2^16 / 4) finite.
          const outcome = await plugin.optimizerStep(optimizer, plugin.forwardContext(() => layer.forward(x).sum().mul(0.25)));
          expect(outcome.skipped).toBe(false);
          if (i === 0) {
            // d(loss)/dW = x / 4 for each output row; SGD moves by lr * x / 4 once unscaled.
            const w1 = await values(layer.weight);
            w1.forEach((v, j) => expect(v).toBeCloseTo(w0[j]! - 0.025 * [0.5, -1, 0.25, 2][j % 4]!, 3));
          }
        }
        expect(scaler.scale).toBe(2 ** 17);
        expect(scaler.growthTracker).toBe(0);
        expect(plugin.stateDict()).toMatchObject({ precision: "16-mixed", scaler: { scale: 2 ** 17, growthTracker: 0 } });
      });

      test("never grows the scale to Infinity", async () => {
        const { plugin, layer, optimizer, scaler } = setup({ initScale: 2 ** 127, growthInterval: 1 });
        const x = tensor([1, 1, 1, 1], [1, 4]);
        const outcome = await plugin.optimizerStep(optimizer, plugin.forwardContext(() => layer.forward(x).sum().mul(1e-35)));
        expect(outcome.skipped).toBe(false);
        expect(scaler.scale).toBe(2 ** 127);
      });

      test("clips unscaled gradients by norm", async () => {
        const { plugin, layer, optimizer } = setup({});
        const x = tensor([3, 4, 0, 0], [1, 4]);
        const w0 = await values(layer.weight);
        const outcome = await plugin.optimizerStep(optimizer, plugin.forwardContext(() => layer.forward(x).sum().mul(1 / 16)), {
          clipValue: 0.1,
        });
        expect(outcome.skipped).toBe(false);
        const w1 = await values(layer.weight);
        // The true gradient norm is sqrt(2 * 25 + 2) / 16 = 0.45 over weight and bias; clipped to 0.1,
        // the weight's share is 0.1 * sqrt(50 / 52).
        const moved = Math.hypot(...w1.map((v, i) => (v - w0[i]!) / 0.1));
        expect(moved).toBeCloseTo(0.1 * Math.sqrt(50 / 52), 3);
      });
    });

    describe("training", () => {
      const steps = options.trainSteps ?? 60;
      for (const precision of CANONICAL_PRECISIONS) {
        if (!supported(precision)) continue;
        test(`a small MLP trains in ${precision}`, async () => {
          manualSeed(1);
          const plugin = precisionPluginFor(precision);
          const model = plugin.initContext(() => new Sequential(new Linear(8, 32), new ReLU(), new Linear(32, 4)));
          for (const p of model.parameters()) expect(p.dtype).toBe(PRECISION_INFO[precision].paramDType);
          const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
          const { x, y } = blobs(128, 8, 4, new Generator(2));
          const input = plugin.convertInput(tensor(x, [128, 8]));
          const labels = tensor(y, [128], "int32");
          const losses: number[] = [];
          for (let s = 0; s < steps; s++) {
            const loss = plugin.forwardContext(() => crossEntropy(model.forward(input), labels));
            const outcome = await plugin.optimizerStep(optimizer, loss);
            expect(outcome.skipped).toBe(false);
            losses.push(outcome.loss);
          }
          expect(losses.every(Number.isFinite)).toBe(true);
          expect(losses.at(-1)!).toBeLessThan(0.25 * losses[0]!);
          expect(losses.at(-1)!).toBeLessThan(0.35);
        });
      }
    });
  });
}

/** Gaussian blobs: `classes` clusters in `features` dimensions. */
function blobs(n: number, features: number, classes: number, g: Generator): { x: Float32Array; y: Int32Array } {
  const centers = Array.from({ length: classes }, () => Array.from({ length: features }, () => g.normal() * 2));
  const x = new Float32Array(n * features);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let f = 0; f < features; f++) x[i * features + f] = centers[y[i]!]![f]! + g.normal() * 0.7;
  }
  return { x, y };
}

export type { Backend };
