/**
 * results.duckdb (runs, stage_runs, metrics, latest_metrics, project tables), failure handling
 * (exit 1, last log lines, dependents skipped, independent instances finish), query and dag.
 * Uses the programmatic API for the first run to cover it too.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { querySql } from '../../pipeline/db.ts';
import { runPipeline } from '../../pipeline/index.ts';
import { cli, labelsWith, makeProject, removeProject, stageStatuses } from './helpers.ts';

describe('run store and failures', () => {
  let root: string;
  let db: string;
  const q = async (sql: string): Promise<unknown[][]> => (await querySql(db, sql)).rows;

  beforeAll(async () => {
    root = await makeProject('toy');
    db = path.join(root, 'results/results.duckdb');
  });
  afterAll(async () => {
    await removeProject(root);
  });

  it('runPipeline runs the targets and what they need, and records runs, stage runs and metrics', async () => {
    const lines: string[] = [];
    const summary = await runPipeline({ root, targets: ['report'], jobs: 2, progress: 'plain', out: (l) => lines.push(l), err: (l) => lines.push(l) });
    expect(summary.exitCode, lines.join('\n')).toBe(0);
    expect(summary.instances.map((i) => `${i.label}:${i.status}`)).toEqual([
      'source:ran',
      'train[k=1,seed=0]:ran',
      'train[k=2,seed=0]:ran',
      'evaluate[k=1,seed=0]:ran',
      'evaluate[k=2,seed=0]:ran',
      'report:ran',
    ]);
    expect(await q('SELECT status, backend, env::VARCHAR FROM runs')).toEqual([['ok', 'cpu', '{"backend":"cpu"}']]);
    expect(await q(`SELECT count(*)::INT, min(reason) FROM stage_runs WHERE status = 'ran'`)).toEqual([[6, 'never run']]);
    expect(await q(`SELECT step::INT, round(value, 4) FROM metrics WHERE stage = 'train' AND (instance->>'k') = '2' ORDER BY step`)).toEqual([
      [1, 0.8333],
      [2, 0.4167],
      [3, 0.2778],
      [4, 0.2083],
      [5, 0.1667],
    ]);
    expect(await q(`SELECT instance::VARCHAR, item, value, ok FROM toy_items ORDER BY instance::VARCHAR, item`)).toEqual([
      ['{"k":1,"seed":0}', 'a', 10, true],
      ['{"k":1,"seed":0}', 'b', 1, false],
      ['{"k":2,"seed":0}', 'a', 7.5, true],
      ['{"k":2,"seed":0}', 'b', 2, false],
    ]);
    // The instance's log is kept under the run's folder.
    const log = await fs.readFile(path.join(root, 'results/runs', summary.runId!, 'logs', 'train[k=1,seed=0].log'), 'utf8');
    expect(log).toContain('trained k=1 seed=0 on 5 numbers with backend cpu');
  });

  it('a failing instance: exit 1, its last log lines, dependents skipped, independent instances finish; latest_metrics keeps earlier numbers', async () => {
    const r = await cli(root, ['run', 'report', '--set', 'train.fail_k=2', '--set', 'train.lr=0.3', '--jobs', '2']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ train\[k=2,seed=0\] failed after [\d.]+s: train k=2 fails on purpose/);
    // The message is one line on the console; the stack trace is in the instance's log only.
    expect(r.stdout).toMatch(/last lines of .*train\[k=2,seed=0\]\.log \(stack trace there\):\n/);
    expect(r.stdout).not.toMatch(/^\s+at /m);
    const runId = /^run (\S+):/m.exec(r.stdout)![1];
    const log = await fs.readFile(path.join(root, 'results/runs', runId, 'logs', 'train[k=2,seed=0].log'), 'utf8');
    expect(log).toMatch(/Error: train k=2 fails on purpose\n\s+at /);
    const statuses = await stageStatuses(root);
    expect(statuses).toEqual({
      source: 'cached',
      'train[k=1,seed=0]': 'ran',
      'train[k=2,seed=0]': 'failed',
      'evaluate[k=1,seed=0]': 'ran',
      'evaluate[k=2,seed=0]': 'skipped',
      report: 'skipped',
    });
    expect(await q(`SELECT reason FROM stage_runs WHERE label = 'report' AND status = 'skipped'`)).toEqual([['input evaluate[k=2,seed=0] was skipped']]);
    expect(await q(`SELECT status FROM runs ORDER BY started DESC LIMIT 1`)).toEqual([['failed']]);
    expect(await q(`SELECT count(*)::INT FROM metrics JOIN stage_runs s USING (run_id, stage) WHERE s.status = 'failed' AND metrics.instance::VARCHAR = s.instance::VARCHAR`)).toEqual([[5]]);
    // The failed run logged metrics for train[k=2] before failing: latest_metrics ignores them;
    // evaluate[k=2] was not recomputed, so its latest score is still the first run's.
    expect(await q(`SELECT round(value, 4) FROM latest_metrics WHERE stage = 'train' AND (instance->>'k') = '2' AND step = 1`)).toEqual([[0.8333]]);
    expect(await q(`SELECT value FROM latest_metrics WHERE stage = 'evaluate' AND (instance->>'k') = '2'`)).toEqual([[7.5]]);
    expect(await q(`SELECT count(*)::INT FROM latest_metrics WHERE stage = 'evaluate'`)).toEqual([[2]]);
  });

  it('query prints a table (and JSON with --json); dag prints Mermaid and DOT', async () => {
    const table = await cli(root, ['query', "SELECT label, status FROM stage_runs WHERE status = 'failed'"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/label\s+status\n-+\s+-+\ntrain\[k=2,seed=0\]\s+failed\n\(1 row\)/);
    const json = await cli(root, ['query', '--json', "SELECT count(*) AS n FROM runs"]);
    expect(JSON.parse(json.stdout)).toEqual([{ n: '2' }]);
    const bad = await cli(root, ['query', 'SELECT * FROM no_such_table']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('no_such_table');

    const mermaid = await cli(root, ['dag']);
    expect(mermaid.stdout).toContain('flowchart LR');
    expect(mermaid.stdout).toContain('train["train [k × seed] (2 instances)"]');
    expect(mermaid.stdout).toContain('evaluate -->|"scores (all)"| report');
    const dot = await cli(root, ['dag', '--dot']);
    expect(dot.stdout).toMatch(/^digraph pipeline \{/);
    expect(dot.stdout).toContain('"train" -> "evaluate" [label="model"];');
  });

  it('a target filter selects matching instances only', async () => {
    const r = await cli(root, ['run', '--dry-run', 'evaluate[k=1]']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter((l) => /^(cached|to run)/.test(l)).map((l) => l.split(/\s+/)[l.startsWith('to run') ? 2 : 1])).toEqual([
      'source',
      'train[k=1,seed=0]',
      'evaluate[k=1,seed=0]',
    ]);
    const unknown = await cli(root, ['run', 'nosuchstage']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown stage "nosuchstage" (stages: source, double, train, evaluate, report, slow)');
    expect(labelsWith(await stageStatuses(root), 'failed')).toEqual(['train[k=2,seed=0]']);
  });
});

describe('RunStore', () => {
  it('project tables get engine columns, and columns that appear later are added', async () => {
    const dir = await makeProject('parallel');
    try {
      const { RunStore } = await import('../../pipeline/db.ts');
      const dbPath = path.join(dir, 'results/results.duckdb');
      const logged: string[] = [];
      const store = new RunStore(dbPath, path.join(dir, 'records.jsonl'), 'run-1', (m) => logged.push(m));
      store.table('per_item', 's', { k: 1 }, [{ item: 'a', score: 0.5 }]);
      await store.flush();
      store.table('per_item', 's', { k: 2 }, [{ item: 'b', score: 1, extra: true, note: null }]);
      store.metrics('s', { k: 2 }, [{ name: 'loss', value: Number.NaN, step: 3 }]);
      await store.flush();
      const { columns, rows } = await querySql(dbPath, 'SELECT * FROM per_item ORDER BY item');
      expect(columns).toEqual(['run_id', 'stage', 'instance', 'item', 'score', 'extra', 'note']);
      expect(rows).toEqual([
        ['run-1', 's', '{"k":1}', 'a', 0.5, null, null],
        ['run-1', 's', '{"k":2}', 'b', 1, true, null],
      ]);
      expect((await querySql(dbPath, 'SELECT name, step::INT, isnan(value) FROM metrics')).rows).toEqual([['loss', 3, true]]);
      // A record the database rejects is reported and dropped; the rest of its batch is written.
      store.table('per_item', 's', { k: 3 }, [{ item: 'c', score: 'not a number' }]);
      store.metrics('s', { k: 3 }, [{ name: 'loss', value: 1, step: null }]);
      await store.flush();
      expect(logged.join('\n')).toMatch(/results\.duckdb rejected a table record \(.*\); it is kept in .*records\.jsonl/);
      expect((await querySql(dbPath, 'SELECT count(*)::INT FROM metrics')).rows).toEqual([[2]]);
      expect((await querySql(dbPath, 'SELECT count(*)::INT FROM per_item')).rows).toEqual([[2]]);
      const lines = (await fs.readFile(path.join(dir, 'records.jsonl'), 'utf8')).trim().split('\n');
      expect(lines).toHaveLength(5);
    } finally {
      await removeProject(dir);
    }
  });

  it('commitPending: batches one after the other, each checkpointed and closed; a run row written three times in a batch is one row', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'runstore-'));
    try {
      const { RunStore } = await import('../../pipeline/db.ts');
      const dbPath = path.join(dir, 'results.duckdb');
      const store = new RunStore(dbPath, path.join(dir, 'records.jsonl'), 'run-1', () => undefined);
      const t0 = new Date('2026-12-04T10:00:00Z');
      const row = { run_id: 'run-1', started: t0, finished: null, git_commit: null, params: {}, overrides: {}, env: {}, status: 'running' as const, command: 'run', jobs: 1 };
      store.run(row);
      store.run({ ...row, git_commit: 'c'.repeat(40) });
      const stageRun = (stage: string) => ({ stage, instance: {}, label: stage, fingerprint: 'ab'.repeat(32), status: 'ran' as const, seconds: 1, reason: 'never run', started: t0, finished: t0 });
      store.stageRun(stageRun('a'));
      const first = store.commitPending();
      store.run({ ...row, git_commit: 'c'.repeat(40), status: 'ok', finished: t0 });
      store.stageRun(stageRun('b'));
      await first;
      await store.commitPending(); // opens the file only once the first batch's connection is closed
      expect(store.pendingCount).toBe(0);
      await store.closed();
      await expect(fs.stat(`${dbPath}.wal`)).rejects.toThrow(); // checkpointed into the file
      expect((await querySql(dbPath, 'SELECT status, git_commit FROM runs')).rows).toEqual([['ok', 'c'.repeat(40)]]);
      expect((await querySql(dbPath, 'SELECT stage FROM stage_runs ORDER BY stage')).rows).toEqual([['a'], ['b']]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('stage_runs rows keep every field; the engine views carry the schema tag, and a view an older engine defined is put back', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'runstore-'));
    try {
      const { ENGINE_SCHEMA, RunStore } = await import('../../pipeline/db.ts');
      const dbPath = path.join(dir, 'results.duckdb');
      const store = new RunStore(dbPath, path.join(dir, 'records.jsonl'), 'run-1', () => undefined);
      const t0 = new Date('2026-12-03T15:00:00.123Z');
      const t1 = new Date('2026-12-03T15:00:02.5Z');
      store.stageRun({ stage: 's', instance: { k: 2, arch: 'gsae' }, label: 's[arch=gsae,k=2]', fingerprint: 'ab'.repeat(32), status: 'ran', seconds: 2.377, reason: 'never run', started: t0, finished: t1 });
      store.stageRun({ stage: 't', instance: {}, label: 't', fingerprint: null, status: 'skipped', seconds: 0, reason: 'input s failed', started: t1, finished: t1 });
      await store.flush();
      const rows = (await querySql(dbPath, `SELECT run_id, stage, instance::VARCHAR, label, fingerprint, status, seconds, reason, strftime(started, '%Y-%m-%d %H:%M:%S.%g'), strftime(finished, '%Y-%m-%d %H:%M:%S.%g') FROM stage_runs ORDER BY stage`)).rows;
      expect(rows).toEqual([
        ['run-1', 's', '{"arch":"gsae","k":2}', 's[arch=gsae,k=2]', 'ab'.repeat(32), 'ran', 2.377, 'never run', '2026-12-03 15:00:00.123', '2026-12-03 15:00:02.500'],
        ['run-1', 't', '{}', 't', null, 'skipped', 0, 'input s failed', '2026-12-03 15:00:02.500', '2026-12-03 15:00:02.500'],
      ]);
      const comments = async (): Promise<unknown[][]> => (await querySql(dbPath, `SELECT view_name, comment FROM duckdb_views() WHERE NOT internal ORDER BY view_name`)).rows;
      const tagged = await comments();
      expect(tagged).toEqual([
        ['current_instances', expect.stringMatching(/^pipeline engine schema [0-9a-f]{16}$/)],
        ['latest_metrics', tagged[0][1]],
      ]);
      // An older engine's view (no tag): the next batch puts the current definition back.
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const inst = await DuckDBInstance.create(dbPath);
      const c = await inst.connect();
      await c.run('CREATE OR REPLACE VIEW latest_metrics AS SELECT 1 AS x');
      c.closeSync();
      inst.closeSync();
      store.stageRun({ stage: 'u', instance: {}, label: 'u', fingerprint: 'cd'.repeat(32), status: 'cached', seconds: 0, reason: '', started: t1, finished: t1 });
      await store.flush();
      expect(await comments()).toEqual(tagged);
      expect((await querySql(dbPath, 'SELECT * FROM latest_metrics')).columns).toEqual(['stage', 'instance', 'name', 'step', 'value', 'run_id', 'run_started', 'fingerprint']);
      expect(ENGINE_SCHEMA.length).toBe(5);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
