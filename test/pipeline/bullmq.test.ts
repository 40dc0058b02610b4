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
import { describe, expect, it } from 'vitest';
import { Worker } from 'bullmq';
import { querySql } from '../../pipeline/db.ts';
import { BullMQExecutor } from '../../pipeline/executor.ts';
import type { ChildMessage, StartMessage } from '../../pipeline/protocol.ts';
import { type RelayedMessage, type StageJobResult, parseRedisUrl, queueName } from '../../pipeline/queue.ts';
import { RemoteCache } from '../../pipeline/remote.ts';
import { Store } from '../../pipeline/store.ts';
import { cli, labelsWith, stageStatuses, startCli, takeTrace, waitFor } from './helpers.ts';
import { startRedis } from './redis.ts';
import { entries } from './scaleout.ts';
import { useScaleOut } from './scaleout-suite.ts';

describe('BullMQ executor: coordinator + workers sharing an S3 cache', () => {
  const so = useScaleOut({ password: 'sekret-pw' });

  it('two workers run the instances: same fingerprints and output hashes as a local --jobs 2 run', async () => {
    const url = `s3://${so.s3.bucket}/same`;
    const local = await so.project();
    const l = await cli(local, ['run', '--jobs', '2']);
    expect(l.code, l.stderr).toBe(0);

    const w1 = await so.worker(await so.project(), url);
    const w2 = await so.worker(await so.project(), url);
    const coord = await so.project();
    const r = await cli(coord, ['run', '--jobs', '2', '--executor', 'bullmq', '--redis', so.redis.url, '--remote', url, '--progress', 'plain'], so.s3.env);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const st = await stageStatuses(coord);
    expect(labelsWith(st, 'ran').length).toBe(Object.keys(st).length);
    expect(await entries(coord)).toEqual(await entries(local));
    const ranOn = [w1, w2].map((w) => (w.output().stderr.match(/committed to the remote/g) ?? []).length);
    // every instance but the `local: true` report, which ran on the coordinator
    expect(ranOn[0] + ranOn[1]).toBe(Object.keys(st).length - 1);
    expect(await takeTrace(coord)).toEqual(['report']);
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
    const url = `s3://${so.s3.bucket}/refuse`;
    const other = await so.project();
    await fs.appendFile(path.join(other, 'stages/source.ts'), '\n// a different commit\n');
    const w = await so.worker(other, url);
    const coord = await so.project();
    const r = await cli(coord, ['run', 'source', '--set', 'source.n=7', '--executor', 'bullmq', '--redis', so.redis.url, '--remote', url, '--progress', 'plain'], so.s3.env);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/refused source: this worker cannot reproduce fingerprint [0-9a-f]{12}.*stages\/source\.ts/);
    expect(w.output().stderr).toContain('refused source');
    w.child.kill('SIGTERM');
    await w.done;
  });

  it('Redis unreachable at start: clear error naming the URL without the password', async () => {
    const coord = await so.project();
    const r = await cli(coord, ['run', '--executor', 'bullmq', '--redis', 'redis://user:hunter2@127.0.0.1:1', '--remote', `s3://${so.s3.bucket}/x`], so.s3.env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('cannot reach Redis at redis://user:***@127.0.0.1:1');
    expect(r.stderr).not.toContain('hunter2');
  });

  it('Redis lost mid-run: the coordinator names the unfinished instances and exits non-zero', async () => {
    const own = await startRedis(); // this one is killed
    try {
      const coord = await so.project();
      // no worker: the jobs wait in the queue until Redis goes away
      const c = startCli(coord, ['run', '--executor', 'bullmq', '--redis', own.url, '--remote', `s3://${so.s3.bucket}/lost`, '--progress', 'plain'], { ...so.s3.env, PIPELINE_REDIS_LOST_SECONDS: '2' });
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

  it("a remote instance's progress, logs and metrics reach the coordinator's handler in order, as a local child's do", async () => {
    Object.assign(process.env, so.s3.env);
    const remote = new RemoteCache({ url: `s3://${so.s3.bucket}/relay` });
    const fingerprint = 'a'.repeat(64);
    const sent: RelayedMessage[] = [
      { type: 'progress', done: 1, total: 4, info: { fvu: '0.5' }, seq: 0 },
      { type: 'log', message: 'halfway', seq: 1 },
      { type: 'metrics', items: [{ name: 'fvu', value: 0.25, step: null }], seq: 2 },
      { type: 'progress', done: 4, total: 4, seq: 3 },
    ];
    // A stand-in worker on the executor's queue: relays like pipeline/worker.ts, plus a duplicate.
    const fake = new Worker(
      queueName({}, remote),
      async (job) => {
        for (const m of sent) await job.updateProgress(m as never);
        await job.updateProgress(sent[1] as never); // redelivered: dropped by its seq
        return { fingerprint, contentHash: 'b'.repeat(64), files: {}, worker: 'stand-in' } satisfies StageJobResult;
      },
      { connection: parseRedisUrl(so.redis.url) as never },
    );
    const executor = new BullMQExecutor(so.redis.url, remote, () => undefined);
    const got: ChildMessage[] = [];
    try {
      const store = new Store(path.join(await so.project(), '.cache'));
      const start = { type: 'start', stage: 'source', label: 'source', instance: {}, params: {} } as unknown as StartMessage;
      const r = await executor.run({ start, fingerprint, components: {} as never, inputFingerprints: {}, store, env: {}, onMessage: (m) => got.push(m) });
      expect(r.failure).toMatch(/remote cache has no entry/); // nothing was pushed: only the relay is under test
    } finally {
      await executor.close();
      await fake.close();
    }
    expect(got).toEqual([...sent.map(({ seq: _s, ...m }) => m), { type: 'log', message: 'ran on worker stand-in' }]);
  });
});
