/**
 * The remote cache without Redis (toy project, real CLI, real S3 API = s3rver on loopback):
 *  - push uploads every entry in use; a second push writes nothing (write-once);
 *  - pull into a fresh checkout gives the same entries, byte for byte, and the run is all cached;
 *  - `run --remote` serves misses from the remote and pushes what it computes;
 *  - a remote object whose content does not match its hash is reported and never used;
 *  - races: two pulls of one entry into one store, two pushes of one fingerprint (write-once manifest).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteCache } from '../../pipeline/remote.ts';
import { Store, contentHashOf } from '../../pipeline/store.ts';
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

  it('two pulls of one entry into one store at once (a worker with --concurrency 2): both succeed, one intact entry', async () => {
    Object.assign(process.env, s3.env);
    const remote = new RemoteCache({ url });
    // (not source: the test above corrupted its blob)
    const ref = (await new Store(path.join(source, '.cache')).refs()).find((r) => r.stage === 'double')!;
    await remote.pushEntry(new Store(path.join(source, '.cache')), ref.fingerprint);
    const fresh = await project();
    const store = new Store(path.join(fresh, '.cache'));
    const got = await Promise.all([remote.pullEntry(store, ref.fingerprint), remote.pullEntry(store, ref.fingerprint), remote.pullEntry(store, ref.fingerprint)]);
    expect(got).toContain('pulled');
    const v = await store.verify(ref.fingerprint, { rehash: true });
    expect(v.ok).toBe(true);
    expect(await fs.readdir(path.join(store.dir, 'tmp'))).toEqual([]);
  });

  it('two writers push one fingerprint at once: the manifest is written once and both report its content hash', async () => {
    Object.assign(process.env, s3.env);
    const remote = new RemoteCache({ url: `s3://${s3.bucket}/race` });
    // Two checkouts computing the same instance: same fingerprint and content, different run ids.
    const [a, b] = [await project(), await project()];
    for (const r of [a, b]) expect((await cli(r, ['run', 'source'])).code).toBe(0);
    const fp = (await new Store(path.join(a, '.cache')).refs())[0].fingerprint;
    const [sa, sb] = [new Store(path.join(a, '.cache')), new Store(path.join(b, '.cache'))];
    expect((await sb.readManifest(fp))!.runId).not.toBe((await sa.readManifest(fp))!.runId);
    const [ra, rb] = await Promise.all([remote.pushEntry(sa, fp), remote.pushEntry(sb, fp)]);
    expect(ra.contentHash).toBe((await sa.readManifest(fp))!.contentHash);
    expect(rb.contentHash).toBe(ra.contentHash);
    const held = (await remote.remoteManifest(fp))!;
    expect([(await sa.readManifest(fp))!.runId, (await sb.readManifest(fp))!.runId]).toContain(held.runId);
    // A later writer never overwrites it, and is told what the remote holds.
    const again = await remote.pushEntry(sb, fp);
    expect(again.pushed).toBe(false);
    expect((await remote.remoteManifest(fp))!.runId).toBe(held.runId);
  });

  it('a pusher that finds another result under its fingerprint is told the remote one (the worker adopts it)', async () => {
    Object.assign(process.env, s3.env);
    const prefix = 'nondet';
    const remote = new RemoteCache({ url: `s3://${s3.bucket}/${prefix}` });
    const a = await project();
    expect((await cli(a, ['run', 'source'])).code).toBe(0);
    const store = new Store(path.join(a, '.cache'));
    const fp = (await store.refs())[0].fingerprint;
    const mine = (await store.readManifest(fp))!;
    const files = { 'data.txt': { sha256: 'f'.repeat(64), size: 3 } };
    const other = { ...mine, files, contentHash: contentHashOf(files) };
    expect(await remote.putManifest(fp, Buffer.from(JSON.stringify(other)))).toBe(true);
    expect(await remote.putManifest(fp, Buffer.from(JSON.stringify(mine)))).toBe(false);
    const r = await remote.pushEntry(store, fp);
    expect(r).toMatchObject({ pushed: false, contentHash: other.contentHash });
    const s3c = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const held = await s3c.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/manifests/${fp}.json` }));
    expect(JSON.parse(await held.Body!.transformToString()).contentHash).toBe(other.contentHash);
  });
});
