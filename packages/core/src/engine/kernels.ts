import type { DType, HalfDType } from "../dtype.js";
import { NbitError, UnsupportedOpError } from "../errors.js";
import type { BackendCapabilities, StorageKind } from "./backend.js";
import { OPS, PRIMITIVE_OPS, type PrimitiveOp } from "./ops.js";

/**
 * One kernel a backend offers: primitive `op` for operand dtypes `dtypes` (as tfjs's
 * registerKernel). `inputRounding` declares that float inputs of a dtype are first rounded to a
 * narrower format (a TPU MXU rounds float32 matmul and convolution inputs to bfloat16).
 */
export interface KernelSpec<K> {
  readonly op: PrimitiveOp;
  readonly dtypes: readonly DType[];
  readonly kernel: K;
  readonly inputRounding?: Readonly<Partial<Record<DType, HalfDType>>>;
}

/**
 * The kernels one backend registered. Its capabilities are computed from them, so what a
 * backend declares cannot drift from what it runs.
 */
export class KernelRegistry<K> {
  private readonly kernels = new Map<PrimitiveOp, Map<DType, KernelSpec<K>>>();

  constructor(
    readonly backend: string,
    specs: readonly KernelSpec<K>[] = [],
  ) {
    this.register(...specs);
  }

  /** Adds kernels; a later registration for the same op and dtype replaces the earlier one. */
  register(...specs: readonly KernelSpec<K>[]): this {
    for (const spec of specs) {
      if (!Object.hasOwn(OPS, spec.op))
        throw new NbitError(
          "UNKNOWN_OP",
          `Backend "${this.backend}" registers a kernel for "${spec.op}", which is not a primitive. Primitives: ${PRIMITIVE_OPS.join(", ")}.`,
        );
      let byDType = this.kernels.get(spec.op);
      if (!byDType) this.kernels.set(spec.op, (byDType = new Map()));
      for (const dtype of spec.dtypes) byDType.set(dtype, spec);
    }
    return this;
  }

  /** Removes the kernels of `op` (for backends derived from another one). */
  unregister(op: PrimitiveOp, dtypes?: readonly DType[]): this {
    const byDType = this.kernels.get(op);
    if (byDType) for (const d of dtypes ?? [...byDType.keys()]) byDType.delete(d);
    return this;
  }

  has(op: PrimitiveOp, dtype: DType): boolean {
    return this.kernels.get(op)?.has(dtype) ?? false;
  }

  /** The kernel for `op` on operand dtype `dtype`, or an UnsupportedOpError naming backend, op and dtype. */
  get(op: PrimitiveOp, dtype: DType): K {
    const spec = this.kernels.get(op)?.get(dtype);
    if (!spec) throw new UnsupportedOpError(this.backend, op, dtype, this.dtypes(op));
    return spec.kernel;
  }

  dtypes(op: PrimitiveOp): DType[] {
    return [...(this.kernels.get(op)?.keys() ?? [])];
  }

  /** Capabilities derived from the registered kernels. */
  capabilities(execution: BackendCapabilities["execution"], storage: Readonly<Partial<Record<DType, StorageKind>>>): BackendCapabilities {
    const ops: Partial<Record<PrimitiveOp, DType[]>> = {};
    const inputRounding: Partial<Record<PrimitiveOp, Partial<Record<DType, HalfDType>>>> = {};
    for (const [op, byDType] of this.kernels) {
      if (byDType.size === 0) continue;
      ops[op] = [...byDType.keys()];
      for (const [dtype, spec] of byDType) {
        const rounding = spec.inputRounding?.[dtype];
        if (rounding) (inputRounding[op] ??= {})[dtype] = rounding;
      }
    }
    return { execution, storage, ops, inputRounding };
  }
}
