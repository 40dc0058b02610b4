/**
 * The remote cache without Redis (toy project, real CLI, real S3 API = s3rver on loopback):
 *  - push uploads every entry in use; a second push writes nothing (write-once);
 *  - pull into a fresh checkout gives the same entries, byte for byte, and the run is all cached;
 *  - `run --remote` serves misses from the remote and pushes what it computes;
 *  - a remote object whose content does not match its hash is reported and never used.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../../pipeline/store.ts';
import { cli, labelsWith, makeProject, removeProject, stageStatuses } from './helpers.ts';
import { type S3Fixture, startS3 } from './s3.ts';

async function outputs(root: string): Promise<Record<string, string>> {
  const store = new Store(path.join(root, '.cache'));
  const out: Record<string, string> = {};
  for (const fp of await store.fingerprints()) {
    const m = await store.readManifest(fp);
    out[`${m!.label} ${fp}`] = m!.contentHash;
  }
  return out;
}

describe('remote cache: push / pull / run --remote (s3rver)', () => {
  let s3: S3Fixture;
  const roots: string[] = [];
  const project = async (): Promise<string> => {
    const r = await makeProject('toy');
    roots.push(r);
    return r;
  };
  let source: string;
  let url: string;

  beforeAll(async () => {
    s3 = await startS3();
    url = `s3://${s3.bucket}/toy`;
    source = await project();
    const r = await cli(source, ['run', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(async () => {
    for (const r of roots) await removeProject(r);
    await s3?.stop();
  });

  it('push uploads every entry in use once; pull into a fresh checkout makes the run all cached, same bytes', async () => {
    const inUse = (await new Store(path.join(source, '.cache')).referenced()).size;
    const push = await cli(source, ['push', '--remote', url], s3.env);
    expect(push.code, push.stderr).toBe(0);
    expect(push.stdout).toContain(`${inUse} entries pushed, 0 already there`);
    const again = await cli(source, ['push', '--remote', url], s3.env);
    expect(again.stdout).toContain(`0 entries pushed, ${inUse} already there`);

    const fresh = await project();
    const pull = await cli(fresh, ['pull', '--remote', url, '--s3-endpoint', s3.endpoint], { ...s3.env, AWS_ENDPOINT_URL_S3: '' });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stdout).toContain(`${inUse} pulled, 0 already present, 0 not in the remote, 0 corrupted`);
    expect(await outputs(fresh)).toEqual(await outputs(source));
    const run = await cli(fresh, ['run']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('nothing to run');
    expect(await fs.readFile(path.join(fresh, 'results/double/doubled.txt'), 'utf8')).toBe(await fs.readFile(path.join(source, 'results/double/doubled.txt'), 'utf8'));
  });

  it('run --remote serves misses from the remote and pushes what it computes', async () => {
    const fresh = await project();
    const r = await cli(fresh, ['run', '--jobs', '2', '--remote', url], s3.env);
    expect(r.code, r.stderr).toBe(0);
    const st = await stageStatuses(fresh);
    expect(labelsWith(st, 'ran')).toEqual([]);
    expect(labelsWith(st, 'cached').length).toBe(Object.keys(st).length);

    // A param change computes new entries here and pushes them: a third checkout gets them as hits.
    const changed = await cli(fresh, ['run', '--jobs', '2', '--remote', url, '--set', 'double.factor=3'], s3.env);
    expect(changed.code, changed.stderr).toBe(0);
    const ran = labelsWith(await stageStatuses(fresh), 'ran');
    expect(ran).toContain('double');
    const third = await project();
    const hit = await cli(third, ['run', '--jobs', '2', '--remote', url, '--set', 'double.factor=3'], s3.env);
    expect(hit.code, hit.stderr).toBe(0);
    expect(labelsWith(await stageStatuses(third), 'ran')).toEqual([]);
  });

  it('a corrupted remote object is reported and never used', async () => {
    const store = new Store(path.join(source, '.cache'));
    const ref = (await store.refs()).find((r) => r.stage === 'source')!;
    const m = (await store.readManifest(ref.fingerprint))!;
    const sha = m.files['data.txt'].sha256;
    // Overwrite the blob behind the engine's back (a broken or malicious store).
    const s3c = new S3Client({
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    await s3c.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `toy/blobs/${sha}`, Body: '9\n9\n9\n9\n9\n' }));

    const fresh = await project();
    const pull = await cli(fresh, ['pull', '--remote', url], s3.env);
    expect(pull.code).toBe(1);
    expect(pull.stderr).toMatch(new RegExp(`remote object toy/blobs/${sha} \\(data\\.txt of source\\) is corrupted`));
    expect(await new Store(path.join(fresh, '.cache')).readManifest(ref.fingerprint)).toBeUndefined();

    const other = await project();
    const run = await cli(other, ['run', '--jobs', '2', '--remote', url], s3.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('is corrupted');
    expect(labelsWith(await stageStatuses(other), 'ran')).toEqual(['source']);
    expect(await fs.readFile(path.join(other, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n');
    expect(JSON.stringify(pull.stdout + pull.stderr + run.stdout + run.stderr)).not.toContain('S3RVER');
  });
});
