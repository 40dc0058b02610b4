/**
 * One lock per store: a second run exits with code 3 and says who holds the lock, or waits with
 * --wait; concurrent runs never corrupt the store (each instance computed once, every entry intact).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { querySql } from '../../pipeline/db.ts';
import { Store } from '../../pipeline/store.ts';
import { cli, fileExists, labelsWith, makeProject, removeProject, stageStatuses, startCli, takeTrace, waitFor } from './helpers.ts';

describe('store lock and concurrent runs', () => {
  let root: string;
  afterEach(async () => {
    await removeProject(root);
  });

  it('a second run exits 3 naming the holder; with --wait it runs after the first, finding everything cached', async () => {
    root = await makeProject('toy');
    const first = startCli(root, ['run', 'slow', '--set', 'slow.seconds=60']);
    await waitFor(() => fileExists(path.join(root, 'slow.started')), 'the first run to be inside a stage');

    const refused = await cli(root, ['run', 'slow', '--set', 'slow.seconds=60']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(new RegExp(`another pipeline run \\(pid ${first.child.pid}, started [^)]+\\) holds .*lock`));

    const waiting = startCli(root, ['run', 'slow', '--set', 'slow.seconds=60', '--wait', '60']);
    await waitFor(() => waiting.output().stderr.includes('waiting for another pipeline run'), 'the second run to wait');
    expect(first.child.exitCode).toBe(null); // the first run is still going: the wait is real
    await fs.writeFile(path.join(root, 'slow.release'), '');
    const [a, b] = await Promise.all([first.done, waiting.done]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toContain('nothing to run: all 2 instances cached');
    const { rows } = await querySql(path.join(root, 'results/results.duckdb'), 'SELECT status FROM runs ORDER BY started');
    expect(rows).toEqual([['ok'], ['ok']]);
  });

  it('two runs started together on an empty store: each instance computed once, the store intact', async () => {
    root = await makeProject('toy');
    const runs = [startCli(root, ['run', 'report', '--wait', '120']), startCli(root, ['run', 'report', '--wait', '120'])];
    const results = await Promise.all(runs.map((r) => r.done));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(await takeTrace(root)).toEqual([
      'evaluate {"k":1,"seed":0}',
      'evaluate {"k":2,"seed":0}',
      'report',
      'source',
      'train k=1 seed=0',
      'train k=2 seed=0',
    ]);
    const store = new Store(path.join(root, '.cache'));
    const fps = await fs.readdir(path.join(root, '.cache/objects'));
    expect(fps).toHaveLength(6);
    for (const fp of fps) expect((await store.verify(fp)).ok).toBe(true);
    expect(await fileExists(path.join(root, '.cache/lock'))).toBe(false);
    const { rows } = await querySql(path.join(root, 'results/results.duckdb'), 'SELECT run_id FROM runs ORDER BY started');
    expect(rows).toHaveLength(2);
    const statuses = await Promise.all(rows.map((r) => stageStatuses(root, r[0] as string)));
    expect(statuses.map((s) => labelsWith(s, 'ran').length)).toEqual([6, 0]);
  });
});
