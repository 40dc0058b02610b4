/**
 * The claims table: for each paper claim and each k, TopK vs g-SAE means over seeds with 95% CIs
 * and a verdict.
 *
 * The verdict rule is lib/eval/stats.ts `verdictFromCIs` (shared with the evaluations). The CIs it
 * is applied to come from SQL (sql.ts), so the page shows exactly the numbers the verdict used:
 * ≥ 2 seeds: Student-t interval over the per-seed values; 1 seed: the bootstrap CI the evaluation
 * stage stored for that seed (`<name>_lo/_hi`, or the steering table's `*_lo/*_hi`).
 */
import { verdictFromCIs, type Better, type Verdict } from '../eval/stats.ts';
import type { Row } from './db.ts';

export type { Better, Verdict };
export type CellVerdict = Verdict | 'no data' | 'not measured';

/** A mean over seeds with its 95% CI (lo/hi null when no CI could be formed). */
export interface Estimate {
  mean: number;
  lo: number | null;
  hi: number | null;
  n: number;
  ci?: string;
}

/**
 * SCIENCE.md's rule ("reproduced" when the g-SAE is better beyond the CIs, "not reproduced" when
 * TopK is, "inconclusive" when they overlap or a CI is missing), via stats.ts, plus a reason.
 */
export function judge(topk: Estimate, gsae: Estimate, better: Better): { verdict: Verdict; reason: string } {
  const ok = (e: Estimate) => e.lo !== null && e.hi !== null && Number.isFinite(e.lo) && Number.isFinite(e.hi);
  const asCI = (e: Estimate) => ({ mean: e.mean, lo: e.lo ?? NaN, hi: e.hi ?? NaN, n: e.n, level: 0.95 });
  const verdict = verdictFromCIs(asCI(topk), asCI(gsae), better);
  if (!ok(topk) || !ok(gsae)) return { verdict, reason: 'no CI (a single seed without a stored bootstrap CI)' };
  const reason =
    verdict === 'reproduced'
      ? `g-SAE ${better} beyond the 95% CIs`
      : verdict === 'not reproduced'
        ? `TopK ${better} beyond the 95% CIs`
        : 'the 95% CIs overlap';
  return { verdict, reason };
}

export interface Check {
  claim: 1 | 2 | 3;
  /** metric column value in the SQL rows. */
  metric: string;
  /** '' or 'gradient-free' (g-SAE evaluated with plain TopK selection). */
  variant: '' | 'gradient-free';
  source: 'downstream' | 'steering';
  label: string;
  better: Better;
  /** Primary checks decide the per-claim summary; the others are shown for context. */
  primary: boolean;
}

export const CLAIMS: Record<1 | 2 | 3 | 4, string> = {
  1: 'Downstream faithfulness: spliced-in reconstructions give lower downstream loss at equal k',
  2: 'Fewer dead latents at equal k',
  3: 'Latents are on average more effective at steering the model in arbitrary contexts',
  4: 'Interpretability comparable to TopK SAEs',
};

export const CHECKS: Check[] = [
  { claim: 1, metric: 'delta_ce', variant: '', source: 'downstream', label: 'ΔCE', better: 'lower', primary: true },
  { claim: 1, metric: 'loss_recovered', variant: '', source: 'downstream', label: 'loss recovered', better: 'higher', primary: false },
  { claim: 1, metric: 'kl', variant: '', source: 'downstream', label: 'KL(clean ‖ spliced)', better: 'lower', primary: false },
  { claim: 1, metric: 'delta_ce', variant: 'gradient-free', source: 'downstream', label: 'ΔCE, g-SAE gradient-free eval', better: 'lower', primary: false },
  { claim: 2, metric: 'dead_frac', variant: '', source: 'downstream', label: 'dead fraction', better: 'lower', primary: true },
  { claim: 3, metric: 'effect', variant: '', source: 'steering', label: 'steering effect', better: 'higher', primary: true },
  { claim: 3, metric: 'consistency', variant: '', source: 'steering', label: 'steering consistency', better: 'higher', primary: false },
];

