/**
 * One instance in a run, in the order the scheduler takes it: checkCache (serve it from the local or
 * remote cache, or say why it runs), then runInstance (open its log, start it locally or on the
 * executor, relay its messages, commitAttempt, report the outcome). Every step records into the
 * RunContext the run shares.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ENGINE_TABLES, type RunStore } from './db.ts';
import { CorruptRemoteObject } from './errors.ts';
import { type FingerprintComponents, fingerprintOf } from './fingerprint.ts';
import type { Instance } from './graph.ts';
import { componentsFor, type InstanceResult, type InstanceStatus, type Plan, reasonToRun, type RunOptions, startMessageFor } from './plan.ts';
import type { Reporter } from './progress.ts';
import type { ChildMessage, StartMessage } from './protocol.ts';
import type { RemoteCache } from './remote.ts';
import { spawnStage } from './spawn.ts';
import { contentHashOf, linkResult, type Manifest, type Store } from './store.ts';
import { formatSeconds } from './util.ts';

export interface NodeState {
  inst: Instance;
  /** Position in the plan: ready instances start in this order. */
  index: number;
  status: 'pending' | 'evaluating' | 'ready' | 'running' | InstanceStatus;
  fingerprint?: string;
  components?: FingerprintComponents;
  /** Content hash of the committed outputs, once cached or ran. */
  content?: string;
  reason: string;
  seconds: number;
  /** CPU cores given to the instance when it started (StageContext.cpus). */
  cpus?: number;
}

/** What every step of a run shares. `interrupted` turns true once (SIGINT): nothing more starts. */
export interface RunContext {
  plan: Plan;
  opts: RunOptions;
  store: Store;
  db: RunStore;
  reporter: Reporter;
  runId: string;
  runDir: string;
  logsDir: string;
  err: (line: string) => void;
  nodes: Map<string, NodeState>;
  results: Map<string, InstanceResult>;
  /** Local stage processes now running (killed on interrupt). */
  children: Set<ChildProcess>;
  interrupted: boolean;
}

/** A settled instance: its result for the summary and its stage_runs row. */
export function recordResult(ctx: RunContext, node: NodeState, status: 'cached' | 'ran' | 'failed' | 'skipped', startedAt: Date): void {
  node.status = status;
  const { inst } = node;
  const fingerprint = node.fingerprint ?? null;
  ctx.results.set(inst.id, { label: inst.id, stage: inst.stage.name, instance: inst.instance, status, reason: node.reason, fingerprint, seconds: node.seconds });
  ctx.db.stageRun({
    stage: inst.stage.name,
    instance: inst.instance,
    label: inst.id,
    fingerprint,
    status,
    seconds: node.seconds,
    reason: node.reason,
    started: startedAt,
    finished: new Date(),
  });
  ctx.db.scheduleFlush();
}

/**
 * The instance's ref points at its entry, and the entry is linked in this run's own folder as soon as
 * it is committed (or found cached); results/<stage> switches to this run only when the whole run
 * succeeded (showRun).
 */
async function publish(ctx: RunContext, node: NodeState): Promise<void> {
  const runOutputs = path.join(ctx.runDir, 'outputs');
  await ctx.store.writeRef(node.inst.stage.name, node.inst.id, node.fingerprint!);
  await linkResult(runOutputs, node.inst.stage.name, node.inst.instance, ctx.store.outDir(node.fingerprint!)).catch((e: Error) =>
    ctx.err(`could not update ${runOutputs} for ${node.inst.id}: ${e.message}`),
  );
}

/** Try the remote cache for a local miss; a corrupted remote entry is reported and not used. */
async function pullFromRemote(remote: RemoteCache, store: Store, fp: string, label: string, err: (s: string) => void): Promise<boolean> {
  try {
    return (await remote.pullEntry(store, fp)) === 'pulled';
  } catch (e) {
    if (e instanceof CorruptRemoteObject) err(`${label}: ${e.message}: recomputing`);
    else err(`${label}: remote cache unavailable (${(e as Error).message}): recomputing locally`);
    return false;
  }
}

/**
 * Fingerprint the instance (its inputs are settled), then serve it from the cache (status 'cached')
 * or leave it 'ready' to run with the reason why. A corrupted entry is removed and recomputed.
 */
