/**
 * The verdict statistics: every comparison g-SAE − TopK at equal k is PAIRED on what both share.
 *
 * Pairs: the g-SAE of (β, k, seed) against the TopK SAE of (k, seed), trained on the same
 * activations in the same order and evaluated on the same held-out windows.
 *
 * Per seed (rows with `seed` = that seed):
 * - ΔCE, KL, gradient-free ΔCE: per held-out position the difference g − t of CE_spliced (ΔCE:
 *   CE_clean cancels) or of KL(clean ‖ spliced); mean with a paired cluster bootstrap over
 *   held-out sequences (all positions of a sequence resampled together).
 * - loss recovered: LR_g − LR_t = Σ(CE_t − CE_g) / Σ(CE_zero − CE_clean), the same bootstrap with
 *   numerator and denominator resampled together.
 * - dead fraction: two proportions of m latents each, Newcombe's hybrid score interval.
 * - steering: the two SAEs steer different latents on the SAME evaluation contexts: a two-way
 *   bootstrap draws contexts once for both arms and latents independently per arm. At equal α the
 *   statistic is the mean effect; at matched disruption it is the effect interpolated at KL* on each
 *   arm's mean (KL, effect) curve over α (linear in log KL; no extrapolation: outside the range
 *   covered by the α grid the row has no CI).
 * Over seeds (rows with `seed` null): with ≥ 2 seeds the mean of the per-seed paired differences
 * with a Student-t interval over seeds (what varies between training runs); with 1 seed the seed's
 * own row, whose interval measures evaluation noise only.
 * Verdict: the 95% CI of the difference excludes 0 in the g-SAE's favour → 'reproduced', in
 * TopK's favour → 'not reproduced', otherwise 'inconclusive'. Holm's adjustment runs over the k
 * values of one check at β* (aggregate test rows). mde = the CI's half-width: a true difference
 * smaller than that could not have excluded 0.
 * β*: per k, the β whose g-SAE has the lowest mean (over seeds) ΔCE on the VAL split — the
 * same as the most negative val difference, TopK being common to all β; ties → the smaller β.
 * The verdicts use the TEST split only.
 * Claim 4 (interp_score): the automatic interpretability score (lib/interp) of the two SAEs'
 * sampled latents; per seed the difference of mean scores with a bootstrap over latents drawn
 * independently per arm (different latents), over seeds the t-interval; the verdict is an
 * EQUIVALENCE test (verdictEquivalence: the CI inside ±interpMargin → 'reproduced', i.e.
 * comparable), no Holm (equivalence is not a test against 0).
 */
import {
  type Better,
  type DiffCI,
  type Verdict,
  differences,
  gridMean,
  holmAdjust,
  newcombeDiffInterval,
  pairedBootstrap,
  tInterval,
  twoWayBootstrap,
  verdictFromDiff,
  verdictFromP,
} from './stats.ts';
import { verdictEquivalence } from './equivalence.ts';

/** Per-position arrays of one SAE on one split (the downstream stage's per_token file). */
export interface SplitArrays {
  ce_clean: ArrayLike<number>;
  ce_zero: ArrayLike<number>;
  ce_spliced: ArrayLike<number>;
  kl: ArrayLike<number>;
  ce_spliced_gradfree?: ArrayLike<number>;
  kl_gradfree?: ArrayLike<number>;
}

export interface DownstreamArm {
  arch: 'topk' | 'gsae';
  /** Nominal β of a g-SAE (the instance's), 0 for TopK. */
  beta: number;
  k: number;
  seed: number;
  seqLen: number;
  test: SplitArrays;
  val: SplitArrays;
  /** Dead latents (never fire on held-out tokens and dead at the end of training) of m. */
  dead: number;
  m: number;
  /** Selection change rate on test / val (g-SAE). */
  changeRate?: number;
  changeRateVal?: number;
}

export interface SteeringArm {
  arch: 'topk' | 'gsae';
  beta: number;
  k: number;
  seed: number;
  alphas: number[];
  /** Evaluation context starts: must be the same for both arms of a pair. */
  contexts: number[];
  /** [alphaIndex][latentIndex][contextIndex] */
  kl: number[][][];
  effect: Record<string, number[][][]>;
}

