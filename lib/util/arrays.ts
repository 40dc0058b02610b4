/**
 * Named numeric arrays on disk: `<base>.bin` (little-endian arrays back to back, each aligned to
 * 8 bytes) and `<base>.json` (the caller's metadata plus, per array, name, dtype, byteOffset,
 * length). Readable from any language with the JSON alone (e.g. numpy.frombuffer with offsets).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface ArrayEntry {
  name: string;
  dtype: 'float32' | 'float64';
  byteOffset: number;
  length: number;
}

export type NamedArrays = Record<string, Float32Array | Float64Array>;

export function writeArrays(base: string, arrays: NamedArrays, meta: Record<string, unknown> = {}): { bin: string; json: string } {
  mkdirSync(path.dirname(base), { recursive: true });
  const list = Object.entries(arrays);
  const entries: ArrayEntry[] = [];
  let off = 0;
  for (const [name, a] of list) {
    entries.push({ name, dtype: a instanceof Float64Array ? 'float64' : 'float32', byteOffset: off, length: a.length });
    off = Math.ceil((off + a.byteLength) / 8) * 8;
  }
  const buf = Buffer.alloc(off);
  list.forEach(([, a], i) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(buf, entries[i].byteOffset));
  const bin = base + '.bin';
  const json = base + '.json';
  writeFileSync(bin, buf);
  writeFileSync(json, JSON.stringify({ ...meta, binary: path.basename(bin), endianness: 'little', arrays: entries }, null, 2));
  return { bin, json };
}

export function readArrays(base: string): { meta: Record<string, unknown>; arrays: NamedArrays } {
  const meta = JSON.parse(readFileSync(base + '.json', 'utf8')) as Record<string, unknown> & { arrays: ArrayEntry[] };
  const buf = readFileSync(base + '.bin');
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const arrays: NamedArrays = {};
  for (const e of meta.arrays) {
    arrays[e.name] = e.dtype === 'float64' ? new Float64Array(ab, e.byteOffset, e.length) : new Float32Array(ab, e.byteOffset, e.length);
  }
  return { meta, arrays };
}
