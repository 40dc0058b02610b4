import { describe, expect, it } from 'vitest';
import {
  bootstrapDiffCI,
  bootstrapMeanCI,
  bootstrapRatioCI,
  pairedBootstrap,
  quantileSorted,
  verdictFromDiff,
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

describe('verdicts from the CI of a paired difference g-SAE − TopK', () => {
  it('rule: the CI excludes 0 in the g-SAE\'s favour, in TopK\'s, or not at all', () => {
    expect(verdictFromDiff({ lo: -0.3, hi: -0.1 }, 'lower')).toBe('reproduced');
    expect(verdictFromDiff({ lo: 0.1, hi: 0.3 }, 'lower')).toBe('not reproduced');
    expect(verdictFromDiff({ lo: -0.1, hi: 0.3 }, 'lower')).toBe('inconclusive');
    expect(verdictFromDiff({ lo: 0, hi: 0.3 }, 'lower')).toBe('inconclusive'); // touching 0
    expect(verdictFromDiff({ lo: 0.1, hi: 0.3 }, 'higher')).toBe('reproduced');
    expect(verdictFromDiff({ lo: -0.3, hi: -0.1 }, 'higher')).toBe('not reproduced');
    expect(verdictFromDiff({ lo: NaN, hi: 3 }, 'higher')).toBe('inconclusive');
  });

  it('clustering by sequence keeps the paired CI honest when positions of a sequence move together', () => {
    const r = randn(mulberry32(9));
    // two sequences of 250 positions: the difference is +0.5 in one and −0.3 in the other
    const d = Array.from({ length: 500 }, (_, i) => (i < 250 ? 0.5 : -0.3) + 0.01 * r());
    expect(verdictFromDiff(pairedBootstrap(d, null), 'higher')).toBe('reproduced'); // positions as if independent
    expect(verdictFromDiff(pairedBootstrap(d, null, { clusterSize: 250 }), 'higher')).toBe('inconclusive');
  });
});
