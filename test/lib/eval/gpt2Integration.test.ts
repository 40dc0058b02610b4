/** The eval code against the real hooked GPT-2 (lib/model), tiny and randomly initialised. */
import { TEST_BACKEND } from '../testBackend.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../lib/backend.ts';
import { createGPT2, type GPT2 } from '../../../lib/model/gpt2.ts';
import { residHookName } from '../../../lib/model/types.ts';
import { cleanReference, evaluateDownstream, evaluateHook, heldOutWindows } from '../../../lib/eval/downstream.ts';
import { identityHook } from '../../../lib/eval/saeHook.ts';
import { decodeReference, encodeReference } from './saeReference.ts';
import { evaluateSteering } from '../../../lib/eval/steering.ts';
import { selectionChangeRate } from '../../../lib/sae/infer.ts';
import { randomSae } from './saeFixtures.ts';
import { syntheticTokens } from './tinyLM.ts';

const cfg = { vocabSize: 97, nCtx: 32, dModel: 32, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };
const hook = residHookName(1, 'resid_pre');
const tokens = syntheticTokens(3000, cfg.vocabSize, 3);
let model: GPT2;

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
  model = createGPT2(cfg, 1);
});
afterAll(() => model.dispose());

describe('eval with the real GPT-2', () => {
  it('identity hook: CE unchanged, KL 0; g-SAE splicing uses x and g of the same tokens', () => {
    const base = { hook, nTokens: 128, seqLen: 16, batch: 4 };
    const id = evaluateHook(model, tokens, { ...base, hookFn: identityHook });
    expect(Array.from(id.ceHooked)).toEqual(Array.from(id.ceClean));
    expect(Math.max(...id.kl.map(Math.abs))).toBeLessThan(1e-6);

    const w = randomSae(cfg.dModel, 128, 8, 'gsae', 2, 4);
    const r = evaluateDownstream(model, tokens, { ...base, sae: w });
    const { nSeq, windows } = heldOutWindows(tokens, base.nTokens, base.seqLen);
    const ag = model.activationAndGrad(windows, nSeq, base.seqLen, hook);
    for (let i = 0; i < r.nPositions; i++) expect(r.perToken.ce_clean[i]).toBeCloseTo(ag.lossPerToken[i], 4);
    const xhat = decodeReference(w, encodeReference(w, ag.x, ag.g));
    for (let i = 0; i < r.nPositions; i++) {
      let se = 0;
      for (let j = 0; j < cfg.dModel; j++) se += (ag.x[i * cfg.dModel + j] - xhat[i * cfg.dModel + j]) ** 2;
      expect(r.perToken.sq_err[i]).toBeCloseTo(se, 2);
    }
    let differ = 0;
    for (let i = 0; i < r.nPositions; i++) if (Math.abs(r.perToken.sq_err[i] - r.perToken.sq_err_gradfree[i]) > 1e-4) differ++;
    expect(differ).toBeGreaterThan(0); // the gradient changed some selections
    expect(r.summary.ce_zero).toBeGreaterThan(0);
    expect(Number.isFinite(r.summary.loss_recovered)).toBe(true);
    expect(Number.isFinite(r.summary.kl_gradfree)).toBe(true);
  });

  it('passes started from the stored activations give every per-token value of the full passes; wrong activations are refused', () => {
    const base = { hook, nTokens: 128, seqLen: 16, batch: 4 };
    const { nSeq, windows } = heldOutWindows(tokens, base.nTokens, base.seqLen);
    const ag = model.activationAndGrad(windows, nSeq, base.seqLen, hook);
    for (const w of [randomSae(cfg.dModel, 128, 8, 'gsae', 2, 4), randomSae(cfg.dModel, 128, 8, 'topk', 0, 5)]) {
      const full = evaluateDownstream(model, tokens, { ...base, sae: w, gradients: ag.g });
      const started = evaluateDownstream(model, tokens, { ...base, sae: w, gradients: ag.g, activations: ag.x });
      for (const [name, arr] of Object.entries(full.perToken)) {
        const other = started.perToken[name];
        let worst = 0;
        for (let i = 0; i < arr.length; i++) worst = Math.max(worst, Math.abs(arr[i] - other[i]));
        expect(worst, name).toBeLessThan(1e-5);
      }
      expect(Array.from(started.firesPerLatent)).toEqual(Array.from(full.firesPerLatent));
      // the change rate comes with the started passes (one encode for both selections), as selectionChangeRate gives it
      expect(full.changeRate).toBeNull();
      if (w.arch === 'gsae' && TEST_BACKEND === 'wasm+ort') {
        const rate = selectionChangeRate(w, ag.x, ag.g);
        expect(rate).toBeGreaterThan(0);
        expect(started.changeRate).toBe(rate);
      } else if (w.arch === 'topk') {
        expect(started.changeRate).toBeNull();
      }
    }
    // on wasm+ort the first batch is checked against a full pass: activations of other tokens are refused
    if (TEST_BACKEND === 'wasm+ort') {
      const w = randomSae(cfg.dModel, 128, 8, 'topk', 0, 5);
      const wrong = ag.x.map((v, i) => v + (i % 7 === 0 ? 0.5 : 0));
      expect(() => evaluateDownstream(model, tokens, { ...base, sae: w, activations: wrong })).toThrow(/do not reproduce the LM's clean loss/);
    }
  });

  it('a clean reference computed once (cleanReference) gives downstream every per-token value of its own clean pass, bit for bit; a stale one is refused', () => {
    const base = { hook, nTokens: 128, seqLen: 16, batch: 4 };
    const { nSeq, windows } = heldOutWindows(tokens, base.nTokens, base.seqLen);
    const ag = model.activationAndGrad(windows, nSeq, base.seqLen, hook);
    const ref = cleanReference(model, tokens, { ...base, windows, activations: ag.x });
    if (TEST_BACKEND !== 'wasm+ort') {
      expect(ref).toBeNull(); // no fused head: every downstream instance runs its own clean pass
      return;
    }
    expect(ref!.ce.length).toBe(nSeq * base.seqLen);
    for (const w of [randomSae(cfg.dModel, 128, 8, 'gsae', 2, 4), randomSae(cfg.dModel, 128, 8, 'topk', 0, 5)]) {
      const own = evaluateDownstream(model, tokens, { ...base, sae: w, windows, gradients: ag.g, activations: ag.x });
      const shared = evaluateDownstream(model, tokens, { ...base, sae: w, windows, gradients: ag.g, activations: ag.x, cleanRef: ref! });
      for (const [name, arr] of Object.entries(own.perToken)) expect(Array.from(shared.perToken[name]), name).toEqual(Array.from(arr));
      expect(shared.summary).toEqual(own.summary);
      // fewer passes: only the first batch's clean pass runs (as the check)
      expect(shared.cost.forwardTokens).toBeLessThan(own.cost.forwardTokens);
    }
    const w = randomSae(cfg.dModel, 128, 8, 'topk', 0, 5);
    const stale = { ...ref!, ce: ref!.ce.map((v, i) => (i === 3 ? v + 1e-3 : v)) };
    expect(() => evaluateDownstream(model, tokens, { ...base, sae: w, windows, activations: ag.x, cleanRef: stale })).toThrow(/stored clean reference does not match/);
    const short = { ce: ref!.ce.subarray(1), wbar: ref!.wbar, a: ref!.a };
    expect(() => evaluateDownstream(model, tokens, { ...base, sae: w, windows, activations: ag.x, cleanRef: short })).toThrow(/clean reference holds/);
  });

  it('steering with alpha = 0 has no effect', () => {
    const w = randomSae(cfg.dModel, 64, 8, 'topk', 0, 4);
    const res = evaluateSteering(model, tokens, {
      hook, sae: w, firingCounts: new Float64Array(64).fill(1), meanNorm: 5,
      alphas: [0, 4], nLatents: 4, nContexts: 4, contextLen: 16, contextBatch: 2,
    });
    for (const row of res.rows.filter((x) => x.alpha === 0)) {
      expect(Math.abs(row.effect)).toBeLessThan(1e-5);
      expect(Math.abs(row.kl)).toBeLessThan(1e-5);
    }
    for (const row of res.rows.filter((x) => x.alpha === 4)) expect(row.kl).toBeGreaterThan(0);
  });
});
