/**
 * The remote cache: an S3-compatible bucket holding the store's content-addressed entries.
 *   <prefix>/blobs/<sha256>              one output file, named by the hash of its content
 *   <prefix>/manifests/<fingerprint>.json the entry's manifest (uploaded last: its presence means
 *                                        every blob it names is there)
 *   <prefix>/tmp/<random>                uploads in flight, copied to their final key when complete
 * Write-once: an existing key is never overwritten (HEAD first; a blob's content is fixed by its key
 * anyway; the manifest is a conditional put, see putManifest). Every download is re-hashed; an object whose content does not match is reported, never used.
 * Endpoint and credentials: the standard AWS env vars (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_REGION, AWS_ENDPOINT_URL_S3) or `endpoint`; they are never logged.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CorruptRemoteObject, UsageError } from './errors.ts';
import { type Manifest, Store, contentHashOf } from './store.ts';
import { fileStat, sha256 } from './util.ts';

export interface RemoteOptions {
  /** s3://bucket/prefix */
  url: string;
  /** e.g. http://127.0.0.1:4569 for an S3-compatible server; default from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. */
  endpoint?: string;
}

export function parseRemoteUrl(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new UsageError(`--remote must look like s3://bucket/prefix, got ${url}`);
  return { bucket: m[1], prefix: m[2].replace(/\/+$/, '') };
}

export { CorruptRemoteObject } from './errors.ts';

export class RemoteCache {
  readonly bucket: string;
  readonly prefix: string;
  private readonly s3: S3Client;

