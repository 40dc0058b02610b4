/**
 * SQL builders shared by the charts and the claims table. Each returns one self-contained
 * statement (no macros, no temp tables) so a user can paste it into `npm run query`.
 *
 * Stage names are parameters because the engine's stage list is owned elsewhere; the defaults
 * follow docs/CONTRACTS.md.
 *
 * Every query is scoped to ONE run (the reported run, embedded as a literal run id so the SQL
 * shown under a chart gives the same rows whenever it is run again): results.duckdb accumulates
 * instances of every params set ever run (e.g. the smoke preset's k = 4, 8 next to the default's
 * k = 8..64), and only the instances the reported run used (ran or cached) belong in its report.
 * Their numbers follow the engine's fingerprint rule (pipeline/db.ts, view latest_metrics): per
 * instance, the rows of the latest run that RAN the fingerprint the reported run used. For the
 * most recent run these are the numbers of latest_metrics restricted to the run's instances; for an
 * older run they are what that run's results/ held (latest_metrics shows the current fingerprint).
 */

export interface StageNames {
  tokenize: string;
  lm: string;
  collect: string;
  sae: string;
  downstream: string;
  steering: string;
  /** The single-instance stage writing the paired comparisons (tables paired, beta_selection). */
  compare: string;
}

export const DEFAULT_STAGES: StageNames = {
  tokenize: 'tokenize',
  lm: 'lm',
  collect: 'collect',
  sae: 'sae',
  downstream: 'downstream',
  steering: 'steering',
  compare: 'compare',
};

/** Quote a string literal for SQL. */
export function lit(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30 (beyond: 1.96). */
export const T975: ReadonlyArray<number> = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145,
  2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048,
  2.045, 2.042,
];

const T_TABLE_CTE = `t975(df, t) AS (VALUES ${T975.map((t, i) => `(${i + 1}, ${t})`).join(', ')})`;

/** The run id as an SQL literal; NULL when there is no run (every scope is then empty). */
export function runLit(runId: string | null): string {
  return runId === null ? 'NULL' : lit(runId);
}

/**
 * The CTEs every report query starts with (after WITH), restricting it to the reported run:
 *  - scope(stage, inst, fingerprint): the instances the run used (status ran or cached, so not
 *    failed or skipped ones) and the fingerprint it used for each; `stages` narrows it;
 *  - computed_in(stage, inst, run_id): per instance in scope, the latest run that ran that
 *    fingerprint to success, i.e. the run whose metrics and table rows are that instance's numbers.
 */
export function scopeCtes(runId: string | null, stages?: string[]): string {
  const stageFilter = stages?.length ? ` AND stage IN (${stages.map(lit).join(', ')})` : '';
  return `scope AS (
  SELECT stage, CAST(instance AS VARCHAR) AS inst, fingerprint
  FROM stage_runs
  WHERE run_id = ${runLit(runId)} AND status IN ('ran', 'cached')${stageFilter}
),
computed_in AS (
  SELECT sc.stage, sc.inst, arg_max(sr.run_id, r.started) AS run_id
  FROM scope sc
  JOIN stage_runs sr ON sr.stage = sc.stage AND CAST(sr.instance AS VARCHAR) = sc.inst
   AND sr.fingerprint = sc.fingerprint AND sr.status = 'ran'
  JOIN runs r ON r.run_id = sr.run_id
  GROUP BY sc.stage, sc.inst
)`;
}

/**
 * CTE `run_metrics(stage, instance, name, step, value)` (after scopeCtes): the metrics of the
 * instances in scope from the run that computed them, one row per (stage, instance, name, step)
 * (the last one logged, like latest_metrics).
 */
function runMetricsCte(): string {
  return `run_metrics AS (
  SELECT m.stage, m.instance, m.name, m.step, m.value
  FROM metrics m
  JOIN computed_in c ON c.run_id = m.run_id AND c.stage = m.stage AND c.inst = CAST(m.instance AS VARCHAR)
  QUALIFY row_number() OVER (PARTITION BY m.stage, c.inst, m.name, m.step ORDER BY m.seq DESC) = 1
)`;
}

/** scope, computed_in and run_metrics: the metrics of the reported run's instances of these stages. */
export function runMetricsCtes(runId: string | null, stages: string[]): string {
  return `${scopeCtes(runId, stages)},
${runMetricsCte()}`;
}

/**
 * The instance fields of the SAE matrix stages, extracted from the instance JSON. beta exists for
 * g-SAE instances only (NULL for TopK), so every grouping by arch and k groups by beta too.
 */
