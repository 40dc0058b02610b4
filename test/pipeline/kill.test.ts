/**
 * SIGKILL during a stage leaves the store consistent: nothing of the attempt is committed, the stale
 * lock and the temp attempt are cleared by the next run, which completes (resuming from the stage's
 * own checkpoint in its scratch dir).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../../pipeline/store.ts';
import { cli, fileExists, makeProject, processAlive, removeProject, stageStatuses, startCli, takeTrace, waitFor } from './helpers.ts';

async function objects(root: string): Promise<string[]> {
  return fs.readdir(path.join(root, '.cache/objects')).catch(() => []);
}

async function labelsInStore(root: string): Promise<string[]> {
  const store = new Store(path.join(root, '.cache'));
  const out: string[] = [];
  for (const fp of await objects(root)) {
    const v = await store.verify(fp);
    expect(v.ok, `object ${fp} verifies`).toBe(true);
    if (v.ok) out.push(v.manifest.label);
  }
  return out.sort();
}

describe('SIGKILL during a stage', () => {
  let root: string;
  afterEach(async () => {
    await removeProject(root);
  });

  it('killing the whole pipeline run commits nothing of the stage; the rerun clears the lock and completes', async () => {
    root = await makeProject('toy');
    const run = startCli(root, ['run', 'slow', '--set', 'slow.seconds=60']);
    const marker = path.join(root, 'slow.started');
    await waitFor(() => fileExists(marker), 'the slow stage to start');
    const stagePid = Number(await fs.readFile(marker, 'utf8'));
    expect(await labelsInStore(root)).toEqual(['source']);

    run.child.kill('SIGKILL');
    const killed = await run.done;
    expect(killed.signal).toBe('SIGKILL');
    // The stage's process notices its parent is gone and stops on its own.
    await waitFor(() => !processAlive(stagePid), 'the orphaned stage process to exit', 20_000);

    expect(await fileExists(path.join(root, '.cache/lock'))).toBe(true);
    expect(await labelsInStore(root)).toEqual(['source']);
    expect((await fs.readdir(path.join(root, '.cache/tmp'))).length).toBe(1); // the uncommitted attempt

    const rerun = await cli(root, ['run', 'slow', '--set', 'slow.seconds=60']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toMatch(/cleared a stale lock .* left by pid \d+/);
    expect(rerun.stderr).toMatch(/removed 1 uncommitted attempt/);
    expect(await labelsInStore(root)).toEqual(['slow', 'source']);
    expect(await fs.readdir(path.join(root, '.cache/tmp'))).toEqual([]);
    // Second attempt of the same fingerprint found the first attempt's checkpoint (and skipped the wait).
    expect(await fs.readFile(path.join(root, 'results/slow/slow.txt'), 'utf8')).toBe('attempts=2\n');
    // A partial output written before the kill is not what was committed: the commit is the full new attempt.
    expect(await fs.readdir(path.join(root, 'results/slow'))).toEqual(['partial.txt', 'slow.txt']);
    expect(await fs.readdir(path.join(root, '.cache/scratch'))).toEqual([]);
    expect(await takeTrace(root)).toEqual(['slow attempt 1', 'slow attempt 2', 'source']);
  });

  it('killing only the stage process fails that instance, commits nothing, and the rerun completes', async () => {
    root = await makeProject('toy');
    const run = startCli(root, ['run', 'slow', '--set', 'slow.seconds=60']);
    const marker = path.join(root, 'slow.started');
    await waitFor(() => fileExists(marker), 'the slow stage to start');
    process.kill(Number(await fs.readFile(marker, 'utf8')), 'SIGKILL');
    const r = await run.done;
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('✗ slow failed');
    expect(r.stdout).toContain('killed by SIGKILL');
    expect(r.stdout).toContain('slow: waiting'); // the last lines of the instance's log
    expect((await stageStatuses(root)).slow).toBe('failed');
    expect(await labelsInStore(root)).toEqual(['source']);
    expect(await fileExists(path.join(root, '.cache/lock'))).toBe(false);

    const rerun = await cli(root, ['run', 'slow', '--set', 'slow.seconds=60']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(await fs.readFile(path.join(root, 'results/slow/slow.txt'), 'utf8')).toBe('attempts=2\n');
    expect(await labelsInStore(root)).toEqual(['slow', 'source']);
  });
});
