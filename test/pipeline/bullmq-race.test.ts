/**
 * Scale-out under contention (toy project, real CLI, redis-server, s3rver):
 *  - two coordinators (separate checkouts and stores) on one Redis and one remote, same params, at
 *    the same time: every instance is computed exactly once, both end with the same entries, exit 0;
 *  - a worker with --concurrency 2 runs two jobs at once that pull the same input into its store
 *    (on the same Redis as the first test, another remote: jobs of one remote never answer another);
 *  - jobs finished on Redis whose entries the remote no longer has are run again, not trusted;
 *  - Redis over TLS only (rediss://, self-signed CA via NODE_EXTRA_CA_CERTS) with a password: a run
 *    works, and the password is in no output, no runs row and no job in Redis.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { querySql } from '../../pipeline/db.ts';
import { parseRedisUrl } from '../../pipeline/queue.ts';
import { cli, labelsWith, stageStatuses, takeTrace } from './helpers.ts';
import { type ScaleOut, entries } from './scaleout.ts';
import { useScaleOut } from './scaleout-suite.ts';

const bullmq = (so: ScaleOut, url: string): string[] => ['--executor', 'bullmq', '--redis', so.redis.url, '--remote', url, '--progress', 'plain'];

/** Most jobs a worker had between "started" and "committed" at one time, from its log. */
function maxInFlight(stderr: string): number {
  let now = 0;
  let max = 0;
  for (const line of stderr.split('\n')) {
    if (/ [0-9a-f]{12} started$/.test(line)) max = Math.max(max, ++now);
    else if (/ [0-9a-f]{12} committed to the remote/.test(line)) now--;
  }
  return max;
}

