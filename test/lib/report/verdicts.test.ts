import { describe, expect, it } from 'vitest';
import { buildClaims } from '../../../lib/report/verdicts.ts';
import type { Row } from '../../../lib/report/db.ts';

/** A `paired` row as pairedSql returns it (aggregate test row at β* unless overridden). */
const row = (o: Partial<Row> & { claim: number; check: string; k: number; verdict: string }): Row => ({
  label: o.check,
  rule: '',
  better: 'lower',
  primary: true,
  split: 'test',
  beta: 1,
  alpha: null,
  match_kl: null,
  seed: null,
  seeds: 2,
  topk: 0.3,
  gsae: 0.2,
  diff: -0.1,
  lo: -0.15,
  hi: -0.05,
  interval: 't-interval over 2 seeds of the per-seed paired differences',
  n: 2,
  p: 0.01,
  mde: 0.05,
  is_beta_star: true,
  p_holm: 0.02,
  verdict_holm: o.verdict,
  change_rate: 0.1,
  ...o,
});

describe('buildClaims (displays the paired table, judges nothing)', () => {
  const atStar: Row[] = [
    row({ claim: 1, check: 'delta_ce', k: 8, verdict: 'reproduced' }),
    row({ claim: 1, check: 'delta_ce', k: 16, verdict: 'reproduced', verdict_holm: 'inconclusive' }),
    row({ claim: 1, check: 'delta_ce', k: 32, verdict: 'inconclusive' }),
    row({ claim: 1, check: 'kl', k: 8, verdict: 'not reproduced', primary: false }),
    row({ claim: 2, check: 'dead_frac', k: 8, verdict: 'not reproduced' }),
    row({ claim: 3, check: 'steer_effect_matched_kl', rule: 'logit_lens', k: 8, match_kl: 0.05, verdict: 'reproduced', better: 'higher' }),
    row({ claim: 3, check: 'steer_effect_matched_kl', rule: 'logit_lens', k: 8, match_kl: 0.1, verdict: 'inconclusive', better: 'higher' }),
  ];
  const t = buildClaims(atStar, atStar, []);

  it('keeps the primary rows as the claims table and the others as secondary, verdicts untouched', () => {
    expect(t.rows.map((r) => [r.claim, r.check, r.k, r.verdict, r.verdictHolm])).toEqual([
      [1, 'delta_ce', 8, 'reproduced', 'reproduced'],
      [1, 'delta_ce', 16, 'reproduced', 'inconclusive'],
      [1, 'delta_ce', 32, 'inconclusive', 'inconclusive'],
      [2, 'dead_frac', 8, 'not reproduced', 'not reproduced'],
      [3, 'steer_effect_matched_kl', 8, 'reproduced', 'reproduced'],
      [3, 'steer_effect_matched_kl', 8, 'inconclusive', 'inconclusive'],
    ]);
    expect(t.secondary.map((r) => r.check)).toEqual(['kl']);
    expect(t.rows[0].interval).toBe('t-interval over 2 seeds of the per-seed paired differences');
  });

  it('summarises each claim from its primary rows, with the Holm verdicts in brackets', () => {
    const status = (c: number) => t.summary.find((s) => s.claim === c)!.status;
    expect(status(1)).toBe('reproduced at k = 8, 16; inconclusive at k = 32 (Holm: reproduced at k = 8; inconclusive at k = 16, 32)');
    expect(status(2)).toBe('not reproduced at k = 8 (Holm: not reproduced at k = 8)');
    // Two matched-KL levels at one k: the row names say which.
    expect(status(3)).toBe('reproduced at k = 8 (KL=0.05); inconclusive at k = 8 (KL=0.1) (Holm: reproduced at k = 8 (KL=0.05); inconclusive at k = 8 (KL=0.1))');
    expect(status(4)).toBe('not measured (no automatic score rows: the interp and compare stages have not run)');
  });

  it('reports the seeds behind the aggregate rows', () => {
    expect(t.seeds).toEqual({ min: 2, max: 2 });
    expect(buildClaims([row({ claim: 1, check: 'delta_ce', k: 8, verdict: 'reproduced', seeds: 1 })]).seeds).toEqual({ min: 1, max: 1 });
  });

  it('says "no data" for every claim when there are no rows, and per claim when only that claim has none', () => {
    const empty = buildClaims([], [], []);
    expect(empty.rows).toHaveLength(0);
    expect(empty.summary.slice(0, 3).every((s) => s.status === 'no data: the compare stage has not run')).toBe(true);
    const partial = buildClaims(atStar.filter((r) => r.claim !== 3));
    expect(partial.summary.find((s) => s.claim === 3)!.status).toBe('no data: the compare stage wrote no rows for this claim');
  });
});