export function instanceCols(alias = ''): string {
  const a = alias ? `${alias}.` : '';
  return [
    `json_extract_string(${a}instance, '$.arch') AS arch`,
    `CAST(json_extract_string(${a}instance, '$.beta') AS DOUBLE) AS beta`,
    `CAST(json_extract_string(${a}instance, '$.k') AS INTEGER) AS k`,
    `CAST(json_extract_string(${a}instance, '$.seed') AS INTEGER) AS seed`,
  ].join(',\n         ');
}

/**
 * Aggregation over seeds, appended after a CTE `per_seed(metric, variant, arch, beta, k, rule,
 * alpha, seed, value, lo, hi)` where lo/hi are the stored per-seed bootstrap bounds (NULL if
 * absent). Defines CTE `over_seeds(metric, variant, arch, beta, k, rule, alpha, n_seeds, mean, sd,
 * lo, hi, ci)`:
 *  - n_seeds ≥ 2: mean ± t_{0.975, n−1} · sd / √n over the per-seed values (ci = 't over seeds');
 *  - n_seeds = 1: the stored bootstrap bounds of that seed (ci = 'bootstrap, 1 seed'), else none.
 */
function seedAggregateCtes(): string {
  return `${T_TABLE_CTE},
agg AS (
  SELECT metric, variant, arch, beta, k, rule, alpha,
         count(value) AS n_seeds,
         avg(value) AS mean,
         stddev_samp(value) AS sd,
         min(lo) AS lo1,
         max(hi) AS hi1
  FROM per_seed
  WHERE value IS NOT NULL
  GROUP BY metric, variant, arch, beta, k, rule, alpha
),
over_seeds AS (
  SELECT metric, variant, arch, beta, k, rule, alpha, n_seeds, mean, sd,
         CASE WHEN n_seeds >= 2 THEN mean - coalesce(t975.t, 1.96) * sd / sqrt(n_seeds)
              WHEN n_seeds = 1 THEN lo1 END AS lo,
         CASE WHEN n_seeds >= 2 THEN mean + coalesce(t975.t, 1.96) * sd / sqrt(n_seeds)
              WHEN n_seeds = 1 THEN hi1 END AS hi,
         CASE WHEN n_seeds >= 2 THEN 't over seeds'
              WHEN lo1 IS NOT NULL AND hi1 IS NOT NULL THEN 'bootstrap, 1 seed'
              ELSE 'none' END AS ci
  FROM agg LEFT JOIN t975 ON t975.df = agg.n_seeds - 1
)`;
}

const OVER_SEEDS_ORDER = 'ORDER BY metric, variant, arch DESC, beta NULLS FIRST, k, rule, alpha';

export interface FinalMetricsOptions {
  /** Only the instances of this arch (e.g. 'gsae' for a metric only g-SAEs record). */
  arch?: string;
}

/**
 * Final (step IS NULL) metrics of a matrix stage, summarised over seeds per (arch, beta, k).
 * `bases` are metric names; the stored `<name>_lo` / `<name>_hi` are picked up automatically.
 * Names ending in `_gradfree` become metric = the name without the suffix, variant = 'gradient-free'.
 */
export function finalMetricsOverSeedsSql(runId: string | null, stage: string, bases: string[], opts: FinalMetricsOptions = {}): string {
  const inList = bases.map(lit).join(', ');
  const archFilter = opts.arch ? `\n    AND json_extract_string(instance, '$.arch') = ${lit(opts.arch)}` : '';
  return `WITH ${runMetricsCtes(runId, [stage])},
m AS (
  SELECT ${instanceCols()},
         regexp_replace(name, '_(lo|hi)$', '') AS base,
         CASE WHEN name LIKE '%\\_lo' ESCAPE '\\' THEN 'lo'
              WHEN name LIKE '%\\_hi' ESCAPE '\\' THEN 'hi'
              ELSE 'value' END AS part,
         value
  FROM run_metrics
  WHERE stage = ${lit(stage)} AND step IS NULL
    AND regexp_replace(name, '_(lo|hi)$', '') IN (${inList})${archFilter}
),
per_seed AS (
  SELECT regexp_replace(base, '_gradfree$', '') AS metric,
         CASE WHEN base LIKE '%\\_gradfree' ESCAPE '\\' THEN 'gradient-free' ELSE '' END AS variant,
         arch, beta, k, CAST(NULL AS VARCHAR) AS rule, CAST(NULL AS DOUBLE) AS alpha, seed,
         max(value) FILTER (WHERE part = 'value') AS value,
         max(value) FILTER (WHERE part = 'lo') AS lo,
         max(value) FILTER (WHERE part = 'hi') AS hi
  FROM m
  GROUP BY base, arch, beta, k, seed
),
${seedAggregateCtes()}
SELECT * FROM over_seeds
${OVER_SEEDS_ORDER}`;
}

