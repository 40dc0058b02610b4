import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend, initBackend } from '../../../lib/backend.ts';
import { DataParallel } from '../../../lib/model/parallel.ts';
import { createGPT2 } from '../../../lib/model/gpt2.ts';
import { paramsYamlValues } from '../paramsYaml.ts';
import {
  AdamW,
  LM_DEFAULTS,
  evaluateLoss,
  gradientPlan,
  learningRate,
  sampleBatch,
  train,
  unigramEntropy,
} from '../../../lib/model/train.ts';
import type { GPT2Config } from '../../../lib/model/types.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

const cfg: GPT2Config = { vocabSize: 16, nCtx: 16, dModel: 32, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };

/** A synthetic stream: a fixed cycle of 13 tokens with 10% random noise tokens. */
function synthetic(n: number, seed: number): Uint16Array {
  const u = mulberry32(seed);
  const cycle = [3, 7, 1, 12, 9, 0, 15, 4, 4, 11, 2, 8, 6];
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = u() < 0.1 ? Math.floor(u() * 16) : cycle[i % cycle.length];
  return out;
}

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

describe('helpers', () => {
  it('unigramEntropy is the entropy of token frequencies in nats', () => {
    expect(unigramEntropy(Uint16Array.from([0, 1, 2, 3, 0, 1, 2, 3]), 8)).toBeCloseTo(Math.log(4), 12);
    expect(unigramEntropy(Uint16Array.from([5, 5, 5]), 8)).toBe(0);
    const p = [0.5, 0.25, 0.25];
    expect(unigramEntropy(Uint32Array.from([0, 0, 1, 2]), 3)).toBeCloseTo(-p.reduce((s, q) => s + q * Math.log(q), 0), 12);
    expect(() => unigramEntropy(Uint16Array.from([9]), 8)).toThrow(/outside/);
  });

  it('learningRate: linear warmup then cosine to minLr', () => {
    expect(learningRate(0, 100, 1, 10, 0.1)).toBeCloseTo(0.1);
    expect(learningRate(9, 100, 1, 10, 0.1)).toBeCloseTo(1);
    expect(learningRate(10, 100, 1, 10, 0.1)).toBeCloseTo(1);
    expect(learningRate(55, 100, 1, 10, 0.1)).toBeCloseTo(0.55);
    expect(learningRate(100, 100, 1, 10, 0.1)).toBeCloseTo(0.1);
  });

  it('defaults to the values params.yaml sets (one default per option)', () => {
    expect(Object.keys(LM_DEFAULTS)).toEqual(['batchSize', 'lr', 'weightDecay', 'gradClip', 'valTokens', 'seed']);
    expect(LM_DEFAULTS).toEqual(paramsYamlValues('lm', LM_DEFAULTS));
  });

  it('sampleBatch: contiguous windows, deterministic in (seed, step)', () => {
    const s = Uint16Array.from({ length: 100 }, (_, i) => i);
    const a = sampleBatch(s, 3, 5, 1, 7);
    expect(a).toEqual(sampleBatch(s, 3, 5, 1, 7));
    expect(a).not.toEqual(sampleBatch(s, 3, 5, 1, 8));
    for (let b = 0; b < 3; b++) for (let t = 1; t <= 5; t++) expect(a[b * 6 + t]).toBe(a[b * 6 + t - 1] + 1);
  });

  it('evaluateLoss averages lossPerToken over consecutive windows', () => {
    const m = createGPT2(cfg, 1);
    const s = synthetic(16 * 5 + 1, 2);
    const l = evaluateLoss(m, s, { seqLen: 16, batchSize: 2 });
    const buf = new Int32Array(5 * 17);
    for (let w = 0; w < 5; w++) for (let t = 0; t <= 16; t++) buf[w * 17 + t] = s[w * 16 + t];
    const ref = m.lossPerToken(buf, 5, 16);
    expect(l).toBeCloseTo(ref.reduce((a, b) => a + b, 0) / ref.length, 5);
    expect(evaluateLoss(m, s, { seqLen: 16, maxTokens: 32 })).toBeCloseTo(
      Array.from(ref.subarray(0, 32)).reduce((a, b) => a + b, 0) / 32,
      5,
    );
    m.dispose();
  });
});

