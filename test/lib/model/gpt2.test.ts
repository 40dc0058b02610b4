import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../lib/backend.ts';
import { GPT2, createGPT2, gpt2ParamShapes, initGPT2Params } from '../../../lib/model/gpt2.ts';
import { residHookName, type GPT2Config } from '../../../lib/model/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import { refLogits, refLosses, toF64, type RefParams } from './reference.ts';

const cfg: GPT2Config = { vocabSize: 23, nCtx: 8, dModel: 16, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };

/** Random parameters far from GPT-2's init (so LayerNorm gains/biases and all paths matter). */
function randomParams(c: GPT2Config, seed: number, scale = 0.3): Map<string, Float32Array> {
  const r = randn(mulberry32(seed));
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of gpt2ParamShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const isLnW = /ln_[12f]\.weight$/.test(name);
    for (let i = 0; i < n; i++) a[i] = isLnW ? 1 + 0.2 * r() : scale * r();
    out.set(name, a);
  }
  return out;
}

function randomTokens(n: number, V: number, seed: number): Int32Array {
  const u = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(u() * V));
}

function inputsOf(tokens: Int32Array, B: number, T: number): Int32Array {
  const x = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) x[b * T + t] = tokens[b * (T + 1) + t];
  return x;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let arrays: Map<string, Float32Array>;
let ref: RefParams;
let model: GPT2;

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
  arrays = randomParams(cfg, 1);
  ref = toF64(arrays);
  model = GPT2.fromArrays(cfg, arrays);
});

describe('GPT-2 forward', () => {
  it('matches the float64 reference (T < nCtx and T = nCtx)', () => {
    for (const [B, T] of [
      [2, 5],
      [3, 8],
    ]) {
      const inputs = randomTokens(B * T, cfg.vocabSize, 7 + T);
      const t = tf.tensor2d(inputs, [B, T], 'int32');
      const lg = model.logits(t);
      expect(lg.shape).toEqual([B, T, cfg.vocabSize]);
      const want = refLogits(cfg, ref, inputs, B, T);
      expect(maxAbsDiff(lg.dataSync(), want)).toBeLessThan(2e-4);
      lg.dispose();
      t.dispose();
    }
  });

  it('a block run whole (inference) gives bit for bit the losses of the block opened by hooks', () => {
    const [B, T] = [3, 7];
    const tokens = randomTokens(B * (T + 1), cfg.vocabSize, 13);
    const whole = model.lossPerToken(tokens, B, T);
    // identity hooks inside every block force the two-part path (attention, then MLP)
    const hooks = Object.fromEntries(Array.from({ length: cfg.nLayer }, (_, l) => [`blocks.${l}.hook_resid_mid`, (x: tf.Tensor3D) => x]));
    const opened = model.lossPerToken(tokens, B, T, hooks);
    expect(Array.from(whole)).toEqual(Array.from(opened));
  });

  it('lossPerToken matches the reference', () => {
    const B = 2;
    const T = 7;
    const tokens = randomTokens(B * (T + 1), cfg.vocabSize, 3);
    const got = model.lossPerToken(tokens, B, T);
    const want = refLosses(cfg, ref, tokens, B, T).perToken;
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
  });

  it('is causal: changing token t never changes logits before t', () => {
    const B = 1;
    const T = 8;
    const a = randomTokens(T, cfg.vocabSize, 11);
    const la = model.logits(tf.tensor2d(a, [B, T], 'int32')).dataSync();
    for (const t of [0, 3, 7]) {
      const b = a.slice();
      b[t] = (b[t] + 5) % cfg.vocabSize;
      const lb = model.logits(tf.tensor2d(b, [B, T], 'int32')).dataSync();
      const V = cfg.vocabSize;
      for (let s = 0; s < T; s++) {
        const d = maxAbsDiff(la.subarray(s * V, (s + 1) * V), lb.subarray(s * V, (s + 1) * V));
        if (s < t) expect(d).toBe(0);
        else if (s === t) expect(d).toBeGreaterThan(1e-3);
      }
    }
  });

  it('handles extreme logits exactly (no underflow in the loss)', () => {
    const big = new Map(arrays);
    big.set('wte.weight', arrays.get('wte.weight')!.map((v) => v * 40));
    const m = GPT2.fromArrays(cfg, big);
    const B = 1;
    const T = 6;
    const tokens = randomTokens(B * (T + 1), cfg.vocabSize, 5);
    const got = m.lossPerToken(tokens, B, T);
    const want = refLosses(cfg, toF64(big), tokens, B, T).perToken;
    expect(Math.max(...want)).toBeGreaterThan(80); // probabilities below float32 range
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want[i]) / Math.max(1, want[i])).toBeLessThan(1e-4);
    m.dispose();
  });

  it('rejects bad input with clear errors', () => {
    expect(() => model.lossPerToken(new Int32Array([1, 2, 99]), 1, 2)).toThrow(/outside the vocabulary/);
    expect(() => model.lossPerToken(new Int32Array(20), 2, 9)).toThrow(/exceeds the context/);
    expect(() => model.logits(tf.tensor2d([[1, 2]], [1, 2], 'int32'), { 'blocks.9.hook_resid_pre': (x) => x })).toThrow(
      /unknown hook/,
    );
    expect(() => model.activationAndGrad(new Int32Array(6), 2, 2, 'blocks.0.hook_attn_out')).toThrow(/not supported/);
  });
});

