/**
 * runPipeline: plan (params, stages, instances, fingerprints), then run what is missing or stale in
 * child processes, `jobs` at a time, committing each instance's outputs atomically on success.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type CodeGraph, loadCodeGraph, localClosure, packageVersions } from './closure.ts';
import { ENGINE_TABLES, RunStore } from './db.ts';
import { UsageError } from './errors.ts';
import { explainChange, ENGINE_FINGERPRINT_VERSION, type FingerprintComponents, fingerprintOf, type InputFingerprint } from './fingerprint.ts';
import { buildInstances, declaredKeys, hiddenKeys, type Instance, matchTargets, matrixKeys, withDependencies } from './graph.ts';
import { acquireLock, type Lock } from './lock.ts';
import { applyOverrides, declaredValues, type Override, parseOverride, readParamsFile, readSchema, validateParams } from './params.ts';
import { plainReporter, type Reporter, ttyReporter } from './progress.ts';
import { checkStageDefs, importProject, type PathOptions, type ProjectPaths, projectPaths, stageModules, validateProject } from './project.ts';
import type { ChildMessage, StartMessage } from './protocol.ts';
import type { Executor } from './executor.ts';
import { killStages, spawnStage } from './spawn.ts';
import { CorruptRemoteObject } from './errors.ts';
import type { RemoteCache } from './remote.ts';
import { contentHashOf, linkResult, type Manifest, type ResultEntry, Store, switchResults } from './store.ts';
import type { InstanceKey, Project, UpstreamInstance } from './types.ts';
import { formatSeconds } from './util.ts';


export interface RunOptions extends PathOptions {
  /** Stage names or label filters (`sae`, `sae[k=32]`); empty: every stage. */
  targets?: string[];
  /** Stage names or label filters whose instances run even if cached. */
  force?: string[];
  /** Only report what would run, and why. Takes no lock, writes nothing. */
  dryRun?: boolean;
  /** Instances running at once (default: number of CPU cores). */
  jobs?: number;
  /** Param overrides `key=<yaml value>`, recorded with the run. */
  set?: string[];
  /** Seconds to wait for a lock held by a live run (default 0: fail at once, exit code 3). */
  waitSeconds?: number;
  /** Re-hash every cache entry before using it, whatever its file stats (`run --verify`). */
  verify?: boolean;
  /** 'auto' (bars on a TTY, plain lines otherwise), 'tty', 'plain' or 'none'. */
  progress?: 'auto' | 'tty' | 'plain' | 'none';
  /** Where messages go (default: stdout / stderr). */
  out?: (line: string) => void;
  err?: (line: string) => void;
  /** Stop early (e.g. on SIGINT): running children are terminated, nothing more starts. */
  signal?: AbortSignal;
  /** Recorded in runs.command. */
  command?: string;
  /** A shared remote cache (`--remote s3://…`): misses are looked up there, new entries pushed to it. */
  remote?: RemoteCache;
  /** Params given as a value instead of read from the params file (a worker plans a job's params). */
  paramsValue?: Record<string, unknown>;
  /** Run instances elsewhere (BullMQ workers) instead of in local child processes. */
  executor?: Executor;
}

export type InstanceStatus = 'cached' | 'ran' | 'failed' | 'skipped' | 'to run';

export interface InstanceResult {
  label: string;
  stage: string;
  instance: InstanceKey;
  status: InstanceStatus;
  reason: string;
  fingerprint: string | null;
  seconds: number;
}

export interface RunSummary {
  runId: string | null;
  status: 'ok' | 'failed' | 'interrupted' | 'dry-run';
  exitCode: number;
  instances: InstanceResult[];
}

/** Everything known before running: the validated params, the instances, per-stage code facts. */
export interface Plan {
  paths: ProjectPaths;
  params: Record<string, unknown>;
  overrides: Override[];
  project: Project;
  instances: Instance[];
  selected: Instance[];
  forced: Set<string>;
  env: Record<string, string>;
  code: Map<string, { module: string; files: Record<string, string>; packages: Record<string, string> }>;
}

