import { beforeEach, describe, expect } from "vitest";
import {
  AUTOCAST_POLICIES,
  autocast,
  autocastLists,
  autocastPolicyOf,
  crossEntropy,
  layerNorm,
  linear,
  MixedPrecision,
  PRIMITIVE_OPS,
  precisionPluginFor,
  ReferenceBackend,
  referenceAccelerator,
  resolveAutocastPolicy,
  Runtime,
  tensor,
  Trainer,
  type Tensor,
} from "../src/index.js";
import { itOn } from "./scoped.js";

let runtime: Runtime;
beforeEach(() => {
  runtime = new Runtime(new ReferenceBackend());
});
const it = itOn(() => runtime);

const x = () => tensor([0.5, -1, 2, 0.25, 1.5, -0.75], [2, 3]);
const w = () => tensor([0.1, 0.2, 0.3, -0.4, 0.5, -0.6], [2, 3]);
const labels = () => tensor([0, 1], [2], "int32");

/** The dtype of each op's output under bf16 autocast with `policy`; h is a bf16 linear output. */
function dtypesUnder(policy: "cuda" | "cpu" | "tpu") {
  return autocast(
    "bfloat16",
    () => {
      const h = linear(x(), w());
      const out: Record<string, Tensor> = {
        linear: h,
        softmax: h.softmax(1),
        logSoftmax: h.logSoftmax(1),
        exp: h.exp(),
        log: h.exp().log(),
        sqrt: h.sqrt(),
        sum: h.sum(),
        mean: h.mean(),
        layerNorm: layerNorm(h, tensor([1, 1], [2]), tensor([0, 0], [2])),
        crossEntropy: crossEntropy(h, labels()),
      };
      return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.dtype]));
    },
    AUTOCAST_POLICIES[policy],
  );
}

describe("autocast lists per device type", () => {
  it("cpu follows PyTorch's CPU lists: softmax, logSoftmax, exp, log, sum, mean and layerNorm keep their input dtype", () => {
    expect(dtypesUnder("cpu")).toEqual({
      linear: "bfloat16",
      softmax: "bfloat16",
      logSoftmax: "bfloat16",
      exp: "bfloat16",
      log: "bfloat16",
      sqrt: "bfloat16",
      sum: "bfloat16",
      mean: "bfloat16",
      layerNorm: "bfloat16",
      crossEntropy: "float32",
    });
  });

  it("cuda follows PyTorch's CUDA lists: exp, log, softmax, logSoftmax, sum, layerNorm and losses in float32; mean and sqrt on no list", () => {
    expect(dtypesUnder("cuda")).toEqual({
      linear: "bfloat16",
      softmax: "float32",
      logSoftmax: "float32",
      exp: "float32",
      log: "float32",
      sqrt: "bfloat16",
      sum: "float32",
      mean: "bfloat16",
      layerNorm: "float32",
      crossEntropy: "float32",
    });
  });

  it("tpu runs matmul-type ops in the low dtype, losses in float32 and everything else in its input dtype", () => {
    expect(dtypesUnder("tpu")).toEqual(dtypesUnder("cpu"));
    expect(autocastLists("tpu")).toEqual({ lowPrecision: ["matmul", "linear", "conv2d", "convTranspose2d"], float32: ["crossEntropy", "mseLoss"] });
  });

  it("lists only ops that exist: primitives or core's composites (no dead entries such as norm)", () => {
    const composites = ["linear", "softmax", "logSoftmax", "mean", "layerNorm", "crossEntropy", "mseLoss"];
    for (const policy of Object.values(AUTOCAST_POLICIES))
      for (const op of Object.keys(policy.ops)) expect([...PRIMITIVE_OPS, ...composites], `${policy.name}: ${op}`).toContain(op);
  });

  it("each accelerator names its policy; Trainer's mixed plugin autocasts with it", () => {
    const cpuLike = referenceAccelerator({ name: "cpu-like", autocastPolicy: "cpu" });
    expect(autocastPolicyOf(cpuLike)).toBe(AUTOCAST_POLICIES.cpu);
    expect(autocastPolicyOf(referenceAccelerator())).toBe(AUTOCAST_POLICIES.cuda);
    const trainer = new Trainer({ accelerator: cpuLike, precision: "bf16-mixed", logger: false, enableProgressBar: false });
    expect(trainer.precisionPlugin.autocastPolicy).toBe(AUTOCAST_POLICIES.cpu);
    expect(trainer.precisionPlugin.forwardContext(() => linear(x(), w()).softmax(1).dtype)).toBe("bfloat16");
    expect(precisionPluginFor("bf16-mixed", "cuda").forwardContext(() => linear(x(), w()).softmax(1).dtype)).toBe("float32");
  });

  it("takes a table of a backend's own, and refuses an unknown name", () => {
    const own = { name: "mine", ops: { matmul: "lowPrecision", linear: "lowPrecision", exp: "float32" } } as const;
    const plugin = new MixedPrecision("bf16-mixed", undefined, own);
    expect(plugin.forwardContext(() => [linear(x(), w()).exp().dtype, linear(x(), w()).softmax(1).dtype])).toEqual(["float32", "bfloat16"]);
    expect(() => resolveAutocastPolicy("gpu" as never)).toThrow(/unknown autocast policy "gpu"; expected one of "cuda", "cpu", "tpu"/);
  });

  it("carries the policy in the autocast scope, so nested scopes restore it", () => {
    const half = x().cast("bfloat16");
    const inner = autocast(
      "bfloat16",
      () => [autocast("bfloat16", () => half.softmax(1).dtype, AUTOCAST_POLICIES.cpu), half.softmax(1).dtype],
      AUTOCAST_POLICIES.cuda,
    );
    expect(inner).toEqual(["bfloat16", "float32"]);
  });
});
