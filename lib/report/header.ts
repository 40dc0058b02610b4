/** The run header: which run, its params, environment, fingerprints and time per stage. */
import type { ReportDb, Row } from './db.ts';
import { DEFAULT_STAGES, lit, type StageNames } from './sql.ts';
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

export function headerSql(runId: string | undefined, stages: StageNames) {
  const which = runId ? `WHERE run_id = ${lit(runId)}` : 'ORDER BY started DESC NULLS LAST LIMIT 1';
  const run = `SELECT run_id, CAST(started AS VARCHAR) AS started, CAST(finished AS VARCHAR) AS finished,
       git_commit, status, CAST(params AS VARCHAR) AS params,
       CAST(overrides AS VARCHAR) AS overrides, CAST(env AS VARCHAR) AS env
FROM runs
${which}`;
  const runIdExpr = runId ? lit(runId) : `(SELECT run_id FROM runs ORDER BY started DESC NULLS LAST LIMIT 1)`;
  const stagesSql = `SELECT stage,
       count(*) AS instances,
       count(*) FILTER (WHERE status = 'ran') AS ran,
       count(*) FILTER (WHERE status = 'cached') AS cached,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       coalesce(sum(seconds), 0) AS seconds
FROM stage_runs
WHERE run_id = ${runIdExpr}
GROUP BY stage`;
  const instances = `SELECT stage, CAST(instance AS VARCHAR) AS instance, fingerprint, status, seconds, reason
FROM stage_runs
WHERE run_id = ${runIdExpr}
ORDER BY stage, CAST(instance AS VARCHAR)`;
  const facts = `SELECT stage, name, value
FROM latest_metrics
WHERE stage IN (${[stages.tokenize, stages.lm, stages.collect].map(lit).join(', ')}) AND step IS NULL
ORDER BY stage, name`;
  return { run, stages: stagesSql, instances, facts };
}

/** Pipeline order of the known stages; unknown stages keep their alphabetical order after them. */
function stageOrder(stages: StageNames): (s: string) => number {
  const order = [stages.tokenize, stages.lm, stages.collect, stages.sae, stages.downstream, stages.steering, 'report'];
  return (s) => {
    const i = order.indexOf(s);
    return i < 0 ? order.length : i;
  };
}

export async function readHeader(db: ReportDb, runId?: string, stagesIn: Partial<StageNames> = {}): Promise<RunHeader> {
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
        seconds: Number(r.seconds),
      }))
      .sort((a, b) => ord(a.stage) - ord(b.stage) || a.stage.localeCompare(b.stage));
    instances = (await db.query(sql.instances))
      .map((r) => ({
        stage: String(r.stage),
        instance: String(r.instance ?? '{}'),
        fingerprint: String(r.fingerprint ?? ''),
        status: String(r.status ?? ''),
        seconds: typeof r.seconds === 'number' ? r.seconds : null,
        reason: str(r.reason),
      }))
      .sort((a, b) => ord(a.stage) - ord(b.stage));
  }
  const facts = (await has('latest_metrics'))
    ? (await db.query(sql.facts)).map((r) => ({ stage: String(r.stage), name: String(r.name), value: Number(r.value) }))
    : [];
  const backend = env && typeof env === 'object' && 'backend' in env ? String(env.backend) : null;
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