describe('BullMQ: two coordinators, a worker with --concurrency 2', () => {
  const so = useScaleOut();

  it('two coordinators on one Redis and remote at once: each instance computed once, same entries, both exit 0', async () => {
    const url = `s3://${so.s3.bucket}/two`;
    const local = await so.project();
    expect((await cli(local, ['run', '--jobs', '2'])).code).toBe(0);
    const n = Object.keys(await stageStatuses(local)).length;
    const [wa, wb] = [await so.project(), await so.project()];
    await so.worker(wa, url);
    await so.worker(wb, url);
    const [ca, cb] = [await so.project(), await so.project()];
    const [ra, rb] = await Promise.all([cli(ca, ['run', '--jobs', '2', ...bullmq(so, url)], so.s3.env), cli(cb, ['run', '--jobs', '2', ...bullmq(so, url)], so.s3.env)]);
    expect(ra.code, ra.stdout + ra.stderr).toBe(0);
    expect(rb.code, rb.stdout + rb.stderr).toBe(0);
    // What the stages appended to trace.log in the workers' checkouts: one line per execution, of
    // every instance but the `local: true` report, which each coordinator runs itself.
    const ran = [...(await takeTrace(wa)), ...(await takeTrace(wb))].sort();
    expect(ran.length).toBe(n - 1);
    expect(new Set(ran).size).toBe(n - 1);
    expect(await takeTrace(ca)).toEqual(['report']);
    expect(await takeTrace(cb)).toEqual(['report']);
    expect(await entries(ca)).toEqual(await entries(local));
    expect(await entries(cb)).toEqual(await entries(local));
    for (const c of [ca, cb]) {
      const st = await stageStatuses(c);
      expect(labelsWith(st, 'ran').length + labelsWith(st, 'cached').length).toBe(n);
    }
    await so.stopWorkers();
  }, 240_000);

  it('a worker with --concurrency 2 runs two jobs at once that pull the same input: same entries as a local run', async () => {
    const url = `s3://${so.s3.bucket}/conc`;
    const set = ['--set', 'train.k=[1,2]', '--set', 'train.seeds=[0,1]'];
    const local = await so.project();
    expect((await cli(local, ['run', 'evaluate', '--jobs', '2', ...set])).code).toBe(0);
    // source is in the remote already: every train job pulls it into the worker's store.
    const seed = await so.project();
    expect((await cli(seed, ['run', 'source', '--remote', url], so.s3.env)).code).toBe(0);
    const wroot = await so.project();
    const w = await so.worker(wroot, url, ['--concurrency', '2']);
    const coord = await so.project();
    const r = await cli(coord, ['run', 'evaluate', '--jobs', '4', ...set, ...bullmq(so, url)], so.s3.env);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await entries(coord)).toEqual(await entries(local));
    expect(maxInFlight(w.output().stderr)).toBe(2);
    expect((await takeTrace(wroot)).filter((l) => l.startsWith('train')).length).toBe(4);
    expect(await fs.readdir(path.join(wroot, '.cache/tmp')).catch(() => [])).toEqual([]);

    // The bucket emptied behind Redis' back: the finished jobs are stale, the instances run again.
    const s3c = new S3Client({ endpoint: so.s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const listed = await s3c.send(new ListObjectsV2Command({ Bucket: so.s3.bucket, Prefix: 'conc/' }));
    for (const o of listed.Contents ?? []) await s3c.send(new DeleteObjectCommand({ Bucket: so.s3.bucket, Key: o.Key! }));
    await fs.rm(path.join(wroot, '.cache/objects'), { recursive: true });
    const again = await so.project();
    const r2 = await cli(again, ['run', 'evaluate', '--jobs', '4', ...set, ...bullmq(so, url)], so.s3.env);
    expect(r2.code, r2.stdout + r2.stderr).toBe(0);
    expect(await entries(again)).toEqual(await entries(local));
    expect((await takeTrace(wroot)).length).toBe(Object.keys(await stageStatuses(local)).length);
    await so.stopWorkers();
  }, 240_000);
});

describe('BullMQ over rediss:// (TLS only, password)', () => {
  const password = 'tls-sekret-pw';
  const so = useScaleOut({ tls: true, password });

  it('coordinator + worker over TLS; the password is in no output, runs row or job', async () => {
    expect(so.redis.url).toMatch(/^rediss:\/\//);
    const url = `s3://${so.s3.bucket}/tls`;
    const w = await so.worker(await so.project(), url);
    const coord = await so.project();
    const env = { ...so.s3.env, ...so.redis.env };
    const r = await cli(coord, ['run', 'double', ...bullmq(so, url)], env);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(labelsWith(await stageStatuses(coord), 'ran')).toEqual(['double', 'source']);
    expect(r.stdout + r.stderr).toContain('ran on worker');
    // Without the CA the server's certificate is not trusted: a clear error, no password.
    const untrusted = await cli(coord, ['run', 'double', '--force', 'double', ...bullmq(so, url)], { ...so.s3.env, NODE_EXTRA_CA_CERTS: '' });
    expect(untrusted.code).toBe(2);
    expect(untrusted.stderr).toContain(`cannot reach Redis at rediss://:***@127.0.0.1:${so.redis.port}`);
    const runs = await querySql(path.join(coord, 'results/results.duckdb'), 'SELECT command FROM runs');
    const redis = new Redis({ ...parseRedisUrl(so.redis.url), tls: { ca: await fs.readFile(so.redis.env.NODE_EXTRA_CA_CERTS) } });
    try {
      const keys = await redis.keys('bull:*');
      expect(keys.length).toBeGreaterThan(0);
      let stored = '';
      for (const k of keys) {
        const type = await redis.type(k);
        if (type === 'hash') stored += JSON.stringify(await redis.hgetall(k));
        else if (type === 'string') stored += await redis.get(k);
        else if (type === 'list') stored += JSON.stringify(await redis.lrange(k, 0, -1));
      }
      expect(stored).toContain('fingerprint'); // the jobs' data was read
      expect(stored).not.toContain(password);
    } finally {
      redis.disconnect();
    }
    for (const text of [r.stdout, r.stderr, untrusted.stdout, untrusted.stderr, w.output().stdout, w.output().stderr, JSON.stringify(runs.rows)]) expect(text).not.toContain(password);
  }, 180_000);
});
