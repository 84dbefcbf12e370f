import {
  BatchNorm2d,
  CANONICAL_PRECISIONS,
  Conv2d,
  Flatten,
  MaxPool2d,
  DTYPE_INFO,
  GradScaler,
  Embedding,
  Generator,
  LayerNorm,
  Linear,
  type LazyNode,
  TransformerBlock,
  MixedPrecision,
  PRECISION_INFO,
  ReLU,
  ReferenceBackend,
  Runtime,
  SGD,
  Sequential,
  StepCapture,
  Tensor,
  UnsupportedPrecisionError,
  apply,
  autocast,
  autocastPolicyOf,
  avgPool2d,
  cat,
  conv2d,
  embedding,
  maxPool2d,
  pad,
  crossEntropy,
  DTYPES,
  isFloatDType,
  OPS,
  PRIMITIVE_OPS,
  dtypesOfPrecision,
  FLOAT_FORMATS,
  ROUNDED_FLOAT_DTYPES,
  roundToFormat,
  isHalfDType,
  layerNorm,
  linear,
  manualSeed,
  mseLoss,
  precisionPluginFor,
  realize,
  resolvePrecision,
  roundScalar,
  tensor,
  withRuntime,
  type Accelerator,
  type AutocastPolicy,
  AUTOCAST_POLICIES,
  type Backend,
  type DType,
  type FloatDType,
  type Precision,
  type PrimitiveOp,
} from "@nbit/core";
import { describe, expect, it } from "vitest";
import { AGREEMENT_BOUNDS, bf16MixedLosses, blobs } from "./agreement.js";
import { checkDeclaredCapabilities, checkNarrowCasts } from "./checks.js";
import { OP_CASES } from "./op-cases.js";
import { randomValues } from "./reference.js";

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
 * small MLP and a tiny transformer that must train in every supported precision.
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
    const autocastPolicy = autocastPolicyOf(accelerator);

    const skip = (title: string) => (options.exclude ?? []).some((f) => (typeof f === "string" ? title.includes(f) : f.test(title)));
    const test = (title: string, fn: () => Promise<void> | void, testTimeout = timeout) => {
      const run = () => runtime.run(async () => fn());
      if (skip(title)) it.skip(title, run);
      else it(title, run, testTimeout);
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
        for (const p of accelerator.supportedPrecisions) for (const d of dtypesOfPrecision(p)) expect(held(d), `${p} needs ${d}`).toBe(true);
      });

      test("registers kernels only for dtypes it holds", () => {
        for (const [op, dtypes] of Object.entries(caps.ops))
          for (const d of dtypes!) expect(held(d), `${op} is registered for ${d}, which ${backend.name} does not hold`).toBe(true);
      });

      test("keeps every dtype it declares bit for bit, and refuses what it does not declare with a typed error", () => checkDeclaredCapabilities(caps));

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
      /** The dtype a kernel of `op` runs in for operand `dtype` (narrow floats may run the float32 kernel). */
      const compute = (op: PrimitiveOp, dtype: DType): DType => ((caps.ops[op] ?? []).includes(dtype) ? dtype : "float32");
      /** Why `op` cannot run on operand `dtype` here, or null when core can lower it to a registered kernel. */
      const whyNot = (op: PrimitiveOp, dtype: DType): string | null => {
        const registered = caps.ops[op] ?? [];
        if (!held(dtype)) return `${backend.name} holds no ${dtype}`;
        if (registered.includes(dtype) || (isHalfDType(dtype) && registered.includes("float32"))) return null;
        return `${backend.name} registers ${op} for ${registered.join(", ")} only`;
      };
      for (const op of PRIMITIVE_OPS) {
        const row = OPS[op];
        const cases = OP_CASES.filter((c) => c.op === op);
        if (!(caps.ops[op] ?? []).length) {
          it.skip(`${op}: not tested, ${backend.name} registers no ${op} kernel`, () => {});
          continue;
        }
        for (const dtype of DTYPES) {
          if ((row.accepts === "float" && !isFloatDType(dtype)) || (row.accepts === "numeric" && dtype === "bool")) continue;
          for (const c of cases) {
            if ((c.kinds === "float" && !isFloatDType(dtype)) || (c.kinds === "numeric" && dtype === "bool")) continue;
            const title = `${op}${c.label} in ${dtype}`;
            const reason =
              whyNot(op, dtype) ??
              (c.op === "cast" && !held(c.inputs(dtype, new Generator(0)).attrs.to!)
                ? `${backend.name} holds no ${c.inputs(dtype, new Generator(0)).attrs.to}`
                : null);
            if (reason) {
              it.skip(`${title}: ${reason}`, () => {});
              continue;
            }
            test(title, async () => {
              const { inputs, attrs } = c.inputs(dtype, new Generator(seedOf(title)));
              const out = apply(
                op,
                inputs.map((i) => tensor(i.values, i.shape, i.dtype)),
                attrs,
              );
              const expected = c.oracle(inputs, attrs, out.shape);
              const got = await values(out);
              expect(got.length, title).toBe(expected.values.length);
              const outDType = out.dtype;
              const narrow = isHalfDType(outDType);
              const eps = isFloatDType(outDType) ? DTYPE_INFO[outDType].epsilon : 0;
              const accEps = outDType === "float64" ? DTYPE_INFO.float64.epsilon : EPS32;
              const atol = outDType === "float16" ? 2 ** -24 : outDType === "bfloat16" ? 1e-38 : isFloatDType(outDType) ? 1e-300 : 0;
              const rounding = caps.inputRounding?.[op]?.[compute(op, dtype)];
              const inputTol = rounding ? 2 * DTYPE_INFO[rounding].epsilon : 0;
              for (let i = 0; i < got.length; i++) {
                const [g, e] = [got[i]!, expected.values[i]!];
                if (Number.isNaN(g) && Number.isNaN(e)) continue;
                if (c.check === "exact" || !isFloatDType(outDType)) {
                  const want = isFloatDType(outDType) ? roundScalar(outDType === "float64" ? e : Math.fround(e), outDType) : e;
                  if (isFloatDType(outDType) ? !Object.is(g, want) : g !== want) expect.fail(`${title}[${i}]: got ${g}, expected ${want}`);
                  continue;
                }
                const tol =
                  c.check === "rounded"
                    ? atol + (2 * eps + 8 * accEps) * Math.abs(e)
                    : atol + (2 * eps + (expected.terms ?? 1) * accEps + inputTol) * expected.magnitude![i]!;
                if (!(Math.abs(g - e) <= tol)) expect.fail(`${title}[${i}]: got ${g}, expected ${e} (tolerance ${tol})`);
                if (narrow && roundScalar(g, outDType) !== g) expect.fail(`${title}[${i}] = ${g} is not a ${outDType} value`);
              }
            });
          }
        }
      }
    });

    if (ROUNDED_FLOAT_DTYPES.some(held))
      describe("exact rounding", () => {
        for (const dtype of ROUNDED_FLOAT_DTYPES) {
          const format = FLOAT_FORMATS[dtype];
          if (!held(dtype)) {
            it.skip(`float32 -> ${dtype} rounding: not tested, ${backend.name} holds no ${dtype}`, () => {});
            continue;
          }
          test(`float32 -> ${dtype} casts round to nearest even, bit for bit, and keep every NaN a NaN of its sign`, () => checkNarrowCasts(dtype));
          test(`a ${dtype} round trip really rounds (no cast pair is eliminated)`, async () => {
            const inputs = [1 + 2 ** -12, 1 + 2 ** -7 + 2 ** -9, 65520, 2 ** -26, 2 ** -140];
            const back = await values(tensor(inputs, [inputs.length]).cast(dtype).cast("float32"));
            expect(Array.from(back)).toEqual(inputs.map((v) => roundToFormat(v, format)));
            expect(back[0]).toBe(1);
            expect(back[2]).toBe(format.maxFinite < 65520 ? Infinity : 65536);
          });
        }
      });

    if (supported("16-mixed") || supported("bf16-mixed"))
      describe("autocast", () => {
        for (const precision of ["16-mixed", "bf16-mixed"] as const) {
          if (!supported(precision)) continue;
          const low = PRECISION_INFO[precision].autocastDType!;
          test(`${precision}: ops run in the dtypes of the ${autocastPolicy.name} autocast lists, binary ops promote`, async () => {
            const g = new Generator(8);
            const x = tensor(randomValues(24, "float32", g), [4, 6]);
            const w = tensor(randomValues(18, "float32", g), [3, 6]);
            const b = tensor(randomValues(3, "float32", g), [3]);
            const labels = tensor([0, 2, 1, 2], [4], "int32");
            const outputs = autocast(
              low,
              () => {
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
              },
              autocastPolicy,
            );
            const expected = expectedAutocastDTypes(autocastPolicy, low);
            for (const [key, t] of Object.entries(outputs)) expect(t.dtype, key).toBe(expected[key]);
            await realize(Object.values(outputs));
            for (const v of await values(outputs.linear)) expect(roundScalar(v, low)).toBe(v);
            const sm = await values(outputs.softmax);
            // Three probabilities, each within one rounding of its dtype, add up to 1.
            const smEps = DTYPE_INFO[outputs.softmax.dtype].epsilon;
            for (let r = 0; r < 4; r++) expect(Math.abs(sm[r * 3]! + sm[r * 3 + 1]! + sm[r * 3 + 2]! - 1)).toBeLessThanOrEqual(4 * smEps + 1e-6);
          });
        }
      });

    describe("gradients", () => {
      const gradDTypes = floats.filter((d) => d === "float32" || d === "float64");
      const idx = (values: number[], shape: number[] = [values.length]) => tensor(values, shape, "int32");
      const cases: { label: string; shapes: number[][]; fn: (xs: Tensor[]) => Tensor; ops?: PrimitiveOp[] }[] = [
        { label: "linear, tanh, mse", shapes: [[4, 5], [3, 5], [3], [4, 3]], fn: ([x, w, b, t]) => mseLoss(linear(x!, w!, b!).tanh(), t!) },
        {
          label: "softmax cross-entropy",
          shapes: [
            [5, 4],
            [3, 4],
          ],
          fn: ([x, w]) => crossEntropy(linear(x!, w!), idx([0, 1, 2, 1, 0])),
          ops: ["gather", "indexAdd"],
        },
        {
          label: "layerNorm, sigmoid",
          shapes: [[3, 6], [6], [6]],
          fn: ([x, w, b]) =>
            layerNorm(x!, w!, b!)
              .sigmoid()
              .mul(tensor([1, -2, 3, 0.5, 1, 2], [6]))
              .sum(),
        },
        { label: "exp, log, div, sqrt", shapes: [[4, 3], [3]], fn: ([x, y]) => x!.exp().add(1).log().div(y!.square().add(1).sqrt()).sum() },
        {
          label: "max, maximum, relu, gelu",
          shapes: [
            [4, 5],
            [4, 5],
          ],
          fn: ([x, y]) => x!.max(1).sum().add(x!.maximum(y!).relu().gelu().mean()),
        },
        { label: "transpose, broadcast, softmax", shapes: [[3, 4], [3, 2], [2]], fn: ([x, y, b]) => x!.T.matmul(y!).add(b!).softmax(1).square().sum() },
        {
          label: "batched matmul with broadcast batch dimensions",
          shapes: [
            [2, 1, 3, 4],
            [5, 4, 2],
          ],
          fn: ([a, b]) => a!.matmul(b!).tanh().sum(),
        },
        {
          label: "conv2d with bias, groups, stride, padding and dilation",
          shapes: [[2, 4, 6, 5], [4, 2, 3, 2], [4]],
          fn: ([x, w, b]) =>
            conv2d(x!, w!, b!, { stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2 })
              .tanh()
              .sum(),
          ops: ["conv2d", "convTranspose2d", "slice"],
        },
        {
          label: "convTranspose2d with groups, stride, dilation and output padding",
          shapes: [
            [2, 4, 3, 3],
            [4, 3, 3, 2],
          ],
          fn: ([x, w]) =>
            apply("convTranspose2d", [x!, w!], { stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 2, outputPadding: [1, 0] })
              .tanh()
              .sum(),
          ops: ["conv2d", "convTranspose2d", "slice"],
        },
        {
          label: "maxPool2d and avgPool2d (overlapping and not)",
          shapes: [[2, 3, 6, 5]],
          fn: ([x]) =>
            maxPool2d(x!, 3, { stride: 2, padding: 1 })
              .square()
              .sum()
              .add(
                avgPool2d(x!, [2, 3], { stride: [1, 2], padding: [1, 1] })
                  .tanh()
                  .sum(),
              )
              .add(avgPool2d(x!, 2).exp().sum()),
          ops: ["maxPool2d", "maxPool2dIndices", "indexAdd", "avgPool2d", "convTranspose2d", "pad"],
        },
        {
          label: "embedding, gather and indexAdd",
          shapes: [
            [5, 3],
            [4, 2],
            [3, 2],
          ],
          fn: ([table, x, s]) =>
            embedding(idx([1, 4, 1, 0], [2, 2]), table!)
              .tanh()
              .sum()
              .add(
                table!
                  .gather(1, idx([2, 0, 1, 1, 0], [5, 1]))
                  .square()
                  .sum(),
              )
              .add(
                x!
                  .indexAdd(0, idx([3, 0, 3]), s!)
                  .square()
                  .sum(),
              ),
          ops: ["gather", "indexAdd"],
        },
        {
          label: "slice, strided slice, pad and concat",
          shapes: [
            [3, 5],
            [3, 2],
          ],
          fn: ([x, y]) =>
            cat([x!.slice(1, 1, 4), pad(y!, [1, 0], 0.5), x!.slice(1, 0, 5, 2)], 1)
              .tanh()
              .square()
              .sum(),
          ops: ["slice", "pad", "concat", "gather", "indexAdd"],
        },
      ];
      for (const dtype of gradDTypes)
        for (const { label, shapes, fn, ops = [] } of cases) {
          const title = `${label} in ${dtype} matches float64 finite differences`;
          const missing = ops.filter((op) => !(caps.ops[op] ?? []).includes(dtype));
          if (missing.length) {
            it.skip(`${title}: ${backend.name} registers no ${missing.join(", ")} in ${dtype}`, () => {});
            continue;
          }
          test(title, async () => {
            const g = new Generator(label.length);
            const data = shapes.map((s) =>
              randomValues(
                s.reduce((a, c) => a * c, 1),
                dtype,
                g,
                0.8,
              ),
            );
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
            // Inputs rounded to a narrower format (a TPU MXU) bound the agreement by that format's epsilon.
            const rounding = Object.values(caps.inputRounding ?? {})
              .map((r) => r?.[dtype])
              .find((r) => r !== undefined);
            const tol = dtype === "float64" ? 1e-5 : rounding ? 8 * DTYPE_INFO[rounding].epsilon : 2e-3;
            for (let k = 0; k < inputs.length; k++)
              for (let trial = 0; trial < 3; trial++) {
                const dir = randomValues(data[k]!.length, "float64", g);
                const shifted = (s: number) => data.map((d, i) => (i === k ? d.map((v, j) => v + s * h * dir[j]!) : d));
                const numeric = ((await f(shifted(1))) - (await f(shifted(-1)))) / (2 * h);
                const analytic = grads[k]!.reduce((acc, v, j) => acc + v * dir[j]!, 0);
                const scale = grads[k]!.reduce((acc, v, j) => acc + Math.abs(v * dir[j]!), 0) + (dtype === "float64" ? 1e-9 : 1e-5);
                if (Math.abs(numeric - analytic) > tol * scale) expect.fail(`input ${k}: directional derivative ${analytic}, finite differences ${numeric}`);
              }
          });
        }
    });

    if (supported("16-mixed"))
      describe("gradient scaler", () => {
        const setup = (scaler: ConstructorParameters<typeof GradScaler>[0]) => {
          manualSeed(0);
          const plugin = new MixedPrecision("16-mixed", scaler, autocastPolicy);
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
            // A quarter of the sum keeps the scaled float16 gradients (2^16 / 4) finite. The sum is made
            // float32 (it is already under the CUDA lists), so the loss is float32 under every policy.
            const outcome = await plugin.optimizerStep(
              optimizer,
              plugin.forwardContext(() => layer.forward(x).sum().cast("float32").mul(0.25)),
            );
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
          const outcome = await plugin.optimizerStep(
            optimizer,
            plugin.forwardContext(() => layer.forward(x).sum().cast("float32").mul(1e-35)),
          );
          expect(outcome.skipped).toBe(false);
          expect(scaler.scale).toBe(2 ** 127);
        });

        test("clips unscaled gradients by norm", async () => {
          const { plugin, layer, optimizer } = setup({});
          const x = tensor([3, 4, 0, 0], [1, 4]);
          const w0 = await values(layer.weight);
          const outcome = await plugin.optimizerStep(
            optimizer,
            plugin.forwardContext(() =>
              layer
                .forward(x)
                .sum()
                .cast("float32")
                .mul(1 / 16),
            ),
            {
              clipValue: 0.1,
            },
          );
          expect(outcome.skipped).toBe(false);
          const w1 = await values(layer.weight);
          // The true gradient norm is sqrt(2 * 25 + 2) / 16 = 0.45 over weight and bias; clipped to 0.1,
          // the weight's share is 0.1 * sqrt(50 / 52).
          const moved = Math.hypot(...w1.map((v, i) => (v - w0[i]!) / 0.1));
          expect(moved).toBeCloseTo(0.1 * Math.sqrt(50 / 52), 3);
        });
      });

    if (supported("bf16-mixed"))
      describe("cross-backend agreement", () => {
        const { firstLoss, everyLoss, steps } = AGREEMENT_BOUNDS;
        test(
          `a bf16-mixed MLP's ${steps} losses agree with the reference backend's (first within ${firstLoss} relative, every one within ${everyLoss})`,
          async () => {
            const mine = await withRuntime(runtime, () => bf16MixedLosses(autocastPolicy, steps));
            const theirs = await withRuntime(reference, () => bf16MixedLosses(autocastPolicy, steps));
            const rel = mine.map((l, i) => Math.abs(l - theirs[i]!) / Math.abs(theirs[i]!));
            expect(mine.every(Number.isFinite), `losses ${mine.join(", ")}`).toBe(true);
            expect(rel[0]!, `first loss ${mine[0]} vs ${theirs[0]}`).toBeLessThanOrEqual(firstLoss);
            const worst = rel.indexOf(Math.max(...rel));
            expect(rel[worst]!, `step ${worst}: loss ${mine[worst]} vs ${theirs[worst]}`).toBeLessThanOrEqual(everyLoss);
            // The run must learn, or agreement would say little.
            expect(theirs.at(-1)!).toBeLessThan(0.8 * theirs[0]!);
            // Two training runs of 50 steps each: three times a test's time.
          },
          3 * timeout,
        );
      });

    describe("transformer training", () => {
      const [vocab, length, batch] = [7, 6, 16];
      // Sequences that follow next = (3 * prev + 1) mod 7 from a random start: a causal model can learn them exactly.
      const tokens = (() => {
        const g = new Generator(4);
        const rows: number[] = [];
        for (let b = 0; b < batch; b++) {
          let t = Math.floor(g.random() * vocab);
          for (let i = 0; i <= length; i++, t = (3 * t + 1) % vocab) rows.push(t);
        }
        return rows;
      })();
      const inputs = tokens.filter((_, i) => i % (length + 1) !== length);
      const targets = tokens.filter((_, i) => i % (length + 1) !== 0);
      const build = () => {
        const wte = new Embedding(vocab, 16);
        const wpe = new Embedding(length, 16);
        const block = new TransformerBlock(16, 2, { causal: true, dimFeedforward: 32 });
        const norm = new LayerNorm(16);
        const head = new Linear(16, vocab);
        const parameters = [wte, wpe, block, norm, head].flatMap((m) => m.parameters());
        const loss = () => {
          const h = block.forward(wte.forward(tensor(inputs, [batch, length], "int32")).add(wpe.forward(tensor([...Array(length).keys()], [length], "int32"))));
          return crossEntropy(head.forward(norm.forward(h)).reshape([batch * length, vocab]), tensor(targets, [batch * length], "int32"));
        };
        return { parameters, loss };
      };
      // The primitives one training step records, found by tracing it lazily (nothing runs).
      const needed = (() => {
        const { parameters, loss } = build();
        const l = loss();
        l.backward();
        const ops = new Set<string>();
        const stack: LazyNode[] = [l.node, ...parameters.map((p) => p.grad!.node)];
        const seen = new Set<LazyNode>();
        while (stack.length) {
          const n = stack.pop()!;
          if (seen.has(n)) continue;
          seen.add(n);
          if (n.op !== "leaf" && n.op !== "const") ops.add(n.op);
          stack.push(...n.src);
        }
        return [...ops].sort();
      })();
      const steps = 40;
      for (const precision of CANONICAL_PRECISIONS) {
        if (!supported(precision)) continue;
        const title = `a tiny transformer (embeddings, causal attention, pre-norm block) trains in ${precision}: loss falls by 60%`;
        const missing = needed.filter((op) => caps.ops[op as PrimitiveOp] === undefined);
        if (missing.length) {
          it.skip(`${title}: ${backend.name} registers no ${missing.join(", ")}`, () => {});
          continue;
        }
        test(title, async () => {
          manualSeed(3);
          const plugin = precisionPluginFor(precision, autocastPolicy);
          const { parameters, loss } = plugin.initContext(build);
          for (const p of parameters) expect(p.dtype).toBe(PRECISION_INFO[precision].paramDType);
          // SGD, as the MLP case: Adam's eps of 1e-8 is zero in float16, so 16-true Adam divides by zero where v underflows.
          const optimizer = new SGD(parameters, { lr: 0.1, momentum: 0.9 });
          const losses: number[] = [];
          for (let s = 0; s < steps; s++) {
            const outcome = await plugin.optimizerStep(optimizer, plugin.forwardContext(loss));
            if (!outcome.skipped) losses.push(outcome.loss);
            // Host kernels settle as microtasks: yield to the event loop so the test runner's worker can answer its RPCs.
            await new Promise((resolve) => setImmediate(resolve));
          }
          expect(losses.length).toBeGreaterThan(steps - 5);
          expect(losses.every(Number.isFinite)).toBe(true);
          expect(losses.at(-1)!).toBeLessThan(0.4 * losses[0]!);
        });
      }
    });

    describe("training", () => {
      const steps = options.trainSteps ?? 60;
      for (const precision of CANONICAL_PRECISIONS) {
        if (!supported(precision)) continue;
        test(`a small MLP trains in ${precision}`, async () => {
          manualSeed(1);
          const plugin = precisionPluginFor(precision, autocastPolicy);
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

      for (const precision of ["32-true", "16-mixed"] as const) {
        if (!supported(precision)) continue;
        test(`captured steps (StepCapture) train exactly as recorded ones in ${precision}`, async () => {
          const train = async (captured: boolean) => {
            manualSeed(5);
            const plugin = precisionPluginFor(precision, autocastPolicy);
            const model = plugin.initContext(() => new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 4)));
            const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
            const capture = new StepCapture(plugin, optimizer, { module: model, warn: () => {} });
            const g = new Generator(6);
            const losses: number[] = [];
            for (let s = 0; s < 12; s++) {
              if (s === 7) optimizer.paramGroups[0]!.lr = 0.03;
              const { x, y } = blobs(16, 8, 4, g);
              const [input, labels] = [tensor(x, [16, 8], "float32"), tensor(y, [16], "int32")];
              const forward = ([bx, by]: readonly Tensor[]) => crossEntropy(model.forward(plugin.convertInput(bx!)), by!);
              const outcome = captured
                ? await capture.step([input, labels], forward)
                : await plugin.optimizerStep(
                    optimizer,
                    plugin.forwardContext(() => forward([input, labels])),
                  );
              losses.push(outcome.loss);
            }
            const params = await Promise.all(model.parameters().map(async (p) => Array.from(await p.toHost())));
            return { losses, params, replayed: capture.stats.replayed };
          };
          const recorded = await train(false);
          const captured = await train(true);
          expect(captured.replayed).toBeGreaterThanOrEqual(8);
          expect(captured.losses).toEqual(recorded.losses);
          expect(captured.params).toEqual(recorded.params);
        });
      }

      // The ops a CNN's training step lowers to (forward, backward and the update).
      const cnnOps: PrimitiveOp[] = ["conv2d", "convTranspose2d", "maxPool2d", "maxPool2dIndices", "indexAdd", "sum", "matmul"];
      const runs = (op: PrimitiveOp, dtype: DType) => (caps.ops[op] ?? []).includes(dtype) || (isHalfDType(dtype) && (caps.ops[op] ?? []).includes("float32"));
      for (const precision of CANONICAL_PRECISIONS) {
        if (!supported(precision)) continue;
        const title = `a tiny CNN (conv, batch norm, max pooling) trains in ${precision}`;
        const computeDTypes = dtypesOfPrecision(precision).filter(isFloatDType);
        const missing = cnnOps.flatMap((op) => computeDTypes.filter((d) => !runs(op, d)).map((d) => `${op} in ${d}`));
        if (missing.length) {
          it.skip(`${title}: not tested, ${backend.name} registers no ${missing.join(", ")}`, () => {});
          continue;
        }
        test(title, async () => {
          manualSeed(3);
          const plugin = precisionPluginFor(precision, autocastPolicy);
          const model = plugin.initContext(
            () =>
              new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new MaxPool2d(2), new Flatten(), new Linear(4 * 4 * 4, 3)),
          );
          const optimizer = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
          const { x, y } = strokes(48, new Generator(4));
          const input = plugin.convertInput(tensor(x, [48, 1, 8, 8]));
          const labels = tensor(y, [48], "int32");
          const losses: number[] = [];
          for (let s = 0; s < 30; s++) {
            const loss = plugin.forwardContext(() => crossEntropy(model.forward(input), labels));
            const outcome = await plugin.optimizerStep(optimizer, loss, { extra: model.buffers() });
            expect(outcome.skipped).toBe(false);
            losses.push(outcome.loss);
          }
          expect(losses.every(Number.isFinite)).toBe(true);
          // Stated margin: after 30 steps the loss is under a quarter of where it started.
          expect(losses.at(-1)!).toBeLessThan(0.25 * losses[0]!);
          const bn = model.layers[1] as BatchNorm2d;
          expect(bn.running_mean!.dtype).toBe("float32");
          expect(await bn.num_batches_tracked!.item()).toBe(30);
        });
      }
    });
  });
}

