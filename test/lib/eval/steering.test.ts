import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../../lib/backend.ts';
import { evaluateSteering, sampleAliveLatents, sampleContexts } from '../../../lib/eval/steering.ts';
import { randomSae } from './saeFixtures.ts';
import { TINY_HOOK, TinyLM, syntheticTokens } from './tinyLM.ts';

const d = 16;
const V = 64;
const m = 40;
const tokens = syntheticTokens(3000, V, 5);
let model: TinyLM;

beforeAll(async () => {
  await initBackend('wasm');
  model = new TinyLM({ vocabSize: V, dModel: d, nCtx: 32, seed: 4 });
});
afterAll(() => model.dispose());

/** Mean norm of the residual at the hook on some tokens. */
function meanNorm(): number {
  const win = Int32Array.from(tokens.subarray(0, 4 * 17));
  const { x } = model.activationAndGrad(win, 4, 16, TINY_HOOK);
  let s = 0;
  for (let i = 0; i < 64; i++) {
    let n = 0;
    for (let j = 0; j < d; j++) n += x[i * d + j] ** 2;
    s += Math.sqrt(n);
  }
  return s / 64;
}

describe('steering', () => {
  it('samples alive latents only, seeded; contexts seeded', () => {
    const counts = new Float64Array(m).map((_, i) => (i % 3 === 0 ? 0 : 5));
    const a = sampleAliveLatents(counts, 10, 1);
    expect(a).toEqual(sampleAliveLatents(counts, 10, 1));
    expect(a.length).toBe(10);
    expect(new Set(a).size).toBe(10);
    expect(a.every((i) => i % 3 !== 0)).toBe(true);
    expect(sampleAliveLatents(counts, 100, 1).length).toBe(26);
    const c = sampleContexts(100, 20, 10, 2);
    expect(c.every((s) => s >= 0 && s <= 90)).toBe(true);
  });

  it('alpha = 0 has zero effect and zero KL', () => {
    const w = randomSae(d, m, 4, 'topk', 0, 2);
    const res = evaluateSteering(model, tokens, {
      hook: TINY_HOOK,
      sae: w,
      firingCounts: new Float64Array(m).fill(1),
      meanNorm: 1,
      alphas: [0],
      nLatents: 6,
      nContexts: 8,
      contextLen: 16,
      contextBatch: 2,
      maxLogitElements: 3 * 2 * 16 * V, // 3 latents per call: exercises grouping
    });
    expect(res.rows.length).toBe(6);
    for (const row of res.rows) {
      expect(Math.abs(row.effect)).toBeLessThan(1e-6);
      expect(Math.abs(row.kl)).toBeLessThan(1e-6);
      expect(row.targets.length).toBe(5);
    }
    expect(res.summary[0].n_latents).toBe(6);
  });

  it('a decoder row along a token’s unembedding finds that token and raises it', () => {
    const w = randomSae(d, m, 4, 'topk', 0, 2);
    const target = 17;
    const i = 7;
    const u = model.unembedColumn(target);
    const nrm = Math.hypot(...u);
    for (let j = 0; j < d; j++) w.W_dec[i * d + j] = u[j] / nrm;
    const r = meanNorm();
    const counts = new Float64Array(m).fill(1);
    const opts = {
      hook: TINY_HOOK,
      sae: w,
      firingCounts: counts,
      meanNorm: r,
      alphas: [0, 1, 2],
      latents: [3, i, 20],
      nContexts: 12,
      contextLen: 16,
      contextBatch: 4,
      seed: 3,
    };
    const res = evaluateSteering(model, tokens, opts);
    const rowsI = res.rows.filter((x) => x.latent === i);
    expect(rowsI.length).toBe(3);
    for (const row of rowsI.filter((x) => x.alpha > 0)) {
      expect(row.targets).toContain(target);
      expect(row.effect).toBeGreaterThan(0.5);
      expect(row.consistency).toBeGreaterThan(0.9);
      expect(row.kl).toBeGreaterThan(0);
    }
    // stronger steering: larger effect and KL
    const [, a1, a2] = rowsI;
    expect(a2.effect).toBeGreaterThan(a1.effect);
    expect(a2.kl).toBeGreaterThan(a1.kl);
    // summaries: one per alpha with ordered CIs
    expect(res.summary.map((s) => s.alpha)).toEqual([0, 1, 2]);
    for (const s of res.summary) {
      expect(s.effect_lo).toBeLessThanOrEqual(s.effect_mean);
      expect(s.effect_hi).toBeGreaterThanOrEqual(s.effect_mean);
    }
    // batching latents in one call does not change the results (one latent per call vs all)
    const single = evaluateSteering(model, tokens, { ...opts, maxLogitElements: 1 });
    for (let j = 0; j < res.rows.length; j++) {
      expect(single.rows[j].targets).toEqual(res.rows[j].targets);
      expect(single.rows[j].effect).toBeCloseTo(res.rows[j].effect, 5);
      expect(single.rows[j].kl).toBeCloseTo(res.rows[j].kl, 5);
    }
    expect(res.cost.forwardTokens).toBe(12 * 16 + 3 * 3 * 12 * 16);
  });

  it('effect is the rise of the log total probability of the target set (hand check)', () => {
    const w = randomSae(d, m, 4, 'topk', 0, 2);
    const res = evaluateSteering(model, tokens, {
      hook: TINY_HOOK, sae: w, firingCounts: new Float64Array(m).fill(1), meanNorm: 2,
      alphas: [1.5], latents: [5], nContexts: 2, contextLen: 8, seed: 9,
    });
    const row = res.rows[0];
    const s = res.contextStarts.evaluation[0];
    const ctx = tf.tensor2d(Int32Array.from(tokens.subarray(s, s + 8)), [1, 8], 'int32');
    const v = tf.tensor3d(w.W_dec.slice(5 * d, 6 * d).map((x) => x * 1.5 * 2), [1, 1, d]);
    const lpC = tf.logSoftmax(model.logits(ctx)).arraySync() as number[][][];
    const lpS = tf.logSoftmax(model.logits(ctx, { [TINY_HOOK]: (x) => tf.add(x, v) as tf.Tensor3D })).arraySync() as number[][][];
    let eff = 0, cons = 0, kl = 0;
    for (let t = 0; t < 8; t++) {
      const set = (lp: number[]) => Math.log(row.targets.reduce((acc, tok) => acc + Math.exp(lp[tok]), 0));
      const dl = set(lpS[0][t]) - set(lpC[0][t]);
      eff += dl / 8;
      cons += dl > 0 ? 1 / 8 : 0;
      for (let q = 0; q < V; q++) kl += (Math.exp(lpS[0][t][q]) * (lpS[0][t][q] - lpC[0][t][q])) / 8;
    }
    expect(row.effect).toBeCloseTo(eff, 4);
    expect(row.consistency).toBeCloseTo(cons, 6);
    expect(row.kl).toBeCloseTo(kl, 4);
    tf.dispose([ctx, v]);
  });
});
