import { NbitError } from "../errors.js";

/** How autocast treats an op: run it in the autocast dtype, or in float32 whatever its inputs. */
export type AutocastCategory = "lowPrecision" | "float32";

/** The device types with an autocast table in core, as torch.autocast's `device_type`. */
export type AutocastDeviceType = "cuda" | "cpu" | "tpu";

/**
 * The autocast lists of one device type, as data: each op on a list runs in the autocast dtype
 * (`lowPrecision`) or in float32 (`float32`); an op on no list runs in its inputs' dtype. Keys are
 * op names: primitives (`matmul`, `exp`, ...) and the composites core writes from them (`linear`,
 * `softmax`, `crossEntropy`, ...).
 */
export interface AutocastPolicy {
  readonly name: string;
  readonly ops: Readonly<Record<string, AutocastCategory>>;
}

const LOW_PRECISION = { matmul: "lowPrecision", linear: "lowPrecision", conv2d: "lowPrecision", convTranspose2d: "lowPrecision" } as const;
const LOSSES = { crossEntropy: "float32", mseLoss: "float32" } as const;

/**
 * The autocast table of each device type, after PyTorch's autocast op reference:
 * - cuda: PyTorch's CUDA lists. Matmul-type ops in the low dtype; exp, log, softmax, logSoftmax,
 *   sum, layerNorm and the losses in float32. mean and sqrt are on neither CUDA list, so they keep
 *   their input dtype (16-bit reductions still accumulate in float32 and round once).
 * - cpu: PyTorch's CPU lists. Matmul-type ops in the low dtype; of nbit's ops only the losses
 *   (mse_loss, nll_loss / cross_entropy_loss) are on its float32 list, so softmax, logSoftmax, exp,
 *   log, sum, mean and layerNorm keep their input dtype.
 * - tpu: nbit's choice for a TPU: the ops that run on the MXU (matmul-type) in the low dtype, the
 *   losses in float32 (as on both PyTorch lists), everything else in its input dtype: the vector
 *   units compute 16-bit inputs in float32 and round once, like PyTorch/XLA's bf16.
 */
export const AUTOCAST_POLICIES: Readonly<Record<AutocastDeviceType, AutocastPolicy>> = {
  cuda: {
    name: "cuda",
    ops: { ...LOW_PRECISION, exp: "float32", log: "float32", softmax: "float32", logSoftmax: "float32", sum: "float32", layerNorm: "float32", ...LOSSES },
  },
  cpu: { name: "cpu", ops: { ...LOW_PRECISION, ...LOSSES } },
  tpu: { name: "tpu", ops: { ...LOW_PRECISION, ...LOSSES } },
};

/** A policy named by its device type, or given as a table. */
export function resolveAutocastPolicy(policy: AutocastDeviceType | AutocastPolicy): AutocastPolicy {
  if (typeof policy !== "string") return policy;
  if (!Object.hasOwn(AUTOCAST_POLICIES, policy))
    throw new NbitError(
      "INVALID_ARGUMENT",
      `unknown autocast policy "${policy}"; expected one of ${Object.keys(AUTOCAST_POLICIES)
        .map((p) => `"${p}"`)
        .join(", ")} or a table`,
    );
  return AUTOCAST_POLICIES[policy];
}

export const autocastCategory = (policy: AutocastPolicy, op: string): AutocastCategory | undefined =>
  Object.hasOwn(policy.ops, op) ? policy.ops[op] : undefined;

/** A policy's lists: every op by category. */
export function autocastLists(policy: AutocastDeviceType | AutocastPolicy = "cuda"): Record<AutocastCategory, string[]> {
  const lists: Record<AutocastCategory, string[]> = { lowPrecision: [], float32: [] };
  for (const [op, category] of Object.entries(resolveAutocastPolicy(policy).ops)) lists[category].push(op);
  return lists;
}