export async function checkCache(ctx: RunContext, node: NodeState): Promise<void> {
  const { store, opts } = ctx;
  const t0 = new Date();
  const comps = componentsFor(ctx.plan, node.inst, (l) => ctx.nodes.get(l)!.content!);
  const fp = fingerprintOf(comps);
  node.fingerprint = fp;
  node.components = comps;
  if (ctx.plan.forced.has(node.inst.id)) {
    node.reason = 'forced (--force)';
    node.status = 'ready';
    return;
  }
  const serveCached = async (contentHash: string, reason: string): Promise<void> => {
    node.content = contentHash;
    node.reason = reason;
    await publish(ctx, node);
    ctx.reporter.cached(node.inst.id);
    recordResult(ctx, node, 'cached', t0);
  };
  const v = await store.verify(fp, { rehash: opts.verify });
  if (v.ok) return serveCached(v.manifest.contentHash, 'up to date');
  if (v.missing && opts.remote && (await pullFromRemote(opts.remote, store, fp, node.inst.id, ctx.err))) {
    const pulled = await store.verify(fp);
    if (pulled.ok) return serveCached(pulled.manifest.contentHash, 'up to date (pulled from the remote cache)');
  }
  if (v.missing) {
    node.reason = await reasonToRun(store, node.inst, fp, comps);
  } else {
    ctx.err(`cache entry ${node.inst.id} (${fp.slice(0, 12)}) corrupted (${v.problem}): recomputing`);
    node.reason = `cache entry corrupted (${v.problem})`;
    await store.remove(fp);
  }
  node.status = 'ready';
}

/** One attempt at running an instance: where it writes, its log, and what its messages said. */
interface Attempt {
  node: NodeState;
  startedAt: Date;
  tmp: { dir: string; out: string };
  scratchDir: string;
  logFile: string;
  log: WriteStream;
  /** Set by the child's `done` message: the outputs to commit. */
  files?: Manifest['files'];
  failure?: string;
  failureStack?: string;
}

async function openAttempt(ctx: RunContext, node: NodeState): Promise<Attempt> {
  const { inst } = node;
  const fp = node.fingerprint!;
  const startedAt = new Date();
  const tmp = await ctx.store.makeTmp();
  const scratchDir = ctx.store.scratchDir(fp);
  await fs.mkdir(scratchDir, { recursive: true });
  const logFile = path.join(ctx.logsDir, `${inst.id.replace(/[/\\]/g, '_')}.log`);
  const log = createWriteStream(logFile);
  log.write(`# ${inst.id}  fingerprint ${fp}\n# reason: ${node.reason}\n# started ${startedAt.toISOString()}\n`);
  ctx.reporter.start(inst.id, node.reason);
  return { node, startedAt, tmp, scratchDir, logFile, log };
}

/** The child protocol's `start` message: the stage, its params, its inputs' folders, where to write. */
function startMessage(ctx: RunContext, attempt: Attempt): { start: StartMessage; inputFingerprints: Record<string, string> } {
  const upstream = (l: string) => {
    const n = ctx.nodes.get(l)!;
    return { instance: n.inst.instance, fingerprint: n.fingerprint! };
  };
  return startMessageFor(ctx.plan, attempt.node.inst, upstream, { store: ctx.store, outDir: attempt.tmp.out, scratchDir: attempt.scratchDir, resultsDb: ctx.db.dbPath, cpus: attempt.node.cpus });
}

