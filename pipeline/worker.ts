/**
 * `npm run worker -- --redis redis://host:6379 --remote s3://bucket/prefix [--concurrency N]`:
 * pulls stage jobs from the queue of this machine's backend, refuses any job whose fingerprint this
 * checkout cannot reproduce, fetches inputs from the remote cache by hash, runs the stage exactly as
 * a local child does, commits locally, pushes the entry write-once and returns its content hash.
 */
import { availableParallelism } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { explainChange, fingerprintOf } from './fingerprint.ts';
import type { ChildMessage } from './protocol.ts';
import { type RelayedMessage, type StageJobData, type StageJobResult, parseRedisUrl, queueName, redactUrl, validateJobData } from './queue.ts';
import type { RemoteCache } from './remote.ts';
import { componentsFor, planPipeline, startMessageFor } from './runner.ts';
import { killStages, spawnStage } from './spawn.ts';
import { contentHashOf, type Manifest, Store } from './store.ts';

export interface WorkerOptions {
  root?: string;
  redis: string;
  remote: RemoteCache;
  concurrency?: number;
  log?: (line: string) => void;
}

export interface RunningWorker {
  queue: string;
  close(): Promise<void>;
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const base = await planPipeline({ root: opts.root });
  const store = new Store(base.paths.cacheDir);
  const declared = new Set(base.project.stages.map((s) => s.name));
  const name = queueName(base.env, opts.remote);
  const tag = `${os.hostname()}:${process.pid}`;
  const children = new Set<ChildProcess>();
  const logsDir = path.join(base.paths.cacheDir, 'worker-logs');
  await fs.mkdir(logsDir, { recursive: true });

  // With --concurrency > 1 several jobs may need one input at once: one download per fingerprint
  // (the store's commit is safe anyway when two race; this only saves the second download).
  const pulling = new Map<string, Promise<'pulled' | 'present' | 'absent'>>();
  const pullOnce = (fp: string): Promise<'pulled' | 'present' | 'absent'> => {
    let p = pulling.get(fp);
    if (!p) {
      p = opts.remote.pullEntry(store, fp).finally(() => pulling.delete(fp));
      pulling.set(fp, p);
    }
    return p;
  };

