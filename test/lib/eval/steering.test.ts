import { TEST_BACKEND } from '../testBackend.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../lib/backend.ts';
import { type LogitLensWeights, logitLensScores, logitLensTargets } from '../../../lib/eval/logitLens.ts';
import { STEERING_RULES, evaluateSteering, sampleAliveLatents, sampleContexts } from '../../../lib/eval/steering.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import { randomSae } from './saeFixtures.ts';
import { TINY_HOOK, TinyLM, syntheticTokens } from './tinyLM.ts';

const d = 16;
const V = 64;
const m = 40;
const tokens = syntheticTokens(3000, V, 5);
let model: TinyLM;
let lens: LogitLensWeights;

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
  model = new TinyLM({ vocabSize: V, dModel: d, nCtx: 32, seed: 4 });
  // TinyLM: logits = h U with U [d, V] and no final LayerNorm, so W_U = Uᵀ and γ = 1.
  const W_U = new Float32Array(V * d);
  for (let v = 0; v < V; v++) for (let j = 0; j < d; j++) W_U[v * d + j] = model.Uvalues[j * V + v];
  lens = { W_U, lnScale: new Float32Array(d).fill(1) };
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

const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;

describe('logit lens', () => {
  it('scores = W_U · (γ ∘ (w − mean w)) (float64 oracle), invariant to adding a constant to w', () => {
    const r = randn(mulberry32(11));
    const Vs = 7;
    const ds = 5;
    const l: LogitLensWeights = { W_U: Float32Array.from({ length: Vs * ds }, r), lnScale: Float32Array.from({ length: ds }, () => 0.5 + Math.abs(r())) };
    const w = Array.from({ length: ds }, r);
    const mu = mean(w);
    const s = logitLensScores(l, w);
    for (let v = 0; v < Vs; v++) {
      let o = 0;
      for (let j = 0; j < ds; j++) o += l.W_U[v * ds + j] * l.lnScale[j] * (w[j] - mu);
      expect(s[v]).toBeCloseTo(o, 6);
    }
    const shifted = logitLensScores(l, w.map((x) => x + 3));
    for (let v = 0; v < Vs; v++) expect(shifted[v]).toBeCloseTo(s[v], 5);
  });

  it('the centring removes the all-ones direction, which LayerNorm would remove', () => {
    // token 0's unembedding is the all-ones direction (big); token 3 is e_1 − e_0.
    const ds = 4;
    const W_U = new Float32Array(5 * ds);
    W_U.subarray(0, ds).fill(10);
    W_U[3 * ds + 1] = 1;
    W_U[3 * ds + 0] = -1;
    const l: LogitLensWeights = { W_U, lnScale: new Float32Array(ds).fill(1) };
    const w = [0, 1, 0, 0].map((x) => x + 5); // e_1 plus a large constant
    expect(logitLensTargets(l, w, 1)).toEqual([3]);
    // ties (identical unembedding rows) go to the lower id
    W_U.set(W_U.subarray(3 * ds, 4 * ds), 4 * ds);
    expect(logitLensTargets(l, w, 2)).toEqual([3, 4]);
  });

  it('a direction built to promote one token (γ⁻¹ ∘ centred W_U[v]) has it among its targets', () => {
    const r = randn(mulberry32(5));
    const gamma = Float32Array.from({ length: d }, () => 0.5 + Math.abs(r()));
    const l: LogitLensWeights = { W_U: lens.W_U, lnScale: gamma };
    for (const v of [2, 17, 40, 63]) {
      const u = Array.from(lens.W_U.subarray(v * d, (v + 1) * d));
      const mu = mean(u);
      const w = u.map((x, j) => (x - mu) / gamma[j]);
      expect(logitLensTargets(l, w, 5)).toContain(v);
    }
  });
});

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

  it('alpha = 0 has zero effect, zero added probability and zero KL for both rules', () => {
    const w = randomSae(d, m, 4, 'topk', 0, 2);
    const res = evaluateSteering(model, tokens, {
      hook: TINY_HOOK,
      sae: w,
      firingCounts: new Float64Array(m).fill(1),
      meanNorm: 1,
      logitLens: lens,
      alphas: [0],
      nLatents: 6,
      nContexts: 8,
      contextLen: 16,
      contextBatch: 2,
      maxLogitElements: 3 * 2 * 16 * V, // 3 latents per call: exercises grouping
    });
    expect(res.rows.length).toBe(2 * 6);
    expect(res.rules).toEqual([...STEERING_RULES]);
    for (const rule of STEERING_RULES) expect(res.rows.filter((x) => x.rule === rule).length).toBe(6);
    for (const row of res.rows) {
      expect(Math.abs(row.effect)).toBeLessThan(1e-6);
      expect(Math.abs(row.kl)).toBeLessThan(1e-6);
      expect(row.consistency).toBe(0);
      expect(row.targets.length).toBe(5);
    }
    for (const rule of STEERING_RULES) {
      for (const perLatent of res.perContext.effect[rule][0]) for (const x of perLatent) expect(Math.abs(x)).toBeLessThan(1e-6);
    }
    for (const perLatent of res.perContext.kl[0]) for (const x of perLatent) expect(Math.abs(x)).toBeLessThan(1e-6);
    expect(res.summary.map((s) => [s.rule, s.alpha, s.n_latents])).toEqual([['calibration', 0, 6], ['logit_lens', 0, 6]]);
  });

  it('a decoder row along a token’s unembedding finds that token and raises it, under both rules', () => {
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
      logitLens: lens,
      alphas: [0, 1, 2],
      latents: [3, i, 20],
      nContexts: 12,
      contextLen: 16,
      contextBatch: 4,
      seed: 3,
    };
    const res = evaluateSteering(model, tokens, opts);
    const rowsI = res.rows.filter((x) => x.latent === i && x.rule === 'calibration');
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
    // logit lens: the same targets at every α (they come from W_dec[i] alone), containing the token;
    // added probability > 0 and growing with α; KL identical to the calibration rows
    const lensI = res.rows.filter((x) => x.latent === i && x.rule === 'logit_lens');
    expect(lensI.map((x) => x.alpha)).toEqual([0, 1, 2]);
    for (const row of lensI) {
      expect(row.targets).toEqual(lensI[0].targets);
      expect(row.targets).toContain(target);
    }
    expect(lensI[1].effect).toBeGreaterThan(0.05);
    expect(lensI[2].effect).toBeGreaterThan(lensI[1].effect);
    expect(lensI[1].consistency).toBeGreaterThan(0.9);
    for (let j = 0; j < 3; j++) expect(lensI[j].kl).toBe(rowsI[j].kl);
    // summaries: one per (rule, alpha) with ordered CIs
    expect(res.summary.map((s) => `${s.rule}:${s.alpha}`)).toEqual(['calibration:0', 'calibration:1', 'calibration:2', 'logit_lens:0', 'logit_lens:1', 'logit_lens:2']);
    for (const s of res.summary) {
      expect(s.effect_lo).toBeLessThanOrEqual(s.effect_mean);
      expect(s.effect_hi).toBeGreaterThanOrEqual(s.effect_mean);
      const sel = res.rows.filter((x) => x.rule === s.rule && x.alpha === s.alpha);
      expect(s.effect_mean).toBeCloseTo(mean(sel.map((x) => x.effect)), 10);
    }
    // per-context values average back to the rows (every context has contextLen positions)
    const nEval = res.contextStarts.evaluation.length;
    expect(nEval).toBe(6);
    for (const row of res.rows) {
      const a = res.alphas.indexOf(row.alpha);
      const s = res.latents.indexOf(row.latent);
      const eff = res.perContext.effect[row.rule][a][s];
      const kl = res.perContext.kl[a][s];
      expect(eff.length).toBe(nEval);
      expect(mean(eff)).toBeCloseTo(row.effect, 10);
      expect(mean(kl)).toBeCloseTo(row.kl, 10);
      expect(mean(res.perContext.consistency[row.rule][a][s])).toBeCloseTo(row.consistency, 10);
      if (row.alpha > 0) expect(new Set(kl).size).toBeGreaterThan(1); // contexts differ
    }
    // batching latents in one call does not change the results (one latent per call vs all)
    const single = evaluateSteering(model, tokens, { ...opts, maxLogitElements: 1 });
    for (let j = 0; j < res.rows.length; j++) {
      expect(single.rows[j].rule).toBe(res.rows[j].rule);
      expect(single.rows[j].targets).toEqual(res.rows[j].targets);
      expect(single.rows[j].effect).toBeCloseTo(res.rows[j].effect, 5);
      expect(single.rows[j].kl).toBeCloseTo(res.rows[j].kl, 5);
    }
    // no extra passes for the second rule: one clean pass + latents × alphas steered passes
    expect(res.cost.forwardTokens).toBe(12 * 16 + 3 * 3 * 12 * 16);
  });

  it('effect is the rise of the log total probability (calibration) / the added probability (logit lens) of the target set, per context (hand check)', () => {
    const w = randomSae(d, m, 4, 'topk', 0, 2);
    const res = evaluateSteering(model, tokens, {
      hook: TINY_HOOK, sae: w, firingCounts: new Float64Array(m).fill(1), meanNorm: 2, logitLens: lens,
      alphas: [1.5], latents: [5], nContexts: 6, contextLen: 8, contextBatch: 2, seed: 9,
    });
    const row = res.rows.find((x) => x.rule === 'calibration')!;
    const lensRow = res.rows.find((x) => x.rule === 'logit_lens')!;
    expect(lensRow.targets).toEqual(logitLensTargets(lens, w.W_dec.subarray(5 * d, 6 * d), 5));
    const v = tf.tensor3d(w.W_dec.slice(5 * d, 6 * d).map((x) => x * 1.5 * 2), [1, 1, d]);
    const setP = (lp: number[], set: number[]) => set.reduce((acc, tok) => acc + Math.exp(lp[tok]), 0);
    const pc = res.perContext;
    expect(res.contextStarts.evaluation.length).toBe(3); // batches of 2 + 1: a context's cell must not depend on its batch
    res.contextStarts.evaluation.forEach((s, c) => {
      const ctx = tf.tensor2d(Int32Array.from(tokens.subarray(s, s + 8)), [1, 8], 'int32');
      const lpC = tf.logSoftmax(model.logits(ctx)).arraySync() as number[][][];
      const lpS = tf.logSoftmax(model.logits(ctx, { [TINY_HOOK]: (x) => tf.add(x, v) as tf.Tensor3D })).arraySync() as number[][][];
      let eff = 0, cons = 0, kl = 0, add = 0, addCons = 0;
      for (let t = 0; t < 8; t++) {
        const dl = Math.log(setP(lpS[0][t], row.targets)) - Math.log(setP(lpC[0][t], row.targets));
        eff += dl / 8;
        cons += dl > 0 ? 1 / 8 : 0;
        const dp = setP(lpS[0][t], lensRow.targets) - setP(lpC[0][t], lensRow.targets);
        add += dp / 8;
        addCons += dp > 0 ? 1 / 8 : 0;
        for (let q = 0; q < V; q++) kl += (Math.exp(lpS[0][t][q]) * (lpS[0][t][q] - lpC[0][t][q])) / 8;
      }
      expect(pc.effect.calibration[0][0][c]).toBeCloseTo(eff, 4);
      expect(pc.consistency.calibration[0][0][c]).toBeCloseTo(cons, 6);
      expect(pc.kl[0][0][c]).toBeCloseTo(kl, 4);
      expect(pc.effect.logit_lens[0][0][c]).toBeCloseTo(add, 5);
      expect(pc.consistency.logit_lens[0][0][c]).toBeCloseTo(addCons, 6);
      tf.dispose(ctx);
    });
    expect(row.effect).toBeCloseTo(mean(pc.effect.calibration[0][0]), 10);
    expect(lensRow.effect).toBeCloseTo(mean(pc.effect.logit_lens[0][0]), 10);
    expect(row.kl).toBeCloseTo(mean(pc.kl[0][0]), 10);
    expect(lensRow.kl).toBe(row.kl);
    tf.dispose(v);
  });

  it('the evaluation contexts are the same for every SAE (they depend on the stream, n, length, seed only)', () => {
    const run = (sae: ReturnType<typeof randomSae>, counts: Float64Array, meanNormX: number) =>
      evaluateSteering(model, tokens, {
        hook: TINY_HOOK, sae, firingCounts: counts, meanNorm: meanNormX, logitLens: lens,
        alphas: [0.5], nLatents: 3, nContexts: 6, contextLen: 8, seed: 4,
      });
    const a = run(randomSae(d, m, 4, 'topk', 0, 2), new Float64Array(m).fill(1), 1);
    const b = run(randomSae(d, 2 * m, 8, 'gsae', 1, 9), new Float64Array(2 * m).map((_, i) => (i % 2 ? 3 : 0)), 2.5);
    expect(a.latents).not.toEqual(b.latents);
    expect(b.contextStarts).toEqual(a.contextStarts);
    expect(a.contextStarts.evaluation).toEqual(sampleContexts(tokens.length, 6, 8, 4).slice(3));
    expect(a.perContext.kl[0][0].length).toBe(3);
  });
});