/** Handle one message of the stage: log lines, progress, metrics and tables into the run store. */
function relayMessage(ctx: RunContext, attempt: Attempt, msg: ChildMessage): void {
  const { inst } = attempt.node;
  switch (msg.type) {
    case 'log':
      attempt.log.write(`${msg.message}\n`);
      ctx.reporter.line(`  [${inst.id}] ${msg.message}`);
      break;
    case 'progress':
      ctx.reporter.progress(inst.id, msg.done, msg.total, msg.info);
      break;
    case 'metrics':
      ctx.db.metrics(inst.stage.name, inst.instance, msg.items);
      break;
    case 'table':
      if (ENGINE_TABLES.includes(msg.name)) attempt.failure = `ctx.table: "${msg.name}" is an engine table`;
      else ctx.db.table(msg.name, inst.stage.name, inst.instance, msg.rows);
      break;
    case 'done':
      attempt.files = msg.files;
      break;
    case 'error':
      attempt.failure = msg.message;
      attempt.failureStack = msg.stack;
      attempt.log.write(`${msg.stack ?? msg.message}\n`);
      break;
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Run the stage in a local child process, or on the executor (which commits and pulls the entry itself). */
async function launch(ctx: RunContext, attempt: Attempt): Promise<Exit> {
  const { node } = attempt;
  const { start, inputFingerprints } = startMessage(ctx, attempt);
  const onMessage = (msg: ChildMessage): void => relayMessage(ctx, attempt, msg);
  // Upstream metrics and stage rows are in results.duckdb before a stage starts (the report reads them).
  if (ctx.db.pendingCount > 0) await ctx.db.flush();
  // a `local` stage reads what only the coordinator has: it never goes to a worker
  const executor = node.inst.stage.local ? undefined : ctx.opts.executor;
  if (!executor) {
    const env = { PIPELINE_RUN_ID: ctx.runId, PIPELINE_INSTANCE: node.inst.id };
    const r = await spawnStage(start, { cwd: ctx.plan.paths.root, env, log: attempt.log, onMessage, children: ctx.children });
    if (r.startError) attempt.failure ??= r.startError;
    return r;
  }
  // Remote: a worker runs the same child protocol; its messages come back through the job.
  const fp = node.fingerprint!;
  const r = await executor.run({ start, fingerprint: fp, components: node.components!, inputFingerprints, store: ctx.store, env: ctx.plan.env, onMessage });
  if (r.failure) attempt.failure ??= r.failure;
  if (r.contentHash && !attempt.failure) {
    // The worker committed to the remote; the executor pulled (and verified) the entry here.
    await fs.rm(attempt.tmp.dir, { recursive: true, force: true });
    node.content = r.contentHash;
    attempt.files = undefined;
    await ctx.store.clearScratch(fp);
    await publish(ctx, node);
  }
  return r;
}

/** Commit the attempt's outputs as the instance's cache entry, publish it, push it to the remote. */
async function commitAttempt(ctx: RunContext, attempt: Attempt, files: Manifest['files']): Promise<void> {
  const { node } = attempt;
  const { inst } = node;
  const fp = node.fingerprint!;
  const manifest: Manifest = {
    fingerprint: fp,
    stage: inst.stage.name,
    label: inst.id,
    instance: inst.instance,
    components: node.components!,
    files,
    contentHash: contentHashOf(files),
    committedAt: new Date().toISOString(),
    runId: ctx.runId,
    seconds: node.seconds,
  };
  await ctx.store.commit(attempt.tmp.dir, manifest);
  node.content = manifest.contentHash;
  await ctx.store.clearScratch(fp);
  await publish(ctx, node);
  if (ctx.opts.remote) {
    await ctx.opts.remote.pushEntry(ctx.store, fp).catch((e: Error) => ctx.err(`could not push ${inst.id} to the remote cache: ${e.message}`));
  }
}

/** Why a stage that sent neither `done` nor `error` failed. */
function exitFailure({ code, signal }: Exit): string {
  if (signal) return `killed by ${signal}`;
  if (code === 0) return 'the process ran out of work before run() settled (a promise that never resolves?)';
  return `the stage process exited with code ${code} before finishing`;
}

async function tailLines(file: string, n: number, without?: string): Promise<string[]> {
  let text = await fs.readFile(file, 'utf8').catch(() => '');
  if (without) text = text.replace(`${without}\n`, '');
  return text
    .trimEnd()
    .split('\n')
    .filter((l) => !l.startsWith('# FAILED: '))
    .slice(-n);
}

/** The console line and the recorded status of a finished attempt (its log is closed). */
async function reportOutcome(ctx: RunContext, attempt: Attempt): Promise<void> {
  const { node, failure, failureStack, logFile, startedAt } = attempt;
  const { id } = node.inst;
  const took = formatSeconds(node.seconds);
  if (!failure) {
    ctx.reporter.finish(id, `✓ ${id} ran in ${took}`);
    return recordResult(ctx, node, 'ran', startedAt);
  }
  await fs.rm(attempt.tmp.dir, { recursive: true, force: true });
  if (ctx.interrupted) {
    node.reason = `${node.reason}; interrupted (${failure})`;
    ctx.reporter.finish(id, `✗ ${id} interrupted after ${took}`);
  } else {
    node.reason = `${node.reason}; failed: ${failure}`;
    // The console gets the message and what the stage printed; the stack trace stays in the log.
    const tail = await tailLines(logFile, 20, failureStack);
    ctx.reporter.finish(
      id,
      `✗ ${id} failed after ${took}: ${failure}\n  last lines of ${logFile}${failureStack ? ' (stack trace there)' : ''}:\n${tail.map((l) => `    ${l}`).join('\n')}`,
    );
  }
  recordResult(ctx, node, 'failed', startedAt);
}

/** Run a 'ready' instance once: start it, commit what it wrote, record 'ran' or 'failed'. */
export async function runInstance(ctx: RunContext, node: NodeState): Promise<void> {
  const attempt = await openAttempt(ctx, node);
  const exit = await launch(ctx, attempt);
  node.seconds = (Date.now() - attempt.startedAt.getTime()) / 1000;
  if (attempt.files && exit.code === 0 && !attempt.failure) {
    try {
      await commitAttempt(ctx, attempt, attempt.files);
    } catch (e) {
      attempt.failure = `commit failed: ${(e as Error).message}`;
    }
  } else if (!attempt.failure && !node.content) {
    attempt.failure = exitFailure(exit);
  }
  attempt.log.write(`# ${attempt.failure ? `FAILED: ${attempt.failure}` : 'committed'} after ${formatSeconds(node.seconds)}\n`);
  await new Promise<void>((resolve) => attempt.log.end(resolve));
  await reportOutcome(ctx, attempt);
}
