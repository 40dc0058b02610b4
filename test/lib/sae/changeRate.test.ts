/** Selection change rate: 0 without the gradient term, growing with β on a hand-made case. */
import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../lib/backend.ts';
import { evaluateSae, selectionChangeRate } from '../../../lib/sae/index.ts';
import type { SaeWeights } from '../../../lib/sae/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import { unitRows } from './unitRows.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

function weights(beta: number, arch: SaeWeights['arch'] = 'gsae'): SaeWeights {
  const d = 16;
  const m = 64;
  const z = randn(mulberry32(3));
  const W_dec = unitRows(m, d, z);
  const W_enc = new Float32Array(d * m);
  for (let i = 0; i < d; i++) for (let j = 0; j < m; j++) W_enc[i * m + j] = W_dec[j * d + i];
  return { arch, d, m, k: 4, beta, W_enc, W_dec, b_enc: new Float32Array(m), b_dec: new Float32Array(d) };
}

describe('selectionChangeRate', () => {
  const z = randn(mulberry32(9));
  const n = 512;
  const x = Float32Array.from({ length: n * 16 }, () => z());
  const g = Float32Array.from({ length: n * 16 }, () => z());

  it('evaluateSae({ changeRate: true }) gives the same rate, and the same metrics as without it', () => {
    for (const w of [weights(2), weights(0.1), weights(5, 'topk')]) {
      const gg = w.arch === 'gsae' ? g : null;
      const plain = evaluateSae(w, x, gg);
      const both = evaluateSae(w, x, gg, { changeRate: true });
      expect(both.changeRate).toBe(selectionChangeRate(w, x, gg));
      expect(plain.changeRate).toBeUndefined();
      const { changeRate: _, ...rest } = both;
      expect(rest).toEqual(plain);
    }
    expect(evaluateSae(weights(2), x, g, { changeRate: true }).changeRate).toBeGreaterThan(0);
  });

  it('is 0 at β = 0, for TopK weights and without a gradient', () => {
    expect(selectionChangeRate(weights(0), x, g)).toBe(0);
    expect(selectionChangeRate(weights(5, 'topk'), x, g)).toBe(0);
    expect(selectionChangeRate(weights(5), x, null)).toBe(0);
  });

  it('grows with β and stays a fraction of k', () => {
    const rates = [0.01, 0.1, 1, 10, 100].map((b) => selectionChangeRate(weights(b), x, g));
    for (let i = 1; i < rates.length; i++) expect(rates[i]).toBeGreaterThan(rates[i - 1]);
    expect(rates[0]).toBeGreaterThan(0);
    expect(rates[0]).toBeLessThan(0.05);
    expect(rates[rates.length - 1]).toBeLessThanOrEqual(1);
    expect(rates[rates.length - 1]).toBeGreaterThan(0.3);
  });

  it('equals a brute-force count (sort all latents by z and by z(1 + β|W_dec g|), compare the top k)', () => {
    const w = weights(2);
    const { d, m, k } = w;
    const rows = 64;
    let changed = 0;
    for (let r = 0; r < rows; r++) {
      const zpre = Array.from({ length: m }, (_, j) => {
        let s = 0;
        for (let i = 0; i < d; i++) s += x[r * d + i] * w.W_enc[i * m + j];
        return Math.max(0, s);
      });
      const a = Array.from({ length: m }, (_, j) => {
        let s = 0;
        for (let i = 0; i < d; i++) s += g[r * d + i] * w.W_dec[j * d + i];
        return Math.abs(s);
      });
      const top = (score: (j: number) => number) => Array.from({ length: m }, (_, j) => j).sort((p, q) => score(q) - score(p) || p - q).slice(0, k);
      const plain = top((j) => zpre[j]);
      const grad = top((j) => zpre[j] + w.beta * zpre[j] * a[j]);
      changed += grad.filter((j) => !plain.includes(j)).length;
    }
    expect(selectionChangeRate(w, x.subarray(0, rows * d), g.subarray(0, rows * d))).toBeCloseTo(changed / (rows * k), 6);
    expect(changed).toBeGreaterThan(0);
  });
});
