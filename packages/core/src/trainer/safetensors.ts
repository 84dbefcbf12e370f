import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, lstatSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { allocHost, itemSize, type DType, type HostArray } from "../dtype.js";
import { NbitError } from "../errors.js";
import { describe, InvalidArgumentError, isPlainObject } from "../validation.js";

/** safetensors dtype names. 16-bit floats are stored as 16-bit, never widened. */
const TO_SAFETENSORS: Readonly<Record<DType, string>> = {
  float64: "F64",
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  int32: "I32",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};
const FROM_SAFETENSORS: ReadonlyMap<string, DType> = new Map(Object.entries(TO_SAFETENSORS).map(([k, v]) => [v, k as DType]));

/** The largest header the reference implementation accepts (safetensors' MAX_HEADER_SIZE). */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

export interface StoredTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

/** What a safetensors file holds; both records have no prototype, so any tensor name is a plain key. */
export interface DecodedSafetensors {
  readonly tensors: Record<string, StoredTensor>;
  readonly metadata: Record<string, string>;
}

export class CheckpointError extends NbitError {
  constructor(
    readonly path: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super("CHECKPOINT_INVALID", `Checkpoint ${path}: ${detail}`);
    if (options && "cause" in options) this.cause = options.cause;
  }
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Elements of `shape`, or null when the shape is not a list of non-negative integers with a safe product. */
function elementCount(shape: unknown): number | null {
  if (!Array.isArray(shape)) return null;
  let count = 1;
  for (const d of shape) {
    if (!isCount(d)) return null;
    count *= d;
    if (!Number.isSafeInteger(count)) return null;
  }
  return count;
}

/**
 * Serialises tensors as safetensors: an 8-byte little-endian header length, a JSON header
 * (with string-valued `__metadata__`), then the raw little-endian data, contiguous and in name order.
 */
export function encodeSafetensors(tensors: Readonly<Record<string, StoredTensor>>, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  const meta: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new InvalidArgumentError(`safetensors metadata "${k}"`, "a string (the format stores strings only)", v);
    meta[k] = v;
  }
  const header: Record<string, unknown> = Object.create(null);
  header.__metadata__ = meta;
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name]!;
    if (name === "__metadata__" || name === "") throw new InvalidArgumentError("a safetensors tensor name", 'a non-empty name other than "__metadata__"', name);
    const code = Object.hasOwn(TO_SAFETENSORS, t.dtype) ? TO_SAFETENSORS[t.dtype] : undefined;
    if (!code) throw new InvalidArgumentError(`tensor "${name}" dtype`, `one of ${Object.keys(TO_SAFETENSORS).join(", ")}`, t.dtype);
    const count = elementCount(t.shape);
    if (count === null || t.data.length !== count || t.data.BYTES_PER_ELEMENT !== itemSize(t.dtype))
      throw new InvalidArgumentError(
        `tensor "${name}"`,
        `${count ?? "?"} ${t.dtype} values for shape [${String(t.shape)}]`,
        `${t.data.length} values of ${t.data.BYTES_PER_ELEMENT} bytes`,
      );
    const bytes = count * itemSize(t.dtype);
    header[name] = { dtype: code, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8); // align the data section to 8 bytes
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

interface Entry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: number[];
  readonly begin: number;
  readonly end: number;
}

/** Checks one header entry as the format defines it; every problem names the tensor. */
function parseEntry(name: string, entry: unknown, fail: (detail: string) => never): Entry {
  const where = `tensor "${name}"`;
  if (!isPlainObject(entry)) return fail(`${where} has header entry ${describe(entry)}; expected an object with dtype, shape and data_offsets`);
  for (const key of Object.keys(entry))
    if (key !== "dtype" && key !== "shape" && key !== "data_offsets") fail(`${where} has an unknown header field ${JSON.stringify(key)}`);
  const code = entry.dtype;
  const dtype = typeof code === "string" ? FROM_SAFETENSORS.get(code) : undefined;
  if (!dtype) fail(`${where} has unsupported dtype ${describe(code)}; expected one of ${[...FROM_SAFETENSORS.keys()].join(", ")}`);
  const count = elementCount(entry.shape);
  if (count === null) fail(`${where} has shape ${JSON.stringify(entry.shape) ?? "undefined"}; expected a list of non-negative integers`);
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isCount(offsets[0]) || !isCount(offsets[1]) || offsets[0] > offsets[1])
    fail(`${where} has data_offsets ${JSON.stringify(offsets) ?? "undefined"}; expected [begin, end] with integers 0 <= begin <= end`);
  const [begin, end] = offsets as [number, number];
  const expected = count * itemSize(dtype);
  if (end - begin !== expected)
    fail(`${where} expected ${expected} bytes for ${code}[${(entry.shape as number[]).join(", ")}], found ${end - begin} (truncated or corrupt)`);
  return { name, dtype, shape: [...(entry.shape as number[])], begin, end };
}

