/**
 * Where a stage instance runs. The runner's default is local child processes (spawn.ts); an
 * Executor runs instances elsewhere. BullMQExecutor: one BullMQ job per instance, id = fingerprint,
 * on the queue of the instance's backend; a worker runs it, commits it to the remote cache and
 * relays the child's messages through job progress. The coordinator pulls (and verifies) the entry.
 */
import * as os from 'node:os';
import { type Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { FingerprintComponents } from './fingerprint.ts';
import type { ChildMessage, StartMessage } from './protocol.ts';
import { type RedisConnection, type RelayedMessage, type StageJobData, type StageJobResult, parseRedisUrl, queueName, redactUrl } from './queue.ts';
import { CorruptRemoteObject } from './errors.ts';
import type { RemoteCache } from './remote.ts';
import type { Store } from './store.ts';

export interface ExecuteRequest {
  start: StartMessage;
  fingerprint: string;
  components: FingerprintComponents;
  /** Upstream label -> fingerprint. */
  inputFingerprints: Record<string, string>;
  store: Store;
  /** The project's environment (its backend picks the queue, as on the worker). */
  env: Record<string, string>;
  onMessage: (m: ChildMessage) => void;
}

export interface ExecuteResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  failure?: string;
  /** Set when the entry is already committed in the local store (pulled from the remote). */
  contentHash?: string;
}

export interface Executor {
  run(req: ExecuteRequest): Promise<ExecuteResult>;
  abort(): void;
  close(): Promise<void>;
}

export class BullMQExecutor implements Executor {
  private readonly connection: RedisConnection;
  private readonly queues = new Map<string, { queue: Queue; events: QueueEvents }>();
  private aborted = false;
  private readonly abortWaiters = new Set<() => void>();
  /** Set once Redis has been unreachable for longer than lostAfterMs: every waiting instance fails. */
  private lost: Error | null = null;
  private readonly lostWaiters = new Set<(e: Error) => void>();
  private watchdog: { client: Redis; timer: NodeJS.Timeout } | null = null;
  private readonly lostAfterMs = (Number(process.env.PIPELINE_REDIS_LOST_SECONDS) || 30) * 1000;

  constructor(
    private readonly redisUrl: string,
    private readonly remote: RemoteCache,
    private readonly log: (line: string) => void,
  ) {
    this.connection = parseRedisUrl(redisUrl);
  }

