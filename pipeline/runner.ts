/**
 * runPipeline: plan (params, stages, instances, fingerprints: plan.ts), then run what is missing or
 * stale in child processes, `jobs` at a time (scheduler.ts), committing each instance's outputs
 * atomically on success (instance.ts), and show the run in results/ (showRun.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadRunStore, RunStore } from './db.ts';
import type { NodeState, RunContext } from './instance.ts';
import { acquireLock, type Lock } from './lock.ts';
import { dryRun, formatDryRun, type InstanceResult, type InstanceStatus, type Plan, planPipeline, type RunOptions } from './plan.ts';
import { plainReporter, type Reporter, ttyReporter } from './progress.ts';
import { Scheduler } from './scheduler.ts';
import { showRun } from './showRun.ts';
import { killStages } from './spawn.ts';
import { Store } from './store.ts';
import { formatSeconds } from './util.ts';

export { componentsFor, dryRun, formatDryRun, planPipeline, startMessageFor } from './plan.ts';
export type { InstanceResult, InstanceStatus, Plan, RunOptions } from './plan.ts';

export interface RunSummary {
  runId: string | null;
  status: 'ok' | 'failed' | 'interrupted' | 'dry-run';
  exitCode: number;
  instances: InstanceResult[];
}

function newRunId(): string {
  const d = new Date();
  const stamp = d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

async function gitCommit(root: string): Promise<string | null> {
  const direct = headFromGitDir(root);
  if (direct) return direct;
  try {
    const { $ } = await import('zx/core');
    const p = await $({ cwd: root, nothrow: true, quiet: true })`git rev-parse HEAD`;
    return p.exitCode === 0 ? p.stdout.trim() : null;
  } catch {
    return null;
  }
}

/**
 * HEAD's commit read from <root>/.git itself (HEAD, then the branch's loose ref or packed-refs): a
 * few file reads instead of a git process, which took 60–140 ms of a no-op run. Anything else (a
 * worktree's .git file, a root below the repository's top, an unusual ref) returns null and
 * `git rev-parse HEAD` answers.
 */
export function headFromGitDir(root: string): string | null {
  const SHA = /^[0-9a-f]{40}$/;
  try {
    const gitDir = path.join(root, '.git');
    const head = readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    if (SHA.test(head)) return head;
    const m = /^ref: (refs\/[^\s]+)$/.exec(head);
    if (!m) return null;
    try {
      const loose = readFileSync(path.join(gitDir, m[1]), 'utf8').trim();
      return SHA.test(loose) ? loose : null;
    } catch {
      for (const line of readFileSync(path.join(gitDir, 'packed-refs'), 'utf8').split('\n')) {
        const [sha, ref] = line.trim().split(' ');
        if (ref === m[1] && SHA.test(sha)) return sha;
      }
      return null;
    }
  } catch {
    return null;
  }
}

/** Plan, then run every selected instance that is missing or stale. The programmatic `npm run pipeline`. */
export async function runPipeline(opts: RunOptions = {}): Promise<RunSummary> {
  const out = opts.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  const err = opts.err ?? ((s: string) => process.stderr.write(`${s}\n`));
  if (!opts.dryRun) loadRunStore();
  const plan = await planPipeline(opts);
  if (opts.dryRun) {
    const instances = await dryRun(plan);
    out(formatDryRun(instances));
    return { runId: null, status: 'dry-run', exitCode: 0, instances };
  }

  const lock: Lock = await acquireLock(path.join(plan.paths.cacheDir, 'lock'), { waitSeconds: opts.waitSeconds ?? 0, log: err });
  const releaseOnExit = (): void => lock.releaseSync();
  process.once('exit', releaseOnExit);
  try {
    return await execute(plan, opts, out, err);
  } finally {
    process.removeListener('exit', releaseOnExit);
    await lock.release();
  }
}

type RunStatus = 'running' | 'ok' | 'failed' | 'interrupted';

/** The runs row of this run: written when it starts, again once the git commit is known, and at the end. */
interface RunRecord {
  row: {
    run_id: string;
    started: Date;
    finished: Date | null;
    git_commit: string | null;
    params: Record<string, unknown>;
    overrides: Record<string, unknown>;
    env: Record<string, string>;
    status: RunStatus;
    command: string;
    jobs: number;
  };
  gitKnown: Promise<void>;
}

function startRunRecord(plan: Plan, opts: RunOptions, db: RunStore, runId: string, jobs: number): RunRecord {
  const row: RunRecord['row'] = {
    run_id: runId,
    started: new Date(),
    finished: null,
    git_commit: null,
    params: plan.params,
    overrides: Object.fromEntries(plan.overrides.map((o) => [o.key, o.value])),
    env: plan.env,
    status: 'running',
    command: opts.command ?? 'run',
    jobs,
  };
  db.run({ ...row });
  db.scheduleFlush(1000); // the run shows as 'running' while it lasts
  // Rewrite the run row once the commit is known, so stages that read it mid-run (the report) see it.
  const gitKnown = gitCommit(plan.paths.root).then((c) => {
    row.git_commit = c;
    if (c) db.run({ ...row });
  });
  return { row, gitKnown };
}

