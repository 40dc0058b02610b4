/**
 * Statistics for the evaluations: seeded percentile-bootstrap confidence intervals and the
 * verdict rule of docs/METHOD.md.
 *
 * Bootstrap: percentile method, `resamples` (default 1000) resamples with replacement, quantiles
 * by linear interpolation between order statistics. Draws come from the seeded mulberry32 PRNG,
 * so a CI is a pure function of (values, options).
 *
 * Cluster (block) bootstrap: per-token values from one sequence are correlated, so downstream
 * CIs resample whole sequences: pass `clusterSize = seqLen` and the values in sequence order
 * (consecutive runs of `clusterSize` values form a cluster; the last one may be shorter). The
 * mean of a resample is Σ(cluster sums) / Σ(cluster sizes). clusterSize = 1 is the ordinary
 * bootstrap.
 *
 * Verdicts come from the CI of a PAIRED difference g-SAE − TopK (`verdictFromDiff`; the
 * comparisons are assembled in compare.ts). Two separate CIs that overlap are not a test of a
 * difference, so no function here compares two CIs.
 */
import tCdf from '@stdlib/stats-base-dists-t-cdf';
import tQuantile from '@stdlib/stats-base-dists-t-quantile';
import { mulberry32 } from '../util/random.ts';

export interface CI {
  /** Point estimate on the full sample (mean, ratio or difference). */
  mean: number;
  lo: number;
  hi: number;
  /** Number of resampling units (values, or clusters when clusterSize > 1). */
  n: number;
  level: number;
}

export interface BootstrapOptions {
  resamples?: number; // default 1000
  level?: number; // default 0.95
  seed?: number; // default 0
  /** Resample runs of this many consecutive values together (default 1). */
  clusterSize?: number;
}

const DEFAULTS = { resamples: 1000, level: 0.95, seed: 0, clusterSize: 1 };

/** Quantile (0 ≤ q ≤ 1) of a sorted array, linear interpolation (type 7). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

function checkFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new Error(`bootstrap: ${what}[${i}] = ${values[i]} is not finite`);
  }
}

/** Per-cluster sums and sizes of consecutive runs of `c` values. */
function clusterSums(values: ArrayLike<number>, c: number): { sums: Float64Array; sizes: Float64Array } {
  const n = values.length;
  const nc = Math.ceil(n / c);
  const sums = new Float64Array(nc);
  const sizes = new Float64Array(nc);
  for (let i = 0; i < n; i++) {
    const j = Math.floor(i / c);
    sums[j] += values[i];
    sizes[j] += 1;
  }
  return { sums, sizes };
}

function percentileCI(stats: Float64Array, point: number, n: number, level: number): CI {
  const sorted = Float64Array.from(stats).sort();
  const a = (1 - level) / 2;
  return { mean: point, lo: quantileSorted(sorted, a), hi: quantileSorted(sorted, 1 - a), n, level };
}

/**
 * Generic cluster bootstrap of a ratio of sums Σnum / Σden (den = cluster sizes gives the mean).
 * Each resample draws nClusters clusters with replacement.
 */
function bootstrapSums(
  numSums: Float64Array,
  denSums: Float64Array,
  opts: Required<BootstrapOptions>,
): CI {
  const nc = numSums.length;
  let N = 0, D = 0;
  for (let j = 0; j < nc; j++) {
    N += numSums[j];
    D += denSums[j];
  }
  const point = N / D;
  if (nc <= 1) return { mean: point, lo: point, hi: point, n: nc, level: opts.level };
  const u = mulberry32(opts.seed);
  const stats = new Float64Array(opts.resamples);
  for (let b = 0; b < opts.resamples; b++) {
    let sn = 0, sd = 0;
    for (let i = 0; i < nc; i++) {
      const j = Math.floor(u() * nc);
      sn += numSums[j];
      sd += denSums[j];
    }
    stats[b] = sn / sd;
  }
  return percentileCI(stats, point, nc, opts.level);
}

function withDefaults(opts: BootstrapOptions): Required<BootstrapOptions> {
  const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
  const o = { ...DEFAULTS, ...given };
  if (!(o.level > 0 && o.level < 1)) throw new Error(`bootstrap: level ${o.level} not in (0, 1)`);
  if (!(o.resamples >= 1)) throw new Error(`bootstrap: resamples ${o.resamples} < 1`);
  if (!(o.clusterSize >= 1)) throw new Error(`bootstrap: clusterSize ${o.clusterSize} < 1`);
  return o;
}

