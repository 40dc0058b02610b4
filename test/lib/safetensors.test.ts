import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors } from '../../lib/safetensors.ts';

/** Build a safetensors file by hand with arbitrary dtypes (as another writer would). */
function handMade(entries: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[], meta?: Record<string, string>) {
  const header: Record<string, unknown> = {};
  if (meta) header.__metadata__ = meta;
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.bytes.length] };
    off += e.bytes.length;
  }
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let p = 8 + h.length;
  for (const e of entries) {
    out.set(e.bytes, p);
    p += e.bytes.length;
  }
  return out;
}

describe('safetensors', () => {
  it('round-trips F32 tensors and metadata; header is 8-byte aligned little-endian', () => {
    const a = { shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 1e-30, -0, 7]) };
    const b = { shape: [4], data: Float32Array.from([Infinity, -Infinity, 0.1, 65504]) };
    const s = { shape: [], data: Float32Array.from([42]) };
    const bytes = encodeSafetensors({ a, b, s }, { format: 'pt', step: '3' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const hdr = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(hdr.a).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(hdr.__metadata__).toEqual({ format: 'pt', step: '3' });
    const back = decodeSafetensors(bytes);
    expect(back.metadata).toEqual({ format: 'pt', step: '3' });
    expect([...back.tensors.keys()]).toEqual(['a', 'b', 's']);
    expect(back.tensors.get('a')).toEqual(a);
    expect(back.tensors.get('b')!.data).toEqual(b.data);
    expect(back.tensors.get('s')!.shape).toEqual([]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-'));
    writeSafetensors(path.join(dir, 'x.safetensors'), { a });
    expect(readSafetensors(path.join(dir, 'x.safetensors')).tensors.get('a')!.data).toEqual(a.data);
    fs.rmSync(dir, { recursive: true });
  });

  it('reads F16 and BF16 (incl. subnormal, inf, negative zero) as F32', () => {
    // F16: 1.0=0x3c00, -2.0=0xc000, 65504=0x7bff, smallest subnormal 2^-24=0x0001, inf=0x7c00, -0=0x8000, 0.333=0x3555
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x3555]);
    // BF16: top 16 bits of the F32 pattern
    const f32 = Float32Array.from([1, -2.5, 3.140625, 1e-20, -Infinity]);
    const bf16 = Uint16Array.from(new Uint32Array(f32.buffer), (u) => u >>> 16);
    const bytes = handMade([
      { name: 'h', dtype: 'F16', shape: [7], bytes: new Uint8Array(f16.buffer) },
      { name: 'b', dtype: 'BF16', shape: [5], bytes: new Uint8Array(bf16.buffer) },
    ]);
    const r = decodeSafetensors(bytes);
    expect(r.dtypes.get('h')).toBe('F16');
    const h = r.tensors.get('h')!.data;
    expect([...h.slice(0, 5)]).toEqual([1, -2, 65504, 2 ** -24, Infinity]);
    expect(Object.is(h[5], -0)).toBe(true);
    expect(h[6]).toBeCloseTo(0.33325, 5);
    const b = r.tensors.get('b')!.data;
    expect(b[0]).toBe(1);
    expect(b[1]).toBe(-2.5);
    expect(b[2]).toBe(3.140625);
    expect(Math.abs(b[3] - 1e-20) / 1e-20).toBeLessThan(1e-2);
    expect(b[4]).toBe(-Infinity);
  });

  it('reads a file written by the official Python safetensors (numpy F64/F32/F16, sorted by alignment)', () => {
    // safetensors 0.8.0: save_file({'a16': f16 [1, -2, 0.333, 65504], 'a32': f32 arange(6).reshape(2, 3),
    //   'a64': f64 [0.1]}, metadata={'format': 'np'})
    const b64 =
      '0AAAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJucCJ9LCJhNjQiOnsiZHR5cGUiOiJGNjQiLCJzaGFwZSI6WzFdLCJkYXRhX29mZnNldHMiOlswLDhdfSwiYTMyIjp7ImR0eXBlIjoiRjMyIiwic2hhcGUiOlsyLDNdLCJkYXRhX29mZnNldHMiOls4LDMyXX0sImExNiI6eyJkdHlwZSI6IkYxNiIsInNoYXBlIjpbNF0sImRhdGFfb2Zmc2V0cyI6WzMyLDQwXX19ICAgICAgmpmZmZmZuT8AAAAAAACAPwAAAEAAAEBAAACAQAAAoEAAPADAVDX/ew==';
    const r = decodeSafetensors(new Uint8Array(Buffer.from(b64, 'base64')), 'official.safetensors');
    expect(r.metadata).toEqual({ format: 'np' });
    expect(r.tensors.get('a32')).toEqual({ shape: [2, 3], data: Float32Array.from([0, 1, 2, 3, 4, 5]) });
    expect([...r.tensors.get('a16')!.data]).toEqual([1, -2, 0.3330078125, 65504]);
    expect(r.tensors.get('a64')!.data[0]).toBeCloseTo(0.1, 7);
  });

  it('gives clear errors for truncated files, bad offsets and unsupported dtypes, naming the tensor and file', () => {
    const bytes = encodeSafetensors({ first: { shape: [2], data: new Float32Array(2) }, second: { shape: [3], data: new Float32Array(3) } });
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 4), 'm.safetensors')).toThrow(
      /tensor 'second'.*truncated.*m\.safetensors/,
    );
    expect(() => decodeSafetensors(bytes.subarray(0, 20), 'm.safetensors')).toThrow(/header length.*m\.safetensors/);
    expect(() => decodeSafetensors(bytes.subarray(0, 4), 'm.safetensors')).toThrow(/too short/);
    const wrong = handMade([{ name: 'w', dtype: 'F32', shape: [3], bytes: new Uint8Array(8) }]);
    expect(() => decodeSafetensors(wrong, 'f')).toThrow(/tensor 'w'.*needs 12 bytes/);
    const ints = handMade([{ name: 'ids', dtype: 'I64', shape: [1], bytes: new Uint8Array(8) }]);
    expect(() => decodeSafetensors(ints, 'f')).toThrow(/tensor 'ids' has dtype I64/);
    expect(() => readSafetensors('/nonexistent/x.safetensors')).toThrow(/cannot read/);
    expect(() => encodeSafetensors({ a: { shape: [2, 2], data: new Float32Array(3) } })).toThrow(/tensor 'a'/);
  });
});