export interface ClaimRow {
  claim: 1 | 2 | 3;
  label: string;
  better: Better;
  primary: boolean;
  k: number;
  alpha: number | null;
  topk: Estimate | null;
  gsae: Estimate | null;
  verdict: CellVerdict;
  reason: string;
}

export interface ClaimSummary {
  claim: 1 | 2 | 3 | 4;
  text: string;
  /** e.g. "reproduced at k = 16, 32; inconclusive at k = 64", or "not measured (requires raters)". */
  status: string;
  counts: Partial<Record<CellVerdict, number>>;
}

export interface ClaimsTable {
  rows: ClaimRow[];
  summary: ClaimSummary[];
}

function toEstimate(r: Row | undefined): Estimate | null {
  if (!r || typeof r.mean !== 'number') return null;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return { mean: r.mean, lo: num(r.lo), hi: num(r.hi), n: Number(r.n_seeds ?? 0), ci: r.ci == null ? undefined : String(r.ci) };
}

const keyOf = (k: unknown, alpha: unknown) => `${k}|${alpha ?? ''}`;

/**
 * Builds the claims table from the rows of `finalMetricsOverSeedsSql` (downstream) and
 * `steeringOverSeedsSql` (steering): columns metric, variant, arch, k, alpha, n_seeds, mean, lo, hi, ci.
 */
export function buildClaims(downstream: Row[], steering: Row[]): ClaimsTable {
  const rows: ClaimRow[] = [];
  for (const check of CHECKS) {
    const src = check.source === 'downstream' ? downstream : steering;
    const mine = src.filter((r) => r.metric === check.metric);
    // The g-SAE side of a gradient-free check is the gsae row with that variant; TopK is always plain.
    const topkRows = mine.filter((r) => r.arch === 'topk' && !r.variant);
    const gsaeRows = mine.filter((r) => r.arch === 'gsae' && (r.variant ?? '') === check.variant);
    const keys = new Map<string, { k: number; alpha: number | null }>();
    for (const r of [...topkRows, ...gsaeRows]) {
      keys.set(keyOf(r.k, r.alpha), { k: Number(r.k), alpha: typeof r.alpha === 'number' ? r.alpha : null });
    }
    const sorted = [...keys.values()].sort((a, b) => a.k - b.k || (a.alpha ?? 0) - (b.alpha ?? 0));
    for (const { k, alpha } of sorted) {
      const topk = toEstimate(topkRows.find((r) => keyOf(r.k, r.alpha) === keyOf(k, alpha)));
      const gsae = toEstimate(gsaeRows.find((r) => keyOf(r.k, r.alpha) === keyOf(k, alpha)));
      let verdict: CellVerdict = 'no data';
      let reason = topk ? 'no g-SAE result at this k' : 'no TopK result at this k';
      if (topk && gsae) ({ verdict, reason } = judge(topk, gsae, check.better));
      rows.push({ claim: check.claim, label: check.label, better: check.better, primary: check.primary, k, alpha, topk, gsae, verdict, reason });
    }
  }
  const summary: ClaimSummary[] = ([1, 2, 3] as const).map((claim) => {
    const primary = rows.filter((r) => r.claim === claim && r.primary);
    const counts: Partial<Record<CellVerdict, number>> = {};
    const where = new Map<CellVerdict, string[]>();
    for (const r of primary) {
      counts[r.verdict] = (counts[r.verdict] ?? 0) + 1;
      const at = r.alpha === null ? `${r.k}` : `${r.k} (α=${r.alpha})`;
      where.set(r.verdict, [...(where.get(r.verdict) ?? []), at]);
    }
    const order: CellVerdict[] = ['reproduced', 'not reproduced', 'inconclusive', 'no data'];
    const status = primary.length
      ? order.filter((v) => where.has(v)).map((v) => `${v} at k = ${where.get(v)!.join(', ')}`).join('; ')
      : 'no data: the stage has not run';
    return { claim, text: CLAIMS[claim], status, counts };
  });
  summary.push({ claim: 4, text: CLAIMS[4], status: 'not measured (requires raters)', counts: { 'not measured': 1 } });
  return { rows, summary };
}
