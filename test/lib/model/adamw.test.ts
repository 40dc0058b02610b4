import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../lib/backend.ts';
import { AdamWKernel, adamwRange, type AdamWScalars } from '../../../lib/model/adamw.ts';
import { createGPT2 } from '../../../lib/model/gpt2.ts';
import { AdamW, sampleBatch } from '../../../lib/model/train.ts';
import type { GPT2Config } from '../../../lib/model/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

describe('AdamW WebAssembly kernel', () => {
  it('gives bit for bit the TypeScript loop: odd and even lengths, offsets, clipping, decay on and off, several steps', () => {
    const rng = mulberry32(7);
    const nr = randn(rng);
    const sizes = [1, 2, 7, 64, 1001];
    const total = sizes.reduce((a, b) => a + b, 0);
    const kernel = AdamWKernel.create(total, Math.max(...sizes))!;
    expect(kernel).not.toBeNull();
    const M = new Float32Array(total);
    const V = new Float32Array(total);
    const params = sizes.map((n) => Float32Array.from({ length: n }, () => nr() * 0.1));
    const kparams = params.map((p) => p.slice());
    let diffFromStart = 0;
    for (let t = 1; t <= 4; t++) {
      // gradients of every magnitude, exact zeros and tiny values included
      const g = Float32Array.from({ length: total }, (_, i) => (i % 17 === 0 ? 0 : nr() * 10 ** ((i % 9) - 6)));
      kernel.g.set(g);
      const beta1 = 0.9;
      const beta2 = 0.95;
      let off = 0;
      sizes.forEach((n, k) => {
        const s: AdamWScalars = { scale: t % 2 ? 0.37 : 1, beta1, beta2, bc1: 1 - beta1 ** t, bc2: 1 - beta2 ** t, eps: 1e-8, lr: 3e-3, wd: k % 2 ? 0.1 : 0 };
        const out = new Float32Array(n);
        adamwRange(params[k], out, g, M, V, off, s);
        const kout = kernel.update(kparams[k], off, s);
        expect(bitsEqual(kout, out), `parameter ${k} (${n} values), step ${t}`).toBe(true);
        params[k].set(out);
        kparams[k].set(kout);
        off += n;
      });
      expect(bitsEqual(kernel.m, M), `m after step ${t}`).toBe(true);
      expect(bitsEqual(kernel.v, V), `v after step ${t}`).toBe(true);
    }
    for (const p of params) for (const x of p) diffFromStart += Math.abs(x);
    expect(diffFromStart).toBeGreaterThan(0);
  });

  it('refuses a memory it cannot have (the caller then keeps the TypeScript loop)', () => {
    expect(AdamWKernel.create(2 ** 29, 2 ** 28)).toBeNull();
  });
});

describe('AdamW on a model: kernel vs TypeScript loop', () => {
  beforeAll(async () => {
    await initBackend(TEST_BACKEND);
  });
  const cfg: GPT2Config = { vocabSize: 16, nCtx: 16, dModel: 32, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };

  it('trains to bit-identical parameters and optimizer state', () => {
    const stream = Uint16Array.from({ length: 600 }, (_, i) => (i * 7 + (i >> 2)) % 16);
    const run = (simd: boolean) => {
      const m = createGPT2(cfg, 3);
      const opt = new AdamW(m, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }, simd);
      expect(opt.simd).toBe(simd);
      for (let t = 0; t < 3; t++) {
        const { grads } = m.forwardBackward(sampleBatch(stream, 2, 16, 0, t), 2, 16);
        opt.step(m, grads, 1e-2, t === 1 ? 0.05 : 1.0);
      }
      const params = m.paramArrays();
      const st = opt.state();
      m.dispose();
      return { params, st };
    };
    const a = run(true);
    const b = run(false);
    for (const [n, x] of a.params) expect(bitsEqual(x, b.params.get(n)!), n).toBe(true);
    expect(bitsEqual(a.st.m, b.st.m)).toBe(true);
    expect(bitsEqual(a.st.v, b.st.v)).toBe(true);
  });
});