describe('AdamW', () => {
  it('matches a plain-TypeScript AdamW (clipping, bias correction, decay on matrices only)', () => {
    const m = createGPT2(cfg, 4);
    const p0 = m.paramArrays();
    const opt = new AdamW(m, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const names = m.paramNames;
    const mom = new Map(names.map((n) => [n, new Float64Array(p0.get(n)!.length)]));
    const vel = new Map(names.map((n) => [n, new Float64Array(p0.get(n)!.length)]));
    const ref = new Map([...p0].map(([n, a]) => [n, Float64Array.from(a)]));
    const s = synthetic(500, 5);
    for (let t = 1; t <= 2; t++) {
      const { grads } = m.forwardBackward(sampleBatch(s, 2, 16, 0, t), 2, 16);
      const g = new Map([...grads].map(([n, x]) => [n, x.dataSync() as Float32Array]));
      let sq = 0;
      for (const a of g.values()) for (const v of a) sq += v * v;
      const norm = Math.sqrt(sq);
      const clip = 0.05; // small, so clipping is active
      const scale = norm > clip ? clip / (norm + 1e-6) : 1;
      const lr = 1e-2;
      const got = opt.step(m, grads, lr, clip);
      expect(got).toBeCloseTo(norm, 4);
      for (const n of names) {
        const isMat = m.param(n).shape.length >= 2;
        const P = ref.get(n)!;
        const M = mom.get(n)!;
        const V = vel.get(n)!;
        const G = g.get(n)!;
        for (let i = 0; i < P.length; i++) {
          const gi = G[i] * scale;
          M[i] = 0.9 * M[i] + 0.1 * gi;
          V[i] = 0.95 * V[i] + 0.05 * gi * gi;
          const upd = M[i] / (1 - 0.9 ** t) / (Math.sqrt(V[i] / (1 - 0.95 ** t)) + 1e-8);
          P[i] -= lr * (upd + (isMat ? 0.1 * P[i] : 0));
        }
      }
    }
    for (const [n, a] of m.paramArrays()) {
      const r = ref.get(n)!;
      let d = 0;
      for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - r[i]));
      expect(d, n).toBeLessThan(1e-5);
    }
    opt.dispose();
    m.dispose();
  });
});

