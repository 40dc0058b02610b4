/**
 * At-least-once delivery (toy project, real CLI, redis-server, s3rver): a worker SIGKILLed mid-job
 * stops renewing its job lock; the stalled job goes to another worker, which finishes it; the
 * remote holds no partial or temporary object.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliProcess, cli, fileExists, makeProject, removeProject, startCli, waitFor } from './helpers.ts';
import { type RedisFixture, startRedis } from './redis.ts';
import { type S3Fixture, startS3 } from './s3.ts';

describe('BullMQ: a worker killed mid-job', () => {
  let redis: RedisFixture;
  let s3: S3Fixture;
  const roots: string[] = [];
  const workers: CliProcess[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    s3 = await startS3();
  });
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.done));
    for (const r of roots) await removeProject(r);
    await redis?.stop();
    await s3?.stop();
  });

  it('SIGKILL of the worker running a job: another worker finishes it; no partial object in the remote', async () => {
    const url = `s3://${s3.bucket}/kill`;
    const env = { ...s3.env, PIPELINE_WORKER_LOCK_SECONDS: '2' };
    const [a, b, coord] = [await makeProject('toy'), await makeProject('toy'), await makeProject('toy')];
    roots.push(a, b, coord);
    const wa = startCli(a, ['worker', '--redis', redis.url, '--remote', url], env);
    workers.push(wa);
    await waitFor(() => wa.output().stderr.includes(' on queue '), 'worker a ready');
    const run = startCli(coord, ['run', 'slow', '--set', 'slow.seconds=120', '--executor', 'bullmq', '--redis', redis.url, '--remote', url, '--progress', 'plain'], s3.env);
    await waitFor(() => fileExists(path.join(a, 'slow.started')), 'slow to start on worker a', 90_000);
    wa.child.kill('SIGKILL');
    await wa.done;
    await fs.writeFile(path.join(b, 'slow.release'), '');
    const wb = startCli(b, ['worker', '--redis', redis.url, '--remote', url], env);
    workers.push(wb);
    const r = await run.done;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(wb.output().stderr).toMatch(/slow .* committed to the remote/);
    expect(await fs.readFile(path.join(coord, 'results/slow/slow.txt'), 'utf8')).toBe('attempts=1\n');
    const s3c = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const list = await s3c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'kill/tmp/' }));
    expect(list.Contents ?? []).toEqual([]);
  }, 180_000);
});
