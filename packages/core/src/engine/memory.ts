import { itemSize } from "../dtype.js";
import type { BackendCapabilities } from "./backend.js";
import type { Tensor } from "./tensor.js";

export type StorageMap = BackendCapabilities["storage"];

/**
 * Bytes `t` actually takes where it is held: on a backend, per the storage it declares (a 16-bit
 * float held as float32, as on cpu and cuda, takes 4 bytes); in host memory (not yet placed), its
 * dtype's size. `storage` asks what it would take on a backend with that storage instead.
 */
export function heldBytes(t: Tensor, storage: StorageMap | undefined = t.node.device?.runtime.backend.capabilities.storage): number {
  return t.size * (storage?.[t.dtype] === "float32" ? 4 : itemSize(t.dtype));
}
