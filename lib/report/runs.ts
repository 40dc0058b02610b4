/**
 * Runs side by side (`npm run compare-runs`), like `dvc exp show` / `params diff` / `metrics diff`:
 * one column per recorded run, rows = the params that differ between them, then the headline
 * numbers of each run: the LM's validation loss, ΔCE per arch, β and k (mean over seeds), and the
 * verdicts of the compare stage's primary aggregate test rows at β*. Every number is that run's:
 * for an instance the run found cached, the numbers of the run that computed it (lib/report/sql.ts).
 */
import type { DownstreamMetric } from '../eval/metricNames.ts';
import type { ReportDb, Row } from './db.ts';
import { AT_BETA_STAR, DEFAULT_STAGES, lit, pairedSql, runMetricsCtes } from './sql.ts';

export interface RunColumn {
  run_id: string;
  started: string | null;
  status: string | null;
  git_commit: string | null;
}

export interface CompareRow {
  /** 'run', 'param' or 'metric'. */
  kind: 'run' | 'param' | 'metric';
  name: string;
  /** One value per run, in the order of `runs` (null: the run has no such value). */
  values: Array<string | number | boolean | null>;
}

export interface RunsComparison {
  runs: RunColumn[];
  rows: CompareRow[];
}

/** Every leaf of a params object as a dotted key (arrays are leaves). */
export function flattenParams(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenParams(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = value;
  }
  return out;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * Resolve run ids (exact or a unique prefix); none given: the last `last` runs that finished ok,
 * oldest first.
 */
export async function selectRuns(db: ReportDb, names: string[], last = 10): Promise<string[]> {
  const all = (await db.query('SELECT run_id, status FROM runs ORDER BY started, run_id')) as Array<{ run_id: string; status: string }>;
  if (names.length === 0) return all.filter((r) => r.status === 'ok').slice(-last).map((r) => r.run_id);
  return names.map((n) => {
    const hits = all.filter((r) => r.run_id === n || r.run_id.startsWith(n));
    const exact = hits.find((r) => r.run_id === n);
    if (exact) return exact.run_id;
    if (hits.length === 1) return hits[0].run_id;
    throw new Error(hits.length === 0 ? `no recorded run matches "${n}" (npm run query -- "select run_id, status from runs")` : `"${n}" matches ${hits.length} runs: ${hits.map((h) => h.run_id).join(', ')}`);
  });
}

const fmt = (v: unknown): string | number | null => (v === null || v === undefined ? null : typeof v === 'number' ? Number(v.toPrecision(5)) : String(v));

export async function compareRuns(db: ReportDb, runIds: string[], stages = DEFAULT_STAGES): Promise<RunsComparison> {
  const runs: RunColumn[] = [];
  const params: Array<Record<string, unknown>> = [];
  for (const id of runIds) {
    const [r] = await db.query(`SELECT run_id, CAST(started AS VARCHAR) AS started, status, git_commit, CAST(params AS VARCHAR) AS params FROM runs WHERE run_id = ${lit(id)}`);
    if (!r) throw new Error(`no recorded run ${id}`);
    runs.push({ run_id: String(r.run_id), started: r.started as string | null, status: r.status as string | null, git_commit: r.git_commit as string | null });
    params.push(flattenParams(r.params ? JSON.parse(String(r.params)) : {}));
  }
  const rows: CompareRow[] = [
    { kind: 'run', name: 'started', values: runs.map((r) => r.started?.slice(0, 19) ?? null) },
    { kind: 'run', name: 'status', values: runs.map((r) => r.status) },
    { kind: 'run', name: 'git commit', values: runs.map((r) => r.git_commit?.slice(0, 10) ?? null) },
  ];
  const keys = [...new Set(params.flatMap((p) => Object.keys(p)))].sort();
  for (const key of keys) {
    const vals = params.map((p) => p[key]);
    if (vals.every((v) => same(v, vals[0]))) continue;
    rows.push({ kind: 'param', name: key, values: vals.map((v) => (v === undefined ? null : typeof v === 'object' ? JSON.stringify(v) : (v as string | number | boolean))) });
  }

  // Headline metrics, one map per run: row name -> value.
  const perRun: Array<Map<string, string | number | null>> = [];
  const order: string[] = [];
  const put = (m: Map<string, string | number | null>, name: string, v: string | number | null): void => {
    if (!order.includes(name)) order.push(name);
    m.set(name, v);
  };
  for (const id of runIds) {
    const m = new Map<string, string | number | null>();
    const lm = await db.query(`WITH ${runMetricsCtes(id, [stages.lm])}
SELECT value FROM run_metrics WHERE name = 'final_val_loss' AND step IS NULL`);
    put(m, 'LM val loss', fmt(lm[0]?.value));
    const dce = await db.query(`WITH ${runMetricsCtes(id, [stages.downstream])}
SELECT json_extract_string(instance, '$.arch') AS arch, CAST(json_extract_string(instance, '$.beta') AS DOUBLE) AS beta,
       CAST(json_extract_string(instance, '$.k') AS INTEGER) AS k, avg(value) AS v, count(*) AS n
FROM run_metrics WHERE name = ${lit('delta_ce' satisfies DownstreamMetric)} AND step IS NULL
GROUP BY arch, beta, k ORDER BY k, arch DESC, beta NULLS FIRST`);
    for (const r of dce) put(m, `ΔCE ${r.arch}${r.beta === null ? '' : ` β=${r.beta}`} k=${r.k}${Number(r.n) > 1 ? ` (${r.n} seeds)` : ''}`, fmt(r.v));
    if (await db.hasRelation('paired')) {
      const verdicts = (await db.query(pairedSql(id, stages.compare, `"primary" AND ${AT_BETA_STAR}`))) as Row[];
      for (const r of verdicts) {
        const what = `claim ${r.claim} ${r.check}${r.rule ? ` ${r.rule}` : ''} k=${r.k}`;
        const diff = r.diff === null ? 'no estimate' : `diff ${fmt(r.diff)} [${fmt(r.lo)}, ${fmt(r.hi)}]`;
        put(m, what, `${r.verdict} (β*=${r.beta}; ${diff})`);
      }
    }
    perRun.push(m);
  }
  for (const name of order) rows.push({ kind: 'metric', name, values: perRun.map((m) => m.get(name) ?? null) });
  return { runs, rows };
}

function cellText(v: string | number | boolean | null): string {
  return v === null ? '–' : String(v);
}

/** The comparison as a grid: header = 'run' + run ids; one line per row. */
function grid(c: RunsComparison): string[][] {
  return [['', ...c.runs.map((r) => r.run_id)], ...c.rows.map((r) => [r.kind === 'param' ? `param ${r.name}` : r.name, ...r.values.map(cellText)])];
}

export function formatText(c: RunsComparison): string {
  const g = grid(c);
  const widths = g[0].map((_, i) => Math.max(...g.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd();
  const params = c.rows.filter((r) => r.kind === 'param').length;
  return [line(g[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...g.slice(1).map(line), `(${c.runs.length} runs; ${params === 0 ? 'same params' : `${params} param(s) differ`})`].join('\n');
}

export function formatMarkdown(c: RunsComparison): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const g = grid(c);
  return [`| ${g[0].map(esc).join(' | ')} |`, `| ${g[0].map(() => '---').join(' | ')} |`, ...g.slice(1).map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export function formatCsv(c: RunsComparison): string {
  const cell = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const rows = [['kind', 'name', ...c.runs.map((r) => r.run_id)], ...c.rows.map((r) => [r.kind, r.name, ...r.values.map((v) => (v === null ? '' : String(v)))])];
  return rows.map((r) => r.map(cell).join(',')).join('\n');
}

export function formatJson(c: RunsComparison): string {
  return JSON.stringify(c, null, 1);
}
