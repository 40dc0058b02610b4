import { describe, expect, it } from 'vitest';
import { logSumExpRows, rowKlFrom, rowKlTo, rowLogSumExp, setLogProb, softmaxRows } from '../../../lib/eval/logits.ts';
import { randomMatrix } from './saeFixtures.ts';

function naive(l: Float32Array, off: number, V: number): number[] {
  const mx = Math.max(...Array.from(l.subarray(off, off + V)));
  const z = Array.from(l.subarray(off, off + V)).reduce((s, x) => s + Math.exp(x - mx), 0);
  return Array.from(l.subarray(off, off + V)).map((x) => x - mx - Math.log(z));
}

describe('logit reductions', () => {
  const V = 50;
  const a = randomMatrix(3, V, 1, 4);
  const b = randomMatrix(3, V, 2, 4);
  it('log-sum-exp, softmax, KL in both directions, set log-prob', () => {
    const lseA = logSumExpRows(a, V);
    const lseB = logSumExpRows(b, V);
    const pA = softmaxRows(a, lseA, V);
    for (let r = 0; r < 3; r++) {
      const la = naive(a, r * V, V);
      const lb = naive(b, r * V, V);
      expect(a[r * V + 7] - lseA[r]).toBeCloseTo(la[7], 10);
      expect(pA.subarray(r * V, r * V + V).reduce((s, x) => s + x, 0)).toBeCloseTo(1, 5);
      const klAB = la.reduce((s, x, v) => s + Math.exp(x) * (x - lb[v]), 0);
      expect(rowKlFrom(a, r * V, b, r * V, lseB[r], V).kl).toBeCloseTo(klAB, 5);
      expect(rowKlTo(pA, a, r * V, lseA[r], b, r * V, V).kl).toBeCloseTo(klAB, 5);
      expect(rowKlFrom(a, r * V, b, r * V, lseB[r], V).lse).toBeCloseTo(lseA[r], 10);
      expect(rowKlFrom(a, r * V, a, r * V, lseA[r], V).kl).toBeCloseTo(0, 12);
      expect(setLogProb(a, r * V, [3, 9], lseA[r])).toBeCloseTo(Math.log(Math.exp(la[3]) + Math.exp(la[9])), 10);
      expect(rowLogSumExp(new Float32Array([1000, 1000]), 0, 2)).toBeCloseTo(1000 + Math.log(2), 8);
    }
  });
});
