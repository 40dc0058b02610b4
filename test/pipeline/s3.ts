/** A real S3 API for tests: s3rver on a free loopback port, one bucket, its files in a temp dir. */
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import S3rver from 's3rver';

// s3rver removes a key's folders once they are empty after a delete, which races with a concurrent
// put into the same folder (mkdir, then rmdir by the delete, then the put's open fails: ENOENT and
// s3rver dies). Real S3 has no folders; here deletes leave the (empty) folders in place.
const fsStore = (createRequire(import.meta.url)('s3rver/lib/stores/filesystem.js') as { prototype: unknown }).prototype as unknown as { deleteObject(bucket: string, key: string): Promise<void>; getResourcePath(b: string, k: string, t: string): string };
fsStore.deleteObject = async function (this: typeof fsStore, bucket: string, key: string) {
  for (const type of ['object', 'object.md5', 'metadata.json']) await fs.rm(this.getResourcePath(bucket, key, type), { force: true });
};

export interface S3Fixture {
  endpoint: string;
  bucket: string;
  /** Where s3rver keeps the objects (to corrupt one behind the API's back). */
  directory: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startS3(bucket = 'cache'): Promise<S3Fixture> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 's3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
  const addr = (await server.run()) as AddressInfo;
  const endpoint = `http://127.0.0.1:${addr.port}`;
  return {
    endpoint,
    bucket,
    directory,
    // s3rver's fixed credentials; passed through the standard AWS variables like a real deployment.
    env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: endpoint },
    async stop() {
      await server.close();
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}