/** Seeded percentile bootstrap CI of the mean of `values` (optionally clustered). */
export function bootstrapMeanCI(values: ArrayLike<number>, opts: BootstrapOptions = {}): CI {
  const o = withDefaults(opts);
  if (values.length === 0) return { mean: NaN, lo: NaN, hi: NaN, n: 0, level: o.level };
  checkFinite(values, 'values');
  const { sums, sizes } = clusterSums(values, o.clusterSize);
  return bootstrapSums(sums, sizes, o);
}

/**
 * CI of a ratio of sums Σnum / Σden, resampling positions (or clusters) jointly: e.g. loss
 * recovered = Σ(CE_zero − CE_spliced) / Σ(CE_zero − CE_clean) over held-out positions.
 */
export function bootstrapRatioCI(num: ArrayLike<number>, den: ArrayLike<number>, opts: BootstrapOptions = {}): CI {
  const o = withDefaults(opts);
  if (num.length !== den.length) throw new Error('bootstrapRatioCI: num and den differ in length');
  if (num.length === 0) return { mean: NaN, lo: NaN, hi: NaN, n: 0, level: o.level };
  checkFinite(num, 'num');
  checkFinite(den, 'den');
  return bootstrapSums(clusterSums(num, o.clusterSize).sums, clusterSums(den, o.clusterSize).sums, o);
}

/**
 * CI of mean(a) − mean(b). paired (same units, e.g. the same held-out positions for two SAEs):
 * the bootstrap of the per-unit differences. Unpaired: a and b resampled independently.
 */
export function bootstrapDiffCI(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  opts: BootstrapOptions & { paired?: boolean } = {},
): CI {
  const o = withDefaults(opts);
  if (opts.paired) {
    if (a.length !== b.length) throw new Error('bootstrapDiffCI: paired samples differ in length');
    const diff = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) diff[i] = a[i] - b[i];
    return bootstrapMeanCI(diff, o);
  }
  checkFinite(a, 'a');
  checkFinite(b, 'b');
  const ca = clusterSums(a, o.clusterSize);
  const cb = clusterSums(b, o.clusterSize);
  const mean = (s: { sums: Float64Array; sizes: Float64Array }) => s.sums.reduce((p, q) => p + q, 0) / s.sizes.reduce((p, q) => p + q, 0);
  const point = mean(ca) - mean(cb);
  const u = mulberry32(o.seed);
  const stats = new Float64Array(o.resamples);
  const draw = (s: { sums: Float64Array; sizes: Float64Array }) => {
    const nc = s.sums.length;
    let sn = 0, sd = 0;
    for (let i = 0; i < nc; i++) {
      const j = Math.floor(u() * nc);
      sn += s.sums[j];
      sd += s.sizes[j];
    }
    return sn / sd;
  };
  for (let r = 0; r < o.resamples; r++) stats[r] = draw(ca) - draw(cb);
  return percentileCI(stats, point, Math.min(ca.sums.length, cb.sums.length), o.level);
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/** Which direction is favourable: 'lower' (ΔCE, KL, dead fraction, FVU) or 'higher' (loss recovered, steering effect). */
export type Better = 'lower' | 'higher';
export type Verdict = 'reproduced' | 'not reproduced' | 'inconclusive';

/**
 * Wilson score interval of a proportion (successes / n), e.g. the dead fraction of an SAE's m
 * latents: unlike a bootstrap it is informative at 0 and 1 (a bootstrap of all-zeros is [0, 0]).
 */
export function wilsonInterval(successes: number, n: number, level = 0.95): { lo: number; hi: number } {
  if (!(n > 0) || successes < 0 || successes > n) throw new Error(`wilsonInterval: need 0 <= successes <= n, n > 0; got ${successes} / ${n}`);
  const z = normalQuantile(1 - (1 - level) / 2);
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { lo: Math.max(0, centre - half), hi: Math.min(1, centre + half) };
}

/** Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`normalQuantile: p must be in (0, 1), got ${p}`);
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lowTail = 0.02425;
  if (p < lowTail) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lowTail) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// ---------------------------------------------------------------------------------------------
// Paired comparisons (the verdict statistics: lib/eval/compare.ts)

/** A CI of a difference with its two-sided p-value against 0. */
export interface DiffCI extends CI {
  /** Two-sided p-value of "difference = 0". */
  p: number;
}

/**
 * Two-sided percentile-bootstrap p-value of "statistic = 0": twice the smaller tail fraction of
 * the resampled statistics on either side of 0, with the (1 + count) / (1 + B) correction so it is
 * never exactly 0.
 */
