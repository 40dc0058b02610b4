/**
 * Training checkpoints: one binary file written atomically (temp file, fsync, rename), so a killed
 * process leaves either the previous checkpoint or the new one, never a torn file.
 * Layout: 'GSAECKP1' | u32 header bytes | JSON header | zero padding to 8 | array data.
 * Header: {meta, arrays: [{name, dtype, offset, length}]} (offsets relative to the data start).
 */
import { openFileAtomicSync } from '../../base/atomic.ts';
import fs from 'node:fs';
import path from 'node:path';

type Arr = Float32Array | Float64Array | Int32Array;
const MAGIC = 'GSAECKP1';

function dtypeOf(a: Arr): 'f32' | 'f64' | 'i32' {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Float64Array) return 'f64';
  return 'i32';
}

export function writeCheckpoint(file: string, meta: unknown, arrays: Record<string, Arr>): void {
  const entries: { name: string; dtype: string; offset: number; length: number }[] = [];
  let off = 0;
  for (const [name, a] of Object.entries(arrays)) {
    entries.push({ name, dtype: dtypeOf(a), offset: off, length: a.length });
    off += Math.ceil(a.byteLength / 8) * 8;
  }
  const header = Buffer.from(JSON.stringify({ meta, arrays: entries }), 'utf8');
  const headLen = 8 + 4 + header.length;
  const pad = (8 - (headLen % 8)) % 8;
  const out = openFileAtomicSync(file);
  const fd = out.fd;
  try {
    const pre = Buffer.alloc(12);
    pre.write(MAGIC, 0, 'latin1');
    pre.writeUInt32LE(header.length, 8);
    fs.writeSync(fd, pre);
    fs.writeSync(fd, header);
    if (pad) fs.writeSync(fd, Buffer.alloc(pad));
    for (const e of entries) {
      const a = arrays[e.name];
      // Copy out of a possibly shared buffer before writing.
      const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
      fs.writeSync(fd, bytes);
      const p = Math.ceil(a.byteLength / 8) * 8 - a.byteLength;
      if (p) fs.writeSync(fd, Buffer.alloc(p));
    }
  } catch (e) {
    out.abort();
    throw e;
  }
  out.commit();
}

export function readCheckpoint(file: string): { meta: any; arrays: Record<string, Arr> } | null {
  if (!fs.existsSync(file)) return null;
  const buf = fs.readFileSync(file);
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw new Error(`checkpoint: ${file} is not a checkpoint`);
  const hl = buf.readUInt32LE(8);
  const { meta, arrays } = JSON.parse(buf.toString('utf8', 12, 12 + hl));
  const start = Math.ceil((12 + hl) / 8) * 8;
  const out: Record<string, Arr> = {};
  for (const e of arrays as { name: string; dtype: string; offset: number; length: number }[]) {
    const ctor = e.dtype === 'f32' ? Float32Array : e.dtype === 'f64' ? Float64Array : Int32Array;
    const bytes = e.length * ctor.BYTES_PER_ELEMENT;
    const copy = new Uint8Array(bytes);
    copy.set(buf.subarray(start + e.offset, start + e.offset + bytes));
    out[e.name] = new ctor(copy.buffer);
  }
  return { meta, arrays: out };
}