describe('hooks', () => {
  const B = 2;
  const T = 6;
  let tok: tf.Tensor2D;
  let base: Float32Array;
  beforeAll(() => {
    tok = tf.tensor2d(randomTokens(B * T, cfg.vocabSize, 21), [B, T], 'int32');
    base = model.logits(tok).dataSync() as Float32Array;
  });

  it('identity replace and adding zero change nothing', () => {
    for (const l of [0, 1]) {
      for (const site of ['resid_pre', 'resid_post'] as const) {
        const id = model.logits(tok, { [residHookName(l, site)]: (x) => x }).dataSync();
        expect(maxAbsDiff(id, base)).toBe(0);
        const zero = tf.zeros([cfg.dModel]);
        const add0 = model.logits(tok, { [residHookName(l, site)]: (x) => tf.add(x, zero) as tf.Tensor3D }).dataSync();
        expect(maxAbsDiff(add0, base)).toBe(0);
        zero.dispose();
      }
    }
  });

  it('adding a vector changes the logits, and matches the reference with the same addition', () => {
    const v = Float32Array.from({ length: cfg.dModel }, (_, i) => Math.sin(i));
    const vt = tf.tensor1d(v);
    const got = model.logits(tok, { 'blocks.1.hook_resid_pre': (x) => tf.add(x, vt) as tf.Tensor3D }).dataSync();
    expect(maxAbsDiff(got, base)).toBeGreaterThan(1e-2);
    const delta = new Float64Array(B * T * cfg.dModel);
    for (let i = 0; i < delta.length; i++) delta[i] = v[i % cfg.dModel];
    const want = refLogits(cfg, ref, tok.dataSync() as Int32Array, B, T, {
      addAt: { layer: 1, site: 'resid_pre', delta },
    });
    expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
    // resid_post of layer 0 is the same point as resid_pre of layer 1
    const post = model.logits(tok, { 'blocks.0.hook_resid_post': (x) => tf.add(x, vt) as tf.Tensor3D }).dataSync();
    expect(maxAbsDiff(post, got)).toBe(0);
    vt.dispose();
  });

  it('replace with a function of x (zero ablation) matches the reference', () => {
    const got = model.logits(tok, { 'blocks.0.hook_resid_mid': (x) => tf.zerosLike(x) }).dataSync();
    const inputs = tok.dataSync() as Int32Array;
    // zeroing = adding -x: capture x in the reference first
    const opts: Parameters<typeof refLogits>[5] = { captureAt: { layer: 0, site: 'resid_mid' } };
    refLogits(cfg, ref, inputs, B, T, opts);
    const delta = opts.captured!.map((v) => -v);
    const want = refLogits(cfg, ref, inputs, B, T, { addAt: { layer: 0, site: 'resid_mid', delta } });
    expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
  });
});

