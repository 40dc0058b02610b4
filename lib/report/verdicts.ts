/**
 * The claims table: what the compare stage's `paired` table says, per claim and k, at β* on the
 * test split. The report judges nothing: differences, intervals, p-values, verdicts, Holm verdicts
 * and β* are the compare stage's (lib/eval/paired.ts); this module only selects and groups rows.
 */
import type { Row } from './db.ts';
import { CLAIM_TEXT } from './texts.ts';

export type CellVerdict = 'reproduced' | 'not reproduced' | 'inconclusive' | 'no data' | 'not measured';

/** One row of `paired` (sql.ts pairedSql): a comparison g-SAE − TopK. */
export interface PairedRow {
  claim: number;
  check: string;
  label: string;
  /** '' or the steering target rule ('calibration' | 'logit_lens'). */
  rule: string;
  better: string;
  primary: boolean;
  split: string;
  k: number;
  beta: number | null;
  alpha: number | null;
  matchKl: number | null;
  /** null: the aggregate over seeds; a number: that seed's paired difference. */
  seed: number | null;
  seeds: number | null;
  topk: number | null;
  gsae: number | null;
  diff: number | null;
  lo: number | null;
  hi: number | null;
  interval: string;
  n: number | null;
  p: number | null;
  verdict: string;
  mde: number | null;
  isBetaStar: boolean;
  pHolm: number | null;
  verdictHolm: string | null;
  changeRate: number | null;
}

/** One row of `beta_selection`: a candidate β for one k, judged on the val split. */
export interface BetaSelectionRow {
  k: number;
  beta: number;
  valDiff: number | null;
  valLo: number | null;
  valHi: number | null;
  changeRateVal: number | null;
  chosen: boolean;
  criterion: string;
}

export interface ClaimSummary {
  claim: 1 | 2 | 3 | 4;
  text: string;
  /** e.g. "reproduced at k = 16, 32; inconclusive at k = 8 (Holm: reproduced at k = 32; inconclusive at k = 8, 16)". */
  status: string;
  counts: Partial<Record<CellVerdict, number>>;
}

export interface ClaimsTable {
  /** Per claim and k, the primary check's aggregate test row at β*: what decides the claim. */
  rows: PairedRow[];
  /** The other checks' aggregate test rows at β*, for context. */
  secondary: PairedRow[];
  /** Every row of `paired` (every β, both splits, per seed). */
  all: PairedRow[];
  betaSelection: BetaSelectionRow[];
  summary: ClaimSummary[];
  /** Fewest and most seeds behind an aggregate row (null without rows). */
  seeds: { min: number; max: number } | null;
  /** Claim 4 from human ratings (empty without ratings). */
  ratings?: RatingsClaimRow[];
  /** Set when the claims queries failed (shown on the page; the report stage fails on it). */
  error?: string;
}

export const CLAIMS = CLAIM_TEXT;

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

export function toPairedRow(r: Row): PairedRow {
  return {
    claim: Number(r.claim),
    check: str(r.check),
    label: str(r.label) || str(r.check),
    rule: str(r.rule),
    better: str(r.better),
    primary: r.primary === true,
    split: str(r.split),
    k: Number(r.k),
    beta: num(r.beta),
    alpha: num(r.alpha),
    matchKl: num(r.match_kl),
    seed: num(r.seed),
    seeds: num(r.seeds),
    topk: num(r.topk),
    gsae: num(r.gsae),
    diff: num(r.diff),
    lo: num(r.lo),
    hi: num(r.hi),
    interval: str(r.interval),
    n: num(r.n),
    p: num(r.p),
    verdict: str(r.verdict) || 'no data',
    mde: num(r.mde),
    isBetaStar: r.is_beta_star === true,
    pHolm: num(r.p_holm),
    verdictHolm: r.verdict_holm === null || r.verdict_holm === undefined ? null : String(r.verdict_holm),
    changeRate: num(r.change_rate),
  };
}

export function toBetaSelectionRow(r: Row): BetaSelectionRow {
  return {
    k: Number(r.k),
    beta: Number(r.beta),
    valDiff: num(r.val_delta_ce_diff),
    valLo: num(r.val_delta_ce_lo),
    valHi: num(r.val_delta_ce_hi),
    changeRateVal: num(r.change_rate_val),
    chosen: r.chosen === true,
    criterion: str(r.criterion),
  };
}

const VERDICT_ORDER = ['reproduced', 'not reproduced', 'inconclusive'];

/**
 * "reproduced at k = 16, 32; inconclusive at k = 8" from the rows' verdicts (or Holm verdicts).
 * A row is named by its k, plus α / matched KL / rule where these differ between the rows.
 */
