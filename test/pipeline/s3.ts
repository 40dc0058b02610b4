/** A real S3 API for tests: s3rver on a free loopback port, one bucket, its files in a temp dir. */
import * as fs from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import S3rver from 's3rver';

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