export interface PairedRow {
  claim: number;
  check: CheckName;
  label: string;
  rule: string;
  better: Better;
  primary: boolean;
  split: 'val' | 'test';
  k: number;
  beta: number;
  alpha: number | null;
  match_kl: number | null;
  seed: number | null;
  seeds: number;
  topk: number;
  gsae: number;
  diff: number;
  lo: number | null;
  hi: number | null;
  interval: string;
  n: number;
  p: number | null;
  verdict: Verdict;
  mde: number | null;
  is_beta_star: boolean;
  p_holm: number | null;
  verdict_holm: Verdict | null;
  change_rate: number | null;
}

export interface BetaSelectionRow {
  k: number;
  beta: number;
  val_delta_ce_diff: number;
  val_delta_ce_lo: number | null;
  val_delta_ce_hi: number | null;
  change_rate_val: number | null;
  chosen: boolean;
  criterion: string;
}

export const CHECKS = {
  delta_ce: { claim: 1, label: 'ΔCE (spliced − clean)', better: 'lower', primary: true },
  kl: { claim: 1, label: 'KL(clean ‖ spliced)', better: 'lower', primary: false },
  loss_recovered: { claim: 1, label: 'loss recovered', better: 'higher', primary: false },
  delta_ce_gradfree: { claim: 1, label: 'ΔCE, g-SAE evaluated gradient-free', better: 'lower', primary: false },
  dead_frac: { claim: 2, label: 'dead fraction', better: 'lower', primary: true },
  steer_effect: { claim: 3, label: 'steering effect at equal α', better: 'higher', primary: false },
  steer_effect_matched_kl: { claim: 3, label: 'steering effect at matched KL', better: 'higher', primary: false },
  interp_score: { claim: 4, label: 'simulation score (lookup explainer), equivalence', better: 'higher', primary: true, equivalence: true },
} as const satisfies Record<string, { claim: number; label: string; better: Better; primary: boolean; equivalence?: boolean }>;
const isEquivalence = (check: CheckName): boolean => 'equivalence' in CHECKS[check];

/** The automatic interpretability scores of one SAE's sampled latents (interp stage). */
export interface InterpArm {
  arch: 'topk' | 'gsae';
  beta: number;
  k: number;
  seed: number;
  scores: number[];
}
export type CheckName = keyof typeof CHECKS;

/** Claim 3 is decided by this rule at matched disruption (the rule a summary attributes to the paper). */
export const PRIMARY_STEERING_RULE = 'logit_lens';

export interface CompareOptions {
  resamples: number;
  seed: number;
  /** KL* in nats for the matched-disruption comparison; 0 = automatic (`autoMatchKl`). */
  matchKl: number;
  level?: number;
  /** Equivalence margin of claim 4 on the score difference (required when interp arms are given). */
  interpMargin?: number;
}

export interface CompareResult {
  paired: PairedRow[];
  betaSelection: BetaSelectionRow[];
  matchKl: number | null;
}

const mean = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s / a.length;
};

/** One per-seed comparison before the over-seed aggregation. */
type SeedRow = Omit<PairedRow, 'seeds' | 'is_beta_star' | 'p_holm' | 'verdict_holm' | 'change_rate' | 'claim' | 'label' | 'better' | 'primary'>;

function rowFrom(check: CheckName, base: Pick<SeedRow, 'rule' | 'split' | 'k' | 'beta' | 'alpha' | 'match_kl' | 'seed'>, topk: number, gsae: number, ci: DiffCI, interval: string, margin?: number): SeedRow {
  const ok = Number.isFinite(ci.lo) && Number.isFinite(ci.hi);
  return {
    check,
    ...base,
    topk,
    gsae,
    diff: ci.mean,
    lo: ok ? ci.lo : null,
    hi: ok ? ci.hi : null,
    interval,
    n: ci.n,
    p: Number.isFinite(ci.p) ? ci.p : null,
    verdict: isEquivalence(check) ? verdictEquivalence(ci, margin!) : verdictFromDiff(ci, CHECKS[check].better),
    mde: ok ? (ci.hi - ci.lo) / 2 : null,
  };
}