  /** Fail fast with the URL (no password) when Redis cannot be reached. */
  async connect(timeoutMs = 5000): Promise<void> {
    const r = new Redis({ ...this.connection, lazyConnect: true, retryStrategy: () => null, connectTimeout: timeoutMs });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
    } catch (e) {
      throw new Error(`cannot reach Redis at ${redactUrl(this.redisUrl)}: ${(e as Error).message.replace(this.connection.password ?? '\0', '***')}`);
    } finally {
      r.disconnect();
    }
  }

  /**
   * Redis lost mid-run: BullMQ's connections retry forever, so a watchdog connection checks once a
   * second; down for longer than PIPELINE_REDIS_LOST_SECONDS (default 30) fails every instance still
   * waiting, naming the URL (without password). The run then lists them as failed and exits 1; a
   * rerun resumes from what is committed.
   */
  private watch(): void {
    if (this.watchdog) return;
    const client = new Redis({ ...this.connection, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    let downSince: number | null = null;
    const timer = setInterval(() => {
      if (client.status === 'ready') {
        downSince = null;
        return;
      }
      downSince ??= Date.now();
      if (Date.now() - downSince < this.lostAfterMs || this.lost) return;
      this.lost = new Error(`lost the connection to Redis at ${redactUrl(this.redisUrl)} (down for ${Math.round(this.lostAfterMs / 1000)} s): instance unfinished`);
      this.log(this.lost.message);
      for (const f of this.lostWaiters) f(this.lost);
    }, 1000);
    timer.unref();
    this.watchdog = { client, timer };
  }

  /** Whether the watchdog gave Redis up during this run. */
  get lostRedis(): boolean {
    return this.lost !== null;
  }

  private queueFor(env: Record<string, string>): { queue: Queue; events: QueueEvents } {
    const name = queueName(env, this.remote);
    let q = this.queues.get(name);
    if (!q) {
      q = { queue: new Queue(name, { connection: this.connection as never }), events: new QueueEvents(name, { connection: this.connection as never }) };
      q.queue.on('error', (e) => this.log(`redis: ${e.message}`));
      q.events.on('error', (e) => this.log(`redis: ${e.message}`));
      this.queues.set(name, q);
    }
    return q;
  }

  async run(req: ExecuteRequest): Promise<ExecuteResult> {
    this.watch();
    let onLost: ((e: Error) => void) | undefined;
    const lost = new Promise<never>((_, rej) => {
      onLost = rej;
      if (this.lost) rej(this.lost);
      this.lostWaiters.add(rej);
    });
    try {
      return await Promise.race([this.runJob(req), lost]);
    } catch (e) {
      return { code: 1, signal: null, failure: `remote job: ${(e as Error).message}` };
    } finally {
      this.lostWaiters.delete(onLost!);
    }
  }

  private async runJob(req: ExecuteRequest): Promise<ExecuteResult> {
    const { start, fingerprint } = req;
    // The worker fetches inputs by hash from the remote: make sure the coordinator's are there.
    for (const fp of new Set(Object.values(req.inputFingerprints))) await this.remote.pushEntry(req.store, fp);
    // Backend = the instance's env backend, else the coordinator's project-wide one.
    const { queue, events } = this.queueFor(req.env);
    await events.waitUntilReady();
    const data: StageJobData = {
      fingerprint,
      stage: start.stage,
      label: start.label,
      instance: start.instance,
      params: start.params,
      inputs: req.inputFingerprints,
      components: req.components,
    };
    let seen = -1;
    const onProgress = ({ jobId, data: p }: { jobId: string; data: unknown }): void => {
      if (jobId !== fingerprint || !p || typeof p !== 'object') return;
      const m = p as RelayedMessage;
      if (typeof m.seq !== 'number' || m.seq <= seen) return;
      seen = m.seq;
      const { seq: _seq, ...msg } = m;
      req.onMessage(msg as ChildMessage);
    };
    events.on('progress', onProgress as never);
    try {
      // Job id = fingerprint: a second submission (another coordinator, a rerun) joins the first.
      let job = await this.reusableJob(queue, fingerprint);
      job ??= await queue.add(start.stage, data, { jobId: fingerprint, attempts: 1, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 24 * 3600 } });
      const finished = job.waitUntilFinished(events) as Promise<StageJobResult>;
      const abort = new Promise<never>((_, rej) => {
        const f = (): void => rej(new Error('interrupted'));
        if (this.aborted) f();
        this.abortWaiters.add(f);
      });
      const result = await Promise.race([finished, abort]);
      if (result.fingerprint !== fingerprint) return { code: 1, signal: null, failure: `worker returned fingerprint ${String(result.fingerprint).slice(0, 12)}` };
      req.onMessage({ type: 'log', message: `ran on worker ${result.worker}` });
      const pulled = await this.remote.pullEntry(req.store, fingerprint);
      if (pulled === 'absent') return { code: 1, signal: null, failure: 'the worker reported success but the remote cache has no entry' };
      const m = await req.store.readManifest(fingerprint);
      if (m?.contentHash !== result.contentHash) return { code: 1, signal: null, failure: 'the pulled entry does not match the hash the worker returned' };
      return { code: 0, signal: null, contentHash: m.contentHash };
    } catch (e) {
      if (e instanceof CorruptRemoteObject) return { code: 1, signal: null, failure: e.message };
      return { code: 1, signal: null, failure: `remote job: ${(e as Error).message}` };
    } finally {
      events.off('progress', onProgress as never);
    }
  }

  /**
   * The job already queued under this fingerprint, to join: waiting or active (another coordinator
   * submitted it), completed with its entry in the remote, or failed (retried here; if another
   * coordinator retried it first, its retry is joined). A completed job whose entry the remote no
   * longer has (the bucket was emptied) is removed, so the instance is submitted anew.
   */
  private async reusableJob(queue: Queue, fingerprint: string): Promise<Job | undefined> {
    const job = await queue.getJob(fingerprint);
    if (!job) return undefined;
    const state = await job.getState();
    if (state === 'failed') {
      await job.retry().catch(() => undefined);
      return (await queue.getJob(fingerprint)) ?? undefined;
    }
    if (state === 'completed' && !(await this.remote.has(this.remote.manifestKey(fingerprint)))) {
      await job.remove().catch(() => undefined);
      return undefined;
    }
    return job;
  }

  abort(): void {
    this.aborted = true;
    for (const f of this.abortWaiters) f();
  }

  async close(): Promise<void> {
    if (this.watchdog) {
      clearInterval(this.watchdog.timer);
      this.watchdog.client.disconnect();
    }
    // with Redis gone, BullMQ's close can wait for a reconnection: give it 2 s, then let go
    const closing = (async () => {
      for (const { queue, events } of this.queues.values()) {
        await events.close().catch(() => undefined);
        await queue.close().catch(() => undefined);
      }
    })();
    await Promise.race([closing, new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}

export const hostTag = (): string => `${os.hostname()}:${process.pid}`;
