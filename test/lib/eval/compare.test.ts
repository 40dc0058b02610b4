/** Paired comparisons, β* on validation only, Holm across k — on hand-made arms with known answers. */
import { describe, expect, it } from 'vitest';
import { autoMatchKl, compareAll, effectAtKl, type DownstreamArm, type SteeringArm } from '../../../lib/eval/compare.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

const SEQ = 8;
const N = 64 * SEQ;

/** A shared "difficulty" per position (what pairing cancels) plus an SAE-specific shift. */
function split(seed: number, shifts: Record<string, number>): Record<string, DownstreamArm['test']> {
  const z = randn(mulberry32(seed));
  const clean = Float32Array.from({ length: N }, () => 3 + z());
  const zero = Float32Array.from(clean, (c) => c + 4);
  const noise = () => 0.01 * z();
  const out: Record<string, DownstreamArm['test']> = {};
  for (const [name, shift] of Object.entries(shifts)) {
    const spliced = Float32Array.from(clean, (c) => c + 0.1 + shift + noise());
    out[name] = { ce_clean: clean, ce_zero: zero, ce_spliced: spliced, kl: Float32Array.from(spliced, (s, i) => s - clean[i]), ce_spliced_gradfree: Float32Array.from(clean, (c) => c + 0.1 + noise()) };
  }
  return out;
}

function arms(k: number, seed: number, val: Record<string, number>, test: Record<string, number>): DownstreamArm[] {
  const v = split(100 + seed + k, val);
  const t = split(200 + seed + k, test);
  const common = { k, seed, seqLen: SEQ, m: 1024, dead: 10 };
  return [
    { ...common, arch: 'topk', beta: 0, val: v.topk, test: t.topk },
    ...[1, 3].map((b) => ({ ...common, arch: 'gsae' as const, beta: b, val: v[`b${b}`], test: t[`b${b}`], changeRate: b / 10, changeRateVal: b / 10 })),
  ];
}

const opts = { resamples: 400, seed: 0, matchKl: 0 };

