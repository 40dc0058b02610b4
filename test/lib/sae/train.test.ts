import { TEST_BACKEND } from './../testBackend.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paramsYamlValues } from '../paramsYaml.ts';
import { MemoryRows } from '../../../lib/activations.ts';
import { initBackend } from '../../../lib/backend.ts';
import { evaluateSae } from '../../../lib/sae/infer.ts';
import { randomUnitRows } from '../../../lib/sae/init.ts';
import { SAE_DEFAULTS, learningRate, resolveTrainConfig, trainSae, type TrainSaeConfig } from '../../../lib/sae/train.ts';
import type { SaeWeights } from '../../../lib/sae/types.ts';
import { WasmSelector } from '../../../lib/sae/select.ts';
import { spawn } from 'node:child_process';
import { killConfig, killData } from './killcfg.ts';
import { plantedData } from './planted.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sae-train-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const d = 16;
const P = plantedData({ d, nAtoms: 64, s: 3, n: 6000, noise: 0.02, seed: 2, offset: 0.3 });
const src = new MemoryRows(d, P.x, P.g);
const base: TrainSaeConfig = {
  arch: 'topk',
  k: 4,
  m: 256,
  trainTokens: 30 * 256,
  batchSize: 256,
  lr: 3e-3,
  deadTokens: 256, // AuxK is active during these short runs
  seed: 3,
};

function expectSameWeights(a: SaeWeights, b: SaeWeights): void {
  for (const key of ['W_enc', 'W_dec', 'b_enc', 'b_dec'] as const) {
    expect(Buffer.from(a[key].buffer, a[key].byteOffset, a[key].byteLength).equals(
      Buffer.from(b[key].buffer, b[key].byteOffset, b[key].byteLength),
    ), `${key} differs`).toBe(true);
  }
}

