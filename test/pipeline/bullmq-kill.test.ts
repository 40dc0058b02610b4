/**
 * At-least-once delivery (toy project, real CLI, redis-server, s3rver): a worker SIGKILLed mid-job
 * stops renewing its job lock; the stalled job goes to another worker, which finishes it; the
 * remote holds no partial or temporary object.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { fileExists, startCli, waitFor } from './helpers.ts';
import { useScaleOut } from './scaleout-suite.ts';

describe('BullMQ: a worker killed mid-job', () => {
  const so = useScaleOut();

  it('SIGKILL of the worker running a job: another worker finishes it; no partial object in the remote', async () => {
    const url = `s3://${so.s3.bucket}/kill`;
    const env = { ...so.s3.env, PIPELINE_WORKER_LOCK_SECONDS: '2' };
    const [a, b, coord] = [await so.project(), await so.project(), await so.project()];
    const wa = await so.worker(a, url, [], env);
    const run = startCli(coord, ['run', 'slow', '--set', 'slow.seconds=120', '--executor', 'bullmq', '--redis', so.redis.url, '--remote', url, '--progress', 'plain'], so.s3.env);
    await waitFor(() => fileExists(path.join(a, 'slow.started')), 'slow to start on worker a', 90_000);
    wa.child.kill('SIGKILL');
    await wa.done;
    await fs.writeFile(path.join(b, 'slow.release'), '');
    const wb = so.startWorker(b, url, [], env);
    const r = await run.done;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(wb.output().stderr).toMatch(/slow .* committed to the remote/);
    expect(await fs.readFile(path.join(coord, 'results/slow/slow.txt'), 'utf8')).toBe('attempts=1\n');
    const s3c = new S3Client({ endpoint: so.s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const list = await s3c.send(new ListObjectsV2Command({ Bucket: so.s3.bucket, Prefix: 'kill/tmp/' }));
    expect(list.Contents ?? []).toEqual([]);
  }, 180_000);
});
