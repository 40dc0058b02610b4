import { describe, expect, it } from 'vitest';
import { normalQuantile, wilsonInterval } from '../../../lib/eval/stats.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

describe('wilsonInterval', () => {
  it('matches closed-form values', () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    expect(normalQuantile(0.5)).toBeCloseTo(0, 9);
    expect(normalQuantile(0.01)).toBeCloseTo(-2.326348, 5);
    // 0 of 2048: [0, z²/(n+z²)] ≈ [0, 0.001872]
    const zero = wilsonInterval(0, 2048);
    expect(zero.lo).toBe(0);
    expect(zero.hi).toBeCloseTo(1.959964 ** 2 / (2048 + 1.959964 ** 2), 6);
    // 50 of 100: 0.5 ± 0.0962 (textbook value [0.4038, 0.5962])
    const half = wilsonInterval(50, 100);
    expect(half.lo).toBeCloseTo(0.4038, 4);
    expect(half.hi).toBeCloseTo(0.5962, 4);
  });

  it('covers the true proportion at about the stated rate (seeded simulation)', () => {
    const u = mulberry32(7);
    const p = 0.03;
    const n = 500;
    let covered = 0;
    const reps = 400;
    for (let r = 0; r < reps; r++) {
      let s = 0;
      for (let i = 0; i < n; i++) if (u() < p) s++;
      const ci = wilsonInterval(s, n);
      if (ci.lo <= p && p <= ci.hi) covered++;
    }
    expect(covered / reps).toBeGreaterThan(0.9);
    expect(covered / reps).toBeLessThan(0.99);
  });

  it('rejects impossible counts', () => {
    expect(() => wilsonInterval(3, 2)).toThrow(/successes <= n/);
  });
});
