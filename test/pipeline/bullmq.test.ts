/**
 * Scale-out on one machine (toy project, real CLI, real Redis = redis-server, real S3 API = s3rver):
 *  - a coordinator with two workers (separate processes, separate checkouts and stores) gives the
 *    same fingerprints and output hashes as a local `--jobs 2` run, and records the remote
 *    instances' metrics in its results.duckdb;
 *  - a worker whose code fingerprint differs refuses the job with a clear message;
 *  - Redis unreachable at start: a clear error naming the URL without its password.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { querySql } from '../../pipeline/db.ts';
import { Store } from '../../pipeline/store.ts';
import { type CliProcess, cli, labelsWith, makeProject, removeProject, stageStatuses, startCli, waitFor } from './helpers.ts';
import { type RedisFixture, startRedis } from './redis.ts';
import { type S3Fixture, startS3 } from './s3.ts';

async function entries(root: string): Promise<Record<string, string>> {
  const store = new Store(path.join(root, '.cache'));
  const out: Record<string, string> = {};
  for (const r of await store.refs()) out[`${r.label} ${r.fingerprint}`] = (await store.readManifest(r.fingerprint))!.contentHash;
  return out;
}

describe('BullMQ executor: coordinator + workers sharing an S3 cache', () => {
  let redis: RedisFixture;
  let s3: S3Fixture;
  const roots: string[] = [];
  const workers: CliProcess[] = [];
  const project = async (): Promise<string> => {
    const r = await makeProject('toy');
    roots.push(r);
    return r;
  };
  const startWorker = async (root: string, url: string, env: Record<string, string> = {}): Promise<CliProcess> => {
    const w = startCli(root, ['worker', '--redis', redis.url, '--remote', url], { ...s3.env, ...env });
    workers.push(w);
    await waitFor(() => w.output().stderr.includes(' on queue ') || w.child.exitCode !== null, 'worker ready');
    expect(w.child.exitCode, w.output().stderr).toBeNull();
    return w;
  };

  beforeAll(async () => {
    redis = await startRedis({ password: 'sekret-pw' });
    s3 = await startS3();
  });
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.done));
    for (const r of roots) await removeProject(r);
    await redis?.stop();
    await s3?.stop();
  });

  it('two workers run the instances: same fingerprints and output hashes as a local --jobs 2 run', async () => {
    const url = `s3://${s3.bucket}/same`;
    const local = await project();
    const l = await cli(local, ['run', '--jobs', '2']);
    expect(l.code, l.stderr).toBe(0);

    const w1 = await startWorker(await project(), url);
    const w2 = await startWorker(await project(), url);
    const coord = await project();
    const r = await cli(coord, ['run', '--jobs', '2', '--executor', 'bullmq', '--redis', redis.url, '--remote', url, '--progress', 'plain'], s3.env);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const st = await stageStatuses(coord);
    expect(labelsWith(st, 'ran').length).toBe(Object.keys(st).length);
    expect(await entries(coord)).toEqual(await entries(local));
    const ranOn = [w1, w2].map((w) => (w.output().stderr.match(/committed to the remote/g) ?? []).length);
    expect(ranOn[0] + ranOn[1]).toBe(Object.keys(st).length);
    // Metrics of remote instances are in the coordinator's results.duckdb, like local ones.
    const m = await querySql(path.join(coord, 'results/results.duckdb'), "SELECT count(*) FROM metrics WHERE name = 'score'");
    expect(Number(m.rows[0][0])).toBeGreaterThan(0);
    expect(await fs.readFile(path.join(coord, 'results/double/doubled.txt'), 'utf8')).toBe(await fs.readFile(path.join(local, 'results/double/doubled.txt'), 'utf8'));
    // The Redis password is nowhere in what the coordinator printed or stored.
    expect(r.stdout + r.stderr).not.toContain('sekret-pw');
    const runs = await querySql(path.join(coord, 'results/results.duckdb'), 'SELECT command FROM runs');
    expect(JSON.stringify(runs.rows)).not.toContain('sekret-pw');
    for (const w of [w1, w2]) w.child.kill('SIGTERM');
    await Promise.all([w1.done, w2.done]);
  });

  it('a worker on a different code fingerprint refuses the job with a clear message', async () => {
    const url = `s3://${s3.bucket}/refuse`;
    const other = await project();
    await fs.appendFile(path.join(other, 'stages/source.ts'), '\n// a different commit\n');
    const w = await startWorker(other, url);
    const coord = await project();
    const r = await cli(coord, ['run', 'source', '--set', 'source.n=7', '--executor', 'bullmq', '--redis', redis.url, '--remote', url, '--progress', 'plain'], s3.env);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/refused source: this worker cannot reproduce fingerprint [0-9a-f]{12}.*stages\/source\.ts/);
    expect(w.output().stderr).toContain('refused source');
    w.child.kill('SIGTERM');
    await w.done;
  });

  it('Redis unreachable at start: clear error naming the URL without the password', async () => {
    const coord = await project();
    const r = await cli(coord, ['run', '--executor', 'bullmq', '--redis', 'redis://user:hunter2@127.0.0.1:1', '--remote', `s3://${s3.bucket}/x`], s3.env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('cannot reach Redis at redis://user:***@127.0.0.1:1');
    expect(r.stderr).not.toContain('hunter2');
  });

  it('Redis lost mid-run: the coordinator names the unfinished instances and exits non-zero', async () => {
    const own = await startRedis(); // this one is killed
    try {
      const coord = await project();
      // no worker: the jobs wait in the queue until Redis goes away
      const c = startCli(coord, ['run', '--executor', 'bullmq', '--redis', own.url, '--remote', `s3://${s3.bucket}/lost`, '--progress', 'plain'], { ...s3.env, PIPELINE_REDIS_LOST_SECONDS: '2' });
      await waitFor(() => /▶ source/.test(c.output().stdout + c.output().stderr) || c.child.exitCode !== null, 'an instance submitted', 60_000);
      await own.stop();
      const r = await Promise.race([c.done, new Promise<null>((res) => setTimeout(() => res(null), 60_000))]);
      expect(r, `the coordinator must not hang: ${c.output().stdout.slice(-1200) + ' ||| ' + c.output().stderr.split('\n').filter((l) => !/ECONN/.test(l)).join('\n').slice(-400)}`).not.toBeNull();
      expect(r!.code).toBe(1);
      expect(r!.stdout + r!.stderr).toMatch(new RegExp(`lost the connection to Redis at redis://127\\.0\\.0\\.1:${own.port}`));
      expect(r!.stdout + r!.stderr).toMatch(/source.*failed|failed.*source/);
    } finally {
      await own.stop();
    }
  }, 150_000);
});
