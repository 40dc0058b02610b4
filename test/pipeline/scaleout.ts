/**
 * Shared set-up of the scale-out tests and bench: a real Redis (redis-server) and a real S3 API
 * (s3rver) on loopback, fixture checkouts in temp dirs, workers as separate CLI processes, and
 * everything stopped and removed at the end.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Store } from '../../pipeline/store.ts';
import { type CliProcess, REPO, makeProject, removeProject, startCli, waitFor } from './helpers.ts';
import { type RedisFixture, type RedisOptions, startRedis } from './redis.ts';
import { type S3Fixture, startS3 } from './s3.ts';
import { REPO_FILES } from '../repoFiles.ts';

export interface ScaleOut {
  redis: RedisFixture;
  s3: S3Fixture;
  /** A fresh checkout of a fixture project (removed by stop()). */
  project(name?: string): Promise<string>;
  /** A fresh checkout of this repository's own project (sources copied, node_modules linked). */
  repoCheckout(): Promise<string>;
  /** `cli.ts worker --redis … --remote <url> [args]` in `root`, started (stopped by stop()). */
  startWorker(root: string, url: string, args?: string[], env?: Record<string, string>): CliProcess;
  /** startWorker, resolved once the worker listens on its queue. */
  worker(root: string, url: string, args?: string[], env?: Record<string, string>): Promise<CliProcess>;
  /** SIGTERM the workers still running and wait for them. */
  stopWorkers(): Promise<void>;
  stop(): Promise<void>;
}

/** What a checkout of the project holds (besides node_modules). */


export async function startScaleOut(opts: RedisOptions = {}): Promise<ScaleOut> {
  const redis = await startRedis(opts);
  const s3 = await startS3();
  const roots: string[] = [];
  const workers: CliProcess[] = [];
  const running = (w: CliProcess): boolean => w.child.exitCode === null && w.child.signalCode === null;
  const stopWorkers = async (): Promise<void> => {
    for (const w of workers) if (running(w)) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.done));
  };
  const startWorker = (root: string, url: string, args: string[] = [], env: Record<string, string> = {}): CliProcess => {
    const w = startCli(root, ['worker', '--redis', redis.url, '--remote', url, ...args], { ...s3.env, ...redis.env, ...env });
    workers.push(w);
    return w;
  };
  return {
    redis,
    s3,
    startWorker,
    async project(name = 'toy') {
      const r = await makeProject(name);
      roots.push(r);
      return r;
    },
    async repoCheckout() {
      const r = await fs.mkdtemp(path.join(os.tmpdir(), 'pipeline-repo-'));
      roots.push(r);
      for (const f of REPO_FILES) await fs.cp(path.join(REPO, f), path.join(r, f), { recursive: true });
      await fs.symlink(path.join(REPO, 'node_modules'), path.join(r, 'node_modules'));
      return r;
    },
    async worker(root, url, args = [], env = {}) {
      const w = startWorker(root, url, args, env);
      await waitFor(() => w.output().stderr.includes(' on queue ') || !running(w), 'worker ready', 120_000);
      if (!running(w)) throw new Error(`the worker exited: ${w.output().stderr}`);
      return w;
    },
    stopWorkers,
    async stop() {
      await stopWorkers();
      for (const r of roots) await removeProject(r);
      await redis.stop();
      await s3.stop();
    },
  };
}

/** `<label> <fingerprint>` -> content hash of every instance the store's refs name. */
export async function entries(root: string): Promise<Record<string, string>> {
  const store = new Store(path.join(root, '.cache'));
  const out: Record<string, string> = {};
  for (const r of await store.refs()) out[`${r.label} ${r.fingerprint}`] = (await store.readManifest(r.fingerprint))!.contentHash;
  return out;
}