/** 8 x 8 images of a horizontal, a vertical or a diagonal stroke at a random place, with noise. */
function strokes(n: number, g: Generator): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(n * 64);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const kind = i % 3;
    y[i] = kind;
    const at = 1 + g.int(6);
    for (let p = 0; p < 64; p++) {
      const [r, c] = [Math.floor(p / 8), p % 8];
      const on = kind === 0 ? r === at : kind === 1 ? c === at : r === c;
      x[i * 64 + p] = (on ? 1 : 0) + g.normal() * 0.3;
    }
  }
  return { x, y };
}

/**
 * The dtype of each output of the autocast test. For the named device types these are PyTorch's
 * lists written out (cuda: its CUDA lists; cpu: its CPU lists; tpu: nbit's documented choice),
 * independent of core's tables; for a table of a backend's own, what the table says.
 */
function expectedAutocastDTypes(policy: AutocastPolicy, low: FloatDType): Record<string, DType> {
  const named: Record<string, readonly string[]> = {
    cuda: ["softmax", "logSoftmax", "exp", "log", "sum", "crossEntropy", "mseLoss", "layerNorm"],
    cpu: ["crossEntropy", "mseLoss"],
    tpu: ["crossEntropy", "mseLoss"],
  };
  const builtIn = Object.values(AUTOCAST_POLICIES).includes(policy);
  const float32 = builtIn ? named[policy.name]! : Object.keys(policy.ops).filter((op) => policy.ops[op] === "float32");
  const byOp = {
    softmax: "softmax",
    logSoftmax: "logSoftmax",
    exp: "exp",
    log: "log",
    sum: "sum",
    mean: "mean",
    crossEntropy: "crossEntropy",
    mse: "mseLoss",
    layerNorm: "layerNorm",
  };
  // h, the linear output, is in the low dtype; ops on no list keep it, and h + b (float32) promotes.
  const expected: Record<string, DType> = { linear: low, matmul: low, relu: low, sameLow: low, promoted: "float32" };
  for (const [key, op] of Object.entries(byOp)) expected[key] = float32.includes(op) ? "float32" : low;
  return expected;
}

export type { Backend };

/** A stable seed from a test title, so each case draws its own fixed inputs. */
function seedOf(title: string): number {
  let h = 2166136261;
  for (let i = 0; i < title.length; i++) h = Math.imul(h ^ title.charCodeAt(i), 16777619);
  return h >>> 0;
}
