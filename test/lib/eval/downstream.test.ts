import { TEST_BACKEND } from '../testBackend.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../../../lib/backend.ts';
import {
  downstreamCIs,
  evaluateDownstream,
  evaluateHook,
  heldOutWindows,
  mergeDead,
  readDownstream,
  writeDownstream,
} from '../../../lib/eval/downstream.ts';
import { identityHook } from '../../../lib/eval/saeHook.ts';
import { decodeReference, encodeReference } from './saeReference.ts';
import type { SaeWeights } from '../../../lib/sae/types.ts';
import { identitySae, randomSae } from './saeFixtures.ts';
import { TINY_HOOK, TinyLM, syntheticTokens } from './tinyLM.ts';

const d = 16;
const V = 64;
const seqLen = 16;
const tokens = syntheticTokens(4000, V, 11);
let model: TinyLM;
let posModel: TinyLM;

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
  model = new TinyLM({ vocabSize: V, dModel: d, nCtx: 32, seed: 1 });
  posModel = new TinyLM({ vocabSize: V, dModel: d, nCtx: 32, seed: 2, positive: true });
});
afterAll(() => {
  model.dispose();
  posModel.dispose();
});

const base = { hook: TINY_HOOK, nTokens: 160, seqLen, batch: 3 };

describe('held-out windows', () => {
  it('are consecutive non-overlapping windows of seqLen+1', () => {
    const { nSeq, windows } = heldOutWindows(tokens, 100, 16);
    expect(nSeq).toBe(6);
    expect(windows.length).toBe(6 * 17);
    expect(windows[17]).toBe(tokens[17]);
    expect(() => heldOutWindows(tokens, 5, 16)).toThrow();
  });
});

