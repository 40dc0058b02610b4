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
}

export const DEFAULT_STAGES: StageNames = {
  tokenize: 'tokenize',
  lm: 'lm',
  collect: 'collect',
  sae: 'sae',
  downstream: 'downstream',
  steering: 'steering',
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

/** The instance fields every matrix stage carries, extracted from the instance JSON. */
export function instanceCols(alias = ''): string {
  const a = alias ? `${alias}.` : '';
  return [
    `json_extract_string(${a}instance, '$.arch') AS arch`,
    `CAST(json_extract_string(${a}instance, '$.k') AS INTEGER) AS k`,
    `CAST(json_extract_string(${a}instance, '$.seed') AS INTEGER) AS seed`,
  ].join(',\n         ');
}

/**
 * Aggregation over seeds, appended after a CTE `per_seed(metric, variant, arch, k, alpha, seed,
 * value, lo, hi)` where lo/hi are the stored per-seed bootstrap bounds (NULL if absent).
 * Output: metric, variant, arch, k, alpha, n_seeds, mean, sd, lo, hi, ci.
 *  - n_seeds ≥ 2: mean ± t_{0.975, n−1} · sd / √n over the per-seed values (ci = 't over seeds');
 *  - n_seeds = 1: the stored bootstrap bounds of that seed (ci = 'bootstrap, 1 seed'), else none.
 */
function seedAggregateTail(): string {
  return `${T_TABLE_CTE},
agg AS (
  SELECT metric, variant, arch, k, alpha,
         count(value) AS n_seeds,
         avg(value) AS mean,
         stddev_samp(value) AS sd,
         min(lo) AS lo1,
         max(hi) AS hi1
  FROM per_seed
  WHERE value IS NOT NULL
  GROUP BY metric, variant, arch, k, alpha
)
SELECT metric, variant, arch, k, alpha, n_seeds, mean, sd,
       CASE WHEN n_seeds >= 2 THEN mean - coalesce(t975.t, 1.96) * sd / sqrt(n_seeds)
            WHEN n_seeds = 1 THEN lo1 END AS lo,
       CASE WHEN n_seeds >= 2 THEN mean + coalesce(t975.t, 1.96) * sd / sqrt(n_seeds)
            WHEN n_seeds = 1 THEN hi1 END AS hi,
       CASE WHEN n_seeds >= 2 THEN 't over seeds'
            WHEN lo1 IS NOT NULL AND hi1 IS NOT NULL THEN 'bootstrap, 1 seed'
            ELSE 'none' END AS ci
FROM agg LEFT JOIN t975 ON t975.df = agg.n_seeds - 1
ORDER BY metric, variant, arch, k, alpha`;
}

/**
 * Final (step IS NULL) metrics of a matrix stage, summarised over seeds per (arch, k).
 * `bases` are metric names; the stored `<name>_lo` / `<name>_hi` are picked up automatically.
 * Names ending in `_gradfree` become metric = the name without the suffix, variant = 'gradient-free'.
 */
export function finalMetricsOverSeedsSql(runId: string | null, stage: string, bases: string[]): string {
  const inList = bases.map(lit).join(', ');
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
    AND regexp_replace(name, '_(lo|hi)$', '') IN (${inList})
),
per_seed AS (
  SELECT regexp_replace(base, '_gradfree$', '') AS metric,
         CASE WHEN base LIKE '%\\_gradfree' ESCAPE '\\' THEN 'gradient-free' ELSE '' END AS variant,
         arch, k, CAST(NULL AS DOUBLE) AS alpha, seed,
         max(value) FILTER (WHERE part = 'value') AS value,
         max(value) FILTER (WHERE part = 'lo') AS lo,
         max(value) FILTER (WHERE part = 'hi') AS hi
  FROM m
  GROUP BY base, arch, k, seed
),
${seedAggregateTail()}`;
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

/** steering_summary of the reported run's instances, summarised over seeds per (arch, k, alpha). */
export function steeringOverSeedsSql(
  runId: string | null,
  metrics: Array<'effect' | 'consistency' | 'kl'> = ['effect', 'consistency', 'kl'],
  stage = DEFAULT_STAGES.steering,
): string {
  const parts = metrics.map(
    (m) => `  SELECT ${lit(m)} AS metric, '' AS variant, ${instanceCols('s')}, CAST(s.alpha AS DOUBLE) AS alpha,
         s.${m}_mean AS value, s.${m}_lo AS lo, s.${m}_hi AS hi
  FROM s`,
  );
  // The seed column is needed by the tail but is produced by instanceCols; reorder for the tail.
  return `WITH ${scopeCtes(runId, [stage])},
${runTableCte('steering_summary', 's')},
per_seed_raw AS (
${parts.join('\n  UNION ALL\n')}
),
per_seed AS (
  SELECT metric, variant, arch, k, alpha, seed, value, lo, hi FROM per_seed_raw
),
${seedAggregateTail()}`;
}

/** Per-latent steering results of the reported run's instances. */
export function steeringLatentsSql(runId: string | null, stage = DEFAULT_STAGES.steering): string {
  return `WITH ${scopeCtes(runId, [stage])},
${runTableCte('steering_latents', 's')}
SELECT ${instanceCols('s')},
       CAST(s.alpha AS DOUBLE) AS alpha, s.latent, s.effect, s.consistency, s.kl
FROM s
ORDER BY arch, k, alpha, seed, latent`;
}

/**
 * A training curve (metrics with a step) of a stage, one row per (arch, k, seed, step), thinned
 * to at most about `maxPoints` evenly spaced points per curve (the last point always kept).
 */
export function curveSql(runId: string | null, stage: string, names: string[], withInstance = true, maxPoints = 200): string {
  const inst = withInstance ? `${instanceCols()},\n         ` : '';
  const outInst = withInstance ? 'arch, k, seed, ' : '';
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