describe('train', () => {
  const trainStream = synthetic(20_000, 1);
  const valStream = synthetic(2_000, 2);

  it('memory stays flat over 200 training steps', async () => {
    const m = createGPT2(cfg, 1);
    const counts: number[] = [];
    const bytes: number[] = [];
    await train(m, trainStream, {
      steps: 200,
      batchSize: 2,
      seqLen: 8,
      logEverySteps: 10,
    }, {
      onProgress: (p) => {
        if (p.step === 20 || p.step === 200) {
          counts.push(tf.memory().numTensors);
          bytes.push(tf.memory().numBytes);
        }
      },
    });
    expect(counts).toHaveLength(2);
    expect(counts[1]).toBe(counts[0]);
    expect(bytes[1]).toBe(bytes[0]);
    const after = tf.memory().numTensors;
    m.dispose();
    expect(tf.memory().numTensors).toBeLessThan(after);
  });

  it('drives val loss far below the unigram entropy on a repetitive stream; reports metrics', async () => {
    const m = createGPT2(cfg, 2);
    const metrics: { name: string; value: number; step: number }[] = [];
    const progress: number[] = [];
    const H = unigramEntropy(valStream, cfg.vocabSize);
    const r = await train(m, trainStream, {
      steps: 150,
      batchSize: 8,
      lr: 1e-2,
      valStream: valStream,
      evalEverySteps: 50,
      logEverySteps: 25,
    }, {
      onMetrics: (values, step) => {
        for (const [name, value] of Object.entries(values)) metrics.push({ name, value, step });
      },
      onProgress: (p) => progress.push(p.tokensPerSecond),
    });
    expect(r.steps).toBe(150);
    expect(r.tokensSeen).toBe(150 * 8 * 16);
    // with 10% noise the best achievable loss is ~ 0.1 * ln(16) + H(0.9) ~ 0.6; unigram ~ 2.6
    expect(H).toBeGreaterThan(2.4);
    expect(r.finalValLoss).toBeLessThan(0.5 * H);
    const val = metrics.filter((x) => x.name === 'val_loss');
    expect(val.map((x) => x.step)).toEqual([50 * 128, 100 * 128, 150 * 128]);
    expect(val[val.length - 1].value).toBe(r.finalValLoss);
    expect(metrics.filter((x) => x.name === 'train_loss').map((x) => x.step)).toEqual([25, 50, 75, 100, 125, 150].map((s) => s * 128));
    expect(progress.every((t) => t > 0)).toBe(true);
    m.dispose();
  });

  it('data-parallel over 2 threads gives the same training (up to float rounding), deterministically', async () => {
    const opts = { steps: 6, batchSize: 5, seqLen: 16, lr: 5e-3, seed: 4, valStream: valStream, valTokens: 512 };
    const one = createGPT2(cfg, 8);
    const r1 = await train(one, trainStream, { ...opts, threads: 1 });
    const two = createGPT2(cfg, 8);
    const r2 = await train(two, trainStream, { ...opts, threads: 2 });
    expect(Math.abs(r2.finalValLoss - r1.finalValLoss)).toBeLessThan(1e-3);
    const p1 = one.paramArrays();
    for (const [n, a] of two.paramArrays()) {
      const b = p1.get(n)!;
      let d = 0;
      for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
      expect(d, n).toBeLessThan(1e-3);
    }
    const again = createGPT2(cfg, 8);
    const r3 = await train(again, trainStream, { ...opts, threads: 2 });
    expect(r3.finalValLoss).toBe(r2.finalValLoss);
    if (activeBackend() === 'wasm+ort') {
      // fixed batch shards: the thread count does not change a single bit
      expect(r2.finalValLoss).toBe(r1.finalValLoss);
      for (const [n, a] of two.paramArrays()) expect(Array.from(a), n).toEqual(Array.from(p1.get(n)!));
    }
    for (const m of [one, two, again]) m.dispose();
  });

  it('fixed batch shards: the same mean gradient, bit for bit, with 0 or 1 worker; close to the whole-batch gradient', async () => {
    const m = createGPT2(cfg, 3);
    const B = 5;
    const T = 16;
    const batch = sampleBatch(trainStream, B, T, 2, 0);
    const whole = m.forwardBackward(batch, B, T);
    const flat: number[] = [];
    for (const n of m.paramNames) {
      flat.push(...(whole.grads.get(n)!.dataSync() as Float32Array));
      whole.grads.get(n)!.dispose();
    }
    const results = [];
    for (const workers of [0, 1]) {
      const dp = await DataParallel.create(m, workers, { shards: 2 });
      results.push(await dp.forwardBackward(m, batch, B, T));
      await dp.close();
    }
    expect(Array.from(results[1].grad)).toEqual(Array.from(results[0].grad));
    expect(results[1].loss).toBe(results[0].loss);
    expect(results[0].loss).toBeCloseTo(whole.loss, 5);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < flat.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(flat[i]));
      maxDiff = Math.max(maxDiff, Math.abs(flat[i] - results[0].grad[i]));
    }
    expect(maxDiff).toBeLessThan(1e-5 * maxAbs);
    await expect(DataParallel.create(m, 2, { shards: 2 })).rejects.toThrow(/3 participants for 2 shards/);
    m.dispose();
  });

  it('gradientPlan: fixed shards on wasm+ort, one participant per thread on wasm', () => {
    if (activeBackend() === 'wasm+ort') {
      expect(gradientPlan(1)).toEqual({ shards: 2, workers: 0, ortThreads: 1 });
      expect(gradientPlan(2)).toEqual({ shards: 2, workers: 1, ortThreads: 1 });
      expect(gradientPlan(5)).toEqual({ shards: 2, workers: 1, ortThreads: 2 });
    } else {
      expect(gradientPlan(1)).toEqual({ shards: 0, workers: 0, ortThreads: 1 });
      expect(gradientPlan(3)).toEqual({ shards: 0, workers: 2, ortThreads: 1 });
    }
  });

  it('a killed run resumes from its checkpoint and reaches the identical result', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));
    const opts = {
      steps: 30,
      batchSize: 2,
      seqLen: 16,
      lr: 5e-3,
      seed: 9,
      valStream: valStream,
      valTokens: 256,
      checkpointEverySteps: 10,
    };
    const a = createGPT2(cfg, 3);
    const ra = await train(a, trainStream, opts);
    const pa = a.paramArrays();
    // interrupted run: abort after step 25 (last checkpoint at 20)
    const b = createGPT2(cfg, 3);
    const ctl = new AbortController();
    await expect(
      train(b, trainStream, {
        ...opts,
        checkpointDir: dir,
        logEverySteps: 1,
        signal: ctl.signal,
      }, {
        onProgress: (p) => {
          if (p.step === 25) ctl.abort();
        },
      }),
    ).rejects.toThrow(/aborted/);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'latest.json'), 'utf8')).dir).toBe('step-00000020');
    b.dispose();
    // a fresh process would build a fresh model: resume must overwrite it from the checkpoint
    const c = createGPT2(cfg, 777);
    const rc = await train(c, trainStream, { ...opts, checkpointDir: dir });
    expect(rc.resumedFromStep).toBe(20);
    expect(rc.finalValLoss).toBe(ra.finalValLoss);
    for (const [n, x] of c.paramArrays()) expect(x, n).toEqual(pa.get(n));
    // a finished run re-run with the same dir does nothing more and returns the same loss
    const d = createGPT2(cfg, 1);
    const rd = await train(d, trainStream, { ...opts, checkpointDir: dir });
    expect(rd.resumedFromStep).toBe(30);
    expect(rd.finalValLoss).toBe(ra.finalValLoss);
    // different settings refuse to resume
    await expect(train(d, trainStream, { ...opts, lr: 1e-3, checkpointDir: dir })).rejects.toThrow(/different settings/);
    for (const m of [a, c, d]) m.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
