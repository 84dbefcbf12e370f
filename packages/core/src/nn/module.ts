import { allocHost, DTYPES, isFloatDType, isHalfDType, type DType, type FloatDType, type HostArray } from "../dtype.js";
import { NbitError, ShapeError } from "../errors.js";
import { castHost, numbersToHost } from "../numerics/convert.js";
import { InvalidArgumentError, isPlainObject } from "../validation.js";
import { Tensor } from "../engine/tensor.js";
import { sameShape } from "../engine/primitives.js";
import { LazyNode } from "../engine/node.js";
import { heldBytes, type StorageMap } from "../engine/memory.js";
import { ComplexTensor } from "../complex/tensor.js";
import { complexDTypeOf } from "../complex/dtype.js";

/** A trainable tensor. Its identity is stable across optimizer steps (they `assign` new values). */
export class Parameter extends Tensor {
  constructor(value: Tensor, requiresGrad = true) {
    super(value.node, requiresGrad);
  }
}

/**
 * A tensor a module keeps but does not train (torch's register_buffer): batch norm's running
 * statistics. Buffers keep their dtype when the module is cast, and belong to its state dict.
 */
export class ModuleBuffer extends Tensor {
  constructor(value: Tensor) {
    super(value.node, false);
  }
}

/** Base class of layers and models, in the manner of torch.nn.Module. */
export abstract class Module {
  training = true;

  abstract forward(...inputs: Tensor[]): Tensor;

  /** Own parameters and submodules, found among this object's fields (arrays included). */
  *namedChildren(): Generator<[string, Module]> {
    for (const [key, value] of Object.entries(this)) {
      if (value instanceof Module) yield [key, value];
      else if (Array.isArray(value)) for (const [i, item] of value.entries()) if (item instanceof Module) yield [`${key}.${i}`, item];
    }
  }

  *namedParameters(prefix = ""): Generator<[string, Parameter]> {
    for (const [key, value] of Object.entries(this)) {
      if (value instanceof Parameter) yield [prefix + key, value];
      // A complex parameter trains as its two real parts (PyTorch's optimizers see view_as_real).
      else if (value instanceof ComplexTensor)
        for (const part of ["real", "imag"] as const) if (value[part] instanceof Parameter) yield [`${prefix}${key}.${part}`, value[part]];
    }
    for (const [name, child] of this.namedChildren()) yield* child.namedParameters(`${prefix}${name}.`);
  }

  *namedBuffers(prefix = ""): Generator<[string, ModuleBuffer]> {
    for (const [key, value] of Object.entries(this)) if (value instanceof ModuleBuffer) yield [prefix + key, value];
    for (const [name, child] of this.namedChildren()) yield* child.namedBuffers(`${prefix}${name}.`);
  }

  buffers(): ModuleBuffer[] {
    return [...this.namedBuffers()].map(([, b]) => b);
  }

  /** Parameters, then buffers: everything a checkpoint holds for this module. */
  *namedStateTensors(): Generator<[string, Tensor]> {
    yield* this.namedParameters();
    yield* this.namedBuffers();
  }

  parameters(): Parameter[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  *modules(): Generator<Module> {
    yield this;
    for (const [, child] of this.namedChildren()) yield* child.modules();
  }

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * The dtype of the module's floating parameters (the first one's, as `next(model.parameters()).dtype`
   * in PyTorch); "float32", the default dtype, for a module without floating parameters.
   */
  get dtype(): FloatDType {
    for (const p of this.parameters()) if (isFloatDType(p.dtype)) return p.dtype;
    return "float32";
  }

  /**
   * Where the parameters live: the name of the backend holding the first parameter once it has
   * been placed on one, "host" before that (parameters are created in host memory).
   */
  get device(): string {
    for (const p of this.parameters()) if (p.node.device) return p.node.device.runtime.backend.name;
    return "host";
  }

  /**
   * Bytes the parameters actually take where they are held: on a backend, per its declared storage
   * (16-bit floats held as float32 take 4 bytes each on cpu and cuda); before placement, in host
   * memory, their dtypes' sizes. Pass a backend's `capabilities.storage` to ask what they take there.
   */
  parameterBytes(storage?: StorageMap): number {
    return this.parameters().reduce((n, p) => n + heldBytes(p, storage ?? p.node.device?.runtime.backend.capabilities.storage), 0);
  }

  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }

  /** Casts every floating-point parameter to `dtype` in place (like module.to(dtype)). */
  to(dtype: FloatDType): this {
    // Complex parameters have float32 or float64 parts only: refuse 16-bit dtypes before casting anything.
    const hasComplex = [...this.modules()].some((m) => Object.values(m).some((v) => v instanceof ComplexTensor && v.real instanceof Parameter));
    if (hasComplex) complexDTypeOf(dtype, `Module.to("${dtype}"): the module holds complex parameters.`);
    for (const p of this.parameters()) if (isFloatDType(p.dtype) && p.dtype !== dtype) p.node = p.cast(dtype).detach().node;
    return this;
  }

  /** Parameters and buffers by name. */
  stateDict(): Record<string, Tensor> {
    return Object.fromEntries(this.namedStateTensors());
  }

  /**
   * Copies values into parameters and buffers by name; names and shapes must match exactly (values
   * are cast to each tensor's dtype). Every entry is validated before any parameter changes.
   */
  loadStateDict(state: Readonly<Record<string, { data: ArrayLike<number> | Uint16Array; shape: readonly number[]; dtype: DType }>>, strict = true): void {
    if (!isPlainObject(state)) throw new InvalidArgumentError("loadStateDict state", "an object of tensors keyed by parameter name", state);
    const own = new Map(this.namedStateTensors());
    if (strict) {
      const missing = [...own.keys()].filter((k) => !Object.hasOwn(state, k));
      const unexpected = Object.keys(state).filter((k) => !own.has(k));
      if (missing.length || unexpected.length)
        throw new NbitError(
          "STATE_DICT_MISMATCH",
          `State dict does not match the module. Missing: ${missing.join(", ") || "(none)"}. Unexpected: ${unexpected.join(", ") || "(none)"}.`,
        );
    }
    const updates: [Tensor, HostArray][] = [];
    for (const [name, entry] of Object.entries(state)) {
      const p = own.get(name);
      if (!p) continue;
      if (!isPlainObject(entry)) throw new InvalidArgumentError(`loadStateDict tensor "${name}"`, "an object with data, shape and dtype", entry);
      const { data, shape, dtype } = entry;
      if (!Array.isArray(shape) || !sameShape(p.shape, shape))
        throw new ShapeError("loadStateDict", [p.shape, Array.isArray(shape) ? shape : []], `tensor "${name}" expected shape [${p.shape.join(", ")}]`);
      if (typeof dtype !== "string" || !(DTYPES as readonly string[]).includes(dtype))
        throw new InvalidArgumentError(`loadStateDict tensor "${name}" dtype`, `one of ${DTYPES.join(", ")}`, dtype);
      const fits = ArrayBuffer.isView(data) ? (data as HostArray).constructor === allocHost(dtype, 0).constructor : Array.isArray(data) && !isHalfDType(dtype);
      if (!fits || (data as ArrayLike<number>).length !== p.size)
        throw new InvalidArgumentError(`loadStateDict tensor "${name}" data`, `${p.size} values stored as ${dtype}`, data);
      updates.push([p, castHost(ArrayBuffer.isView(data) ? (data as HostArray) : numbersToHost(data as number[], dtype), dtype, p.dtype)]);
    }
    for (const [p, host] of updates) p.node = LazyNode.leaf(host, p.shape, p.dtype);
  }
}