describe('compareAll', () => {
  it('chooses β* on val only (val and test disagree) and reports the test verdict at β*', () => {
    // val: β=1 is better (−0.02) than β=3 (+0.01); test: β=3 would be better (−0.05) than β=1 (−0.02)
    const data = arms(8, 0, { topk: 0, b1: -0.02, b3: 0.01 }, { topk: 0, b1: -0.02, b3: -0.05 });
    const res = compareAll(data, [], opts);
    const sel = res.betaSelection.filter((r) => r.k === 8);
    expect(sel.find((r) => r.chosen)?.beta).toBe(1);
    const star = res.paired.find((r) => r.check === 'delta_ce' && r.split === 'test' && r.seed === null && r.is_beta_star)!;
    expect(star.beta).toBe(1);
    expect(star.diff).toBeCloseTo(-0.02, 3);
    expect(star.verdict).toBe('reproduced');
    expect(star.verdict_holm).toBe('reproduced');
    expect(star.interval).toMatch(/paired bootstrap over 64 held-out sequences \(1 seed/);
    expect(star.change_rate).toBeCloseTo(0.1, 10);
    expect(star.mde).toBeGreaterThan(0);
    expect(star.mde!).toBeLessThan(0.01);
    // the non-chosen β is reported but not starred
    expect(res.paired.find((r) => r.check === 'delta_ce' && r.split === 'test' && r.seed === null && r.beta === 3)!.is_beta_star).toBe(false);
  });

  it('loss recovered: a lower spliced CE recovers more; the gradient-free variant compares against the same TopK', () => {
    const res = compareAll(arms(8, 0, { topk: 0, b1: -0.02, b3: 0 }, { topk: 0, b1: -0.4, b3: 0 }), [], opts);
    const lr = res.paired.find((r) => r.check === 'loss_recovered' && r.split === 'test' && r.seed === null && r.beta === 1)!;
    expect(lr.diff).toBeCloseTo(0.4 / 4, 2); // (CE_t − CE_g) / (CE_zero − CE_clean) = 0.4 / 4
    expect(lr.verdict).toBe('reproduced');
    const gf = res.paired.find((r) => r.check === 'delta_ce_gradfree' && r.seed === null && r.beta === 1)!;
    expect(Math.abs(gf.diff)).toBeLessThan(0.005);
    expect(gf.verdict).toBe('inconclusive');
  });

  it('with 2 seeds: a t-interval over the per-seed paired differences; Holm across k', () => {
    const data = [
      ...arms(8, 0, { topk: 0, b1: -0.02, b3: 0 }, { topk: 0, b1: -0.03, b3: 0 }),
      ...arms(8, 1, { topk: 0, b1: -0.02, b3: 0 }, { topk: 0, b1: -0.031, b3: 0 }),
      ...arms(32, 0, { topk: 0, b1: -0.02, b3: 0 }, { topk: 0, b1: 0.02, b3: 0 }),
      ...arms(32, 1, { topk: 0, b1: -0.02, b3: 0 }, { topk: 0, b1: -0.02, b3: 0 }),
    ];
    const res = compareAll(data, [], opts);
    const at = (k: number) => res.paired.find((r) => r.check === 'delta_ce' && r.split === 'test' && r.seed === null && r.k === k && r.is_beta_star)!;
    expect(at(8).interval).toMatch(/t-interval over 2 seeds/);
    expect(at(8).seeds).toBe(2);
    const [d1, d2] = res.paired.filter((r) => r.check === 'delta_ce' && r.split === 'test' && r.k === 8 && r.beta === 1 && r.seed !== null).map((r) => r.diff);
    expect(at(8).diff).toBeCloseTo((d1 + d2) / 2, 12);
    expect(at(8).diff).toBeCloseTo(-0.0305, 2);
    // t on 1 df: half-width = t_{0.975,1} · s/√2 = 12.706 · |d1 − d2| / 2
    expect(at(8).mde!).toBeCloseTo((12.7062 * Math.abs(d1 - d2)) / 2, 6);
    expect(at(32).verdict).toBe('inconclusive'); // seeds disagree in sign
    expect(at(8).p_holm!).toBeGreaterThanOrEqual(at(8).p!);
    // per-seed rows exist too
    expect(res.paired.filter((r) => r.check === 'delta_ce' && r.split === 'test' && r.k === 8 && r.beta === 1 && r.seed !== null)).toHaveLength(2);
  });

  it('dead fraction: Newcombe interval of the two proportions', () => {
    const data = arms(8, 0, { topk: 0, b1: 0, b3: 0 }, { topk: 0, b1: 0, b3: 0 });
    data[0].dead = 100; // TopK: 100 of 1024 dead, g-SAEs 10
    const res = compareAll(data, [], opts);
    const d = res.paired.find((r) => r.check === 'dead_frac' && r.seed === null && r.beta === 1)!;
    expect(d.diff).toBeCloseTo((10 - 100) / 1024, 10);
    expect(d.interval).toMatch(/Newcombe/);
    expect(d.verdict).toBe('reproduced');
  });

  it('refuses arms that were not evaluated on the same tokens', () => {
    const data = arms(8, 0, { topk: 0, b1: 0, b3: 0 }, { topk: 0, b1: 0, b3: 0 });
    data[1] = { ...data[1], test: { ...data[1].test, ce_clean: Float32Array.from(data[1].test.ce_clean, (c) => c + 1) } };
    expect(() => compareAll(data, [], opts)).toThrow(/not the same held-out tokens/);
  });
});

describe('steering at equal α and at matched KL', () => {
  /** effect = slope · α, KL = α² / 10 per latent and context (plus latent noise). */
  function arm(arch: 'topk' | 'gsae', slope: number, seed: number): SteeringArm {
    const z = randn(mulberry32(seed));
    const alphas = [0.25, 0.5, 1];
    const nL = 16;
    const nC = 8;
    const grid = (f: (a: number) => number) => alphas.map((a) => Array.from({ length: nL }, () => { const l = 1 + 0.05 * z(); return Array.from({ length: nC }, (_, c) => f(a) * l * (1 + 0.1 * Math.sin(c))); }));
    return { arch, beta: arch === 'gsae' ? 1 : 0, k: 8, seed: 0, alphas, contexts: [1, 2, 3, 4, 5, 6, 7, 8], kl: grid((a) => (a * a) / 10), effect: { logit_lens: grid((a) => slope * a) } };
  }

  it('interpolates the effect at KL* on the mean curve (linear in log KL)', () => {
    const a = arm('topk', 1, 1);
    const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
    // without noise: effect = slope·α, KL = α²/10 → effect at KL 0.025 (α = 0.5) is ≈ 0.5
    expect(effectAtKl(a.effect.logit_lens, a.kl, all(16), all(8), 0.025)).toBeCloseTo(0.5, 1);
    expect(effectAtKl(a.effect.logit_lens, a.kl, all(16), all(8), 10)).toBeNaN();
  });

  it('a g-SAE whose latents raise their targets twice as much per unit KL is better at matched KL', () => {
    const res = compareAll([], [arm('topk', 1, 1), arm('gsae', 2, 2)], opts);
    expect(res.matchKl).toBeCloseTo(autoMatchKl([arm('topk', 1, 1), arm('gsae', 2, 2)])!, 12);
    const m = res.paired.find((r) => r.check === 'steer_effect_matched_kl' && r.seed === null)!;
    expect(m.primary).toBe(true);
    expect(m.verdict).toBe('reproduced');
    expect(m.interval).toMatch(/bootstrap over latents .* and 8 shared contexts/);
    const eq = res.paired.filter((r) => r.check === 'steer_effect' && r.seed === null);
    expect(eq.map((r) => r.alpha)).toEqual([0.25, 0.5, 1]);
    expect(eq.every((r) => r.verdict === 'reproduced' && !r.primary)).toBe(true);
  });

  it('refuses arms steered on different contexts', () => {
    const g = arm('gsae', 2, 2);
    g.contexts = [9, 9, 9, 9, 9, 9, 9, 9];
    expect(() => compareAll([], [arm('topk', 1, 1), g], opts)).toThrow(/different contexts/);
  });
});
