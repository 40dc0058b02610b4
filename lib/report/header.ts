/** The run header: which run, its params, environment, fingerprints and time per stage. */
import type { ReportDb, Row } from './db.ts';
import { DEFAULT_STAGES, lit, runLit, runMetricsCtes, type StageNames } from './sql.ts';
import type { RunHeader, StageInstanceRow, StageTime } from './types.ts';

function parseJson(v: unknown): unknown {
  if (typeof v !== 'string') return v ?? null;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

const str = (v: unknown) => (v === null || v === undefined ? null : String(v));

/** The SQL that picks the most recent run (the one reported when no run id is given). */
export const LATEST_RUN_SQL = 'SELECT run_id FROM runs ORDER BY started DESC NULLS LAST, run_id DESC LIMIT 1';

/**
 * The run to report: `runId` if given, else the most recent run in `runs` (by started); null when
 * there is none. Resolved once, so every query of the report embeds the same literal run id.
 */
export async function resolveRunId(db: ReportDb, runId?: string): Promise<string | null> {
  if (runId) return runId;
  if (!(await db.hasRelation('runs'))) return null;
  const rows = await db.query(LATEST_RUN_SQL);
  return rows.length ? String(rows[0].run_id) : null;
}

/** The header's SQL for run `runId` (null: no run; every query is then empty). */
export function headerSql(runId: string | null, stages: StageNames) {
  const which = `WHERE run_id = ${runLit(runId)}`;
  // SELECT * REPLACE keeps working whatever extra columns the engine's runs table has (backend, command, …).
  const run = `SELECT * REPLACE (CAST(started AS VARCHAR) AS started, CAST(finished AS VARCHAR) AS finished,
       CAST(params AS VARCHAR) AS params, CAST(overrides AS VARCHAR) AS overrides, CAST(env AS VARCHAR) AS env)
FROM runs
${which}`;
  const runIdExpr = runLit(runId);
  // Per instance of the run: its status in this run, and the compute time of the latest run that
  // actually ran it with the same fingerprint (a cached instance costs ≈ 0 s now, but took time once).
  const computed = `computed AS (
  SELECT s.stage, CAST(s.instance AS VARCHAR) AS inst, s.fingerprint, s.seconds, s.run_id
  FROM stage_runs s JOIN runs r ON r.run_id = s.run_id
  WHERE s.status = 'ran'
  QUALIFY row_number() OVER (PARTITION BY s.stage, CAST(s.instance AS VARCHAR), s.fingerprint ORDER BY r.started DESC) = 1
)`;
  const instSelect = `SELECT s.stage, CAST(s.instance AS VARCHAR) AS instance, s.fingerprint, s.status, s.seconds, s.reason,
       c.seconds AS compute_seconds, c.run_id AS computed_in
FROM stage_runs s
LEFT JOIN computed c ON c.stage = s.stage AND c.inst = CAST(s.instance AS VARCHAR) AND c.fingerprint = s.fingerprint
WHERE s.run_id = ${runIdExpr}`;
  const instances = `WITH ${computed}
${instSelect}
ORDER BY s.stage, CAST(s.instance AS VARCHAR)`;
  const stagesSql = `WITH ${computed},
inst AS (
${instSelect}
)
SELECT stage,
       count(*) AS instances,
       count(*) FILTER (WHERE status = 'ran') AS ran,
       count(*) FILTER (WHERE status = 'cached') AS cached,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       coalesce(sum(seconds), 0) AS seconds,
       coalesce(sum(compute_seconds), 0) AS compute_seconds
FROM inst
GROUP BY stage`;
  const factStages = [stages.tokenize, stages.lm, stages.collect];
  const facts = `WITH ${runMetricsCtes(runId, factStages)}
SELECT stage, name, value
FROM run_metrics
WHERE stage IN (${factStages.map(lit).join(', ')}) AND step IS NULL
ORDER BY stage, name`;
  return { run, stages: stagesSql, instances, facts };
}

/** Pipeline order of the known stages; unknown stages keep their alphabetical order after them. */
function stageOrder(stages: StageNames): (s: string) => number {
  const order = [stages.tokenize, stages.lm, stages.collect, stages.sae, stages.downstream, stages.steering, stages.compare, 'report'];
  return (s) => {
    const i = order.indexOf(s);
    return i < 0 ? order.length : i;
  };
}

/** The header of run `runId` (as resolved by resolveRunId). */
export async function readHeader(db: ReportDb, runId: string | null, stagesIn: Partial<StageNames> = {}): Promise<RunHeader> {
  const stages = { ...DEFAULT_STAGES, ...stagesIn };
  const sql = headerSql(runId, stages);
  const has = async (t: string) => db.hasRelation(t);
  const runRows: Row[] = (await has('runs')) ? await db.query(sql.run) : [];
  const run = runRows[0] ?? {};
  const env = (parseJson(run.env) ?? {}) as Record<string, unknown>;
  const ord = stageOrder(stages);
  let stageTimes: StageTime[] = [];
  let instances: StageInstanceRow[] = [];
  if (runRows.length && (await has('stage_runs'))) {
    stageTimes = (await db.query(sql.stages))
      .map((r) => ({
        stage: String(r.stage),
        instances: Number(r.instances),
        ran: Number(r.ran),
        cached: Number(r.cached),
        failed: Number(r.failed),
        skipped: Number(r.skipped),
        seconds: Number(r.seconds),
        computeSeconds: Number(r.compute_seconds),
      }))
      .sort((a, b) => ord(a.stage) - ord(b.stage) || a.stage.localeCompare(b.stage));
    instances = (await db.query(sql.instances))
      .map((r) => ({
        stage: String(r.stage),
        instance: String(r.instance ?? '{}'),
        fingerprint: String(r.fingerprint ?? ''),
        status: String(r.status ?? ''),
        seconds: typeof r.seconds === 'number' ? r.seconds : null,
        computeSeconds: typeof r.compute_seconds === 'number' ? r.compute_seconds : null,
        computedIn: str(r.computed_in),
        reason: str(r.reason),
      }))
      .sort((a, b) => ord(a.stage) - ord(b.stage));
  }
  const facts = runRows.length && (await has('metrics')) && (await has('stage_runs'))
    ? (await db.query(sql.facts)).map((r) => ({ stage: String(r.stage), name: String(r.name), value: Number(r.value) }))
    : [];
  const backend = run.backend != null ? String(run.backend) : env && typeof env === 'object' && 'backend' in env ? String(env.backend) : null;
  return {
    runId: str(run.run_id),
    started: str(run.started),
    finished: str(run.finished),
    gitCommit: str(run.git_commit),
    status: str(run.status),
    params: parseJson(run.params),
    overrides: parseJson(run.overrides),
    env: env && typeof env === 'object' ? env : {},
    backend,
    stageTimes,
    instances,
    facts,
    sql,
  };
}