export function bootstrapPValue(stats: ArrayLike<number>): number {
  let le = 0;
  let ge = 0;
  let n = 0;
  for (let i = 0; i < stats.length; i++) {
    const s = stats[i];
    if (!Number.isFinite(s)) continue;
    n++;
    if (s <= 0) le++;
    if (s >= 0) ge++;
  }
  if (n === 0) return NaN;
  return Math.min(1, (2 * (1 + Math.min(le, ge))) / (1 + n));
}

function diffFromStats(stats: Float64Array, point: number, n: number, level: number): DiffCI {
  const finite = Float64Array.from(stats.filter((s) => Number.isFinite(s)));
  if (finite.length === 0 || !Number.isFinite(point)) return { mean: point, lo: NaN, hi: NaN, n, level, p: NaN };
  return { ...percentileCI(finite, point, n, level), p: bootstrapPValue(finite) };
}

/**
 * Paired cluster bootstrap of Σnum / Σden over units measured on the SAME held-out sequences:
 * clusters (sequences of `clusterSize` positions) are drawn with replacement and num and den of a
 * cluster travel together. With den = 1 per position this is the paired difference of means when
 * num = a − b per position (ΔCE, KL); loss recovered's difference is Σ(ce_t − ce_g) / Σ(ce_zero − ce_clean).
 */
export function pairedBootstrap(num: ArrayLike<number>, den: ArrayLike<number> | null, opts: BootstrapOptions = {}): DiffCI {
  const o = withDefaults(opts);
  checkFinite(num, 'num');
  const ones = den ?? new Float64Array(num.length).fill(1);
  if (ones.length !== num.length) throw new Error('pairedBootstrap: num and den differ in length');
  checkFinite(ones, 'den');
  const a = clusterSums(num, o.clusterSize).sums;
  const b = clusterSums(ones, o.clusterSize).sums;
  const nc = a.length;
  let N = 0, D = 0;
  for (let j = 0; j < nc; j++) {
    N += a[j];
    D += b[j];
  }
  const point = N / D;
  if (nc <= 1) return { mean: point, lo: NaN, hi: NaN, n: nc, level: o.level, p: NaN };
  const u = mulberry32(o.seed);
  const stats = new Float64Array(o.resamples);
  for (let r = 0; r < o.resamples; r++) {
    let sn = 0, sd = 0;
    for (let i = 0; i < nc; i++) {
      const j = Math.floor(u() * nc);
      sn += a[j];
      sd += b[j];
    }
    stats[r] = sn / sd;
  }
  return diffFromStats(stats, point, nc, o.level);
}

/** Per-position differences a − b (Float64). */
export function differences(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  if (a.length !== b.length) throw new Error(`differences: lengths ${a.length} and ${b.length} differ (not paired)`);
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
  return out;
}

/**
 * Student-t interval of the mean of per-seed values (e.g. each seed's paired difference g-SAE −
 * TopK): mean ± t_{1−α/2, n−1} · s / √n, p from the t distribution. Needs n ≥ 2.
 */
export function tInterval(values: ArrayLike<number>, level = 0.95): DiffCI {
  const n = values.length;
  if (n < 2) throw new Error(`tInterval: need at least 2 values, got ${n}`);
  checkFinite(values, 'values');
  let s = 0;
  for (let i = 0; i < n; i++) s += values[i];
  const mean = s / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i] - mean) ** 2;
  const se = Math.sqrt(ss / (n - 1) / n);
  const t = tQuantile(1 - (1 - level) / 2, n - 1);
  if (se === 0) return { mean, lo: mean, hi: mean, n, level, p: mean === 0 ? 1 : 0 };
  const p = 2 * (1 - tCdf(Math.abs(mean) / se, n - 1));
  return { mean, lo: mean - t * se, hi: mean + t * se, n, level, p };
}

/**
 * Newcombe's hybrid score interval (his method 10) for the difference of two independent
 * proportions x1/n1 − x2/n2 (e.g. the dead fractions of two SAEs' latents), built from the two
 * Wilson intervals; informative at 0. p: the pooled two-proportion z-test.
 */
export function newcombeDiffInterval(x1: number, n1: number, x2: number, n2: number, level = 0.95): DiffCI {
  const p1 = x1 / n1;
  const p2 = x2 / n2;
  const w1 = wilsonInterval(x1, n1, level);
  const w2 = wilsonInterval(x2, n2, level);
  const d = p1 - p2;
  const lo = d - Math.sqrt((p1 - w1.lo) ** 2 + (w2.hi - p2) ** 2);
  const hi = d + Math.sqrt((w1.hi - p1) ** 2 + (p2 - w2.lo) ** 2);
  const pooled = (x1 + x2) / (n1 + n2);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  const p = se === 0 ? (d === 0 ? 1 : 0) : 2 * (1 - normalCdf(Math.abs(d) / se));
  return { mean: d, lo, hi, n: n1 + n2, level, p };
}

