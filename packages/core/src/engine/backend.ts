import type { DType, HalfDType, HostArray } from "../dtype.js";
import type { PrimitiveOp } from "./ops.js";
import type { OpAttrs, Shape } from "./primitives.js";

/**
 * How a backend holds a dtype: natively, or (for float16/bfloat16) as float32 values that are
 * always exactly representable in the 16-bit type.
 */
export type StorageKind = "native" | "float32";

export interface BackendCapabilities {
  /** eager: core calls `execute` op by op. graph: core hands whole captured programs to `compile`. */
  readonly execution: "eager" | "graph";
  /** dtypes the backend can hold. A dtype missing here cannot be used at all. */
  readonly storage: Readonly<Partial<Record<DType, StorageKind>>>;
  /**
   * Operand dtypes each primitive has a kernel for (derive this with KernelRegistry.capabilities).
   * A narrow-float op the backend lacks is run by core as the float32 kernel followed by an
   * exact rounding cast, so numerics match every other backend. A primitive missing here fails
   * when a program is lowered, with an UnsupportedOpError.
   */
  readonly ops: Readonly<Partial<Record<PrimitiveOp, readonly DType[]>>>;
  /** Per op, inputs of these dtypes are rounded to a narrower format first (e.g. TPU MXU: float32 -> bfloat16). */
  readonly inputRounding?: Readonly<Partial<Record<PrimitiveOp, Readonly<Partial<Record<DType, HalfDType>>>>>>;
}

/** One value of a program: its dtype and shape. */
export interface ValueInfo {
  readonly dtype: DType;
  readonly shape: Shape;
}

export interface Instruction extends ValueInfo {
  readonly op: PrimitiveOp | "const";
  /** Indices into the program's values. */
  readonly inputs: readonly number[];
  readonly attrs: OpAttrs;
  /** const: the scalar every element holds. */
  readonly value?: number;
}

/**
 * A captured computation. Values 0..inputs.length-1 are the inputs; instruction i defines value
 * inputs.length + i. Every instruction's dtype is one the backend declared for that op.
 */
export interface Program {
  readonly inputs: readonly ValueInfo[];
  readonly instructions: readonly Instruction[];
  readonly outputs: readonly number[];
  /** Identical for programs with the same structure, shapes and dtypes: a cache key. */
  readonly key: string;
}

/** An opaque handle to memory a backend owns. */
export type BackendBuffer = object;

export interface CompiledProgram {
  /** The outputs, as a promise or (a backend that computes them at once) as they are. */
  run(inputs: readonly BackendBuffer[]): Promise<BackendBuffer[]> | BackendBuffer[];
  dispose?(): void;
}

export interface Backend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  /** Host data in core's layout for `dtype` (16-bit floats as raw bits in a Uint16Array). */
  upload(data: HostArray, dtype: DType, shape: Shape): BackendBuffer;
  download(buffer: BackendBuffer, dtype: DType, shape: Shape): Promise<HostArray> | HostArray;
  dispose?(buffer: BackendBuffer): void;
  /** Eager backends: run one instruction. */
  execute?(instruction: Instruction, inputs: readonly BackendBuffer[], inputInfo: readonly ValueInfo[]): BackendBuffer;
  /** Graph backends: compile a program once; core caches it by `program.key`. */
  compile?(program: Program): CompiledProgram | Promise<CompiledProgram>;
}
