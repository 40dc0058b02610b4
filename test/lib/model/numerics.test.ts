/**
 * GPT-2 numerics against closed forms computed by hand (independent of the float64 reference):
 * gelu_new values, LayerNorm with eps, the embedding/residual/final-LN/tied-unembedding path,
 * and causal attention averaging when queries and keys are zero.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../lib/backend.ts';
import { GPT2, geluNew, gpt2ParamShapes, layerNorm } from '../../../lib/model/gpt2.ts';
import type { GPT2Config } from '../../../lib/model/types.ts';

beforeAll(async () => {
  await initBackend('wasm');
});

function ln(x: number[], eps: number): number[] {
  const mu = x.reduce((a, b) => a + b, 0) / x.length;
  const v = x.reduce((a, b) => a + (b - mu) ** 2, 0) / x.length;
  return x.map((e) => (e - mu) / Math.sqrt(v + eps));
}

function zeros(c: GPT2Config): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  for (const [n, s] of gpt2ParamShapes(c)) {
    const a = new Float32Array(s.reduce((x, y) => x * y, 1));
    if (/ln_[12f]\.weight$/.test(n)) a.fill(1);
    m.set(n, a);
  }
  return m;
}

describe('closed forms', () => {
  it('gelu_new matches 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))', () => {
    // values from Python: 0.5*x*(1+math.tanh(math.sqrt(2/math.pi)*(x+0.044715*x**3)))
    const want: [number, number][] = [
      [-3, -0.0036373920817729943],
      [-1, -0.15880800939172324],
      [-0.5, -0.15428599017485606],
      [0, 0],
      [0.5, 0.34571400982514394],
      [1, 0.8411919906082768],
      [2, 1.954597694087775],
      [3, 2.996362607918227],
    ];
    const got = geluNew(tf.tensor1d(want.map((w) => w[0]))).dataSync();
    want.forEach(([, y], i) => expect(Math.abs(got[i] - y)).toBeLessThan(1e-6));
    const ext = geluNew(tf.tensor1d([-40, 40, -1e4, 1e4])).dataSync();
    expect([...ext]).toEqual([-0, 40, -0, 1e4]);
  });

  it('LayerNorm uses the biased variance with eps inside the square root', () => {
    const x = tf.tensor2d([
      [1, 2, 3, 4],
      [5, 5, 5, 5],
      [0.001, -0.001, 0.002, 0],
    ]);
    const g = tf.tensor1d([1, 2, 0.5, -1]);
    const b = tf.tensor1d([0, 1, 0, 3]);
    const eps = 1e-5;
    const out = layerNorm(x, g, b, eps).out.arraySync();
    const rows = x.arraySync();
    rows.forEach((r, i) => {
      const n = ln(r, eps);
      const w = n.map((v, j) => v * [1, 2, 0.5, -1][j] + [0, 1, 0, 3][j]);
      w.forEach((v, j) => expect(Math.abs(out[i][j] - v)).toBeLessThan(2e-5));
    });
    // constant row: exactly the bias; tiny-variance row: eps dominates (not unit variance)
    expect(out[1]).toEqual([0, 1, 0, 3]);
    expect(Math.abs(out[2][0])).toBeLessThan(0.5);
  });

  it('with zero block weights: logits = LN_f(wte[tok] + wpe[t] + sum of output biases) . wte^T', () => {
    const c: GPT2Config = { vocabSize: 5, nCtx: 4, dModel: 4, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };
    const p = zeros(c);
    p.set('wte.weight', Float32Array.from({ length: 20 }, (_, i) => Math.sin(i + 1)));
    p.set('wpe.weight', Float32Array.from({ length: 16 }, (_, i) => 0.5 * Math.cos(i)));
    p.set('h.0.attn.c_proj.bias', Float32Array.from([0.1, 0.2, -0.3, 0.05]));
    p.set('h.1.mlp.c_proj.bias', Float32Array.from([-0.2, 0.4, 0.0, 0.3]));
    // biases feeding zero weights must not matter
    p.set('h.0.attn.c_attn.bias', Float32Array.from({ length: 12 }, () => 7));
    p.set('h.1.mlp.c_fc.bias', Float32Array.from({ length: 16 }, () => -3));
    p.set('ln_f.weight', Float32Array.from([1, 2, 1, 0.5]));
    p.set('ln_f.bias', Float32Array.from([0, 0.1, 0, -0.1]));
    const m = GPT2.fromArrays(c, p);
    const toks = [3, 0, 4, 3];
    const got = m.logits(tf.tensor2d([toks], [1, 4], 'int32')).arraySync()[0];
    const wte = p.get('wte.weight')!;
    const wpe = p.get('wpe.weight')!;
    const bias = [0.1 - 0.2, 0.2 + 0.4, -0.3 + 0.0, 0.05 + 0.3];
    // gelu_new(-3) * 0 weights = 0, so the MLP adds only its output bias
    toks.forEach((tok, t) => {
      const x = [0, 1, 2, 3].map((i) => wte[tok * 4 + i] + wpe[t * 4 + i] + bias[i]);
      const h = ln(x, 1e-5).map((v, i) => v * [1, 2, 1, 0.5][i] + [0, 0.1, 0, -0.1][i]);
      for (let v = 0; v < 5; v++) {
        const want = h.reduce((s, hi, i) => s + hi * wte[v * 4 + i], 0);
        expect(Math.abs(got[t][v] - want)).toBeLessThan(1e-5);
      }
    });
    m.dispose();
  });

  it('with zero queries and keys, attention averages LN_1(x) over the causal prefix', () => {
    const c: GPT2Config = { vocabSize: 6, nCtx: 5, dModel: 4, nLayer: 1, nHead: 2, layerNormEps: 1e-5 };
    const d = 4;
    const p = zeros(c);
    p.set('wte.weight', Float32Array.from({ length: 24 }, (_, i) => Math.sin(3 * i + 1)));
    p.set('wpe.weight', Float32Array.from({ length: 20 }, (_, i) => 0.3 * Math.cos(2 * i)));
    // c_attn = [0 | 0 | I]: q = k = 0 (uniform scores), v = LN_1(x); c_proj = I
    const wqkv = new Float32Array(d * 3 * d);
    for (let i = 0; i < d; i++) wqkv[i * 3 * d + 2 * d + i] = 1;
    p.set('h.0.attn.c_attn.weight', wqkv);
    const wo = new Float32Array(d * d);
    for (let i = 0; i < d; i++) wo[i * d + i] = 1;
    p.set('h.0.attn.c_proj.weight', wo);
    const m = GPT2.fromArrays(c, p);
    const toks = [1, 5, 2, 2, 0];
    const T = toks.length;
    const tokens = new Int32Array([...toks, 0]);
    const r = m.activationAndGrad(tokens, 1, T, 'blocks.0.hook_resid_mid');
    const wte = p.get('wte.weight')!;
    const wpe = p.get('wpe.weight')!;
    const x = toks.map((tok, t) => [0, 1, 2, 3].map((i) => wte[tok * d + i] + wpe[t * d + i]));
    const h = x.map((row) => ln(row, 1e-5));
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < d; i++) {
        let mean = 0;
        for (let s = 0; s <= t; s++) mean += h[s][i] / (t + 1);
        expect(Math.abs(r.x[t * d + i] - (x[t][i] + mean))).toBeLessThan(1e-5);
      }
    }
    m.dispose();
  });
});