/**
 * Two-way bootstrap for steering: arm A and arm B steer DIFFERENT latents on the SAME contexts.
 * values[l][c] is the value of latent l on context c. Each resample draws one set of contexts
 * (shared by both arms) and, independently per arm, a set of latents; the statistic is
 * `stat(A resampled) − stat(B resampled)`, where stat defaults to the grand mean. A custom
 * `stat(latents, contexts)` (index arrays into the arm's data) lets the caller compute, e.g., the
 * effect interpolated at a matched KL from several arrays of the same arm.
 */
export function twoWayBootstrap(
  arms: { a: TwoWayArm; b: TwoWayArm },
  nContexts: number,
  opts: BootstrapOptions = {},
): DiffCI {
  const o = withDefaults(opts);
  const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  const ctxAll = all(nContexts);
  const point = arms.a.stat(all(arms.a.nLatents), ctxAll) - arms.b.stat(all(arms.b.nLatents), ctxAll);
  const u = mulberry32(o.seed);
  const draw = (n: number) => {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(u() * n);
    return out;
  };
  const stats = new Float64Array(o.resamples);
  for (let r = 0; r < o.resamples; r++) {
    const ctx = draw(nContexts);
    const la = draw(arms.a.nLatents);
    const lb = draw(arms.b.nLatents);
    stats[r] = arms.a.stat(la, ctx) - arms.b.stat(lb, ctx);
  }
  return diffFromStats(stats, point, Math.min(arms.a.nLatents, arms.b.nLatents), o.level);
}

export interface TwoWayArm {
  nLatents: number;
  /** The arm's statistic on resampled latent and context indices (with repeats). */
  stat(latents: Int32Array, contexts: Int32Array): number;
}

/** Grand mean of values[l][c] over the given (repeated) latent and context indices. */
export function gridMean(values: ArrayLike<ArrayLike<number>>, latents: Int32Array, contexts: Int32Array): number {
  let s = 0;
  for (const l of latents) {
    const row = values[l];
    for (const c of contexts) s += row[c];
  }
  return s / (latents.length * contexts.length);
}

/**
 * Holm's step-down adjustment of p-values (family-wise error control): sorted ascending,
 * p_(i) ← max_{j ≤ i} min(1, (n − j + 1) p_(j)). NaN p-values are left out of the family and stay NaN.
 */
export function holmAdjust(p: ArrayLike<number>): number[] {
  const idx = Array.from({ length: p.length }, (_, i) => i).filter((i) => Number.isFinite(p[i]));
  idx.sort((a, b) => p[a] - p[b] || a - b);
  const out = Array.from({ length: p.length }, () => NaN);
  const n = idx.length;
  let run = 0;
  idx.forEach((i, j) => {
    run = Math.max(run, Math.min(1, (n - j) * p[i]));
    out[i] = run;
  });
  return out;
}

/**
 * The verdict from the CI of the difference g-SAE − TopK (docs/METHOD.md): the interval excludes 0 in
 * the g-SAE's favour → 'reproduced'; in TopK's favour → 'not reproduced'; else (or no CI) 'inconclusive'.
 */
export function verdictFromDiff(ci: { lo: number; hi: number }, better: Better): Verdict {
  if (!Number.isFinite(ci.lo) || !Number.isFinite(ci.hi)) return 'inconclusive';
  const gBetter = better === 'lower' ? ci.hi < 0 : ci.lo > 0;
  const tBetter = better === 'lower' ? ci.lo > 0 : ci.hi < 0;
  return gBetter ? 'reproduced' : tBetter ? 'not reproduced' : 'inconclusive';
}

/** The verdict after a multiplicity adjustment: significant at `alpha` → the direction of the difference. */
export function verdictFromP(diff: number, p: number, better: Better, alpha = 0.05): Verdict {
  if (!Number.isFinite(p) || !(p < alpha) || diff === 0) return 'inconclusive';
  const gBetter = better === 'lower' ? diff < 0 : diff > 0;
  return gBetter ? 'reproduced' : 'not reproduced';
}

/** Standard normal CDF (via the complementary error function, |error| < 1.2e-7). */
export function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * z);
  const y = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - y / 2 : y / 2;
}
