import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  MemoryRows,
  ShardReader,
  ShardWriter,
  floatToHalfBits,
  halfBitsToFloat,
} from '../../lib/activations.ts';
import { mulberry32, randn } from '../../lib/util/random.ts';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'acts-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `d${dirCount++}`);

function data(rows: number, d: number, seed: number, scale = 1): Float32Array {
  const nr = randn(mulberry32(seed));
  return Float32Array.from({ length: rows * d }, () => nr() * scale);
}

function meanNorm(a: Float32Array, d: number): number {
  let s = 0;
  for (let r = 0; r < a.length / d; r++) {
    let q = 0;
    for (let i = 0; i < d; i++) q += a[r * d + i] ** 2;
    s += Math.sqrt(q);
  }
  return s / (a.length / d);
}

describe('float16 conversion', () => {
  it('round-trips exactly representable values and rounds to nearest even', () => {
    for (const v of [0, 1, -2, 0.5, 65504, -65504, 2 ** -14, 2 ** -24, 1 + 2 ** -10]) {
      expect(halfBitsToFloat(floatToHalfBits(v))).toBe(v);
    }
    expect(halfBitsToFloat(floatToHalfBits(1 + 2 ** -11))).toBe(1); // tie → even
    expect(halfBitsToFloat(floatToHalfBits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9); // tie → even (up)
    expect(halfBitsToFloat(floatToHalfBits(1e6))).toBe(Infinity);
    expect(halfBitsToFloat(floatToHalfBits(2 ** -26))).toBe(0);
    expect(floatToHalfBits(-0)).toBe(0x8000);
    expect(Number.isNaN(halfBitsToFloat(floatToHalfBits(NaN)))).toBe(true);
  });

  it('has relative error below 2^-11 in the normal range', () => {
    const rng = mulberry32(3);
    for (let t = 0; t < 2000; t++) {
      const v = (rng() - 0.5) * 2 ** (Math.floor(rng() * 28) - 13);
      if (Math.abs(v) < 2 ** -14) continue;
      const h = halfBitsToFloat(floatToHalfBits(v));
      expect(Math.abs(h - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 * 1.0001);
    }
  });
});

describe('ShardWriter / ShardReader', () => {
  const d = 16;

  it('round-trips float32 shards exactly, with the manifest', () => {
    const dir = freshDir();
    const x = data(250, d, 1, 30);
    const g = data(250, d, 2, 1e-3);
    const w = new ShardWriter(dir, { d, rowsPerShard: 64, dtype: 'float32' });
    // uneven appends crossing shard boundaries
    for (const [a, b] of [
      [0, 10],
      [10, 100],
      [100, 101],
      [101, 250],
    ]) {
      w.append(x.subarray(a * d, b * d), g.subarray(a * d, b * d));
    }
    const man = w.finish({ hook: 'blocks.2.hook_resid_pre' });
    expect(man.rows).toBe(250);
    expect(man.shards.map((s) => s.rows)).toEqual([64, 64, 64, 58]);
    expect(man.complete).toBe(true);
    expect(man.hook).toBe('blocks.2.hook_resid_pre');
    expect(man.mean_norm_x).toBeCloseTo(meanNorm(x, d), 8);
    expect(man.mean_norm_g).toBeCloseTo(meanNorm(g, d), 12);
    const r = new ShardReader(dir);
    expect(r.rows).toBe(250);
    expect(r.hasGrad).toBe(true);
    const all = r.readAll();
    expect(all.x).toEqual(x);
    expect(all.g).toEqual(g);
    const s2 = r.readShard(2);
    expect(s2.x).toEqual(x.subarray(128 * d, 192 * d));
    expect(s2.g).toEqual(g.subarray(128 * d, 192 * d));
    // without gradients: g is not loaded; a stream opened so refuses to give g
    const noG = new ShardReader(dir);
    expect(noG.readAll(false).g).toBeNull();
    expect(noG.readAll(false).x).toEqual(x);
    expect(noG.readAll().g).toEqual(g); // asked again with g: loaded then
    const xs = new Float32Array(40 * d);
    const xs2 = new Float32Array(40 * d);
    new ShardReader(dir).stream(3, 7, false).read(40, xs, null);
    r.stream(3, 7).read(40, xs2, null);
    expect(xs).toEqual(xs2);
    expect(() => new ShardReader(dir).stream(3, 7, false).read(1, xs, new Float32Array(d))).toThrow(/no gradients/);
    // a shard file of the wrong length is an error, not a silent short read
    fs.truncateSync(path.join(dir, man.shards[1].x), 64 * d * 4 - 4);
    expect(() => new ShardReader(dir).readShard(1)).toThrow(/expected 4096 bytes, found 4092/);
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(Object.keys(onDisk)).toEqual(expect.arrayContaining(['d', 'dtype', 'rows', 'shards', 'mean_norm_x', 'mean_norm_g']));
    expect(fs.statSync(path.join(dir, man.shards[0].x)).size).toBe(64 * d * 4);
  });

  it('round-trips float16 shards within half precision (per-shard power-of-two scale)', () => {
    const dir = freshDir();
    const x = data(100, d, 3, 5000); // beyond float16 range without the scale
    const g = data(100, d, 4, 1e-6); // subnormal in float16 without the scale
    const w = new ShardWriter(dir, { d, rowsPerShard: 40, dtype: 'float16' });
    w.append(x, g);
    w.finish();
    const r = new ShardReader(dir);
    const all = r.readAll();
    for (const [a, b] of [
      [all.x, x],
      [all.g!, g],
    ] as const) {
      let maxRel = 0;
      let scale = 0;
      for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
      for (let i = 0; i < b.length; i++) maxRel = Math.max(maxRel, Math.abs(a[i] - b[i]) / scale);
      expect(maxRel).toBeLessThan(2 ** -11);
      expect(Number.isFinite(a[0])).toBe(true);
    }
    expect(fs.statSync(path.join(dir, r.manifest.shards[0].x)).size).toBe(40 * d * 2);
    // a row range of a shard decodes to exactly the whole shard's rows there
    const s1 = r.readShard(1);
    const part = r.readShardRows(1, 7, 9);
    expect(part.x).toEqual(s1.x.subarray(7 * d, 16 * d));
    expect(part.g).toEqual(s1.g!.subarray(7 * d, 16 * d));
  });

  it('reads a row range of a float32 shard without the rest; refuses rows outside it', () => {
    const dir = freshDir();
    const x = data(100, d, 5, 1);
    const g = data(100, d, 6, 1);
    const w = new ShardWriter(dir, { d, rowsPerShard: 40, dtype: 'float32' });
    w.append(x, g);
    w.finish();
    const r = new ShardReader(dir);
    const part = r.readShardRows(2, 3, 17); // shard 2 holds rows 80..99
    expect(part.x).toEqual(x.subarray(83 * d, 100 * d));
    expect(part.g).toEqual(g.subarray(83 * d, 100 * d));
    expect(() => r.readShardRows(2, 10, 11)).toThrow(/outside shard 2/);
  });

  it('stores no gradient when g is null, and rejects mixing', () => {
    const dir = freshDir();
    const w = new ShardWriter(dir, { d, rowsPerShard: 8 });
    w.append(data(5, d, 5), null);
    expect(() => w.append(data(5, d, 6), data(5, d, 7))).toThrow(/gradient/);
    const man = w.finish();
    expect(man.has_grad).toBe(false);
    expect(man.shards[0].g).toBeNull();
    const r = new ShardReader(dir);
    expect(r.readShard(0).g).toBeNull();
    expect(r.hasGrad).toBe(false);
  });

  it('resumes after an interruption from the last complete shard', () => {
    const dir = freshDir();
    const x = data(300, d, 8);
    const g = data(300, d, 9);
    const w1 = new ShardWriter(dir, { d, rowsPerShard: 50, dtype: 'float32' });
    w1.append(x.subarray(0, 130 * d), g.subarray(0, 130 * d)); // 2 shards on disk + 30 rows buffered
    expect(w1.rowsOnDisk).toBe(100);
    // "kill": drop w1 without finish()
    expect(() => new ShardReader(dir)).toThrow(/incomplete/);
    expect(new ShardReader(dir, { allowIncomplete: true }).rows).toBe(100);
    const w2 = ShardWriter.resume(dir)!;
    expect(w2.rows).toBe(100);
    expect(w2.finished).toBe(false);
    w2.append(x.subarray(w2.rows * d), g.subarray(w2.rows * d));
    const man = w2.finish();
    expect(man.rows).toBe(300);
    expect(man.mean_norm_x).toBeCloseTo(meanNorm(x, d), 9);
    const all = new ShardReader(dir).readAll();
    expect(all.x).toEqual(x);
    expect(all.g).toEqual(g);
    const w3 = ShardWriter.resume(dir)!;
    expect(w3.finished).toBe(true);
    expect(w3.rows).toBe(300);
    expect(ShardWriter.resume(freshDir())).toBeNull();
  });
});

describe('shuffled row streams', () => {
  const d = 4;
  /** Rows whose first value is the row id. */
  function idRows(n: number): { x: Float32Array; g: Float32Array } {
    const x = new Float32Array(n * d);
    const g = new Float32Array(n * d);
    for (let r = 0; r < n; r++) {
      x[r * d] = r;
      x[r * d + 1] = r * 2;
      g[r * d] = -r;
    }
    return { x, g };
  }
  function ids(xb: Float32Array): number[] {
    return Array.from({ length: xb.length / d }, (_, r) => xb[r * d]);
  }

  it('each epoch is a permutation; same seed same order; start offsets resume exactly', () => {
    const n = 103;
    const { x, g } = idRows(n);
    const src = new MemoryRows(d, x, g);
    const s = src.stream(7);
    const xb = new Float32Array(250 * d);
    const gb = new Float32Array(250 * d);
    s.read(250, xb, gb);
    const got = ids(xb);
    expect([...got.slice(0, n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect([...got.slice(n, 2 * n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(got.slice(0, n)).not.toEqual(got.slice(n, 2 * n)); // a new permutation per epoch
    for (let r = 0; r < 250; r++) expect(gb[r * d]).toBe(-got[r]); // g stays aligned with x
    // resume at 137
    const s2 = src.stream(7, 137);
    const xb2 = new Float32Array(50 * d);
    s2.read(50, xb2, null);
    expect(ids(xb2)).toEqual(got.slice(137, 187));
    expect(s2.position).toBe(187);
    const other = new Float32Array(20 * d);
    src.stream(8).read(20, other, null);
    expect(ids(other)).not.toEqual(got.slice(0, 20));
  });

  it('ShardReader streams the same rows in windows when shards do not all fit in memory', () => {
    const dir = freshDir();
    const n = 230;
    const { x, g } = idRows(n);
    const w = new ShardWriter(dir, { d, rowsPerShard: 20 });
    w.append(x, g);
    w.finish();
    const perShardBytes = 20 * d * 4 * 2;
    const small = new ShardReader(dir, { maxMemoryBytes: perShardBytes * 3 });
    expect(small.windowShards).toBe(3);
    const big = new ShardReader(dir);
    expect(big.windowShards).toBe(12);
    for (const r of [small, big]) {
      const xb = new Float32Array(2 * n * d);
      const gb = new Float32Array(2 * n * d);
      r.stream(1).read(2 * n, xb, gb);
      const got = ids(xb);
      for (const e of [0, 1]) {
        expect([...got.slice(e * n, (e + 1) * n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      }
      for (let i = 0; i < 2 * n; i++) expect(gb[i * d]).toBe(-got[i]);
      const xr = new Float32Array(77 * d);
      r.stream(1, 300).read(77, xr, null);
      expect(ids(xr)).toEqual(got.slice(300, 377));
    }
    // batches() helper
    const batches = [...big.batches({ batchSize: 50, seed: 1, batches: 3 })];
    expect(batches.map((b) => b.position)).toEqual([0, 50, 100]);
  });
});
