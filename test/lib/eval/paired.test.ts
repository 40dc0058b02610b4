/** The verdict statistics on hand-made data with known answers. */
import { describe, expect, it } from 'vitest';
import {
  bootstrapMeanCI,
  differences,
  gridMean,
  holmAdjust,
  newcombeDiffInterval,
  pairedBootstrap,
  tInterval,
  twoWayBootstrap,
  verdictFromDiff,
  verdictFromP,
} from '../../../lib/eval/stats.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

describe('paired bootstrap', () => {
  it('covers a known difference about 95% of the time (clustered data, shared noise)', () => {
    // 64 "sequences" of 8 positions; per-sequence difficulty shared by both arms (large), a true
    // difference of −0.02 and small independent noise per position.
    const trueDiff = -0.02;
    let covered = 0;
    const trials = 200;
    for (let t = 0; t < trials; t++) {
      const z = randn(mulberry32(1000 + t));
      const a = new Float64Array(512);
      const b = new Float64Array(512);
      for (let s = 0; s < 64; s++) {
        const difficulty = 2 * z();
        const seqEffect = 0.05 * z(); // the difference itself varies by sequence
        for (let i = 0; i < 8; i++) {
          const shared = difficulty + 0.5 * z();
          a[s * 8 + i] = shared + trueDiff + seqEffect + 0.05 * z();
          b[s * 8 + i] = shared + 0.05 * z();
        }
      }
      const ci = pairedBootstrap(differences(a, b), null, { clusterSize: 8, resamples: 400, seed: t });
      if (ci.lo <= trueDiff && trueDiff <= ci.hi) covered++;
    }
    expect(covered / trials).toBeGreaterThan(0.9);
    expect(covered / trials).toBeLessThan(0.99);
  });

  it('detects a difference that the overlap of two separate CIs misses', () => {
    const z = randn(mulberry32(7));
    const a = new Float64Array(2048);
    const b = new Float64Array(2048);
    for (let i = 0; i < a.length; i++) {
      const shared = 3 + z(); // per-token loss, the same tokens for both SAEs
      b[i] = shared + 0.05 * z();
      a[i] = shared - 0.03 + 0.05 * z(); // a is better (lower) by 0.03
    }
    const ca = bootstrapMeanCI(a, { seed: 1 });
    const cb = bootstrapMeanCI(b, { seed: 2 });
    expect(ca.hi).toBeGreaterThan(cb.lo); // the separate CIs overlap: an overlap test says "inconclusive"
    const d = pairedBootstrap(differences(a, b), null, { seed: 3 });
    expect(d.hi).toBeLessThan(0);
    expect(d.mean).toBeCloseTo(-0.03, 2);
    expect(d.p).toBeLessThan(0.01);
    expect(verdictFromDiff(d, 'lower')).toBe('reproduced');
    expect(verdictFromDiff(d, 'higher')).toBe('not reproduced');
  });

  it('a ratio difference: loss recovered of two SAEs on the same positions', () => {
    // ce_zero − ce_clean = 1 everywhere; ce_topk − ce_gsae = 0.1 → the g-SAE recovers 0.1 more.
    const n = 400;
    const num = new Float64Array(n).fill(0.1);
    const den = new Float64Array(n).fill(1);
    const ci = pairedBootstrap(num, den, { clusterSize: 4 });
    expect(ci.mean).toBeCloseTo(0.1, 12);
    expect(ci.lo).toBeCloseTo(0.1, 12);
    expect(ci.n).toBe(100);
  });
});

describe('t-interval over seeds', () => {
  it('matches the closed form', () => {
    const v = [1, 2, 3, 4];
    const ci = tInterval(v);
    const se = Math.sqrt(5 / 3 / 4);
    expect(ci.mean).toBe(2.5);
    expect(ci.lo).toBeCloseTo(2.5 - 3.182446305 * se, 6);
    expect(ci.hi).toBeCloseTo(2.5 + 3.182446305 * se, 6);
    // t = 2.5 / se = 3.873 on 3 df: two-sided p = 0.0305
    expect(ci.p).toBeCloseTo(0.0305, 3);
    expect(() => tInterval([1])).toThrow(/at least 2/);
  });

  it('is wide with two seeds (t on 1 df = 12.71)', () => {
    const ci = tInterval([-0.01, -0.012]);
    expect(ci.hi - ci.lo).toBeCloseTo(2 * 12.7062 * (0.001 / 1), 3);
  });
});

describe('Newcombe interval for a difference of proportions', () => {
  it('reproduces Newcombe (1998), Table II example 56/70 − 48/80 (method 10: 0.0524, 0.3339)', () => {
    const ci = newcombeDiffInterval(56, 70, 48, 80);
    expect(ci.mean).toBeCloseTo(0.2, 10);
    expect(ci.lo).toBeCloseTo(0.0524, 3);
    expect(ci.hi).toBeCloseTo(0.3339, 3);
  });
  it('is informative at 0 and detects 0 vs 30 dead of 2048', () => {
    const same = newcombeDiffInterval(0, 2048, 0, 2048);
    expect(same.lo).toBeLessThan(0);
    expect(same.hi).toBeGreaterThan(0);
    const d = newcombeDiffInterval(0, 2048, 30, 2048);
    expect(d.hi).toBeLessThan(0);
    expect(verdictFromDiff(d, 'lower')).toBe('reproduced');
  });
});

describe('two-way bootstrap (latents differ, contexts shared)', () => {
  it('finds the difference of grand means and accounts for the shared contexts', () => {
    const z = randn(mulberry32(11));
    const nC = 16;
    const ctxEffect = Array.from({ length: nC }, () => 2 * z());
    const grid = (shift: number, nL: number) =>
      Array.from({ length: nL }, () => {
        const latent = 0.2 * z();
        return Float64Array.from(ctxEffect, (c) => c + latent + shift + 0.05 * z());
      });
    const A = grid(0.3, 24);
    const B = grid(0, 32);
    const arm = (v: Float64Array[]) => ({ nLatents: v.length, stat: (l: Int32Array, c: Int32Array) => gridMean(v, l, c) });
    const ci = twoWayBootstrap({ a: arm(A), b: arm(B) }, nC, { seed: 5 });
    // latent-to-latent sd 0.2 over 24 and 32 latents: the estimate is 0.3 ± ~0.06
    expect(ci.lo).toBeLessThan(0.3);
    expect(ci.hi).toBeGreaterThan(0.3);
    expect(ci.lo).toBeGreaterThan(0);
    expect(Math.abs(ci.mean - 0.3)).toBeLessThan(0.15);
    // the context effect (sd 2) cancels in the difference: the interval is far narrower than it
    expect(ci.hi - ci.lo).toBeLessThan(0.4);
  });
});

describe('Holm', () => {
  it('step-down adjustment on known p-values', () => {
    expect(holmAdjust([0.01, 0.04, 0.03])).toEqual([0.03, 0.06, 0.06]);
    expect(holmAdjust([0.5, NaN, 0.001]).map((v) => (Number.isNaN(v) ? 'nan' : v))).toEqual([0.5, 'nan', 0.002]);
  });
  it('verdict from an adjusted p keeps the direction', () => {
    expect(verdictFromP(-0.01, 0.01, 'lower')).toBe('reproduced');
    expect(verdictFromP(-0.01, 0.01, 'higher')).toBe('not reproduced');
    expect(verdictFromP(-0.01, 0.2, 'lower')).toBe('inconclusive');
  });
});