describe('gradients', () => {
  // on wasm+ort: the whole-step graph (fusedTraining) and the per-block graphs; elsewhere the same path twice
  it.each([true, false])('parameter gradients equal float64 central differences of the mean loss (fusedTraining %s)', (fused) => {
    model.fusedTraining = fused;
    const B = 2;
    const T = 5;
    const tokens = randomTokens(B * (T + 1), cfg.vocabSize, 99);
    const { loss, grads } = model.forwardBackward(tokens, B, T);
    model.fusedTraining = true;
    const n = B * T;
    const refMean = (p: RefParams) => refLosses(cfg, p, tokens, B, T).sum / n;
    expect(Math.abs(loss - refMean(ref))).toBeLessThan(1e-4);
    const u = mulberry32(4);
    const eps = 1e-5;
    let checked = 0;
    for (const [name, g] of grads) {
      const gv = g.dataSync();
      const base = ref.get(name)!;
      // 3 random coordinates per tensor (+ the largest-gradient one)
      const idx = [0, 1, 2].map(() => Math.floor(u() * base.length));
      let amax = 0;
      for (let i = 1; i < gv.length; i++) if (Math.abs(gv[i]) > Math.abs(gv[amax])) amax = i;
      idx.push(amax);
      for (const i of idx) {
        const orig = base[i];
        base[i] = orig + eps;
        const lp = refMean(ref);
        base[i] = orig - eps;
        const lm = refMean(ref);
        base[i] = orig;
        const fd = (lp - lm) / (2 * eps);
        expect(Math.abs(gv[i] - fd), `${name}[${i}]: tfjs ${gv[i]} vs fd ${fd}`).toBeLessThan(2e-4 + 2e-3 * Math.abs(fd));
        checked++;
      }
      g.dispose();
    }
    expect(checked).toBe(gpt2ParamShapes(cfg).size * 4);
    // token positions never seen get zero wte gradient except through the unembedding: wpe rows >= T are exactly 0
    expect(grads.size).toBe(gpt2ParamShapes(cfg).size);
  });

  it('activationAndGrad: x is the residual and g equals finite differences of the summed loss', () => {
    const B = 2;
    const T = 6;
    const tokens = randomTokens(B * (T + 1), cfg.vocabSize, 123);
    const inputs = inputsOf(tokens, B, T);
    const d = cfg.dModel;
    const u = mulberry32(8);
    for (const [layer, site] of [
      [0, 'resid_pre'],
      [1, 'resid_pre'],
      [0, 'resid_mid'],
      [1, 'resid_post'],
    ] as const) {
      const r = model.activationAndGrad(tokens, B, T, `blocks.${layer}.hook_${site}`);
      expect(r.x.length).toBe(B * T * d);
      // the forward-only pass up to the hook gives the same x, bit for bit
      expect(Array.from(model.activations(tokens, B, T, `blocks.${layer}.hook_${site}`))).toEqual(Array.from(r.x));
      expect(r.g.length).toBe(B * T * d);
      const opts: Parameters<typeof refLogits>[5] = { captureAt: { layer, site } };
      refLogits(cfg, ref, inputs, B, T, opts);
      expect(maxAbsDiff(r.x, opts.captured!)).toBeLessThan(1e-4);
      const lp = refLosses(cfg, ref, tokens, B, T).perToken;
      expect(maxAbsDiff(r.lossPerToken, lp)).toBeLessThan(1e-4);
      const eps = 1e-5;
      for (let k = 0; k < 6; k++) {
        const i = Math.floor(u() * B * T * d);
        const delta = new Float64Array(B * T * d);
        delta[i] = eps;
        const a = refLosses(cfg, ref, tokens, B, T, { addAt: { layer, site, delta } }).sum;
        delta[i] = -eps;
        const b = refLosses(cfg, ref, tokens, B, T, { addAt: { layer, site, delta } }).sum;
        const fd = (a - b) / (2 * eps);
        expect(Math.abs(r.g[i] - fd), `${layer}.${site}[${i}]`).toBeLessThan(2e-4 + 2e-3 * Math.abs(fd));
      }
      // the last position of every sequence influences only its own loss: g at t=T-1 is non-zero
      expect(Math.abs(r.g[(T - 1) * d])).toBeGreaterThan(0);
    }
  });

  it('the chunked cross-entropy head gives the same losses and gradients as one chunk', () => {
    const B = 2;
    const T = 7;
    const tokens = randomTokens(B * (T + 1), cfg.vocabSize, 31);
    model.fusedTraining = false; // the chunked head belongs to the per-block path
    const one = model.forwardBackward(tokens, B, T);
    const ag1 = model.activationAndGrad(tokens, B, T, 'blocks.1.hook_resid_pre');
    model.headChunkElems = cfg.vocabSize * 3; // 3 rows per chunk: 5 chunks of 3,3,3,3,2
    try {
      const many = model.forwardBackward(tokens, B, T);
      const ag2 = model.activationAndGrad(tokens, B, T, 'blocks.1.hook_resid_pre');
      expect(Math.abs(many.loss - one.loss)).toBeLessThan(1e-6);
      for (const [k, g] of one.grads) expect(maxAbsDiff(g.dataSync(), many.grads.get(k)!.dataSync()), k).toBeLessThan(1e-6);
      expect(maxAbsDiff(ag1.g, ag2.g)).toBeLessThan(1e-6);
      expect(ag2.lossPerToken).toEqual(ag1.lossPerToken);
      for (const g of [...one.grads.values(), ...many.grads.values()]) g.dispose();
    } finally {
      model.headChunkElems = 512 * 4096;
      model.fusedTraining = true;
    }
  });

  it('activationAndGrad leaks no tensors', () => {
    const tokens = randomTokens(2 * 7, cfg.vocabSize, 1);
    model.activationAndGrad(tokens, 2, 6, 'blocks.1.hook_resid_pre');
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) model.activationAndGrad(tokens, 2, 6, 'blocks.1.hook_resid_pre');
    model.lossPerToken(tokens, 2, 6);
    const { grads } = model.forwardBackward(tokens, 2, 6);
    for (const g of grads.values()) g.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('init and determinism', () => {
  it('GPT-2 init: std 0.02, residual projections scaled, LayerNorm 1/0, biases 0; same seed = same numbers', () => {
    const c: GPT2Config = { vocabSize: 512, nCtx: 64, dModel: 64, nLayer: 4, nHead: 4, layerNormEps: 1e-5 };
    const p = initGPT2Params(c, 42);
    const std = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    expect(std(p.get('wte.weight')!)).toBeCloseTo(0.02, 3);
    expect(std(p.get('h.0.mlp.c_fc.weight')!)).toBeCloseTo(0.02, 3);
    expect(std(p.get('h.3.attn.c_proj.weight')!)).toBeCloseTo(0.02 / Math.sqrt(8), 3);
    expect(std(p.get('h.1.mlp.c_proj.weight')!)).toBeCloseTo(0.02 / Math.sqrt(8), 3);
    expect(p.get('h.2.ln_1.weight')!.every((v) => v === 1)).toBe(true);
    expect(p.get('h.2.attn.c_attn.bias')!.every((v) => v === 0)).toBe(true);
    const q = initGPT2Params(c, 42);
    for (const [k, v] of p) expect(q.get(k)).toEqual(v);
    expect(initGPT2Params(c, 43).get('wte.weight')).not.toEqual(p.get('wte.weight'));
  });

  it('same seed and data give bit-identical logits and gradients', () => {
    const a = createGPT2(cfg, 5);
    const b = createGPT2(cfg, 5);
    const tokens = randomTokens(2 * 7, cfg.vocabSize, 77);
    const ra = a.forwardBackward(tokens, 2, 6);
    const rb = b.forwardBackward(tokens, 2, 6);
    expect(ra.loss).toBe(rb.loss);
    for (const [k, g] of ra.grads) expect(g.dataSync()).toEqual(rb.grads.get(k)!.dataSync());
    for (const g of [...ra.grads.values(), ...rb.grads.values()]) g.dispose();
    a.dispose();
    b.dispose();
  });
});