function makeReporter(mode: RunOptions['progress'], out: (s: string) => void): Reporter {
  if (mode === 'none') return plainReporter(() => undefined);
  if (mode === 'tty' || ((mode ?? 'auto') === 'auto' && process.stdout.isTTY)) return ttyReporter();
  return plainReporter(out);
}

/** The run's folder, run store, runs row and progress display, with every instance pending. */
async function openRun(plan: Plan, opts: RunOptions, out: (s: string) => void, err: (s: string) => void): Promise<{ ctx: RunContext; record: RunRecord }> {
  const { paths } = plan;
  const store = new Store(paths.cacheDir);
  const leftovers = await store.clearTmp();
  if (leftovers > 0) err(`removed ${leftovers} uncommitted attempt(s) left in ${path.join(paths.cacheDir, 'tmp')} by an interrupted run`);
  const jobs = Math.max(1, opts.jobs ?? os.availableParallelism());
  const runId = newRunId();
  const runDir = path.join(paths.resultsDir, 'runs', runId);
  const logsDir = path.join(runDir, 'logs');
  await fs.mkdir(logsDir, { recursive: true });
  const db = new RunStore(path.join(paths.resultsDir, 'results.duckdb'), path.join(runDir, 'records.jsonl'), runId, err);
  db.open();
  const record = startRunRecord(plan, opts, db, runId, jobs);
  const reporter = makeReporter(opts.progress, out);
  reporter.begin(plan.selected.length, Math.max(8, ...plan.selected.map((i) => i.id.length)));
  out(`run ${runId}: ${plan.selected.length} instance(s), jobs=${jobs}, logs in ${path.relative(process.cwd(), logsDir) || logsDir}`);
  const nodes = new Map<string, NodeState>();
  plan.selected.forEach((inst, index) => nodes.set(inst.id, { inst, index, status: 'pending', reason: '', seconds: 0 }));
  const children = new Set<ChildProcess>();
  const ctx: RunContext = { plan, opts, store, db, reporter, runId, runDir, logsDir, err, nodes, results: new Map(), children, interrupted: false };
  return { ctx, record };
}

async function execute(plan: Plan, opts: RunOptions, out: (s: string) => void, err: (s: string) => void): Promise<RunSummary> {
  const { ctx, record } = await openRun(plan, opts, out, err);
  const onAbort = (): void => {
    ctx.interrupted = true;
    killStages(ctx.children);
    opts.executor?.abort();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  await new Scheduler(ctx, record.row.jobs).run();
  opts.signal?.removeEventListener('abort', onAbort);
  ctx.reporter.stop();
  return closeRun(ctx, record, out);
}

/** Final runs row, flush the run store, switch results/, print the summary line. */
async function closeRun(ctx: RunContext, record: RunRecord, out: (s: string) => void): Promise<RunSummary> {
  const { db, err, runId } = ctx;
  const { row } = record;
  const list = ctx.plan.selected.map((i) => ctx.results.get(i.id)!);
  const count = (s: InstanceStatus): number => list.filter((r) => r.status === s).length;
  const failed = count('failed');
  row.status = ctx.interrupted ? 'interrupted' : failed > 0 ? 'failed' : 'ok';
  row.finished = new Date();
  await record.gitKnown;
  db.run(row);
  await db.commitPending();
  if (db.pendingCount > 0) await db.flush();
  if (db.pendingCount > 0) err(`results.duckdb was not updated for this run: its records are in ${path.join(ctx.runDir, 'records.jsonl')}`);
  // results/ is switched while DuckDB checkpoints the last batch on its own threads.
  const contentOf = (label: string): string | undefined => ctx.nodes.get(label)?.content;
  await showRun({ plan: ctx.plan, runId, status: row.status, list, store: ctx.store, contentOf, out, err });
  await db.closed();
  const took = formatSeconds((Date.now() - row.started.getTime()) / 1000);
  if (count('ran') === 0 && failed === 0 && count('skipped') === 0) {
    out(`nothing to run: all ${list.length} instances cached (${took})`);
  } else {
    out(`${row.status}: ${count('ran')} ran, ${count('cached')} cached, ${failed} failed, ${count('skipped')} skipped (${took})`);
  }
  const exitCode = ctx.interrupted ? 130 : failed > 0 ? 1 : 0;
  return { runId, status: row.status as RunSummary['status'], exitCode, instances: list };
}
