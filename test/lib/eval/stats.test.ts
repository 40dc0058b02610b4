import { describe, expect, it } from 'vitest';
import {
  bootstrapDiffCI,
  bootstrapMeanCI,
  bootstrapRatioCI,
  decideVerdict,
  quantileSorted,
  verdictFromCIs,
} from '../../../lib/eval/stats.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

describe('bootstrap', () => {
  it('is deterministic for a seed and brackets the mean', () => {
    const r = randn(mulberry32(1));
    const v = Array.from({ length: 100 }, () => 2 + r());
    const a = bootstrapMeanCI(v, { seed: 5 });
    const b = bootstrapMeanCI(v, { seed: 5 });
    expect(a).toEqual(b);
    expect(a.lo).toBeLessThan(a.mean);
    expect(a.hi).toBeGreaterThan(a.mean);
    expect(a.n).toBe(100);
    // width ≈ 2·1.96·σ/√n ≈ 0.39
    expect(a.hi - a.lo).toBeGreaterThan(0.3);
    expect(a.hi - a.lo).toBeLessThan(0.5);
  });

  it('covers the true mean at about the stated rate (200 × n=50 normal samples)', () => {
    const r = randn(mulberry32(2024));
    let covered = 0;
    const reps = 200;
    for (let t = 0; t < reps; t++) {
      const v = Array.from({ length: 50 }, () => 3 + 2 * r());
      const ci = bootstrapMeanCI(v, { seed: t, resamples: 1000 });
      if (ci.lo <= 3 && 3 <= ci.hi) covered++;
    }
    const rate = covered / reps;
    expect(rate).toBeGreaterThanOrEqual(0.9);
    expect(rate).toBeLessThanOrEqual(0.99);
  });

  it('clustered bootstrap is wider for correlated data; ratio and paired differences', () => {
    const r = randn(mulberry32(3));
    const v: number[] = [];
    for (let s = 0; s < 40; s++) {
      const shift = r();
      for (let t = 0; t < 25; t++) v.push(shift + 0.1 * r());
    }
    const plain = bootstrapMeanCI(v);
    const clustered = bootstrapMeanCI(v, { clusterSize: 25 });
    expect(clustered.mean).toBeCloseTo(plain.mean, 12);
    expect(clustered.n).toBe(40);
    expect(clustered.hi - clustered.lo).toBeGreaterThan(3 * (plain.hi - plain.lo));

    const num = v.map((x) => 2 * x + 10);
    const den = v.map(() => 4);
    const ratio = bootstrapRatioCI(num, den);
    expect(ratio.mean).toBeCloseTo((2 * plain.mean + 10) / 4, 10);

    const a = v.map((x) => x + 1);
    const paired = bootstrapDiffCI(a, v, { paired: true });
    expect(paired.mean).toBeCloseTo(1, 10);
    expect(paired.hi - paired.lo).toBeLessThan(1e-9);
    const unpaired = bootstrapDiffCI(a, v);
    expect(unpaired.mean).toBeCloseTo(1, 10);
    expect(unpaired.lo).toBeLessThan(1);
  });

  it('edge cases', () => {
    expect(bootstrapMeanCI([4])).toMatchObject({ mean: 4, lo: 4, hi: 4, n: 1 });
    expect(Number.isNaN(bootstrapMeanCI([]).mean)).toBe(true);
    expect(() => bootstrapMeanCI([1, NaN])).toThrow();
    expect(quantileSorted([0, 10], 0.25)).toBe(2.5);
  });
});

describe('verdicts', () => {
  const ci = (lo: number, hi: number) => ({ mean: (lo + hi) / 2, lo, hi, n: 5, level: 0.95 });
  it('rule on CIs', () => {
    expect(verdictFromCIs(ci(1, 2), ci(0.2, 0.5), 'lower')).toBe('reproduced');
    expect(verdictFromCIs(ci(1, 2), ci(2.5, 3), 'lower')).toBe('not reproduced');
    expect(verdictFromCIs(ci(1, 2), ci(1.5, 3), 'lower')).toBe('inconclusive');
    expect(verdictFromCIs(ci(1, 2), ci(2, 3), 'lower')).toBe('inconclusive'); // touching
    expect(verdictFromCIs(ci(1, 2), ci(2.5, 3), 'higher')).toBe('reproduced');
    expect(verdictFromCIs(ci(1, 2), ci(0.2, 0.5), 'higher')).toBe('not reproduced');
    expect(verdictFromCIs(ci(1, 2), ci(NaN, 3), 'higher')).toBe('inconclusive');
  });

  it('per-seed: clear win, clear loss, overlap', () => {
    const topk = { perSeed: [0.30, 0.31, 0.29, 0.30] };
    expect(decideVerdict({ topk, gsae: { perSeed: [0.20, 0.21, 0.19] }, better: 'lower' })).toMatchObject({ verdict: 'reproduced', basis: 'seeds' });
    expect(decideVerdict({ topk, gsae: { perSeed: [0.40, 0.41, 0.42] }, better: 'lower' }).verdict).toBe('not reproduced');
    expect(decideVerdict({ topk, gsae: { perSeed: [0.28, 0.33, 0.30] }, better: 'lower' }).verdict).toBe('inconclusive');
    expect(decideVerdict({ topk, gsae: { perSeed: [0.40, 0.41, 0.42] }, better: 'higher' }).verdict).toBe('reproduced');
  });

  it('single seed falls back to units (clustered) or given CIs; nothing → inconclusive', () => {
    const r = randn(mulberry32(9));
    const t = Array.from({ length: 500 }, () => 1 + r());
    const g = Array.from({ length: 500 }, () => 1.5 + r());
    const res = decideVerdict({ topk: { perSeed: [1], units: t }, gsae: { perSeed: [1.5], units: g }, better: 'higher' });
    expect(res).toMatchObject({ verdict: 'reproduced', basis: 'units' });
    // two sequences each, strongly correlated within a sequence: clustering makes the CI honest
    const tc = Array.from({ length: 500 }, (_, i) => (i < 250 ? 0 : 2) + 0.01 * r());
    const gc = Array.from({ length: 500 }, (_, i) => (i < 250 ? 0.5 : 2.5) + 0.01 * r());
    expect(decideVerdict({ topk: { units: tc }, gsae: { units: gc }, better: 'higher' }).verdict).toBe('reproduced');
    const res2 = decideVerdict({ topk: { units: tc, clusterSize: 250 }, gsae: { units: gc, clusterSize: 250 }, better: 'higher' });
    expect(res2.verdict).toBe('inconclusive');
    expect(decideVerdict({ topk: { ci: ci(1, 2) }, gsae: { ci: ci(3, 4) }, better: 'higher' })).toMatchObject({ verdict: 'reproduced', basis: 'given' });
    expect(decideVerdict({ topk: { perSeed: [1] }, gsae: { perSeed: [2] }, better: 'higher' })).toMatchObject({ verdict: 'inconclusive', basis: 'none' });
  });
});
