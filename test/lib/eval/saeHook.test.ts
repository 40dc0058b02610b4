import { TEST_BACKEND } from '../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../lib/backend.ts';
import {
  SaeInference,
  identityHook,
  meanAblationHook,
  zeroAblationHook,
} from '../../../lib/eval/saeHook.ts';
import type { SaeWeights } from '../../../lib/sae/types.ts';
import { decodeReference, encodeReference } from './saeReference.ts';
import { identitySae, randomMatrix, randomSae } from './saeFixtures.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('SAE inference (tfjs) vs the TS reference', () => {
  const d = 16, m = 96, k = 8, n = 64;
  const x = randomMatrix(n, d, 11);
  const g = randomMatrix(n, d, 12, 3);

  for (const [arch, beta] of [['topk', 0], ['gsae', 1], ['gsae', 4]] as const) {
    it(`${arch} beta=${beta}: same indices, values and reconstruction`, () => {
      const w = randomSae(d, m, k, arch, beta);
      const sae = new SaeInference(w);
      const ref = encodeReference(w, x, g);
      const got = sae.encodeSparse(x, g);
      expect(Array.from(got.indices)).toEqual(Array.from(ref.indices));
      expect(maxAbsDiff(got.values, ref.values)).toBeLessThan(1e-5);
      expect(maxAbsDiff(sae.reconstruct(x, g), decodeReference(w, ref))).toBeLessThan(1e-5);
      sae.dispose();
    });
  }

  it('the gradient changes the selection of a g-SAE (beta=4), and values stay z_pre', () => {
    const w = randomSae(d, m, k, 'gsae', 4);
    const withG = encodeReference(w, x, g);
    const noG = encodeReference(w, x, null);
    expect(Array.from(withG.indices)).not.toEqual(Array.from(noG.indices));
    // every kept value is z_pre of its latent (recompute z_pre for row 0)
    const zPre = new Float64Array(m);
    for (let j = 0; j < m; j++) {
      let acc = w.b_enc[j];
      for (let i = 0; i < d; i++) acc += (x[i] - w.b_dec[i]) * w.W_enc[i * m + j];
      zPre[j] = Math.max(0, acc);
    }
    for (let j = 0; j < k; j++) expect(withG.values[j]).toBeCloseTo(zPre[withG.indices[j]], 5);
  });

  it('g-SAE with beta = 0 equals TopK exactly (with a gradient given)', () => {
    const wg = randomSae(d, m, k, 'gsae', 0);
    const wt: SaeWeights = { ...wg, arch: 'topk' };
    const a = new SaeInference(wg);
    const b = new SaeInference(wt);
    expect(Array.from(a.encodeSparse(x, g).indices)).toEqual(Array.from(b.encodeSparse(x).indices));
    expect(Array.from(a.reconstruct(x, g))).toEqual(Array.from(b.reconstruct(x)));
    a.dispose();
    b.dispose();
  });

  it('ties (duplicate latents, ReLU zeros) are broken by the lower index, as the reference', () => {
    const base = randomSae(d, 12, 6, 'gsae', 1, 5);
    // latents 0..5 duplicated into 6..11 (same encoder column, bias and decoder row)
    const w: SaeWeights = { ...base, m: 12, W_enc: new Float32Array(d * 12), W_dec: new Float32Array(12 * d), b_enc: new Float32Array(12) };
    for (let j = 0; j < 12; j++) {
      const src = j % 6;
      for (let i = 0; i < d; i++) {
        w.W_enc[i * 12 + j] = base.W_enc[i * 12 + src];
        w.W_dec[j * d + i] = base.W_dec[src * d + i];
      }
      w.b_enc[j] = base.b_enc[src] - 0.3; // a negative shift: many z_pre are exactly 0 after ReLU
    }
    const sae = new SaeInference(w);
    for (const gg of [null, g]) {
      const ref = encodeReference(w, x, gg);
      const got = sae.encodeSparse(x, gg);
      expect(Array.from(got.indices)).toEqual(Array.from(ref.indices));
      // among equal scores the lower index comes first
      for (let r = 0; r < n; r++) {
        const idx = Array.from(ref.indices.slice(r * 6, r * 6 + 6));
        const zeros = idx.filter((_, j) => ref.values[r * 6 + j] === 0);
        expect(zeros).toEqual([...zeros].sort((p, q) => p - q));
      }
    }
    sae.dispose();
  });

  it('the hook on [B, T, d] equals row-wise reconstruction, and observes the selection of the sparse code', () => {
    const w = randomSae(d, m, k, 'gsae', 1);
    const sae = new SaeInference(w);
    const B = 4, T = 16;
    let seen: { idx: number[]; val: number[]; shape: number[] } | null = null;
    const out = tf.tidy(() => {
      const xt = tf.tensor3d(x, [B, T, d]);
      const gt = tf.tensor3d(g, [B, T, d]);
      const hook = sae.hook({
        mode: 'gradient',
        g: gt,
        onEncode: ({ indices, values }) => {
          seen = { idx: Array.from(indices.dataSync()), val: Array.from(values.dataSync()), shape: indices.shape };
        },
      });
      return hook(xt).dataSync().slice();
    });
    expect(maxAbsDiff(out, sae.reconstruct(x, g))).toBeLessThan(1e-6);
    const obs = seen as unknown as { idx: number[]; val: number[]; shape: number[] };
    expect(obs.shape).toEqual([B * T, k]);
    // per row: the same set of latents as the sparse code, each with its value
    const code = sae.encodeSparse(x, g);
    let firing = 0;
    for (let r = 0; r < B * T; r++) {
      const want = new Map<number, number>();
      for (let t = 0; t < k; t++) want.set(code.indices[r * k + t], code.values[r * k + t]);
      for (let t = 0; t < k; t++) {
        const j = obs.idx[r * k + t];
        expect(want.has(j)).toBe(true);
        expect(obs.val[r * k + t]).toBeCloseTo(want.get(j)!, 5);
        if (obs.val[r * k + t] > 0) firing++;
      }
    }
    expect(firing).toBeGreaterThan(0);
    expect(() => sae.hook({ mode: 'gradient' })).toThrow();
    sae.dispose();
  });

  it('an identity SAE reconstructs non-negative x exactly; ablation hooks', () => {
    const w = identitySae(d);
    const sae = new SaeInference(w);
    const xp = x.map(Math.abs);
    expect(Array.from(sae.reconstruct(xp))).toEqual(Array.from(xp));
    const mean = new Float32Array(d).map((_, i) => i);
    tf.tidy(() => {
      const xt = tf.tensor3d(xp, [4, 16, d]);
      expect(identityHook(xt)).toBe(xt);
      expect(tf.max(tf.abs(zeroAblationHook(xt))).dataSync()[0]).toBe(0);
      const mt = meanAblationHook(mean)(xt);
      expect(mt.shape).toEqual([4, 16, d]);
      expect(Array.from(mt.dataSync().slice(5 * d, 6 * d))).toEqual(Array.from(mean));
    });
    sae.dispose();
  });
});