/**
 * CTE `alias` (after scopeCtes) with the rows of a project table for the instances in scope, from
 * the run that computed each one (computed_in): the engine's fingerprint rule, as for metrics.
 */
function runTableCte(table: string, alias: string): string {
  return `${alias} AS (
  SELECT t.* FROM ${table} t
  JOIN computed_in c ON c.run_id = t.run_id AND c.stage = t.stage AND c.inst = CAST(t.instance AS VARCHAR)
)`;
}

/**
 * The steering target rule of a row. Rows written before the steering stage recorded a rule used
 * targets chosen on the calibration half, i.e. the 'calibration' rule.
 */
const STEERING_RULE = `coalesce(CAST(s.rule AS VARCHAR), 'calibration')`;

type SteeringMetric = 'effect' | 'consistency' | 'kl';

/** scope … over_seeds for steering_summary of the reported run, per (arch, beta, k, rule, alpha). */
function steeringOverSeedsCtes(runId: string | null, metrics: SteeringMetric[], stage: string): string {
  const parts = metrics.map(
    (m) => `  SELECT ${lit(m)} AS metric, '' AS variant, ${instanceCols('s')}, ${STEERING_RULE} AS rule,
         CAST(s.alpha AS DOUBLE) AS alpha, s.${m}_mean AS value, s.${m}_lo AS lo, s.${m}_hi AS hi
  FROM s`,
  );
  return `${scopeCtes(runId, [stage])},
${runTableCte('steering_summary', 's')},
per_seed_raw AS (
${parts.join('\n  UNION ALL\n')}
),
per_seed AS (
  SELECT metric, variant, arch, beta, k, rule, alpha, seed, value, lo, hi FROM per_seed_raw
),
${seedAggregateCtes()}`;
}

/** steering_summary of the reported run's instances, summarised over seeds per (arch, beta, k, rule, alpha). */
export function steeringOverSeedsSql(runId: string | null, metrics: SteeringMetric[] = ['effect', 'consistency', 'kl'], stage = DEFAULT_STAGES.steering): string {
  return `WITH ${steeringOverSeedsCtes(runId, metrics, stage)}
SELECT * FROM over_seeds
${OVER_SEEDS_ORDER}`;
}

/** Steering effect and KL side by side (one row per arch, beta, k, rule, alpha), means over seeds. */
export function steeringEffectVsKlSql(runId: string | null, stage = DEFAULT_STAGES.steering): string {
  return `WITH ${steeringOverSeedsCtes(runId, ['effect', 'kl'], stage)}
SELECT e.arch, e.beta, e.k, e.rule, e.alpha, e.n_seeds,
       e.mean AS effect, e.lo AS effect_lo, e.hi AS effect_hi,
       kl.mean AS kl, kl.lo AS kl_lo, kl.hi AS kl_hi, e.ci
FROM over_seeds e
JOIN over_seeds kl ON kl.metric = 'kl' AND kl.arch = e.arch AND kl.beta IS NOT DISTINCT FROM e.beta
 AND kl.k = e.k AND kl.rule = e.rule AND kl.alpha = e.alpha
WHERE e.metric = 'effect'
ORDER BY e.rule, e.k, e.arch DESC, e.beta NULLS FIRST, e.alpha`;
}

/** Per-latent steering results of the reported run's instances. */
export function steeringLatentsSql(runId: string | null, stage = DEFAULT_STAGES.steering): string {
  return `WITH ${scopeCtes(runId, [stage])},
${runTableCte('steering_latents', 's')}
SELECT ${instanceCols('s')}, ${STEERING_RULE} AS rule,
       CAST(s.alpha AS DOUBLE) AS alpha, s.latent, s.effect, s.consistency, s.kl
FROM s
ORDER BY arch DESC, beta NULLS FIRST, k, rule, alpha, seed, latent`;
}

/**
 * The `paired` table of the reported run's compare stage (one row per comparison g-SAE − TopK,
 * written by that stage; the report only displays it), with each column cast to its contract type
 * (the engine types a project-table column from its first non-null value, so an all-NULL column
 * is VARCHAR). `where` filters on these output columns.
 */
