import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { allocHost, itemSize, type DType, type HostArray } from "../dtype.js";
import { NbitError } from "../errors.js";

/** safetensors dtype names. 16-bit floats are stored as 16-bit, never widened. */
const TO_SAFETENSORS: Record<DType, string> = {
  float64: "F64",
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  int32: "I32",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};
const FROM_SAFETENSORS = Object.fromEntries(Object.entries(TO_SAFETENSORS).map(([k, v]) => [v, k])) as Record<string, DType>;

export interface StoredTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

export class CheckpointError extends NbitError {
  constructor(path: string, detail: string) {
    super("CHECKPOINT_INVALID", `Checkpoint ${path}: ${detail}`);
  }
}

/** Serialises tensors as safetensors: an 8-byte little-endian header length, a JSON header, raw little-endian data. */
export function encodeSafetensors(tensors: Readonly<Record<string, StoredTensor>>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name]!;
    const bytes = t.data.length * itemSize(t.dtype);
    header[name] = { dtype: TO_SAFETENSORS[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((json.length + 8) % 8)) % 8); // align the data section to 8 bytes
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const name of names) {
    const { data } = tensors[name]!;
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  return out;
}

export function decodeSafetensors(bytes: Uint8Array, path = "<memory>"): { tensors: Record<string, StoredTensor>; metadata: Record<string, string> } {
  if (bytes.length < 8) throw new CheckpointError(path, `file is ${bytes.length} bytes, too short for a safetensors header`);
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > bytes.length - 8) throw new CheckpointError(path, `header claims ${headerLength} bytes but the file has ${bytes.length - 8} after the length`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    throw new CheckpointError(path, "header is not valid JSON (the file is corrupt or not a safetensors file)");
  }
  const dataStart = 8 + headerLength;
  const tensors: Record<string, StoredTensor> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype: code, shape, data_offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const dtype = FROM_SAFETENSORS[code];
    if (!dtype) throw new CheckpointError(path, `tensor "${name}" has unsupported dtype ${code}`);
    const [begin, end] = data_offsets;
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * itemSize(dtype) || dataStart + end > bytes.length)
      throw new CheckpointError(path, `tensor "${name}" expected ${count * itemSize(dtype)} bytes for ${code}[${shape.join(", ")}], found ${Math.min(end, bytes.length - dataStart) - begin} (truncated or corrupt)`);
    const data = allocHost(dtype, count);
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart + begin, dataStart + end));
    tensors[name] = { dtype, shape, data };
  }
  return { tensors, metadata: (header.__metadata__ as Record<string, string> | undefined) ?? {} };
}

/** Writes to a temporary file, syncs it and renames it over `path`, so a crash never leaves a torn checkpoint. */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, "w");
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function readSafetensors(path: string): ReturnType<typeof decodeSafetensors> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new CheckpointError(path, `cannot be read: ${(e as Error).message}`);
  }
  return decodeSafetensors(bytes, path);
}