  const process_ = async (job: Job<StageJobData, StageJobResult>): Promise<StageJobResult> => {
    const problem = validateJobData(job.data);
    if (problem) throw new UnrecoverableError(`rejected job ${job.id}: ${problem}`);
    const data = job.data;
    if (job.id !== data.fingerprint) throw new UnrecoverableError(`rejected job ${job.id}: its id is not its fingerprint`);
    if (!declared.has(data.stage)) throw new UnrecoverableError(`rejected job ${job.id}: stage "${data.stage}" is not declared by this checkout`);
    const plan = await planPipeline({ root: opts.root, paramsValue: data.params as Record<string, unknown> });
    const inst = plan.instances.find((i) => i.id === data.label && i.stage.name === data.stage);
    if (!inst) throw new UnrecoverableError(`rejected job ${job.id}: no instance ${data.label} with these params in this checkout`);
    // Inputs by hash from the remote (verified), then this checkout's own fingerprint of the instance.
    const contents: Record<string, string> = {};
    for (const [label, fp] of Object.entries(data.inputs)) {
      const r = await pullOnce(fp);
      if (r === 'absent') throw new Error(`input ${label} (${fp.slice(0, 12)}) is not in the remote cache`);
      contents[label] = (await store.readManifest(fp))!.contentHash;
    }
    const comps = componentsFor(plan, inst, (l) => {
      if (!(l in contents)) throw new UnrecoverableError(`rejected job ${job.id}: input ${l} not given`);
      return contents[l];
    });
    const fp = fingerprintOf(comps);
    if (fp !== data.fingerprint) {
      const why = explainChange(data.components, comps);
      throw new UnrecoverableError(
        `refused ${data.label}: this worker cannot reproduce fingerprint ${data.fingerprint.slice(0, 12)} (it computes ${fp.slice(0, 12)}): ${why.join('; ') || 'fingerprint differs'} — run the worker on a checkout of the coordinator's commit with the same backend`,
      );
    }
    log(`${data.label} ${fp.slice(0, 12)} started`);
    if (!(await store.verify(fp)).ok) await runHere();
    async function runHere(): Promise<void> {
      const tmp = await store.makeTmp();
      const scratchDir = store.scratchDir(fp);
      await fs.mkdir(scratchDir, { recursive: true });
      const upstream = (l: string) => ({ instance: plan.instances.find((i) => i.id === l)!.instance, fingerprint: data.inputs[l] });
      // this machine's cores, shared by the jobs the worker runs at once
      const cpus = Math.max(1, Math.floor(availableParallelism() / (opts.concurrency ?? 1)));
      const { start } = startMessageFor(plan, inst!, upstream, { store, outDir: tmp.out, scratchDir, cpus });
      await fs.mkdir(logsDir, { recursive: true });
      const logStream = createWriteStream(path.join(logsDir, `${fp.slice(0, 16)}.log`));
      let seq = 0;
      let files: Manifest['files'] | undefined;
      let failure: string | undefined;
      const relay: Promise<void>[] = [];
      const onMessage = (m: ChildMessage): void => {
        if (m.type === 'done') files = m.files;
        else {
          if (m.type === 'error') failure = m.message;
          relay.push(job.updateProgress({ ...m, seq: seq++ } satisfies RelayedMessage as never).catch(() => undefined));
        }
      };
      const t0 = Date.now();
      const r = await spawnStage(start, { cwd: plan.paths.root, env: { PIPELINE_INSTANCE: inst!.id }, log: logStream, onMessage, children });
      await Promise.all(relay);
      await new Promise<void>((res) => logStream.end(res));
      if (!files || r.code !== 0 || failure) {
        await fs.rm(tmp.dir, { recursive: true, force: true });
        throw new Error(failure ?? r.startError ?? (r.signal ? `killed by ${r.signal}` : `the stage process exited with code ${r.code}`));
      }
      const manifest: Manifest = {
        fingerprint: fp,
        stage: inst!.stage.name,
        label: inst!.id,
        instance: inst!.instance,
        components: comps,
        files,
        contentHash: contentHashOf(files),
        committedAt: new Date().toISOString(),
        runId: `worker ${tag}`,
        seconds: (Date.now() - t0) / 1000,
      };
      await store.commit(tmp.dir, manifest);
      await store.clearScratch(fp);
    }
    const pushed = await opts.remote.pushEntry(store, fp);
    if (pushed.contentHash !== (await store.readManifest(fp))!.contentHash) {
      // Another worker committed this fingerprint first with other content (a non-deterministic
      // stage): the remote's entry is the result; this one is replaced by it.
      log(`${data.label} ${fp.slice(0, 12)}: the remote already holds another result for this fingerprint (non-deterministic stage?): using it`);
      await store.remove(fp);
      await pullOnce(fp);
    }
    const m = (await store.readManifest(fp))!;
    log(`${data.label} ${fp.slice(0, 12)} committed to the remote${pushed.pushed ? '' : ' (already there)'}`);
    return { fingerprint: fp, contentHash: m.contentHash, files: Object.fromEntries(Object.entries(m.files).map(([k, e]) => [k, { sha256: e.sha256, size: e.size }])), worker: tag };
  };

  const lockSeconds = Number(process.env.PIPELINE_WORKER_LOCK_SECONDS ?? 30);
  const worker = new Worker<StageJobData, StageJobResult>(name, process_, {
    connection: parseRedisUrl(opts.redis) as never,
    concurrency: opts.concurrency ?? 1,
    // A SIGKILLed worker stops renewing its lock: after this the job is stalled and handed to another.
    lockDuration: lockSeconds * 1000,
    stalledInterval: lockSeconds * 1000,
  });
  worker.on('error', (e) => log(`redis (${redactUrl(opts.redis)}): ${e.message}`));
  worker.on('failed', (job, e) => log(`${job?.data?.label ?? job?.id}: ${e.message}`));
  await worker.waitUntilReady();
  log(`worker ${tag} on queue ${name} (${redactUrl(opts.redis)}), store ${store.dir}`);
  return {
    queue: name,
    async close() {
      killStages(children, 2000);
      await worker.close();
    },
  };
}