/**
 * Reads safetensors bytes, validating the header as the format requires: a JSON object header,
 * string-valued metadata, known dtypes, integer shapes and offsets that cover the data section
 * exactly once (no gaps, no overlaps, nothing before or after). Errors name the tensor.
 */
export function decodeSafetensors(bytes: Uint8Array, path = "<memory>"): DecodedSafetensors {
  const fail: (detail: string) => never = (detail) => {
    throw new CheckpointError(path, detail);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for a safetensors header`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_SAFETENSORS_HEADER_BYTES, bytes.length - 8)))
    fail(
      `header claims ${headerLength} bytes but the file has ${bytes.length - 8} after the length (truncated or corrupt; at most ${MAX_SAFETENSORS_HEADER_BYTES})`,
    );
  const dataStart = 8 + Number(headerLength);
  if (bytes[8] !== 0x7b) fail("header does not start with '{' (the file is corrupt or not a safetensors file)");
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch {
    fail("header is not valid JSON (the file is corrupt or not a safetensors file)");
  }
  if (!isPlainObject(header)) return fail("header is not a JSON object");
  const metadata: Record<string, string> = Object.create(null);
  if (Object.hasOwn(header, "__metadata__")) {
    const raw = header.__metadata__;
    if (!isPlainObject(raw)) fail(`__metadata__ is ${describe(raw)}; expected an object of strings`);
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (typeof v !== "string") fail(`__metadata__ value "${k}" is ${describe(v)}; the format allows strings only`);
      metadata[k] = v as string;
    }
  }
  const entries = Object.entries(header)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, entry]) => parseEntry(name, entry, fail))
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: Entry | null = null;
  for (const e of entries) {
    if (e.begin !== covered)
      fail(
        e.begin < covered
          ? `tensor "${e.name}" starts at byte ${e.begin}, inside tensor "${previous!.name}" (bytes ${previous!.begin}-${previous!.end}): overlapping data_offsets`
          : `tensor "${e.name}" starts at byte ${e.begin}, but the data before it ends at byte ${covered}: a gap in the data section`,
      );
    covered = e.end;
    previous = e;
  }
  const dataLength = bytes.length - dataStart;
  if (covered > dataLength) fail(`tensor "${previous!.name}" ends at byte ${covered} of the data but the file has ${dataLength} (truncated or corrupt)`);
  if (covered < dataLength) fail(`the file has ${dataLength - covered} bytes after the last tensor's data (corrupt, or not a safetensors file)`);
  const tensors: Record<string, StoredTensor> = Object.create(null);
  for (const e of entries) {
    const data = allocHost(e.dtype, (e.end - e.begin) / itemSize(e.dtype));
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    tensors[e.name] = { dtype: e.dtype, shape: e.shape, data };
  }
  return { tensors, metadata };
}

const TEMP_MARK = ".nbit-tmp-";
const TEMP_NAME = /^\..+\.nbit-tmp-(\d+)-[0-9a-f]{16}$/;

function processAlive(pid: number): boolean {
  if (pid === process.pid) return false; // this process writes synchronously: its own leftovers are stale
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes temporary files that earlier (crashed) writes left in `dir`; files of live writers stay. */
export function removeStaleTempFiles(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const match = TEMP_NAME.exec(name);
    if (!match || processAlive(Number(match[1]))) continue;
    const file = join(dir, name);
    try {
      const st = lstatSync(file);
      if (st.isFile() || st.isSymbolicLink()) unlinkSync(file); // unlinking a link never touches its target
    } catch {
      // another writer removed it first
    }
  }
}

/**
 * Writes `bytes` to a new temporary file next to `path` (random name, created exclusively so a
 * planted file or symlink is never followed), syncs it and renames it over `path`, so a crash never
 * leaves a torn file. Stale temporary files of the directory are removed first; the temporary file
 * is removed if the write or the rename fails.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  removeStaleTempFiles(dir);
  const tmp = join(dir, `.${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(8).toString("hex")}`);
  let fd: number;
  try {
    fd = openSync(tmp, "wx");
  } catch (e) {
    throw new CheckpointError(path, `cannot create a temporary file next to it: ${(e as Error).message}`, { cause: e });
  }
  try {
    try {
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw new CheckpointError(path, `cannot be written: ${(e as Error).message}`, { cause: e });
  }
}

/** Reads and validates a safetensors file; only regular files are read (never a FIFO or a device). */
export function readSafetensors(path: string): DecodedSafetensors {
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) throw new Error("not a regular file");
    bytes = readFileSync(path);
  } catch (e) {
    throw new CheckpointError(path, `cannot be read: ${(e as Error).message}`, { cause: e });
  }
  return decodeSafetensors(bytes, path);
}
