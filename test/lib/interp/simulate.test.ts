import { describe, expect, it } from 'vitest';
import { correlation, explainLatent, scoreLatents, simulate, type Code, type RowTokens } from '../../../lib/interp/simulate.ts';
import { verdictEquivalence } from '../../../lib/eval/equivalence.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

const T = 16;
function stream(n: number, vocab: number, seed: number): RowTokens & { ids: Int32Array } {
  const u = mulberry32(seed);
  const ids = Int32Array.from({ length: n }, () => Math.floor(u() * vocab));
  return { ids, rows: n, token: (r) => ids[r], pos: (r) => r % T };
}
/** A code with one latent (index 3) among k = 2 slots whose activation is f(row); slot 2 is noise. */
function code(n: number, f: (r: number) => number, seed: number): Code {
  const u = mulberry32(seed);
  const indices = new Int32Array(n * 2);
  const values = new Float32Array(n * 2);
  for (let r = 0; r < n; r++) {
    indices[2 * r] = 3;
    values[2 * r] = f(r);
    indices[2 * r + 1] = 5 + Math.floor(u() * 10);
    values[2 * r + 1] = u();
  }
  return { n, k: 2, indices, values };
}
const o = { topContexts: 20, contextTokens: 2 };

describe('lookup simulation score', () => {
  it('a planted latent that fires exactly on one token scores ≈ 1 and has a single-token explanation', () => {
    const train = stream(8192, 50, 1);
    const test = stream(8192, 50, 2);
    const u = mulberry32(3);
    const planted = (s: RowTokens) => (r: number) => (s.token(r) === 7 ? 1 + 0.05 * u() : 0);
    const [sc] = scoreLatents([3], code(train.rows, planted(train), 4), train, code(test.rows, planted(test), 5), test, o);
    expect(sc.score).toBeGreaterThan(0.97);
    expect(sc.single_token).toBe(true);
    expect(sc.top_token).toBe(7);
    expect(sc.top_contexts).toBe(20);
  });
  it('a random latent (fires at random positions, whatever the token) scores ≈ 0', () => {
    const train = stream(8192, 50, 1);
    const test = stream(8192, 50, 2);
    const u = mulberry32(9);
    const random = () => (u() < 0.05 ? u() : 0);
    const [sc] = scoreLatents([3], code(train.rows, random, 4), train, code(test.rows, random, 5), test, o);
    expect(Math.abs(sc.score)).toBeLessThan(0.05);
    expect(sc.single_token).toBe(false);
  });
  it('back-off: the longest matching left context decides, never across a window start', () => {
    const ids = [1, 2, 9, 3, 2, 9];
    const s: RowTokens = { rows: ids.length, token: (r) => ids[r], pos: (r) => r % 3 };
    // fires on row 2 (context 1 2 9) at 4 and row 5 (context 3 2 9) at 2
    const e = explainLatent({ rows: [2, 5], values: [4, 2] }, s, o);
    expect(e.tables[0].get('9,')).toBe(3);
    expect(e.tables[2].get('1,2,9,')).toBe(4);
    const h = ['1,2,9', '5,2,9', '9,0,0'].flatMap((w) => w.split(',').map(Number));
    const held: RowTokens = { rows: h.length, token: (r) => h[r], pos: (r) => r % 3 };
    expect(Array.from(simulate(e, held))).toEqual([0, 0, 4, 0, 0, 3, 3, 0, 0]);
    expect(correlation([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(correlation([1, 1, 1], [2, 4, 6])).toBe(0);
  });
});

describe('equivalence verdict (TOST on the CI)', () => {
  it('inside the margin → reproduced', () => {
    expect(verdictEquivalence({ lo: -0.03, hi: 0.04 }, 0.05)).toBe('reproduced');
    expect(verdictEquivalence({ lo: -0.05, hi: 0.05 }, 0.05)).toBe('reproduced');
  });
  it('entirely outside → not reproduced (either side)', () => {
    expect(verdictEquivalence({ lo: 0.06, hi: 0.2 }, 0.05)).toBe('not reproduced');
    expect(verdictEquivalence({ lo: -0.3, hi: -0.051 }, 0.05)).toBe('not reproduced');
  });
  it('straddling a margin, or wider than both, or no CI → inconclusive', () => {
    expect(verdictEquivalence({ lo: 0.01, hi: 0.09 }, 0.05)).toBe('inconclusive');
    expect(verdictEquivalence({ lo: -0.09, hi: 0 }, 0.05)).toBe('inconclusive');
    expect(verdictEquivalence({ lo: -0.2, hi: 0.2 }, 0.05)).toBe('inconclusive');
    expect(verdictEquivalence({ lo: NaN, hi: 0.01 }, 0.05)).toBe('inconclusive');
    expect(() => verdictEquivalence({ lo: 0, hi: 0 }, 0)).toThrow(/margin/);
  });
});

describe('claim 4 from ratings and from the automatic score (compare)', () => {
  it('ratings: too few → how many more; equal ratings → reproduced; far apart → not reproduced', async () => {
    const { ratingsComparison } = await import('../../../lib/eval/compare.ts');
    const o = { margin: 0.5, minRatings: 5, resamples: 200, seed: 0 };
    const few = ratingsComparison([{ arch: 'topk', beta: null, k: 8, score: 3 }, { arch: 'gsae', beta: 1, k: 8, score: 3 }], new Map([[8, 1]]), o);
    expect(few[0]).toMatchObject({ verdict: 'too few ratings', needed: 8 });
    const same = [3, 3, 4, 3, 3, 4];
    const r = (arch: 'topk' | 'gsae', s: number[], beta: number | null) => s.map((score) => ({ arch, beta, k: 8, score }));
    expect(ratingsComparison([...r('topk', same, null), ...r('gsae', same, 1), ...r('gsae', [1, 1, 1, 1, 1], 0.1)], new Map([[8, 1]]), o)[0]).toMatchObject({ verdict: 'reproduced', n_gsae: 6 });
    expect(ratingsComparison([...r('topk', same, null), ...r('gsae', [1, 1, 1, 1, 1, 2], 1)], new Map([[8, 1]]), o)[0].verdict).toBe('not reproduced');
  });
  it('interp_score rows: paired per (k, seed), equivalence verdict, no Holm', async () => {
    const { compareAll } = await import('../../../lib/eval/compare.ts');
    const u = mulberry32(1);
    const sc = (c: number) => Array.from({ length: 200 }, () => c + 0.02 * (u() - 0.5));
    const arms = [0, 1].flatMap((seed) => [
      { arch: 'topk' as const, beta: 0, k: 8, seed, scores: sc(0.3) },
      { arch: 'gsae' as const, beta: 1, k: 8, seed, scores: sc(0.3) },
      { arch: 'topk' as const, beta: 0, k: 16, seed, scores: sc(0.3) },
      { arch: 'gsae' as const, beta: 1, k: 16, seed, scores: sc(0.5) },
    ]);
    const res = compareAll([], [], { resamples: 200, seed: 0, matchKl: 0, interpMargin: 0.05 }, arms);
    const agg = res.paired.filter((r) => r.check === 'interp_score' && r.seed === null);
    expect(agg.map((r) => [r.k, r.claim, r.verdict, r.verdict_holm])).toEqual([
      [8, 4, 'reproduced', null],
      [16, 4, 'not reproduced', null],
    ]);
    expect(res.paired.filter((r) => r.check === 'interp_score' && r.seed !== null)).toHaveLength(4);
  });
});