function verdictLine(rows: PairedRow[], verdictOf: (r: PairedRow) => string | null): string {
  const varies = (f: (r: PairedRow) => unknown) => new Set(rows.map((r) => String(f(r)))).size > 1;
  const showAlpha = varies((r) => r.alpha);
  const showKl = varies((r) => r.matchKl);
  const showRule = varies((r) => r.rule);
  const where = new Map<string, string[]>();
  for (const r of rows) {
    const v = verdictOf(r);
    if (v === null) continue;
    const q = [
      ...(showRule && r.rule ? [r.rule] : []),
      ...(showAlpha && r.alpha !== null ? [`α=${r.alpha}`] : []),
      ...(showKl && r.matchKl !== null ? [`KL=${r.matchKl}`] : []),
    ];
    where.set(v, [...(where.get(v) ?? []), q.length ? `${r.k} (${q.join(', ')})` : `${r.k}`]);
  }
  const order = [...VERDICT_ORDER.filter((v) => where.has(v)), ...[...where.keys()].filter((v) => !VERDICT_ORDER.includes(v)).sort()];
  return order.map((v) => `${v} at k = ${where.get(v)!.join(', ')}`).join('; ');
}

const byKey = (a: PairedRow, b: PairedRow) =>
  a.claim - b.claim || a.k - b.k || (a.alpha ?? -Infinity) - (b.alpha ?? -Infinity) || (a.matchKl ?? -Infinity) - (b.matchKl ?? -Infinity) || a.rule.localeCompare(b.rule);

/**
 * Builds the claims table from the rows of `pairedSql` restricted to AT_BETA_STAR (`atBetaStar`),
 * of `pairedSql` unrestricted (`all`) and of `betaSelectionSql`. `noDataReason` is the status of
 * every claim when there are no rows at all (e.g. the compare stage has not run).
 */
/** Claim 4 from human ratings per k (lib/eval/compare.ts ratingsComparison), shown when any exist. */
export interface RatingsClaimRow {
  k: number;
  beta: number | null;
  topk: number | null;
  gsae: number | null;
  n_topk: number;
  n_gsae: number;
  diff: number | null;
  lo: number | null;
  hi: number | null;
  verdict: string;
  needed: number;
  margin: number;
}

export function buildClaims(atBetaStar: Row[], all: Row[] = [], betaSelection: Row[] = [], noDataReason = 'no data: the compare stage has not run', ratings: RatingsClaimRow[] = [], minRatings = 0): ClaimsTable {
  const star = atBetaStar.map(toPairedRow);
  const rows = star.filter((r) => r.primary).sort(byKey);
  const secondary = star.filter((r) => !r.primary);
  const allRows = all.map(toPairedRow);
  const aggregates = [...star, ...allRows].filter((r) => r.seed === null && r.seeds !== null);
  const seeds = aggregates.length
    ? { min: Math.min(...aggregates.map((r) => r.seeds!)), max: Math.max(...aggregates.map((r) => r.seeds!)) }
    : null;
  const summary: ClaimSummary[] = ([1, 2, 3, 4] as const).map((claim) => {
    const mine = rows.filter((r) => r.claim === claim);
    const counts: Partial<Record<CellVerdict, number>> = {};
    for (const r of mine) {
      const v = (VERDICT_ORDER.includes(r.verdict) ? r.verdict : 'no data') as CellVerdict;
      counts[v] = (counts[v] ?? 0) + 1;
    }
    let status = mine.length ? verdictLine(mine, (r) => r.verdict) : star.length ? 'no data: the compare stage wrote no rows for this claim' : noDataReason;
    const holm = verdictLine(mine, (r) => r.verdictHolm);
    if (holm) status += ` (Holm: ${holm})`;
    return { claim, text: CLAIM_TEXT[claim], status, counts };
  });
  const s4 = summary[3];
  if (!rows.some((r) => r.claim === 4)) {
    s4.status = 'not measured (no automatic score rows: the interp and compare stages have not run)';
    s4.counts = { 'not measured': 1 };
  } else s4.status = `automatic score: ${s4.status}`;
  if (ratings.length) {
    const decided = ratings.filter((r) => r.verdict !== 'too few ratings');
    const waiting = ratings.filter((r) => r.verdict === 'too few ratings');
    const parts = [
      ...(decided.length ? [verdictLine(decided.map((r) => ({ ...toPairedRow({ k: r.k }), verdict: r.verdict })), (r) => r.verdict)] : []),
      ...waiting.map((r) => `k = ${r.k}: ${r.needed} more ratings needed (${r.n_topk} + ${r.n_gsae} of ${minRatings} per arch)`),
    ];
    s4.status += `; human ratings: ${parts.join('; ')}`;
  } else if (minRatings > 0) s4.status += `; human ratings: none yet (npm run rate; ${minRatings} per arch and k needed)`;
  return { rows, secondary, all: allRows, betaSelection: betaSelection.map(toBetaSelectionRow), summary, seeds, ratings };
}
