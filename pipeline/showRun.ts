/**
 * results/ shows one run: after a run that succeeded, every stage it has points at exactly its
 * instances and results/runs/latest at its folder. A stage downstream of those that the run did not
 * select keeps the links of its instances whose committed entry was made from exactly the contents
 * results/ now shows (their recorded input hashes match); the others are removed. After a failed or
 * interrupted run nothing changes there: its committed instances are linked in
 * results/runs/<id>/outputs/ only.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { symlinkAtomic } from '../base/atomic.ts';
import type { InstanceResult, Plan } from './plan.ts';
import { type ResultEntry, type Store, switchResults } from './store.ts';
import type { Project } from './types.ts';

export interface ShownRun {
  plan: Plan;
  runId: string;
  status: 'running' | 'ok' | 'failed' | 'interrupted';
  list: InstanceResult[];
  store: Store;
  /** The content hash of an instance the run ran or served (known to the run: no manifest read). */
  contentOf?: (label: string) => string | undefined;
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Switch results/ (and results/runs/latest) to the run if it succeeded; otherwise say where its outputs are. */
export async function showRun({ plan, runId, status, list, store, contentOf, out, err }: ShownRun): Promise<void> {
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
    const { entries, remove } = await shownEntries(plan, list, store, contentOf);
    const skipped = await switchResults(resultsDir, entries, remove);
    for (const p of skipped) err(`left ${p} alone: it holds files the engine did not make`);
    await symlinkAtomic(runId, latest);
  } catch (e) {
    err(`could not update ${resultsDir}: ${(e as Error).message}`);
  }
}

/** What results/ shows after the run: its instances, plus what still matches downstream of it; stages to remove. */
async function shownEntries(
  plan: Plan,
  list: InstanceResult[],
  store: Store,
  contentOf: ShownRun['contentOf'],
): Promise<{ entries: ResultEntry[]; remove: string[] }> {
  const entries: ResultEntry[] = [];
  const shownContent = new Map<string, string>();
  for (const r of list) {
    if (!r.fingerprint) continue;
    const content = contentOf?.(r.label) ?? (await store.readManifest(r.fingerprint))?.contentHash;
    if (content) shownContent.set(r.label, content);
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
    for (const fp of await linkedFingerprints(path.join(plan.paths.resultsDir, s.name), objects)) {
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
  return { entries, remove };
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