export function pairedSql(runId: string | null, stage = DEFAULT_STAGES.compare, where?: string): string {
  return `WITH ${scopeCtes(runId, [stage])},
${runTableCte('paired', 'pr')},
paired_rows AS (
  SELECT CAST(pr.claim AS INTEGER) AS claim, CAST(pr."check" AS VARCHAR) AS "check",
         CAST(pr.label AS VARCHAR) AS label, coalesce(CAST(pr.rule AS VARCHAR), '') AS rule,
         CAST(pr.better AS VARCHAR) AS better, CAST(pr."primary" AS BOOLEAN) AS "primary",
         CAST(pr.split AS VARCHAR) AS split, CAST(pr.k AS INTEGER) AS k, CAST(pr.beta AS DOUBLE) AS beta,
         CAST(pr.alpha AS DOUBLE) AS alpha, CAST(pr.match_kl AS DOUBLE) AS match_kl,
         CAST(pr.seed AS INTEGER) AS seed, CAST(pr.seeds AS INTEGER) AS seeds,
         CAST(pr.topk AS DOUBLE) AS topk, CAST(pr.gsae AS DOUBLE) AS gsae, CAST(pr.diff AS DOUBLE) AS diff,
         CAST(pr.lo AS DOUBLE) AS lo, CAST(pr.hi AS DOUBLE) AS hi,
         CAST(pr."interval" AS VARCHAR) AS "interval", CAST(pr.n AS INTEGER) AS n, CAST(pr.p AS DOUBLE) AS p,
         CAST(pr.verdict AS VARCHAR) AS verdict, CAST(pr.mde AS DOUBLE) AS mde,
         CAST(pr.is_beta_star AS BOOLEAN) AS is_beta_star,
         CAST(pr.p_holm AS DOUBLE) AS p_holm, CAST(pr.verdict_holm AS VARCHAR) AS verdict_holm,
         CAST(pr.change_rate AS DOUBLE) AS change_rate
  FROM pr
)
SELECT * FROM paired_rows${where ? `\nWHERE ${where}` : ''}
ORDER BY claim, "primary" DESC, "check", rule, alpha NULLS FIRST, match_kl NULLS FIRST, k, split, beta, seed NULLS FIRST`;
}

/** The rows the claims table is made of: every check's aggregate (over seeds) test row at β*. */
export const AT_BETA_STAR = `split = 'test' AND seed IS NULL AND is_beta_star`;

/** The `beta_selection` table of the reported run's compare stage: how β* was chosen per k. */
export function betaSelectionSql(runId: string | null, stage = DEFAULT_STAGES.compare): string {
  return `WITH ${scopeCtes(runId, [stage])},
${runTableCte('beta_selection', 'b')}
SELECT CAST(k AS INTEGER) AS k, CAST(beta AS DOUBLE) AS beta,
       CAST(val_delta_ce_diff AS DOUBLE) AS val_delta_ce_diff,
       CAST(val_delta_ce_lo AS DOUBLE) AS val_delta_ce_lo, CAST(val_delta_ce_hi AS DOUBLE) AS val_delta_ce_hi,
       CAST(change_rate_val AS DOUBLE) AS change_rate_val, CAST(chosen AS BOOLEAN) AS chosen,
       CAST(criterion AS VARCHAR) AS criterion
FROM b
ORDER BY k, beta`;
}

/**
 * A training curve (metrics with a step) of a stage, one row per (arch, k, seed, step), thinned
 * to at most about `maxPoints` evenly spaced points per curve (the last point always kept).
 */
export function curveSql(runId: string | null, stage: string, names: string[], withInstance = true, maxPoints = 200): string {
  const inst = withInstance ? `${instanceCols()},\n         ` : '';
  const outInst = withInstance ? 'arch, beta, k, seed, ' : '';
  return `WITH ${runMetricsCtes(runId, [stage])},
c AS (
  SELECT ${inst}name AS metric, step AS tokens, value,
         row_number() OVER w AS i,
         count(*) OVER w AS n
  FROM run_metrics
  WHERE stage = ${lit(stage)} AND step IS NOT NULL AND name IN (${names.map(lit).join(', ')})
  WINDOW w AS (PARTITION BY CAST(instance AS VARCHAR), name ORDER BY step
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
SELECT ${outInst}metric, tokens, value
FROM c
WHERE (i - 1) % CAST(ceil(n / ${maxPoints}.0) AS BIGINT) = 0 OR i = n
ORDER BY ${outInst}metric, tokens`;
}

/** The compare stage's `interp_summary` (per-SAE automatic interpretability scores, control included). */
export function interpSummarySql(runId: string | null, stage = DEFAULT_STAGES.compare): string {
  return `WITH ${scopeCtes(runId, [stage])},
${runTableCte('interp_summary', 'i')}
SELECT CAST(arch AS VARCHAR) AS arch, CAST(beta AS DOUBLE) AS beta, CAST(k AS INTEGER) AS k, CAST(seed AS INTEGER) AS seed,
       CAST(control AS BOOLEAN) AS control, CAST(mean AS DOUBLE) AS mean, CAST(lo AS DOUBLE) AS lo, CAST(hi AS DOUBLE) AS hi,
       CAST(single_token_frac AS DOUBLE) AS single_token_frac
FROM i
ORDER BY control, k, arch, beta, seed`;
}