describe('trainSae', () => {
  it('g-SAE with beta = 0 equals the TopK SAE bit for bit (and runs are deterministic)', async () => {
    const auxSeen: number[] = [];
    const topk = await trainSae(src, base, { onProgress: (p) => auxSeen.push(p.metrics.aux_loss) });
    const again = await trainSae(src, base);
    const gsae0 = await trainSae(src, { ...base, arch: 'gsae', beta: 0 });
    expectSameWeights(topk.weights, again.weights);
    expectSameWeights(topk.weights, gsae0.weights);
    expect(gsae0.weights.arch).toBe('gsae');
    expect(gsae0.firingCounts).toEqual(topk.firingCounts);
    expect(Math.max(...auxSeen)).toBeGreaterThan(0); // AuxK was active
    // and beta != 0 changes the result
    const gsae = await trainSae(src, { ...base, arch: 'gsae', beta: 1 });
    expect(Buffer.from(gsae.weights.W_dec.buffer).equals(Buffer.from(topk.weights.W_dec.buffer))).toBe(false);
  });

  it('gives the same numbers with 2 threads as with 1 (SIMD and TypeScript kernels)', async () => {
    for (const simd of [true, false]) {
      const cfg: TrainSaeConfig = { ...base, arch: 'gsae', beta: 1, trainTokens: 12 * 256, simd };
      const one = await trainSae(src, { ...cfg, threads: 1 });
      const two = await trainSae(src, { ...cfg, threads: 2 });
      expectSameWeights(one.weights, two.weights);
    }
  });

  it('the SIMD and TypeScript kernels train the same SAE up to float rounding', async () => {
    const a = await trainSae(src, { ...base, simd: true });
    const b = await trainSae(src, { ...base, simd: false });
    let maxDiff = 0;
    for (let i = 0; i < a.weights.W_dec.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.weights.W_dec[i] - b.weights.W_dec[i]));
    expect(maxDiff).toBeLessThan(1e-3);
    expect(a.final.fvu).toBeCloseTo(b.final.fvu, 3);
  });

  it('the sparse g-SAE scores in WebAssembly train bit for bit what the TypeScript scoring loop trains', async () => {
    const cfg: TrainSaeConfig = { ...base, arch: 'gsae', beta: 0.5, trainTokens: 12 * 256, gradScores: 'sparse', threads: 1 };
    const wasm = await trainSae(src, cfg);
    WasmSelector.scoreInWasm = false;
    try {
      const ts = await trainSae(src, cfg);
      expectSameWeights(wasm.weights, ts.weights);
    } finally {
      WasmSelector.scoreInWasm = true;
    }
  });

  it('g-SAE scores from the dense matMul and from sparse dot products give the same training', async () => {
    const cfg: TrainSaeConfig = { ...base, arch: 'gsae', beta: 2, trainTokens: 15 * 256 };
    const dense = await trainSae(src, { ...cfg, gradScores: 'dense' });
    const sparse = await trainSae(src, { ...cfg, gradScores: 'sparse' });
    let maxDiff = 0;
    for (let i = 0; i < dense.weights.W_dec.length; i++) maxDiff = Math.max(maxDiff, Math.abs(dense.weights.W_dec[i] - sparse.weights.W_dec[i]));
    expect(maxDiff).toBeLessThan(1e-3);
    expect(sparse.final.fvu).toBeCloseTo(dense.final.fvu, 3);
  });

  it('keeps decoder rows at unit norm, reports metrics with step = tokens seen, and learns', async () => {
    const metrics: { step: number; values: Record<string, number> }[] = [];
    const progress: number[] = [];
    const res = await trainSae(src, { ...base, logEverySteps: 10 }, {
      onMetrics: (values, step) => metrics.push({ step, values: { ...values } }),
      onProgress: (p) => progress.push(p.metrics.fvu),
    });
    const { W_dec, m } = res.weights;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += W_dec[j * d + i] ** 2;
      expect(Math.sqrt(s)).toBeCloseTo(1, 5);
    }
    expect(metrics.map((x) => x.step)).toEqual([2560, 5120, 7680]);
    for (const x of metrics) {
      expect(Object.keys(x.values)).toEqual(expect.arrayContaining(['mse', 'fvu', 'aux_loss', 'dead_frac']));
    }
    expect(progress.length).toBe(30);
    expect(progress[29]).toBeLessThan(progress[0]);
    expect(res.tokensSeen).toBe(7680);
    const ev = evaluateSae(res.weights, P.x);
    expect(ev.fvu).toBeLessThan(0.6);
    expect(ev.fvu).toBeCloseTo(res.final.fvu, 0);
    expect(ev.l0).toBeLessThanOrEqual(4);
  });

  it('follows the learning-rate schedule: warmup, constant, decay to 0', () => {
    const raw = { arch: 'topk' as const, k: 4, trainTokens: 100 * 10, batchSize: 10, lr: 1, warmupFrac: 0.1, decayStartFrac: 0.5 };
    const c = resolveTrainConfig(raw, 8);
    expect(learningRate(c, 0, 100)).toBeCloseTo(0.1);
    expect(learningRate(c, 9, 100)).toBeCloseTo(1);
    expect(learningRate(c, 40, 100)).toBe(1);
    expect(learningRate(c, 75, 100)).toBeCloseTo(0.5);
    expect(learningRate(c, 99, 100)).toBeCloseTo(0.02);
    const cos = resolveTrainConfig({ ...raw, decay: 'cosine' }, 8);
    expect(learningRate(cos, 75, 100)).toBeCloseTo(0.5);
  });

  it('defaults to the values params.yaml sets (one default per option)', () => {
    expect(Object.keys(SAE_DEFAULTS)).toEqual(['expansion', 'batchSize', 'lr', 'auxK', 'auxAlpha', 'deadTokens', 'bDecInit']);
    expect(SAE_DEFAULTS).toEqual(paramsYamlValues('sae', SAE_DEFAULTS));
    const c = resolveTrainConfig({ arch: 'topk', k: 4, trainTokens: 1000 }, 8);
    expect([c.expansion, c.batchSize, c.lr, c.auxAlpha, c.deadTokens, c.bDecInit, c.auxK]).toEqual([16, 4096, 1e-3, 1 / 32, 400_000, 'geometric_median', 4]);
  });

  it('AuxK revives latents that were dead; without it they stay dead', async () => {
    const dd = 16;
    const m = 64;
    const nd = 16;
    const data = plantedData({ d: dd, nAtoms: 64, s: 2, n: 16384, noise: 0.01, seed: 5 });
    const Wd = randomUnitRows(m, dd, 11);
    const We = new Float32Array(dd * m);
    // latents 0..15 start with a tiny encoder: never selected by TopK → dead
    for (let j = 0; j < m; j++) for (let i = 0; i < dd; i++) We[i * m + j] = Wd[j * dd + i] * (j < nd ? 0.05 : 1);
    const init: SaeWeights = { arch: 'topk', d: dd, m, k: 2, beta: 0, W_enc: We, W_dec: Wd, b_enc: new Float32Array(m), b_dec: new Float32Array(dd) };
    const run = async (auxAlpha: number) => {
      const aux: number[] = [];
      const res = await trainSae(
        new MemoryRows(dd, data.x),
        { arch: 'topk', k: 2, m, trainTokens: 100_000, batchSize: 512, lr: 3e-3, deadTokens: 2048, auxAlpha, auxK: 8, init, logEverySteps: 5 },
        { onMetrics: (v) => aux.push(v.aux_loss) },
      );
      const ev = evaluateSae(res.weights, data.x.subarray(0, 4096 * dd));
      let revived = 0;
      for (let j = 0; j < nd; j++) if (ev.firing[j] > 0) revived++;
      return { revived, aux, ev };
    };
    const without = await run(0);
    const withAux = await run(1 / 32);
    expect(without.revived).toBe(0);
    expect(withAux.revived).toBeGreaterThanOrEqual(8);
    expect(withAux.ev.dead_frac).toBeLessThan(without.ev.dead_frac);
    expect(withAux.aux.at(-1)!).toBeLessThan(0.7 * withAux.aux[0]);
  });

  it('resumes after a simulated kill and ends with the same weights as an uninterrupted run', async () => {
    const cfg: TrainSaeConfig = { ...base, arch: 'gsae', beta: 1, trainTokens: 20 * 256 };
    const straight = await trainSae(src, cfg);
    const ckdir = path.join(tmpRoot, 'ckpt');
    const killed = trainSae(src, { ...cfg, checkpointDir: ckdir, checkpointEverySteps: 4, checkpointEverySeconds: 0 }, {
      onStep: (s) => {
        if (s === 11) throw new Error('simulated kill');
      },
    });
    await expect(killed).rejects.toThrow('simulated kill');
    expect(fs.existsSync(path.join(ckdir, 'checkpoint.bin'))).toBe(true);
    const logs: string[] = [];
    const resumed = await trainSae(src, { ...cfg, checkpointDir: ckdir, checkpointEverySteps: 4 }, { onLog: (s) => logs.push(s) });
    expect(resumed.resumedFromStep).toBe(8);
    expect(logs.join('\n')).toMatch(/resuming from checkpoint at step 8/);
    expectSameWeights(straight.weights, resumed.weights);
    expect(resumed.firingCounts).toEqual(straight.firingCounts);
    expect(resumed.lastFired).toEqual(straight.lastFired);
    // a checkpoint from another configuration is ignored
    const other = await trainSae(src, { ...cfg, seed: 99, trainTokens: 2 * 256, checkpointDir: ckdir }, { onLog: (s) => logs.push(s) });
    expect(other.resumedFromStep).toBe(0);
    expect(logs.at(-1)).toMatch(/different configuration/);
  });

  it('resumes after a real SIGKILL of a training process (atomic checkpoints)', async () => {
    const ckdir = path.join(tmpRoot, 'ckpt-kill');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'killable.ts'), ckdir], {
      cwd: path.resolve(import.meta.dirname, '../../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, GSAE_TEST_BACKEND: TEST_BACKEND },
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    const killedAt = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (b) => {
        out += b;
        const steps = [...out.matchAll(/step (\d+)/g)].map((m) => Number(m[1]));
        const last = steps.at(-1) ?? 0;
        if (last >= 9) {
          child.kill('SIGKILL');
          resolve(last);
        }
      });
      child.on('exit', (code, sig) => {
        if (sig !== 'SIGKILL') reject(new Error(`child exited early (${code}): ${out} ${err}`));
      });
    });
    await new Promise((r) => child.once('exit', r));
    expect(out).not.toMatch(/done/);
    expect(killedAt).toBeLessThan(40);
    const P2 = killData();
    const src2 = new MemoryRows(P2.d, P2.x, P2.g);
    const resumed = await trainSae(src2, { ...killConfig, checkpointDir: ckdir, checkpointEverySteps: 2 });
    expect(resumed.resumedFromStep).toBeGreaterThanOrEqual(8);
    const straight = await trainSae(src2, killConfig);
    expectSameWeights(straight.weights, resumed.weights);
  });

  it('rejects a g-SAE without gradients and bad configs', async () => {
    await expect(trainSae(new MemoryRows(d, P.x), { ...base, arch: 'gsae', beta: 1 })).rejects.toThrow(/gradients/);
    await expect(trainSae(src, { ...base, k: 0 })).rejects.toThrow(/k=0/);
  });
});
