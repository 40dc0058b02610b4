import { describe, expect, it } from 'vitest';
import { buildClaims, judge, type Estimate } from '../../../lib/report/verdicts.ts';
import type { Row } from '../../../lib/report/db.ts';

const est = (mean: number, lo: number | null, hi: number | null, n = 3): Estimate => ({ mean, lo, hi, n });

describe('judge (verdict rule on hand-made numbers)', () => {
  it('clear win for the g-SAE on a lower-is-better metric → reproduced', () => {
    expect(judge(est(0.30, 0.28, 0.32), est(0.20, 0.18, 0.22), 'lower').verdict).toBe('reproduced');
  });
  it('clear loss (TopK lower beyond the CIs) → not reproduced', () => {
    expect(judge(est(0.20, 0.18, 0.22), est(0.30, 0.28, 0.32), 'lower').verdict).toBe('not reproduced');
  });
  it('overlapping CIs → inconclusive, whichever mean is better', () => {
    expect(judge(est(0.30, 0.25, 0.35), est(0.28, 0.22, 0.31), 'lower').verdict).toBe('inconclusive');
    expect(judge(est(0.28, 0.22, 0.31), est(0.30, 0.25, 0.35), 'lower').verdict).toBe('inconclusive');
  });
  it('touching CIs count as overlap', () => {
    expect(judge(est(0.30, 0.25, 0.35), est(0.20, 0.15, 0.25), 'lower').verdict).toBe('inconclusive');
  });
  it('higher-is-better metrics flip the direction', () => {
    expect(judge(est(0.80, 0.78, 0.82), est(0.90, 0.88, 0.92), 'higher').verdict).toBe('reproduced');
    expect(judge(est(0.90, 0.88, 0.92), est(0.80, 0.78, 0.82), 'higher').verdict).toBe('not reproduced');
  });
  it('a missing CI is inconclusive even with very different means', () => {
    const r = judge(est(0.9, null, null, 1), est(0.1, 0.09, 0.11, 1), 'lower');
    expect(r.verdict).toBe('inconclusive');
    expect(r.reason).toMatch(/no CI/);
  });
});

describe('buildClaims', () => {
  const d = (metric: string, arch: string, k: number, mean: number, lo: number, hi: number, variant = ''): Row => ({
    metric, variant, arch, k, alpha: null, n_seeds: 3, mean, sd: 0, lo, hi, ci: 't over seeds',
  });
  const s = (metric: string, arch: string, k: number, alpha: number, mean: number, lo: number, hi: number): Row => ({
    metric, variant: '', arch, k, alpha, n_seeds: 1, mean, sd: null, lo, hi, ci: 'bootstrap, 1 seed',
  });
  const downstream: Row[] = [
    d('delta_ce', 'topk', 8, 0.3, 0.28, 0.32), d('delta_ce', 'gsae', 8, 0.2, 0.18, 0.22), // win
    d('delta_ce', 'topk', 16, 0.2, 0.18, 0.22), d('delta_ce', 'gsae', 16, 0.3, 0.28, 0.32), // loss
    d('delta_ce', 'topk', 32, 0.2, 0.15, 0.25), d('delta_ce', 'gsae', 32, 0.21, 0.16, 0.26), // overlap
    d('delta_ce', 'topk', 64, 0.2, 0.15, 0.25), // g-SAE missing
    d('delta_ce', 'gsae', 8, 0.25, 0.24, 0.26, 'gradient-free'),
    d('dead_frac', 'topk', 8, 0.1, 0.09, 0.11), d('dead_frac', 'gsae', 8, 0.01, 0.0, 0.02),
  ];
  const steering: Row[] = [
    s('effect', 'topk', 8, 2, 1.0, 0.9, 1.1), s('effect', 'gsae', 8, 2, 1.5, 1.4, 1.6),
    s('effect', 'topk', 8, 4, 2.0, 1.8, 2.2), s('effect', 'gsae', 8, 4, 2.1, 1.9, 2.3),
  ];
  const t = buildClaims(downstream, steering);
  const find = (label: string, k: number, alpha: number | null = null) => t.rows.find((r) => r.label === label && r.k === k && r.alpha === alpha);

  it('judges each (claim, metric, k[, α]) row', () => {
    expect(find('ΔCE', 8)?.verdict).toBe('reproduced');
    expect(find('ΔCE', 16)?.verdict).toBe('not reproduced');
    expect(find('ΔCE', 32)?.verdict).toBe('inconclusive');
    expect(find('ΔCE', 64)?.verdict).toBe('no data');
    expect(find('dead fraction', 8)?.verdict).toBe('reproduced');
    expect(find('steering effect', 8, 2)?.verdict).toBe('reproduced');
    expect(find('steering effect', 8, 4)?.verdict).toBe('inconclusive');
  });
  it('compares the gradient-free g-SAE with plain TopK', () => {
    const r = find('ΔCE, g-SAE gradient-free eval', 8)!;
    expect(r.gsae?.mean).toBe(0.25);
    expect(r.topk?.mean).toBe(0.3);
    expect(r.verdict).toBe('reproduced');
  });
  it('summarises per claim from the primary rows, and claim 4 is not measured', () => {
    const c1 = t.summary.find((x) => x.claim === 1)!;
    expect(c1.status).toBe('reproduced at k = 8; not reproduced at k = 16; inconclusive at k = 32; no data at k = 64');
    expect(t.summary.find((x) => x.claim === 3)!.status).toContain('8 (α=2)');
    expect(t.summary.find((x) => x.claim === 4)!.status).toBe('not measured (requires raters)');
  });
  it('says "no data" for claims whose stage has not run', () => {
    const empty = buildClaims([], []);
    expect(empty.rows).toHaveLength(0);
    expect(empty.summary[0].status).toMatch(/^no data/);
  });
});
