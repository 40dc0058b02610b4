/**
 * safetensors reader/writer (https://github.com/huggingface/safetensors, format v0):
 *   8 bytes: little-endian u64 N = header length
 *   N bytes: UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}
 *            (padded with spaces so the data starts 8-byte aligned)
 *   rest:    raw little-endian tensor bytes; offsets are relative to the start of this block.
 * We write F32 only and read F32, F16 and BF16 (converted to F32). Errors name the tensor and file.
 */
import fs from 'node:fs';
import { writeFileAtomicSync } from '../base/atomic.ts';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface TensorF32 {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsHeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafetensorsFile {
  /** Tensors converted to float32, in file order. */
  tensors: Map<string, TensorF32>;
  /** Original dtype of each tensor. */
  dtypes: Map<string, string>;
  metadata: Record<string, string>;
}

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

function where(file?: string): string {
  return file ? ` in ${file}` : '';
}

/** Parse only the header (cheap: reads the first 8 + N bytes). */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  file?: string,
): { header: Record<string, SafetensorsHeaderEntry>; metadata: Record<string, string>; dataStart: number } {
  if (bytes.byteLength < 8) {
    throw new Error(`safetensors: file too short (${bytes.byteLength} bytes) to hold a header${where(file)}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(bytes.byteLength - 8) || n > 100_000_000n) {
    throw new Error(
      `safetensors: header length ${n} exceeds the file size ${bytes.byteLength} (truncated or not a safetensors file)${where(file)}`,
    );
  }
  const hlen = Number(n);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  } catch (e) {
    throw new Error(`safetensors: header is not valid JSON${where(file)}: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`safetensors: header is not a JSON object${where(file)}`);
  }
  const header: Record<string, SafetensorsHeaderEntry> = {};
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    const e = v as SafetensorsHeaderEntry;
    if (
      !e ||
      typeof e.dtype !== 'string' ||
      !Array.isArray(e.shape) ||
      !Array.isArray(e.data_offsets) ||
      e.data_offsets.length !== 2
    ) {
      throw new Error(`safetensors: malformed header entry for tensor '${name}'${where(file)}`);
    }
    header[name] = e;
  }
  return { header, metadata, dataStart: 8 + hlen };
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24; // subnormal
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

let f16Table: Float32Array | null = null;
function f16Lookup(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  return f16Table;
}

/** Convert one tensor's raw little-endian bytes to float32. */
function toF32(raw: Uint8Array, dtype: string, count: number, name: string, file?: string): Float32Array {
  const out = new Float32Array(count);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case 'F32':
      // Copy through bytes: the source may not be 4-byte aligned.
      new Uint8Array(out.buffer).set(raw);
      return out;
    case 'F16': {
      const t = f16Lookup();
      for (let i = 0; i < count; i++) out[i] = t[dv.getUint16(2 * i, true)];
      return out;
    }
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'F64':
      for (let i = 0; i < count; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    default:
      throw new Error(
        `safetensors: tensor '${name}' has dtype ${dtype}; only F32, F16, BF16 (and F64) can be read as float32${where(file)}`,
      );
  }
}

/**
 * Decode a whole safetensors byte buffer. `only` restricts which tensors are converted (others are
 * still validated). Throws naming the tensor and file when offsets or sizes do not fit.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  file?: string,
  only?: (name: string) => boolean,
): SafetensorsFile {
  const { header, metadata, dataStart } = parseSafetensorsHeader(bytes, file);
  const dataLen = bytes.byteLength - dataStart;
  const tensors = new Map<string, TensorF32>();
  const dtypes = new Map<string, string>();
  for (const [name, e] of Object.entries(header)) {
    const [b, en] = e.data_offsets;
    const count = e.shape.reduce((a, s) => a * s, 1);
    const bpe = BYTES[e.dtype];
    if (bpe === undefined) {
      throw new Error(`safetensors: tensor '${name}' has unknown dtype '${e.dtype}'${where(file)}`);
    }
    if (!(Number.isInteger(b) && Number.isInteger(en) && b >= 0 && en >= b)) {
      throw new Error(`safetensors: tensor '${name}' has invalid data_offsets [${b}, ${en}]${where(file)}`);
    }
    if (en - b !== count * bpe) {
      throw new Error(
        `safetensors: tensor '${name}' (${e.dtype} ${JSON.stringify(e.shape)}) needs ${count * bpe} bytes but its data_offsets span ${en - b}${where(file)}`,
      );
    }
    if (en > dataLen) {
      throw new Error(
        `safetensors: tensor '${name}' ends at byte ${en} of the data block but the file has only ${dataLen} data bytes (truncated file?)${where(file)}`,
      );
    }
    dtypes.set(name, e.dtype);
    if (only && !only(name)) continue;
    const raw = bytes.subarray(dataStart + b, dataStart + en);
    tensors.set(name, { shape: e.shape.slice(), data: toF32(raw, e.dtype, count, name, file) });
  }
  return { tensors, dtypes, metadata };
}

export function readSafetensors(file: string, only?: (name: string) => boolean): SafetensorsFile {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`safetensors: cannot read ${file}: ${(e as Error).message}`);
  }
  return decodeSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file, only);
}

/** Encode float32 tensors (in the given order) with optional string metadata. */
export function encodeSafetensors(
  tensors: Record<string, TensorF32> | Map<string, TensorF32>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors: metadata value for '${k}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new Error(`safetensors: '__metadata__' is not a valid tensor name`);
    const count = t.shape.reduce((a, s) => a * s, 1);
    if (count !== t.data.length) {
      throw new Error(`safetensors: tensor '${name}' has shape ${JSON.stringify(t.shape)} but ${t.data.length} values`);
    }
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * count] };
    offset += 4 * count;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hbytes = enc.encode(json);
  const pad = (8 - ((8 + hbytes.length) % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hbytes = enc.encode(json);
  }
  const out = new Uint8Array(8 + hbytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  for (const [, t] of entries) {
    const b = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (littleEndian) out.set(b, p);
    else {
      const dv = new DataView(out.buffer);
      for (let i = 0; i < t.data.length; i++) dv.setFloat32(p + 4 * i, t.data[i], true);
    }
    p += b.byteLength;
  }
  return out;
}

/** Write float32 tensors to `file` (atomically: temporary file, fsync, rename). */
export function writeSafetensors(
  file: string,
  tensors: Record<string, TensorF32> | Map<string, TensorF32>,
  metadata?: Record<string, string>,
): void {
  writeFileAtomicSync(file, encodeSafetensors(tensors, metadata));
}
