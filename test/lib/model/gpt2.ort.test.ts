// The same tests on the wasm+ort backend (ONNX Runtime kernels; falls back to wasm without the binding).
import { expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend } from '../../../lib/backend.ts';
import { ortAvailable, ortThreads, setOrtThreads } from '../../../lib/native/ort.ts';
import { createGPT2 } from '../../../lib/model/gpt2.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

process.env.GSAE_TEST_BACKEND = 'wasm+ort';
await import('./gpt2.test.ts');

// The binding ships with npm ci (linux/macOS/windows CPU binaries), so it must load: a failure, never a skip.
it('ran on wasm+ort', () => {
  expect(activeBackend()).toBe('wasm+ort');
});

it('the whole-step training graph gives the per-block graphs\' loss and gradients, the same bits for 1 and 2 ORT threads, for T = nCtx and T < nCtx', () => {
  const cfg = { vocabSize: 37, nCtx: 12, dModel: 16, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };
  const model = createGPT2(cfg, 5);
  const u = mulberry32(8);
  for (const T of [12, 7]) {
    const B = 3;
    const tokens = Int32Array.from({ length: B * (T + 1) }, () => Math.floor(u() * cfg.vocabSize));
    model.fusedTraining = false;
    const blocks = model.forwardBackwardFlat(tokens, B, T);
    model.fusedTraining = true;
    const before = ortThreads();
    const runs = [1, 2].map((threads) => {
      setOrtThreads(threads);
      return model.forwardBackwardFlat(tokens, B, T);
    });
    setOrtThreads(before);
    expect(Array.from(runs[1].grad)).toEqual(Array.from(runs[0].grad));
    expect(runs[1].loss).toBe(runs[0].loss);
    expect(Math.abs(runs[0].loss - blocks.loss)).toBeLessThan(1e-6);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < blocks.grad.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(blocks.grad[i]));
      maxDiff = Math.max(maxDiff, Math.abs(blocks.grad[i] - runs[0].grad[i]));
    }
    expect(maxAbs).toBeGreaterThan(1e-3);
    expect(maxDiff).toBeLessThan(1e-5 * maxAbs);
    // the forwardBackward map is the same flat gradient, split by parameter
    const { grads } = model.forwardBackward(tokens, B, T);
    let off = 0;
    for (const name of model.paramNames) {
      const g = grads.get(name)!;
      expect(Array.from(g.dataSync()), name).toEqual(Array.from(runs[0].grad.subarray(off, off + g.size)));
      off += g.size;
      g.dispose();
    }
  }
  model.dispose();
});

it('fused CE/KL head: the KL from the kept w̄ = pᵀwte and −H(p) equals the KL of the full distributions; an identity pass has KL exactly 0', () => {
  const cfg = { vocabSize: 41, nCtx: 10, dModel: 16, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };
  const model = createGPT2(cfg, 6);
  const u = mulberry32(9);
  const B = 3;
  const T = 10;
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(u() * cfg.vocabSize));
  const targets = Int32Array.from({ length: B * T }, () => Math.floor(u() * cfg.vocabSize));
  const tokens = tf.tensor2d(ids, [B, T], 'int32');
  const hook = 'blocks.1.hook_resid_pre';
  const v = tf.tensor1d(Float32Array.from({ length: cfg.dModel }, () => 0.8 * (u() - 0.5)));
  const clean = model.fusedCeKl(tokens, targets, { keepRef: true })!;
  const same = model.fusedCeKl(tokens, targets, { ref: clean.ref, hooks: { [hook]: (x) => x } })!;
  expect(Array.from(same.kl!).every((k) => k === 0)).toBe(true);
  const steered = model.fusedCeKl(tokens, targets, { ref: clean.ref, hooks: { [hook]: (x) => tf.add(x, v) as tf.Tensor3D } })!;
  const lc = model.logits(tokens).dataSync();
  const ls = model.logits(tokens, { [hook]: (x) => tf.add(x, v) as tf.Tensor3D }).dataSync();
  const V = cfg.vocabSize;
  const logSoftmax = (l: ArrayLike<number>, o: number) => {
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, l[o + j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(l[o + j] - mx);
    const lse = mx + Math.log(s);
    return Array.from({ length: V }, (_, j) => l[o + j] - lse);
  };
  let maxKl = 0;
  for (let r = 0; r < B * T; r++) {
    const a = logSoftmax(lc, r * V);
    const b = logSoftmax(ls, r * V);
    let kl = 0;
    for (let j = 0; j < V; j++) kl += Math.exp(a[j]) * (a[j] - b[j]);
    maxKl = Math.max(maxKl, kl);
    expect(Math.abs(steered.kl![r] - kl), `row ${r}`).toBeLessThan(2e-5 + 1e-3 * kl);
    expect(Math.abs(steered.ce[r] + b[targets[r]])).toBeLessThan(1e-4);
    expect(Math.abs(clean.ce[r] + a[targets[r]])).toBeLessThan(1e-4);
  }
  expect(maxKl).toBeGreaterThan(1e-3); // the steering moved the distribution
  for (const r of [clean, same, steered]) r.ref.release();
  tf.dispose([tokens, v]);
  model.dispose();
});