/** Load and check everything; throws ParamsError / UsageError (exit 2) before touching the store. */
export async function planPipeline(opts: RunOptions): Promise<Plan> {
  const paths = projectPaths(opts);
  const schema = await readSchema(paths.schema);
  const fileParams = opts.paramsValue ?? (await readParamsFile(paths.params));
  const overrides = (opts.set ?? []).map(parseOverride);
  const params = applyOverrides(fileParams, overrides);
  const keepValidator = validateParams(params, schema, paths.cacheDir);

  const project = await importProject(paths.stagesModule);
  checkStageDefs(project.stages);
  await validateProject(project, params);
  keepValidator();
  const instances = buildInstances(project.stages, params);
  const targets = opts.targets ?? [];
  const forced = opts.force?.length ? matchTargets(instances, opts.force) : new Set<string>();
  const selected = targets.length === 0 ? instances : withDependencies(instances, new Set([...matchTargets(instances, targets), ...forced]));

  let env: Record<string, string> = {};
  try {
    env = project.environment ? await project.environment(params) : {};
  } catch (e) {
    // e.g. a backend that cannot load on this machine: the user's to fix, so one line, no stack.
    throw new UsageError(`cannot run with these params: ${(e as Error).message}`);
  }
  for (const s of project.stages) {
    for (const field of s.env ?? []) {
      if (!(field in env)) {
        throw new UsageError(`stage "${s.name}" declares env field "${field}", which the project's environment() does not provide (it provides: ${Object.keys(env).join(', ') || 'nothing'})`);
      }
    }
  }

  const graph: CodeGraph = await loadCodeGraph(paths.root, paths.stagesModule, paths.cacheDir);
  const modules = await stageModules(project, graph, paths.root);
  const code: Plan['code'] = new Map();
  for (const s of project.stages) {
    const module = modules.get(s.name)!;
    const closure = localClosure(graph, module);
    code.set(s.name, {
      module: path.resolve(paths.root, module),
      files: Object.fromEntries(closure.map((f) => [f, graph.files[f].sha256])),
      packages: packageVersions(graph, closure),
    });
  }
  return { paths, params, overrides, project, instances, selected, forced, env, code };
}

interface NodeState {
  inst: Instance;
  index: number;
  status: 'pending' | 'evaluating' | 'ready' | 'running' | InstanceStatus;
  fingerprint?: string;
  components?: FingerprintComponents;
  content?: string;
  reason: string;
  seconds: number;
}

export function componentsFor(plan: Plan, inst: Instance, inputContent: (label: string) => string): FingerprintComponents {
  const stage = inst.stage;
  const code = plan.code.get(stage.name)!;
  const inputs: FingerprintComponents['inputs'] = {};
  for (const edge of inst.inputs) {
    const fps: InputFingerprint[] = edge.from.map((label) => ({ label, content: inputContent(label) }));
    inputs[edge.name] = edge.all ? fps : fps[0];
  }
  return {
    engine: ENGINE_FINGERPRINT_VERSION,
    stage: stage.name,
    code: code.files,
    packages: code.packages,
    // Only the keys this instance declares; every matrix list of the stage is left out (also those of
    // conditional variables it lacks), so adding a value to one never touches the others.
    params: declaredValues(plan.params, declaredKeys(stage, inst.instance), matrixKeys(stage)),
    instance: inst.instance,
    inputs,
    env: Object.fromEntries((stage.env ?? []).map((f) => [f, plan.env[f]])),
    outputs: [...stage.outputs].sort(),
  };
}

async function reasonToRun(store: Store, inst: Instance, fp: string, comps: FingerprintComponents, extra: string[] = []): Promise<string> {
  const ref = await store.readRef(inst.stage.name, inst.id);
  if (!ref) return ['never run', ...extra].join('; ');
  if (ref.fingerprint === fp) return ['outputs missing from the store', ...extra].join('; ');
  const prev = await store.readManifest(ref.fingerprint);
  if (!prev) return ['previous outputs are gone from the store', ...extra].join('; ');
  const reasons = [...explainChange(prev.components, comps), ...extra];
  return reasons.length > 0 ? reasons.join('; ') : 'fingerprint changed';
}