function assertPaired(t: SplitArrays, g: SplitArrays, what: string): void {
  if (t.ce_clean.length !== g.ce_clean.length) throw new Error(`compare: ${what}: the two SAEs were evaluated on ${t.ce_clean.length} and ${g.ce_clean.length} positions (not paired)`);
  for (let i = 0; i < t.ce_clean.length; i += 97) {
    if (Math.abs(t.ce_clean[i] - g.ce_clean[i]) > 1e-4) throw new Error(`compare: ${what}: clean CE differs at position ${i} (${t.ce_clean[i]} vs ${g.ce_clean[i]}): not the same held-out tokens`);
  }
}

/** Per-seed downstream comparisons of one pair on one split. */
function downstreamRows(t: DownstreamArm, g: DownstreamArm, split: 'val' | 'test', o: CompareOptions): SeedRow[] {
  const ts = t[split];
  const gs = g[split];
  const what = `${split} k=${g.k} β=${g.beta} seed=${g.seed}`;
  assertPaired(ts, gs, what);
  const boot = { resamples: o.resamples, seed: o.seed, clusterSize: t.seqLen, level: o.level };
  const nSeq = Math.ceil(ts.ce_clean.length / t.seqLen);
  const interval = `paired bootstrap over ${nSeq} held-out sequences`;
  const base = { rule: '', split, k: g.k, beta: g.beta, alpha: null, match_kl: null, seed: g.seed };
  const dce = (a: ArrayLike<number>, c: ArrayLike<number>) => mean(a) - mean(c);
  const out: SeedRow[] = [
    rowFrom('delta_ce', base, dce(ts.ce_spliced, ts.ce_clean), dce(gs.ce_spliced, gs.ce_clean), pairedBootstrap(differences(gs.ce_spliced, ts.ce_spliced), null, boot), interval),
    rowFrom('kl', base, mean(ts.kl), mean(gs.kl), pairedBootstrap(differences(gs.kl, ts.kl), null, boot), interval),
  ];
  const den = differences(ts.ce_zero, ts.ce_clean);
  const lr = (s: ArrayLike<number>) => mean(differences(ts.ce_zero, s)) / mean(den);
  out.push(rowFrom('loss_recovered', base, lr(ts.ce_spliced), lr(gs.ce_spliced), pairedBootstrap(differences(ts.ce_spliced, gs.ce_spliced), den, boot), interval));
  if (split === 'test') {
    if (gs.ce_spliced_gradfree) {
      out.push(rowFrom('delta_ce_gradfree', base, dce(ts.ce_spliced, ts.ce_clean), dce(gs.ce_spliced_gradfree, gs.ce_clean), pairedBootstrap(differences(gs.ce_spliced_gradfree, ts.ce_spliced), null, boot), interval));
    }
    const nd = newcombeDiffInterval(g.dead, g.m, t.dead, t.m, o.level);
    out.push(rowFrom('dead_frac', base, t.dead / t.m, g.dead / g.m, nd, `Newcombe interval for a difference of proportions (${g.m} latents each)`));
  }
  return out;
}

/**
 * Effect at KL* on the mean curve over α of the given latents and contexts, linear in log KL
 * between the two α whose mean KL brackets KL*; NaN when no pair of α brackets it.
 */
export function effectAtKl(effect: number[][][], kl: number[][][], latents: Int32Array, contexts: Int32Array, klStar: number): number {
  const pts = effect.map((e, a) => ({ k: gridMean(kl[a], latents, contexts), e: gridMean(e, latents, contexts) })).sort((p, q) => p.k - q.k);
  for (let i = 0; i + 1 < pts.length; i++) {
    const { k: k0, e: e0 } = pts[i];
    const { k: k1, e: e1 } = pts[i + 1];
    if (k0 > 0 && k0 <= klStar && klStar <= k1) {
      if (k1 === k0) return (e0 + e1) / 2;
      return e0 + ((e1 - e0) * (Math.log(klStar) - Math.log(k0))) / (Math.log(k1) - Math.log(k0));
    }
  }
  return NaN;
}

/** KL* = the geometric mean over all SAEs of the mean KL at the middle α (blind to the arch). */
export function autoMatchKl(arms: SteeringArm[]): number | null {
  const logs: number[] = [];
  for (const a of arms) {
    const mid = Math.floor((a.alphas.length - 1) / 2);
    const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
    const v = gridMean(a.kl[mid], all(a.kl[mid].length), all(a.contexts.length));
    if (v > 0) logs.push(Math.log(v));
  }
  return logs.length ? Math.exp(mean(logs)) : null;
}