  constructor(opts: RemoteOptions) {
    const { bucket, prefix } = parseRemoteUrl(opts.url);
    this.bucket = bucket;
    this.prefix = prefix;
    const endpoint = opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    this.s3 = new S3Client({
      region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      // Many S3-compatible stores do not speak the SDK's default aws-chunked checksum uploads.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private key(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }
  blobKey(sha: string): string {
    return this.key(`blobs/${sha}`);
  }
  manifestKey(fp: string): string {
    return this.key(`manifests/${fp}.json`);
  }

  async has(key: string): Promise<boolean> {
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (e) {
      const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (err.name === 'NotFound' || err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404) return false;
      throw e;
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      const r = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404) return undefined;
      throw e;
    }
  }

  /**
   * Write-once put: skipped if the key exists; otherwise uploaded to a temporary key and copied to
   * its final key, so a reader never sees a half-written object. Returns whether it was written.
   */
  async putOnce(key: string, body: Buffer): Promise<boolean> {
    if (await this.has(key)) return false;
    const tmp = this.key(`tmp/${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`);
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: tmp, Body: body }));
    try {
      if (await this.has(key)) return false; // another writer won meanwhile: same content by construction
      await this.s3.send(new CopyObjectCommand({ Bucket: this.bucket, Key: key, CopySource: `${this.bucket}/${encodeURI(tmp)}` }));
      return true;
    } finally {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: tmp }));
    }
  }

  /** Fingerprints whose manifest the remote holds. */
  async fingerprints(): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    const dir = this.key('manifests/');
    do {
      const r = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: dir, ContinuationToken: token }));
      for (const o of r.Contents ?? []) if (o.Key?.endsWith('.json')) out.push(o.Key.slice(dir.length, -'.json'.length));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  /**
   * Upload one committed entry: its blobs first, then its manifest. `contentHash` is the content
   * hash of the manifest the remote holds afterwards: another writer's if it committed the same
   * fingerprint first (see putManifest), so the caller can adopt the winner's entry.
   */
  async pushEntry(store: Store, fp: string): Promise<{ pushed: boolean; blobs: number; contentHash: string }> {
    const v = await store.verify(fp, { rehash: true });
    if (!v.ok) throw new Error(`local entry ${fp.slice(0, 12)} is ${v.missing ? 'missing' : `corrupted (${v.problem})`}: not pushed`);
    const already = await this.remoteManifest(fp);
    if (already) return { pushed: false, blobs: 0, contentHash: already.contentHash };
    let blobs = 0;
    for (const [rel, entry] of Object.entries(v.manifest.files)) {
      const body = await fs.readFile(path.join(store.outDir(fp), rel));
      if (sha256(body) !== entry.sha256) throw new Error(`local file ${rel} of ${fp.slice(0, 12)} changed while pushing`);
      if (await this.putOnce(this.blobKey(entry.sha256), body)) blobs++;
    }
    // Local stats mean nothing elsewhere: the remote manifest keeps hashes and sizes only.
    const files = Object.fromEntries(Object.entries(v.manifest.files).map(([rel, e]) => [rel, { sha256: e.sha256, size: e.size }]));
    const won = await this.putManifest(fp, Buffer.from(JSON.stringify({ ...v.manifest, files }, null, 1)));
    if (won) return { pushed: true, blobs, contentHash: v.manifest.contentHash };
    const winner = await this.remoteManifest(fp);
    return { pushed: false, blobs, contentHash: winner?.contentHash ?? v.manifest.contentHash };
  }

  /** The remote manifest of fp, checked (fingerprint, content hash of its files), or undefined. */
  async remoteManifest(fp: string): Promise<Manifest | undefined> {
    const raw = await this.get(this.manifestKey(fp));
    if (!raw) return undefined;
    let manifest: Manifest;
    try {
      manifest = JSON.parse(raw.toString('utf8')) as Manifest;
    } catch {
      throw new CorruptRemoteObject(`remote manifest ${this.manifestKey(fp)} is not JSON`);
    }
    if (manifest.fingerprint !== fp) throw new CorruptRemoteObject(`remote manifest ${this.manifestKey(fp)} names fingerprint ${String(manifest.fingerprint).slice(0, 12)}`);
    if (contentHashOf(manifest.files) !== manifest.contentHash) throw new CorruptRemoteObject(`remote manifest ${this.manifestKey(fp)}: content hash does not match its files`);
    return manifest;
  }

  /**
   * The manifest is the commit point, written once: a single PutObject (atomic: never seen half
   * written) with `If-None-Match: *`, which S3 (since 2024), MinIO, R2 and Ceph refuse with 412 when
   * the key exists, so of two racing writers exactly one wins. A server that ignores the condition
   * (s3rver, older stores) leaves a window between the HEAD and the PUT; the read-back after the
   * PUT tells a writer that was overwritten meanwhile that it lost. Returns whether this body won.
   */
  async putManifest(fp: string, body: Buffer): Promise<boolean> {
    const key = this.manifestKey(fp);
    if (await this.has(key)) return false;
    try {
      await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, IfNoneMatch: '*' }));
    } catch (e) {
      const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
      const status = err.$metadata?.httpStatusCode;
      if (err.name === 'PreconditionFailed' || status === 412 || status === 409) return false;
      throw e;
    }
    const back = await this.get(key);
    return !!back && back.equals(body);
  }

  /**
   * Download one entry into the local store, verifying every blob against its hash and the
   * manifest against its fingerprint's content hash. Throws CorruptRemoteObject on any mismatch;
   * nothing is committed locally then.
   */
  async pullEntry(store: Store, fp: string): Promise<'pulled' | 'present' | 'absent'> {
    if ((await store.verify(fp)).ok) return 'present';
    const manifest = await this.remoteManifest(fp);
    if (!manifest) return 'absent';
    const tmp = await store.makeTmp();
    try {
      for (const [rel, entry] of Object.entries(manifest.files)) {
        if (rel.split('/').some((p) => p === '..' || p === '') || path.isAbsolute(rel)) throw new CorruptRemoteObject(`remote manifest ${fp.slice(0, 12)} names an unsafe path ${rel}`);
        const key = this.blobKey(entry.sha256);
        const body = await this.get(key);
        if (!body) throw new CorruptRemoteObject(`remote object ${key} (${rel} of ${manifest.label}) is missing`);
        const got = sha256(body);
        if (got !== entry.sha256) throw new CorruptRemoteObject(`remote object ${key} (${rel} of ${manifest.label}) is corrupted: its content hashes to ${got.slice(0, 12)}; not used`);
        const abs = path.join(tmp.out, rel);
        await fs.mkdir(path.dirname(abs), { recursive: true });
        await fs.writeFile(abs, body);
        entry.stat = await fileStat(abs);
      }
      await store.commit(tmp.dir, manifest);
      return 'pulled';
    } catch (e) {
      await fs.rm(tmp.dir, { recursive: true, force: true });
      throw e;
    }
  }
}
