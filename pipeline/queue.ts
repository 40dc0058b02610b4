/**
 * What travels between coordinator and workers through BullMQ (Redis). A job is data only: it names a
 * stage the worker's checkout must declare; nothing in it is ever executed. Credentials never go in.
 */
import { createHash } from 'node:crypto';
import type { FingerprintComponents } from './fingerprint.ts';
import type { ChildMessage } from './protocol.ts';
import type { FileEntry } from './store.ts';
import type { InstanceKey } from './types.ts';

export interface StageJobData {
  /** The instance's fingerprint (also the job id: duplicate submissions collapse). */
  fingerprint: string;
  stage: string;
  label: string;
  instance: InstanceKey;
  /** The full validated params (the worker projects the declared keys, like a local child). */
  params: unknown;
  /** Upstream label -> fingerprint; the worker fetches them from the remote cache. */
  inputs: Record<string, string>;
  /** What the coordinator hashed: the worker recomputes its own and refuses on any difference. */
  components: FingerprintComponents;
}

export interface StageJobResult {
  fingerprint: string;
  contentHash: string;
  files: Record<string, Pick<FileEntry, 'sha256' | 'size'>>;
  worker: string;
}

/** Messages of the child protocol relayed through job progress (everything but 'done'). */
export type RelayedMessage = Exclude<ChildMessage, { type: 'done' }> & { seq: number };

/**
 * One queue per compute backend and remote cache: a worker takes only the jobs its machine can
 * reproduce and whose results land in the remote it writes to (job ids are fingerprints, so
 * without the remote in the name a job finished for one bucket would answer a coordinator of another).
 * The remote is named by bucket and prefix only (never the endpoint's credentials).
 */
export function queueName(env: Record<string, string>, remote: { bucket: string; prefix: string }): string {
  const tag = createHash('sha256').update(`s3://${remote.bucket}/${remote.prefix}`).digest('hex').slice(0, 8);
  return `pipeline-${(env.backend ?? 'default').replace(/[^A-Za-z0-9_-]/g, '_')}-${tag}`;
}

export interface RedisConnection {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, never>;
  maxRetriesPerRequest: null;
}

/** redis://[user:password@]host:port[/db] or rediss:// (TLS) -> connection options. */
export function parseRedisUrl(url: string): RedisConnection {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--redis must be a URL like redis://host:6379, got ${redactUrl(url)}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`--redis must start with redis:// or rediss://, got ${redactUrl(url)}`);
  const db = u.pathname.replace(/^\//, '');
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** The URL as it may be printed: without its password. */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/)([^@/]*)@/, (_m, scheme: string, auth: string) => `${scheme}${auth.includes(':') ? `${auth.split(':')[0]}:***` : '***'}@`);
}

const isRecord = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Check a job's shape before anything runs; returns the problem, or undefined. */
export function validateJobData(d: unknown): string | undefined {
  if (!isRecord(d)) return 'job data is not an object';
  if (typeof d.fingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(d.fingerprint)) return 'fingerprint is not a sha256 hex string';
  if (typeof d.stage !== 'string' || !/^[A-Za-z0-9_-]+$/.test(d.stage)) return 'stage is not a plain name';
  if (typeof d.label !== 'string') return 'label is not a string';
  if (!isRecord(d.instance) || !Object.values(d.instance).every((v) => ['string', 'number', 'boolean'].includes(typeof v))) return 'instance is not a flat object';
  if (!isRecord(d.inputs) || !Object.values(d.inputs).every((v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v))) return 'inputs are not label -> fingerprint';
  if (!isRecord(d.components)) return 'components missing';
  return undefined;
}