describe('downstream loss by splicing', () => {
  it('an identity hook leaves CE unchanged and KL = 0', () => {
    const r = evaluateHook(model, tokens, { ...base, hookFn: identityHook });
    expect(Array.from(r.ceHooked)).toEqual(Array.from(r.ceClean));
    expect(Math.max(...r.kl.map(Math.abs))).toBe(0);
  });

  it('an exactly reconstructing SAE: CE_spliced = CE_clean, KL = 0, loss recovered = 1, FVU = 0', () => {
    for (const w of [identitySae(d), identitySae(d, 'gsae', 1)]) {
      const r = evaluateDownstream(posModel, tokens, { ...base, sae: w });
      expect(r.nPositions).toBe(160);
      expect(Array.from(r.perToken.ce_spliced)).toEqual(Array.from(r.perToken.ce_clean));
      expect(Math.max(...r.perToken.kl.map(Math.abs))).toBeLessThan(1e-6);
      expect(r.summary.delta_ce).toBe(0);
      expect(r.summary.loss_recovered).toBe(1);
      expect(r.summary.fvu).toBe(0);
      expect(r.summary.l0).toBe(d); // positive residual: every latent fires
      expect(r.summary.dead_frac).toBe(0);
      expect(r.summary.ce_zero).toBeCloseTo(Math.log(V), 5); // zero residual → uniform logits in the tiny model
      if (w.arch === 'gsae') expect(r.summary.loss_recovered_gradfree).toBe(1);
    }
  });

  it('zero ablation equals a hand-made zero hook; an SAE reconstructing 0 recovers 0 of the loss', () => {
    const w0: SaeWeights = { ...randomSae(d, 32, 4, 'topk', 0), W_dec: new Float32Array(32 * d), b_dec: new Float32Array(d) };
    const r = evaluateDownstream(model, tokens, { ...base, sae: w0 });
    const hand = evaluateHook(model, tokens, { ...base, hookFn: (x) => tf.mul(x, 0) as tf.Tensor3D });
    expect(Array.from(r.perToken.ce_zero)).toEqual(Array.from(hand.ceHooked));
    expect(Array.from(r.perToken.ce_clean)).toEqual(Array.from(hand.ceClean));
    expect(Array.from(r.perToken.ce_spliced)).toEqual(Array.from(r.perToken.ce_zero));
    expect(Math.abs(r.summary.loss_recovered)).toBe(0);
    expect(r.summary.fvu).toBeGreaterThan(0.99); // x̂ = 0: FVU = Σ‖x‖² / Σ‖x − μ‖² ≥ 1
  });

  it('g-SAE: the gradient comes from the same tokens (matches the TS reference), both variants', () => {
    const w = randomSae(d, 48, 4, 'gsae', 2, 8);
    const r = evaluateDownstream(model, tokens, { ...base, sae: w });
    expect(r.primaryUsesGradient).toBe(true);
    // reference: activation and gradient of the same windows, encoded and decoded in plain TS
    const { nSeq, windows } = heldOutWindows(tokens, base.nTokens, seqLen);
    const ag = model.activationAndGrad(windows, nSeq, seqLen, TINY_HOOK);
    expect(Array.from(r.perToken.ce_clean).every((v, i) => Math.abs(v - ag.lossPerToken[i]) < 1e-4)).toBe(true);
    for (const [g, sfx] of [[ag.g, ''], [null, '_gradfree']] as const) {
      const xhat = decodeReference(w, encodeReference(w, ag.x, g));
      for (let i = 0; i < r.nPositions; i++) {
        let se = 0;
        for (let j = 0; j < d; j++) se += (ag.x[i * d + j] - xhat[i * d + j]) ** 2;
        expect(r.perToken['sq_err' + sfx][i]).toBeCloseTo(se, 3);
      }
    }
    expect(r.summary.fvu).not.toBe(r.summary.fvu_gradfree);
    // the mean activation is estimated on the same positions
    for (let j = 0; j < d; j++) {
      let m = 0;
      for (let i = 0; i < r.nPositions; i++) m += ag.x[i * d + j];
      expect(r.meanActivation[j]).toBeCloseTo(m / r.nPositions, 4);
    }
    // a given mean gives the same CE_mean
    const r2 = evaluateDownstream(model, tokens, { ...base, sae: w, gradientMode: 'gradient', meanActivation: r.meanActivation });
    expect(r2.summary.ce_mean).toBeCloseTo(r.summary.ce_mean, 5);
    expect(r2.perToken.ce_spliced_gradfree).toBeUndefined();
    expect(Array.from(r2.perToken.ce_spliced)).toEqual(Array.from(r.perToken.ce_spliced));
  });

  it('g-SAE with beta = 0: gradient variant equals gradient-free and TopK', () => {
    const w = randomSae(d, 48, 4, 'gsae', 0, 8);
    const r = evaluateDownstream(model, tokens, { ...base, sae: w });
    const t = evaluateDownstream(model, tokens, { ...base, sae: { ...w, arch: 'topk' } });
    expect(Array.from(r.perToken.ce_spliced)).toEqual(Array.from(r.perToken.ce_spliced_gradfree));
    expect(Array.from(r.perToken.ce_spliced)).toEqual(Array.from(t.perToken.ce_spliced));
    expect(r.summary.dead_frac).toBe(t.summary.dead_frac);
  });

  it('CIs bracket the means; write/read round trip; dead merge', () => {
    const w = randomSae(d, 48, 4, 'gsae', 1, 8);
    const r = evaluateDownstream(model, tokens, { ...base, sae: w });
    const ci = downstreamCIs(r, { seed: 1, resamples: 300 });
    for (const name of ['ce_clean', 'ce_spliced', 'delta_ce', 'loss_recovered', 'kl', 'fvu', 'l0', 'kl_gradfree', 'loss_recovered_gradfree']) {
      expect(ci[name + '_lo']).toBeLessThanOrEqual(r.summary[name] + 1e-9);
      expect(ci[name + '_hi']).toBeGreaterThanOrEqual(r.summary[name] - 1e-9);
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'eval-ds-'));
    try {
      const out = writeDownstream(r, path.join(dir, 'sub', 'gsae_k4'), { seed: 0 });
      const back = readDownstream(path.join(dir, 'sub', 'gsae_k4'));
      expect(out.bin.endsWith('.bin')).toBe(true);
      expect(back.meta.summary).toEqual(r.summary);
      expect(back.meta.seed).toBe(0);
      expect(Array.from(back.arrays.kl)).toEqual(Array.from(r.perToken.kl));
      expect(Array.from(back.arrays.fires_per_latent)).toEqual(Array.from(r.firesPerLatent));
      expect(Array.from(back.arrays.mean_activation)).toEqual(Array.from(r.meanActivation));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const merged = mergeDead([0, 0, 3], [true, false, true]);
    expect(Array.from(merged.dead)).toEqual([1, 0, 0]);
    expect(merged.deadFrac).toBeCloseTo(1 / 3);
  });
});
