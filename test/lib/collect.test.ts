import { TEST_BACKEND } from './testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../../lib/backend.ts';
import { createGPT2 } from '../../lib/model/gpt2.ts';
import { residHookName, type GPT2Config } from '../../lib/model/types.ts';
import { ShardReader } from '../../lib/activations.ts';
import { collectActivations, spreadWindows } from '../../lib/collect.ts';
import { mulberry32 } from '../../lib/util/random.ts';

const cfg: GPT2Config = { vocabSize: 31, nCtx: 8, dModel: 16, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };
const T = 8;
const hook = residHookName(1, 'resid_pre');

function stream(n: number, seed: number): Int32Array {
  const u = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(u() * cfg.vocabSize));
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'collect-'));
}

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

describe('spreadWindows', () => {
  it('spreads non-overlapping windows from the start to the end of the stream', () => {
    const s = spreadWindows(1000, 8, 5);
    expect(s[0]).toBe(0);
    expect(s[4]).toBe(1000 - 9);
    for (let i = 1; i < s.length; i++) expect(s[i] - s[i - 1]).toBeGreaterThanOrEqual(9);
  });
  it('refuses a stream too short for the request', () => {
    expect(() => spreadWindows(5, 8, 1)).toThrow(/shorter than one window/);
    expect(() => spreadWindows(100, 8, 12)).toThrow(/holds only/);
  });
});

describe('collectActivations', () => {
  it('stores g equal to the finite-difference gradient of the summed sequence loss at that position', async () => {
    const model = createGPT2(cfg, 3);
    const tokens = stream(400, 1);
    const dir = tmp();
    await collectActivations(model, tokens, dir, { hook, nTokens: 2 * T, seqLen: T, batch: 2 });
    const { x, g } = new ShardReader(dir).readAll();
    const starts = spreadWindows(tokens.length, T, 2);
    const w = 1; // second window
    const seq = Int32Array.from(tokens.subarray(starts[w], starts[w] + T + 1));
    const summed = (t: number, j: number, eps: number): number => {
      const delta = new Float32Array(T * cfg.dModel);
      delta[t * cfg.dModel + j] = eps;
      const hooks = { [hook]: (h: tf.Tensor3D) => tf.add(h, tf.tensor3d(delta, [1, T, cfg.dModel])) as tf.Tensor3D };
      return model.lossPerToken(seq, 1, T, hooks).reduce((a, b) => a + b, 0);
    };
    // The stored activation is the model's activation at that position (hook with zero change).
    expect(summed(0, 0, 0)).toBeCloseTo(model.lossPerToken(seq, 1, T).reduce((a, b) => a + b, 0), 4);
    const eps = 2e-2;
    let maxErr = 0;
    let maxG = 0;
    for (const t of [0, 3, T - 1]) {
      for (let j = 0; j < cfg.dModel; j += 3) {
        const fd = (summed(t, j, eps) - summed(t, j, -eps)) / (2 * eps);
        const stored = g![(w * T + t) * cfg.dModel + j];
        maxErr = Math.max(maxErr, Math.abs(fd - stored));
        maxG = Math.max(maxG, Math.abs(stored));
      }
    }
    expect(maxG).toBeGreaterThan(1e-3); // a real gradient, not zeros
    expect(maxErr).toBeLessThan(0.02 * maxG + 2e-3);
    // x rows are the activations: a nonzero, finite matrix of the right size.
    expect(x.length).toBe(2 * T * cfg.dModel);
    expect(x.every(Number.isFinite)).toBe(true);
    model.dispose();
  });

  it('without gradients stores the same x and no g (a forward pass up to the hook)', async () => {
    const model = createGPT2(cfg, 3);
    const tokens = stream(400, 1);
    const withG = tmp();
    const without = tmp();
    await collectActivations(model, tokens, withG, { hook, nTokens: 5 * T, seqLen: T, batch: 2 });
    const res = await collectActivations(model, tokens, without, { hook, nTokens: 5 * T, seqLen: T, batch: 2, gradients: false });
    const a = new ShardReader(withG).readAll();
    const b = new ShardReader(without).readAll();
    expect(Array.from(b.x)).toEqual(Array.from(a.x));
    expect(b.g).toBeNull();
    expect(res.manifest.has_grad).toBe(false);
    expect(res.manifest.rows).toBe(5 * T);
    model.dispose();
  });

  it('resumes an interrupted collection after its last complete shard and gives the same shards', async () => {
    const model = createGPT2(cfg, 5);
    const tokens = stream(2000, 2);
    const opts = { hook, nTokens: 8 * T, seqLen: T, batch: 2, rowsPerShard: 2 * T };
    const whole = tmp();
    await collectActivations(model, tokens, whole, opts);

    const cut = tmp();
    await expect(
      collectActivations(model, tokens, cut, {
        ...opts,
        onProgress: (done) => {
          if (done >= 5 * T) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    const resumed = await collectActivations(model, tokens, cut, opts);
    expect(resumed.resumedRows).toBeGreaterThan(0);
    expect(resumed.resumedRows).toBeLessThan(8 * T);
    const a = new ShardReader(whole).readAll();
    const b = new ShardReader(cut).readAll();
    expect(b.rows).toBe(a.rows);
    expect(Buffer.from(b.x.buffer).equals(Buffer.from(a.x.buffer))).toBe(true);
    expect(Buffer.from(b.g!.buffer).equals(Buffer.from(a.g!.buffer))).toBe(true);
    model.dispose();
  });
});