function steeringRows(t: SteeringArm, g: SteeringArm, klStar: number | null, o: CompareOptions): SeedRow[] {
  if (t.contexts.length !== g.contexts.length || t.contexts.some((c, i) => c !== g.contexts[i])) {
    throw new Error(`compare: steering k=${g.k} seed=${g.seed}: the two SAEs were steered on different contexts (not paired)`);
  }
  if (t.alphas.join() !== g.alphas.join()) throw new Error(`compare: steering k=${g.k}: different α grids (${t.alphas} vs ${g.alphas})`);
  const nC = t.contexts.length;
  const boot = { resamples: o.resamples, seed: o.seed, level: o.level };
  const base = { split: 'test' as const, k: g.k, beta: g.beta, seed: g.seed };
  const interval = (tl: number, gl: number) => `bootstrap over latents (${gl} g-SAE, ${tl} TopK) and ${nC} shared contexts`;
  const out: SeedRow[] = [];
  const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  for (const rule of Object.keys(t.effect)) {
    if (!g.effect[rule]) continue;
    const nLt = t.effect[rule][0].length;
    const nLg = g.effect[rule][0].length;
    t.alphas.forEach((alpha, a) => {
      const arm = (s: SteeringArm, nL: number) => ({ nLatents: nL, stat: (l: Int32Array, c: Int32Array) => gridMean(s.effect[rule][a], l, c) });
      const ci = twoWayBootstrap({ a: arm(g, nLg), b: arm(t, nLt) }, nC, boot);
      const pt = (s: SteeringArm, nL: number) => gridMean(s.effect[rule][a], all(nL), all(nC));
      out.push(rowFrom('steer_effect', { ...base, rule, alpha, match_kl: null }, pt(t, nLt), pt(g, nLg), ci, interval(nLt, nLg)));
    });
    if (klStar !== null) {
      const arm = (s: SteeringArm, nL: number) => ({ nLatents: nL, stat: (l: Int32Array, c: Int32Array) => effectAtKl(s.effect[rule], s.kl, l, c, klStar) });
      const ci = twoWayBootstrap({ a: arm(g, nLg), b: arm(t, nLt) }, nC, boot);
      const pt = (s: SteeringArm, nL: number) => effectAtKl(s.effect[rule], s.kl, all(nL), all(nC), klStar);
      const row = rowFrom('steer_effect_matched_kl', { ...base, rule, alpha: null, match_kl: klStar }, pt(t, nLt), pt(g, nLg), ci, interval(nLt, nLg));
      if (!Number.isFinite(row.diff)) row.interval = `KL* = ${klStar.toPrecision(3)} nats is outside the KL range of the α grid for one of the SAEs`;
      out.push(row);
    }
  }
  return out;
}

const groupKey = (r: Pick<SeedRow, 'check' | 'rule' | 'split' | 'k' | 'beta' | 'alpha' | 'match_kl'>) => [r.check, r.rule, r.split, r.k, r.beta, r.alpha, r.match_kl].join('|');

/** The over-seed row of one group of per-seed rows. */
function aggregate(rows: SeedRow[], level: number | undefined, margin?: number): SeedRow {
  if (rows.length === 1) return { ...rows[0], seed: null, interval: `${rows[0].interval} (1 seed: evaluation noise only)` };
  const first = rows[0];
  const diffs = rows.map((r) => r.diff);
  const finite = diffs.every(Number.isFinite);
  const ci: DiffCI = finite ? tInterval(diffs, level) : { mean: NaN, lo: NaN, hi: NaN, n: rows.length, level: level ?? 0.95, p: NaN };
  return rowFrom(first.check, { ...first, seed: null }, mean(rows.map((r) => r.topk)), mean(rows.map((r) => r.gsae)), ci, `t-interval over ${rows.length} seeds of the per-seed paired differences`, margin);
}