function newRunId(): string {
  const d = new Date();
  const stamp = d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

async function gitCommit(root: string): Promise<string | null> {
  try {
    const { $ } = await import('zx/core');
    const p = await $({ cwd: root, nothrow: true, quiet: true })`git rev-parse HEAD`;
    return p.exitCode === 0 ? p.stdout.trim() : null;
  } catch {
    return null;
  }
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

/** Dry run: every selected instance as cached or to run, with the reason. */
export async function dryRun(plan: Plan): Promise<InstanceResult[]> {
  const store = new Store(plan.paths.cacheDir);
  const nodes = new Map<string, NodeState>();
  const results: InstanceResult[] = [];
  for (const [index, inst] of plan.selected.entries()) {
    const node: NodeState = { inst, index, status: 'pending', reason: '', seconds: 0 };
    nodes.set(inst.id, node);
    const unknown = inst.inputs.flatMap((e) => e.from).filter((l) => nodes.get(l)!.status !== 'cached');
    const ref = unknown.length > 0 ? await store.readRef(inst.stage.name, inst.id) : undefined;
    const prev = ref ? await store.readManifest(ref.fingerprint) : undefined;
    // For inputs still to be rebuilt, assume the previous content to isolate this instance's own changes.
    const prevContent = new Map<string, string>();
    for (const v of Object.values(prev?.components.inputs ?? {})) for (const i of Array.isArray(v) ? v : [v]) prevContent.set(i.label, i.content);
    const comps = componentsFor(plan, inst, (l) => nodes.get(l)!.content ?? prevContent.get(l) ?? '?');
    const fp = fingerprintOf(comps);
    if (unknown.length > 0) {
      const waits = unknown.length > 2 ? `${unknown.slice(0, 2).join(', ')} (+${unknown.length - 2} more)` : unknown.join(', ');
      const own = prev ? explainChange(prev.components, comps) : ref ? [] : ['never run'];
      node.status = 'to run';
      node.reason = [...own, `input ${waits} will be recomputed`].join('; ');
    } else if (plan.forced.has(inst.id)) {
      node.status = 'to run';
      node.reason = 'forced (--force)';
    } else {
      const v = await store.verify(fp);
      if (v.ok) {
        node.status = 'cached';
        node.content = v.manifest.contentHash;
      } else {
        node.status = 'to run';
        node.reason = v.missing ? await reasonToRun(store, inst, fp, comps) : `cache entry corrupted (${v.problem}): will recompute`;
      }
    }
    results.push({ label: inst.id, stage: inst.stage.name, instance: inst.instance, status: node.status as InstanceStatus, reason: node.reason, fingerprint: fp, seconds: 0 });
  }
  return results;
}

export function formatDryRun(results: InstanceResult[]): string {
  const width = Math.min(60, Math.max(8, ...results.map((r) => r.label.length)));
  const lines = results.map((r) => `${r.status.padEnd(7)} ${r.label.padEnd(width)} ${r.reason}`.trimEnd());
  const toRun = results.filter((r) => r.status === 'to run').length;
  lines.push(toRun === 0 ? `nothing to run: all ${results.length} instances cached` : `${toRun} of ${results.length} instances to run`);
  return lines.join('\n');
}

/** Plan, then run every selected instance that is missing or stale. The programmatic `npm run pipeline`. */
export async function runPipeline(opts: RunOptions = {}): Promise<RunSummary> {
  const out = opts.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  const err = opts.err ?? ((s: string) => process.stderr.write(`${s}\n`));
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

async function execute(plan: Plan, opts: RunOptions, out: (s: string) => void, err: (s: string) => void): Promise<RunSummary> {
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
  const started = new Date();
  const runRow = {
    run_id: runId,
    started,
    finished: null as Date | null,
    git_commit: null as string | null,
    params: plan.params,
    overrides: Object.fromEntries(plan.overrides.map((o) => [o.key, o.value])),
    env: plan.env,
    status: 'running' as 'running' | 'ok' | 'failed' | 'interrupted',
    command: opts.command ?? 'run',
    jobs,
  };
  db.run({ ...runRow });
  db.scheduleFlush(1000); // the run shows as 'running' while it lasts
  // Rewrite the run row once the commit is known, so stages that read it mid-run (the report) see it.
  const gitPromise = gitCommit(paths.root).then((c) => {
    runRow.git_commit = c;
    if (c) db.run({ ...runRow });
  });
  const mode = opts.progress ?? 'auto';
  const reporter: Reporter =
    mode === 'none'
      ? plainReporter(() => undefined)
      : mode === 'tty' || (mode === 'auto' && process.stdout.isTTY)
        ? ttyReporter()
        : plainReporter(out);
  reporter.begin(plan.selected.length, Math.max(8, ...plan.selected.map((i) => i.id.length)));
  out(`run ${runId}: ${plan.selected.length} instance(s), jobs=${jobs}, logs in ${path.relative(process.cwd(), logsDir) || logsDir}`);

  const nodes = new Map<string, NodeState>();
  plan.selected.forEach((inst, index) => nodes.set(inst.id, { inst, index, status: 'pending', reason: '', seconds: 0 }));
  const results = new Map<string, InstanceResult>();
  const ready: NodeState[] = [];
  const children = new Set<ChildProcess>();
  let running = 0;
  let interrupted = false;

  const record = (node: NodeState, status: 'cached' | 'ran' | 'failed' | 'skipped', startedAt: Date): void => {
    node.status = status;
    const finished = new Date();
    results.set(node.inst.id, {
      label: node.inst.id,
      stage: node.inst.stage.name,
      instance: node.inst.instance,
      status,
      reason: node.reason,
      fingerprint: node.fingerprint ?? null,
      seconds: node.seconds,
    });
    db.stageRun({
      stage: node.inst.stage.name,
      instance: node.inst.instance,
      label: node.inst.id,
      fingerprint: node.fingerprint ?? null,
      status,
      seconds: node.seconds,
      reason: node.reason,
      started: startedAt,
      finished,
    });
    db.scheduleFlush();
  };

  // Each instance is linked in this run's own folder as soon as it is committed (or found cached);
  // results/<stage> switches to this run only when the whole run succeeded (see the end).
  const runOutputs = path.join(runDir, 'outputs');
  const publish = async (node: NodeState): Promise<void> => {
    await store.writeRef(node.inst.stage.name, node.inst.id, node.fingerprint!);
    await linkResult(runOutputs, node.inst.stage.name, node.inst.instance, store.outDir(node.fingerprint!)).catch((e: Error) =>
      err(`could not update ${runOutputs} for ${node.inst.id}: ${e.message}`),
    );
  };

  const evaluate = async (node: NodeState): Promise<void> => {
    const t0 = new Date();
    const comps = componentsFor(plan, node.inst, (l) => nodes.get(l)!.content!);
    const fp = fingerprintOf(comps);
    node.fingerprint = fp;
    node.components = comps;
    if (plan.forced.has(node.inst.id)) {
      node.reason = 'forced (--force)';
      node.status = 'ready';
      return;
    }
    const serveCached = async (contentHash: string, reason: string): Promise<void> => {
      node.content = contentHash;
      node.reason = reason;
      await publish(node);
      reporter.cached(node.inst.id);
      record(node, 'cached', t0);
    };
    const v = await store.verify(fp, { rehash: opts.verify });
    if (v.ok) return serveCached(v.manifest.contentHash, 'up to date');
    if (v.missing && opts.remote && (await pullFromRemote(opts.remote, store, fp, node.inst.id, err))) {
      const pulled = await store.verify(fp);
      if (pulled.ok) return serveCached(pulled.manifest.contentHash, 'up to date (pulled from the remote cache)');
    }
    if (v.missing) {
      node.reason = await reasonToRun(store, node.inst, fp, comps);
    } else {
      const msg = `cache entry ${node.inst.id} (${fp.slice(0, 12)}) corrupted (${v.problem}): recomputing`;
      err(msg);
      node.reason = `cache entry corrupted (${v.problem})`;
      await store.remove(fp);
    }
    node.status = 'ready';
  };

  const runNode = async (node: NodeState): Promise<void> => {
    const inst = node.inst;
    const fp = node.fingerprint!;
    const startedAt = new Date();
    const tmp = await store.makeTmp();
    const scratchDir = store.scratchDir(fp);
    await fs.mkdir(scratchDir, { recursive: true });
    const logFile = path.join(logsDir, `${inst.id.replace(/[/\\]/g, '_')}.log`);
    const logStream: WriteStream = createWriteStream(logFile);
    logStream.write(`# ${inst.id}  fingerprint ${fp}\n# reason: ${node.reason}\n# started ${startedAt.toISOString()}\n`);
    reporter.start(inst.id, node.reason);

    const inputs: Record<string, string> = {};
    const inputFps: Record<string, string> = {};
    const inputsAll: Record<string, UpstreamInstance[]> = {};
    for (const edge of inst.inputs) {
      const ups = edge.from.map((l) => {
        const n = nodes.get(l)!;
        inputFps[l] = n.fingerprint!;
        return { instance: n.inst.instance, dir: store.outDir(n.fingerprint!), fingerprint: n.fingerprint! };
      });
      if (edge.all) inputsAll[edge.name] = ups;
      else inputs[edge.name] = ups[0].dir;
    }
    const start: StartMessage = {
      type: 'start',
      stage: inst.stage.name,
      label: inst.id,
      modulePath: plan.code.get(inst.stage.name)!.module,
      stagesModule: paths.stagesModule,
      params: plan.params,
      declared: declaredKeys(inst.stage, inst.instance),
      hidden: hiddenKeys(inst.stage, inst.instance),
      instance: inst.instance,
      inputs,
      inputsAll,
      outDir: tmp.out,
      scratchDir,
      env: Object.fromEntries((inst.stage.env ?? []).map((f) => [f, plan.env[f]])),
      outputs: inst.stage.outputs,
    };
    // Upstream metrics and stage rows are in results.duckdb before a stage starts (the report reads them).
    if (db.pendingCount > 0) await db.flush();
    let files: Manifest['files'] | undefined;
    let failure: string | undefined;
    let failureStack: string | undefined;
    const onMessage = (msg: ChildMessage): void => {
      switch (msg.type) {
        case 'log':
          logStream.write(`${msg.message}\n`);
          reporter.line(`  [${inst.id}] ${msg.message}`);
          break;
        case 'progress':
          reporter.progress(inst.id, msg.done, msg.total, msg.info);
          break;
        case 'metrics':
          db.metrics(inst.stage.name, inst.instance, msg.items);
          break;
        case 'table':
          if (ENGINE_TABLES.includes(msg.name)) failure = `ctx.table: "${msg.name}" is an engine table`;
          else db.table(msg.name, inst.stage.name, inst.instance, msg.rows);
          break;
        case 'done':
          files = msg.files;
          break;
        case 'error':
          failure = msg.message;
          failureStack = msg.stack;
          logStream.write(`${msg.stack ?? msg.message}\n`);
          break;
      }
    };
    let code: number | null;
    let signal: NodeJS.Signals | null;
    if (opts.executor && !inst.stage.local) {
      // Remote: a worker runs the same child protocol; its messages come back through the job.
      const r = await opts.executor.run({ start, fingerprint: fp, components: node.components!, inputFingerprints: inputFps, store, env: plan.env, onMessage });
      ({ code, signal } = r);
      if (r.failure) failure ??= r.failure;
      if (r.contentHash && !failure) {
        // The worker committed to the remote; the executor pulled (and verified) the entry here.
        await fs.rm(tmp.dir, { recursive: true, force: true });
        node.content = r.contentHash;
        files = undefined;
        await store.clearScratch(fp);
        await publish(node);
      }
    } else {
      const r = await spawnStage(start, { cwd: paths.root, env: { PIPELINE_RUN_ID: runId, PIPELINE_INSTANCE: inst.id }, log: logStream, onMessage, children });
      ({ code, signal } = r);
      if (r.startError) failure ??= r.startError;
    }
    node.seconds = (Date.now() - startedAt.getTime()) / 1000;
    if (files && code === 0 && !failure) {
      try {
        const manifest: Manifest = {
          fingerprint: fp,
          stage: inst.stage.name,
          label: inst.id,
          instance: inst.instance,
          components: node.components!,
          files,
          contentHash: '',
          committedAt: new Date().toISOString(),
          runId,
          seconds: node.seconds,
        };
        manifest.contentHash = contentHashOf(files);
        await store.commit(tmp.dir, manifest);
        node.content = manifest.contentHash;
        await store.clearScratch(fp);
        await publish(node);
        if (opts.remote) {
          await opts.remote.pushEntry(store, fp).catch((e: Error) => err(`could not push ${inst.id} to the remote cache: ${e.message}`));
        }
      } catch (e) {
        failure = `commit failed: ${(e as Error).message}`;
      }
    } else if (!failure && !node.content) {
      failure = signal
        ? `killed by ${signal}`
        : code === 0
          ? 'the process ran out of work before run() settled (a promise that never resolves?)'
          : `the stage process exited with code ${code} before finishing`;
    }
    logStream.write(`# ${failure ? `FAILED: ${failure}` : 'committed'} after ${formatSeconds(node.seconds)}\n`);
    await new Promise<void>((resolve) => logStream.end(resolve));
    if (failure && interrupted) {
      await fs.rm(tmp.dir, { recursive: true, force: true });
      node.reason = `${node.reason}; interrupted (${failure})`;
      reporter.finish(inst.id, `✗ ${inst.id} interrupted after ${formatSeconds(node.seconds)}`);
      record(node, 'failed', startedAt);
    } else if (failure) {
      await fs.rm(tmp.dir, { recursive: true, force: true });
      node.reason = `${node.reason}; failed: ${failure}`;
      // The console gets the message and what the stage printed; the stack trace stays in the log.
      const tail = await tailLines(logFile, 20, failureStack);
      reporter.finish(
        inst.id,
        `✗ ${inst.id} failed after ${formatSeconds(node.seconds)}: ${failure}\n  last lines of ${logFile}${failureStack ? ' (stack trace there)' : ''}:\n${tail.map((l) => `    ${l}`).join('\n')}`,
      );
      record(node, 'failed', startedAt);
    } else {
      reporter.finish(inst.id, `✓ ${inst.id} ran in ${formatSeconds(node.seconds)}`);
      record(node, 'ran', startedAt);
    }
  };

  const onAbort = (): void => {
    interrupted = true;
    killStages(children);
    opts.executor?.abort();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  await new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      try {
        for (const node of nodes.values()) {
          if (node.status !== 'pending') continue;
          const deps = node.inst.inputs.flatMap((e) => e.from).map((l) => nodes.get(l)!);
          const bad = deps.find((d) => d.status === 'failed' || d.status === 'skipped');
          if (bad || interrupted) {
            node.reason = interrupted ? 'run interrupted' : `input ${bad!.inst.id} ${bad!.status === 'failed' ? 'failed' : 'was skipped'}`;
            record(node, 'skipped', new Date());
            continue;
          }
          if (!deps.every((d) => d.status === 'cached' || d.status === 'ran')) continue;
          node.status = 'evaluating';
          evaluate(node).then(
            () => {
              if (node.status === 'ready') {
                if (interrupted) {
                  node.reason = 'run interrupted';
                  record(node, 'skipped', new Date());
                } else {
                  ready.push(node);
                  ready.sort((a, b) => a.index - b.index);
                }
              }
              pump();
            },
            (e: unknown) => {
              node.reason = `could not check the cache: ${(e as Error).message}`;
              record(node, 'failed', new Date());
              pump();
            },
          );
        }
        while (running < jobs && ready.length > 0 && !interrupted) {
          const node = ready.shift()!;
          node.status = 'running';
          running++;
          runNode(node)
            .catch((e: unknown) => {
              node.reason = `${node.reason}; engine error: ${(e as Error).message}`;
              record(node, 'failed', new Date());
            })
            .finally(() => {
              running--;
              pump();
            });
        }
        if (interrupted) {
          for (const node of ready.splice(0)) {
            node.reason = 'run interrupted';
            record(node, 'skipped', new Date());
          }
        }
        const settled = [...nodes.values()].every((n) => ['cached', 'ran', 'failed', 'skipped'].includes(n.status));
        if (settled && running === 0) resolve();
      } catch (e) {
        reject(e);
      }
    };
    pump();
  });
  opts.signal?.removeEventListener('abort', onAbort);
  reporter.stop();

  const list = plan.selected.map((i) => results.get(i.id)!);
  const count = (s: InstanceStatus): number => list.filter((r) => r.status === s).length;
  const failed = count('failed');
  runRow.status = interrupted ? 'interrupted' : failed > 0 ? 'failed' : 'ok';
  runRow.finished = new Date();
  await gitPromise;
  db.run(runRow);
  await db.flush();
  if (db.pendingCount > 0) await db.flush();
  if (db.pendingCount > 0) err(`results.duckdb was not updated for this run: its records are in ${path.join(runDir, 'records.jsonl')}`);
  await showRun(plan, runId, runRow.status, list, store, out, err);
  if (count('ran') === 0 && failed === 0 && count('skipped') === 0) {
    out(`nothing to run: all ${list.length} instances cached (${formatSeconds((Date.now() - started.getTime()) / 1000)})`);
  } else {
    out(`${runRow.status}: ${count('ran')} ran, ${count('cached')} cached, ${failed} failed, ${count('skipped')} skipped (${formatSeconds((Date.now() - started.getTime()) / 1000)})`);
  }
  const exitCode = interrupted ? 130 : failed > 0 ? 1 : 0;
  return { runId, status: runRow.status as RunSummary['status'], exitCode, instances: list };
}

/**
 * results/ shows one run: after a run that succeeded, every stage it has points at exactly its
 * instances and results/runs/latest at its folder. A stage downstream of those that the run did not
 * select keeps the links of its instances whose committed entry was made from exactly the contents
 * results/ now shows (their recorded input hashes match); the others are removed. After a failed or
 * interrupted run nothing changes there: its committed instances are linked in
 * results/runs/<id>/outputs/ only.
 */
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

async function showRun(
  plan: Plan,
  runId: string,
  status: 'running' | 'ok' | 'failed' | 'interrupted',
  list: InstanceResult[],
  store: Store,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<void> {
  const resultsDir = plan.paths.resultsDir;
  const latest = path.join(resultsDir, 'runs', 'latest');
  if (status !== 'ok') {
    const shown = await fs.readlink(latest).catch(() => null);
    out(
      `results/ still shows ${shown ? `run ${path.basename(shown)}` : 'no run'} (this run ${status}); ` +
        `what it committed is linked in ${path.relative(process.cwd(), path.join(resultsDir, 'runs', runId, 'outputs')) || '.'}`,
    );
    return;
  }
  try {
    const entries: ResultEntry[] = [];
    const shownContent = new Map<string, string>();
    for (const r of list) {
      if (!r.fingerprint) continue;
      const m = await store.readManifest(r.fingerprint);
      if (m) shownContent.set(r.label, m.contentHash);
      entries.push({ stage: r.stage, instance: r.instance, target: store.outDir(r.fingerprint) });
    }
    const inRun = new Set(list.map((r) => r.stage));
    const remove: string[] = [];
    const touched = new Set<string>(inRun);
    const objects = path.join(store.dir, 'objects');
    // Stages the run did not select, upstream first: those downstream of the run keep what still matches.
    for (const s of topoOrder(plan.project.stages).filter((x) => !inRun.has(x.name))) {
      const downstream = Object.values(s.inputs ?? {}).some((i) => touched.has(i.stage));
      let kept = 0;
      for (const fp of await linkedFingerprints(path.join(resultsDir, s.name), objects)) {
        const m = await store.readManifest(fp);
        if (!m) continue;
        const inputs = Object.values(m.components.inputs ?? {}).flatMap((i) => (Array.isArray(i) ? i : [i]));
        if (downstream && !inputs.every((i) => shownContent.get(i.label) === i.content)) continue;
        shownContent.set(m.label, m.contentHash);
        if (downstream) entries.push({ stage: s.name, instance: m.instance, target: store.outDir(fp) });
        kept++;
      }
      if (downstream) {
        touched.add(s.name);
        if (kept === 0) remove.push(s.name);
      }
    }
    const skipped = await switchResults(resultsDir, entries, remove);
    for (const p of skipped) err(`left ${p} alone: it holds files the engine did not make`);
    const tmp = `${latest}.${process.pid}.tmp-link`;
    await fs.rm(tmp, { force: true });
    await fs.symlink(runId, tmp);
    await fs.rename(tmp, latest);
  } catch (e) {
    err(`could not update ${resultsDir}: ${(e as Error).message}`);
  }
}

/** Stages with every upstream before its readers (declaration order where free). */
function topoOrder(stages: Project['stages']): Project['stages'] {
  const out: Project['stages'] = [];
  const done = new Set<string>();
  const visit = (s: Project['stages'][number], seen: Set<string>): void => {
    if (done.has(s.name) || seen.has(s.name)) return;
    seen.add(s.name);
    for (const i of Object.values(s.inputs ?? {})) {
      const up = stages.find((x) => x.name === i.stage);
      if (up) visit(up, seen);
    }
    done.add(s.name);
    out.push(s);
  };
  for (const s of stages) visit(s, new Set());
  return out;
}

/** Fingerprints of the cache entries results/<stage> links to now (a symlink or a folder of them). */
async function linkedFingerprints(stageDir: string, objects: string): Promise<string[]> {
  const st = await fs.lstat(stageDir).catch(() => undefined);
  if (!st) return [];
  const links = st.isSymbolicLink() ? [stageDir] : st.isDirectory() ? (await fs.readdir(stageDir)).map((f) => path.join(stageDir, f)) : [];
  const out: string[] = [];
  for (const l of links) {
    const target = await fs.readlink(l).catch(() => null);
    if (!target) continue;
    const rel = path.relative(objects, path.resolve(path.dirname(l), target));
    const fp = rel.split(path.sep)[0];
    if (!rel.startsWith('..') && /^[0-9a-f]{64}$/.test(fp)) out.push(fp);
  }
  return out;
}
