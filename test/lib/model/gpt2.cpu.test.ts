/**
 * The same model on the pure-JS 'cpu' backend (the path taken by the native tensorflow backends
 * too: no wasm-only kernels): forward, gradients and activationAndGrad against the float64
 * reference. One backend per process, hence a separate file.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../lib/backend.ts';
import { GPT2, gpt2ParamShapes } from '../../../lib/model/gpt2.ts';
import { train } from '../../../lib/model/train.ts';
import type { GPT2Config } from '../../../lib/model/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import { refLogits, refLosses, toF64 } from './reference.ts';

const cfg: GPT2Config = { vocabSize: 19, nCtx: 8, dModel: 12, nLayer: 2, nHead: 3, layerNormEps: 1e-5 };

function params(seed: number): Map<string, Float32Array> {
  const r = randn(mulberry32(seed));
  return new Map(
    [...gpt2ParamShapes(cfg)].map(([n, s]) => {
      const a = Float32Array.from({ length: s.reduce((x, y) => x * y, 1) }, () => (/ln_[12f]\.weight$/.test(n) ? 1 + 0.2 * r() : 0.3 * r()));
      return [n, a];
    }),
  );
}

function toks(n: number, seed: number): Int32Array {
  const u = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(u() * cfg.vocabSize));
}

beforeAll(async () => {
  await initBackend('cpu', { quiet: true });
  expect(tf.getBackend()).toBe('cpu');
});

describe('GPT-2 on the cpu backend', () => {
  it('logits, gradients and activationAndGrad match the float64 reference', () => {
    const arrays = params(1);
    const ref = toF64(arrays);
    const m = GPT2.fromArrays(cfg, arrays);
    const B = 2;
    const T = 6;
    const inputs = toks(B * T, 2);
    const lg = m.logits(tf.tensor2d(inputs, [B, T], 'int32')).dataSync();
    const want = refLogits(cfg, ref, inputs, B, T);
    for (let i = 0; i < lg.length; i++) expect(Math.abs(lg[i] - want[i])).toBeLessThan(2e-4);

    const tokens = toks(B * (T + 1), 3);
    const { loss, grads } = m.forwardBackward(tokens, B, T);
    const mean = () => refLosses(cfg, ref, tokens, B, T).sum / (B * T);
    expect(Math.abs(loss - mean())).toBeLessThan(1e-4);
    const eps = 1e-5;
    for (const name of ['wte.weight', 'wpe.weight', 'h.0.attn.c_attn.weight', 'h.1.mlp.c_fc.bias', 'ln_f.weight']) {
      const g = grads.get(name)!.dataSync();
      const base = ref.get(name)!;
      for (const i of [0, 5, base.length - 1]) {
        const o = base[i];
        base[i] = o + eps;
        const a = mean();
        base[i] = o - eps;
        const b = mean();
        base[i] = o;
        const fd = (a - b) / (2 * eps);
        expect(Math.abs(g[i] - fd), `${name}[${i}]`).toBeLessThan(2e-4 + 2e-3 * Math.abs(fd));
      }
    }
    const r = m.activationAndGrad(tokens, B, T, 'blocks.1.hook_resid_pre');
    const delta = new Float64Array(B * T * cfg.dModel);
    for (const i of [0, 17, 100]) {
      delta.fill(0);
      delta[i] = eps;
      const a = refLosses(cfg, ref, tokens, B, T, { addAt: { layer: 1, site: 'resid_pre', delta } }).sum;
      delta[i] = -eps;
      const b = refLosses(cfg, ref, tokens, B, T, { addAt: { layer: 1, site: 'resid_pre', delta } }).sum;
      expect(Math.abs(r.g[i] - (a - b) / (2 * eps))).toBeLessThan(2e-4 + 2e-3 * Math.abs((a - b) / (2 * eps)));
    }
    m.dispose();
  });

  it('trains a few steps without leaking tensors', async () => {
    const m = GPT2.fromArrays(cfg, params(4));
    const stream = Uint16Array.from({ length: 500 }, (_, i) => (i * 7) % cfg.vocabSize);
    let n0 = -1;
    let n1 = -2;
    const r = await train(m, stream, {
      steps: 12,
      batchSize: 2,
      seqLen: 8,
      logEverySteps: 4,
    }, {
      onProgress: (p) => {
        if (p.step === 4) n0 = tf.memory().numTensors;
        if (p.step === 12) n1 = tf.memory().numTensors;
      },
    });
    expect(n1).toBe(n0);
    expect(Number.isFinite(r.finalTrainLoss)).toBe(true);
    m.dispose();
  });
});