/** Every paired comparison, β* per k, and Holm across k (see the file header). */
/** Claim 4 per seed: difference of mean scores, bootstrap over each arm's latents independently. */
function interpRow(t: InterpArm, g: InterpArm, o: CompareOptions): SeedRow {
  const margin = o.interpMargin;
  if (!(margin !== undefined && margin > 0)) throw new Error('compare: interp arms need interpMargin > 0');
  const arm = (s: InterpArm) => ({ nLatents: s.scores.length, stat: (l: Int32Array) => mean(Array.from(l, (i) => s.scores[i])) });
  const ci = twoWayBootstrap({ a: arm(g), b: arm(t) }, 1, { resamples: o.resamples, seed: o.seed, level: o.level });
  const base = { rule: '', split: 'test' as const, k: g.k, beta: g.beta, alpha: null, match_kl: null, seed: g.seed };
  return rowFrom('interp_score', base, mean(t.scores), mean(g.scores), ci, `bootstrap over sampled latents (${g.scores.length} g-SAE, ${t.scores.length} TopK); equivalence margin ±${margin}`, margin);
}

export function compareAll(downstream: DownstreamArm[], steering: SteeringArm[], o: CompareOptions, interp: InterpArm[] = []): CompareResult {
  const topkD = new Map(downstream.filter((a) => a.arch === 'topk').map((a) => [`${a.k}|${a.seed}`, a]));
  const topkS = new Map(steering.filter((a) => a.arch === 'topk').map((a) => [`${a.k}|${a.seed}`, a]));
  const klStar = steering.length === 0 ? null : o.matchKl > 0 ? o.matchKl : autoMatchKl(steering);
  const perSeed: SeedRow[] = [];
  const changeRates = new Map<string, { test: number[]; val: number[] }>();
  for (const g of downstream.filter((a) => a.arch === 'gsae')) {
    const t = topkD.get(`${g.k}|${g.seed}`);
    if (!t) continue;
    perSeed.push(...downstreamRows(t, g, 'test', o), ...downstreamRows(t, g, 'val', o));
    const cr = changeRates.get(`${g.k}|${g.beta}`) ?? { test: [], val: [] };
    if (g.changeRate !== undefined) cr.test.push(g.changeRate);
    if (g.changeRateVal !== undefined) cr.val.push(g.changeRateVal);
    changeRates.set(`${g.k}|${g.beta}`, cr);
  }
  for (const g of steering.filter((a) => a.arch === 'gsae')) {
    const t = topkS.get(`${g.k}|${g.seed}`);
    if (t) perSeed.push(...steeringRows(t, g, klStar, o));
  }
  const topkI = new Map(interp.filter((a) => a.arch === 'topk').map((a) => [`${a.k}|${a.seed}`, a]));
  for (const g of interp.filter((a) => a.arch === 'gsae')) {
    const t = topkI.get(`${g.k}|${g.seed}`);
    if (t && t.scores.length > 0 && g.scores.length > 0) perSeed.push(interpRow(t, g, o));
  }

  // over seeds
  const groups = new Map<string, SeedRow[]>();
  for (const r of perSeed) groups.set(groupKey(r), [...(groups.get(groupKey(r)) ?? []), r]);
  const aggregates = [...groups.values()].map((rows) => ({ row: aggregate(rows, o.level, o.interpMargin), seeds: rows.length }));

  // β* per k on val ΔCE
  const betaSelection: BetaSelectionRow[] = [];
  const betaStar = new Map<number, number>();
  const valRows = aggregates.filter((a) => a.row.check === 'delta_ce' && a.row.split === 'val');
  for (const k of [...new Set(valRows.map((a) => a.row.k))].sort((a, b) => a - b)) {
    const mine = valRows.filter((a) => a.row.k === k).sort((a, b) => a.row.diff - b.row.diff || a.row.beta - b.row.beta);
    betaStar.set(k, mine[0].row.beta);
    for (const a of [...mine].sort((x, y) => x.row.beta - y.row.beta)) {
      const cr = changeRates.get(`${k}|${a.row.beta}`)?.val ?? [];
      betaSelection.push({
        k,
        beta: a.row.beta,
        val_delta_ce_diff: a.row.diff,
        val_delta_ce_lo: a.row.lo,
        val_delta_ce_hi: a.row.hi,
        change_rate_val: cr.length ? mean(cr) : null,
        chosen: a.row.beta === mine[0].row.beta,
        criterion: 'lowest g-SAE − TopK ΔCE on the val split (mean over seeds)',
      });
    }
  }

  const decorate = (r: SeedRow, seeds: number): PairedRow => {
    const c = CHECKS[r.check];
    const cr = changeRates.get(`${r.k}|${r.beta}`)?.test ?? [];
    const primary = c.primary || (r.check === 'steer_effect_matched_kl' && r.rule === PRIMARY_STEERING_RULE);
    return {
      claim: c.claim,
      label: c.label,
      better: c.better,
      primary,
      ...r,
      seeds,
      is_beta_star: betaStar.get(r.k) === r.beta,
      p_holm: null,
      verdict_holm: null,
      change_rate: cr.length ? mean(cr) : null,
    };
  };
  const paired: PairedRow[] = [
    ...aggregates.map((a) => decorate(a.row, a.seeds)),
    ...perSeed.map((r) => decorate(r, 1)),
  ];

  // Holm across the k values of one check (same rule / α / KL*), aggregate test rows at β*
  const families = new Map<string, PairedRow[]>();
  for (const r of paired) {
    if (r.seed !== null || r.split !== 'test' || !r.is_beta_star || isEquivalence(r.check)) continue;
    const key = [r.check, r.rule, r.alpha, r.match_kl].join('|');
    families.set(key, [...(families.get(key) ?? []), r]);
  }
  for (const fam of families.values()) {
    const adj = holmAdjust(fam.map((r) => r.p ?? NaN));
    fam.forEach((r, i) => {
      r.p_holm = Number.isFinite(adj[i]) ? adj[i] : null;
      r.verdict_holm = verdictFromP(r.diff, adj[i], r.better);
    });
  }
  paired.sort((a, b) => a.claim - b.claim || a.check.localeCompare(b.check) || a.rule.localeCompare(b.rule) || a.split.localeCompare(b.split) || a.k - b.k || a.beta - b.beta || (a.alpha ?? 0) - (b.alpha ?? 0) || (a.seed ?? -1) - (b.seed ?? -1));
  return { paired, betaSelection, matchKl: klStar };
}

