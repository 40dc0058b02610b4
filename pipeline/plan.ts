/**
 * The plan of a run: the validated params, the stage instances and each stage's code facts, all
 * known before anything runs; the fingerprint components of an instance; and the dry run.
 */
import * as path from 'node:path';
import { type CodeGraph, loadCodeGraph, localClosure, packageVersions } from './closure.ts';
import { UsageError } from './errors.ts';
import { explainChange, ENGINE_FINGERPRINT_VERSION, type FingerprintComponents, fingerprintOf, type InputFingerprint } from './fingerprint.ts';
import { buildInstances, declaredKeys, hiddenKeys, type Instance, matchTargets, matrixKeys, withDependencies } from './graph.ts';
import { applyOverrides, declaredValues, loadParamsFile, type Override, parseOverride, readSchema, validateParams } from './params.ts';
import { checkStageDefs, importProject, type PathOptions, type ProjectPaths, projectPaths, stageModules, validateProject } from './project.ts';
import type { Executor } from './executor.ts';
import type { RemoteCache } from './remote.ts';
import { Store } from './store.ts';
import type { StartMessage } from './protocol.ts';
import type { InstanceKey, Project, UpstreamInstance } from './types.ts';

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
  const loaded = opts.paramsValue ? { params: opts.paramsValue, keep: () => undefined } : await loadParamsFile(paths.params, paths.cacheDir);
  const fileParams = loaded.params;
  const overrides = (opts.set ?? []).map(parseOverride);
  const params = applyOverrides(fileParams, overrides);
  const keepValidator = validateParams(params, schema, paths.cacheDir);

  const project = await importProject(paths.stagesModule);
  checkStageDefs(project.stages);
  await validateProject(project, params);
  keepValidator();
  loaded.keep();
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

/**
 * The start message of one instance (the child protocol): the same for a local child and a worker.
 * `upstream(label)` gives an input instance's matrix values and fingerprint; its directory is the
 * store's entry for that fingerprint.
 */
export function startMessageFor(
  plan: Plan,
  inst: Instance,
  upstream: (label: string) => { instance: InstanceKey; fingerprint: string },
  where: { store: Store; outDir: string; scratchDir: string; resultsDb?: string; cpus?: number },
): { start: StartMessage; inputFingerprints: Record<string, string> } {
  const inputs: Record<string, string> = {};
  const inputFingerprints: Record<string, string> = {};
  const inputsAll: Record<string, UpstreamInstance[]> = {};
  for (const edge of inst.inputs) {
    const ups = edge.from.map((l) => {
      const u = upstream(l);
      inputFingerprints[l] = u.fingerprint;
      return { instance: u.instance, dir: where.store.outDir(u.fingerprint), fingerprint: u.fingerprint };
    });
    if (edge.all) inputsAll[edge.name] = ups;
    else inputs[edge.name] = ups[0].dir;
  }
  const start: StartMessage = {
    type: 'start',
    stage: inst.stage.name,
    label: inst.id,
    modulePath: plan.code.get(inst.stage.name)!.module,
    stagesModule: plan.paths.stagesModule,
    params: plan.params,
    declared: declaredKeys(inst.stage, inst.instance),
    hidden: hiddenKeys(inst.stage, inst.instance),
    instance: inst.instance,
    inputs,
    inputsAll,
    outDir: where.outDir,
    scratchDir: where.scratchDir,
    env: Object.fromEntries((inst.stage.env ?? []).map((f) => [f, plan.env[f]])),
    outputs: inst.stage.outputs,
    ...(where.resultsDb !== undefined ? { resultsDb: where.resultsDb } : {}),
    ...(where.cpus !== undefined ? { cpus: where.cpus } : {}),
  };
  return { start, inputFingerprints };
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

/** Why an instance whose entry is missing runs: never run, its entry gone, or what changed since. */
export async function reasonToRun(store: Store, inst: Instance, fp: string, comps: FingerprintComponents, extra: string[] = []): Promise<string> {
  const ref = await store.readRef(inst.stage.name, inst.id);
  if (!ref) return ['never run', ...extra].join('; ');
  if (ref.fingerprint === fp) return ['outputs missing from the store', ...extra].join('; ');
  const prev = await store.readManifest(ref.fingerprint);
  if (!prev) return ['previous outputs are gone from the store', ...extra].join('; ');
  const reasons = [...explainChange(prev.components, comps), ...extra];
  return reasons.length > 0 ? reasons.join('; ') : 'fingerprint changed';
}

/** Dry run: every selected instance as cached or to run, with the reason. */
export async function dryRun(plan: Plan): Promise<InstanceResult[]> {
  const store = new Store(plan.paths.cacheDir);
  const nodes = new Map<string, { status: InstanceStatus; reason: string; content?: string }>(); // content: if cached
  const results: InstanceResult[] = [];
  for (const inst of plan.selected) {
    const node = { status: 'to run' as InstanceStatus, reason: '', content: undefined as string | undefined };
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
    results.push({ label: inst.id, stage: inst.stage.name, instance: inst.instance, status: node.status, reason: node.reason, fingerprint: fp, seconds: 0 });
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

