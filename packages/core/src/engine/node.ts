import type { DType, HostArray } from "../dtype.js";
import type { BackendBuffer } from "./backend.js";
import type { PrimitiveOp } from "./ops.js";
import type { OpAttrs, Shape } from "./primitives.js";
import type { Runtime } from "./runtime.js";

/** A leaf's inputs and attributes: none, one frozen array and object for every leaf (a step makes several leaves). */
const NO_SOURCES = Object.freeze([]) as readonly LazyNode[] as LazyNode[];
const NO_ATTRS: OpAttrs = Object.freeze({});

/**
 * A vertex of the lazy graph. A leaf holds data (on the host, on a runtime, or both); a
 * const is a scalar broadcast to its shape; anything else is a primitive op over `src`.
 * Realizing a node turns it into a leaf and drops its inputs.
 */
export class LazyNode {
  /** Scratch space of the runtime's graph walk: the walk that last visited this node, and its position there. */
  walk = 0;
  position = -1;

  constructor(
    public op: PrimitiveOp | "const" | "leaf",
    public src: LazyNode[],
    public readonly attrs: OpAttrs,
    public readonly shape: Shape,
    public readonly dtype: DType,
    public readonly value?: number,
    public host?: HostArray,
    public device?: { readonly runtime: Runtime; readonly buffer: BackendBuffer },
  ) {}

  static leaf(host: HostArray, shape: Shape, dtype: DType): LazyNode {
    return new LazyNode("leaf", NO_SOURCES, NO_ATTRS, shape, dtype, undefined, host);
  }

  /** A leaf whose value is `buffer` on `runtime`. */
  static placed(runtime: Runtime, buffer: BackendBuffer, shape: Shape, dtype: DType): LazyNode {
    return new LazyNode("leaf", NO_SOURCES, NO_ATTRS, shape, dtype, undefined, undefined, { runtime, buffer });
  }

  get isLeaf(): boolean {
    return this.op === "leaf";
  }

  /** Turns this node into a leaf holding `buffer` on `runtime`. */
  realizeAs(runtime: Runtime, buffer: BackendBuffer): void {
    this.op = "leaf";
    this.src = NO_SOURCES;
    this.device = { runtime, buffer };
  }
}