/** One human rating (the rating server's `ratings` table), reduced to what the comparison needs. */
export interface RatingArm {
  arch: 'topk' | 'gsae';
  beta: number | null;
  k: number;
  score: number;
}

export interface RatingsRow {
  k: number;
  beta: number | null;
  topk: number | null;
  gsae: number | null;
  n_topk: number;
  n_gsae: number;
  diff: number | null;
  lo: number | null;
  hi: number | null;
  verdict: Verdict | 'too few ratings';
  /** Ratings still needed (per arch, to reach minRatings) before a verdict. */
  needed: number;
  margin: number;
}

/**
 * Claim 4 from human ratings (1–5) per k: g-SAE at β* (betaStar; every β when unknown) − TopK,
 * pooled over seeds and raters, a bootstrap over each arm's ratings independently, the same
 * equivalence rule as the automatic score with `margin` on the 1–5 scale. Fewer than
 * `minRatings` ratings in an arm → 'too few ratings' and how many are still needed.
 */
export function ratingsComparison(ratings: RatingArm[], betaStar: Map<number, number>, o: { margin: number; minRatings: number; resamples: number; seed: number }): RatingsRow[] {
  const ks = [...new Set(ratings.map((r) => r.k))].sort((a, b) => a - b);
  return ks.map((k) => {
    const bs = betaStar.get(k);
    const t = ratings.filter((r) => r.k === k && r.arch === 'topk').map((r) => r.score);
    const g = ratings.filter((r) => r.k === k && r.arch === 'gsae' && (bs === undefined || r.beta === bs)).map((r) => r.score);
    const needed = Math.max(0, o.minRatings - t.length) + Math.max(0, o.minRatings - g.length);
    const base = { k, beta: bs ?? null, topk: t.length ? mean(t) : null, gsae: g.length ? mean(g) : null, n_topk: t.length, n_gsae: g.length, margin: o.margin, needed };
    if (needed > 0) return { ...base, diff: null, lo: null, hi: null, verdict: 'too few ratings' as const };
    const arm = (s: number[]) => ({ nLatents: s.length, stat: (l: Int32Array) => mean(Array.from(l, (i) => s[i])) });
    const ci = twoWayBootstrap({ a: arm(g), b: arm(t) }, 1, { resamples: o.resamples, seed: o.seed });
    return { ...base, diff: ci.mean, lo: ci.lo, hi: ci.hi, verdict: verdictEquivalence(ci, o.margin) };
  });
}
