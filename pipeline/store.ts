/**
 * The content-addressed store (default .cache/):
 *   objects/<fingerprint>/manifest.json   what the entry is: fingerprint components, file hashes + stats
 *   objects/<fingerprint>/out/...         the committed outputs (read-only files)
 *   refs/<stage>/<hash of label>.json     the fingerprint last used for an instance (for --dry-run reasons)
 *   scratch/<fingerprint>/                a stage's checkpoints; kept across failures, removed on success
 *   tmp/<random>/                         outputs being written; renamed into objects/ on success
 *   lock                                  the store lock (see lock.ts)
 *   code-graph.json                       cached import graph of the stages (see closure.ts)
 */
import { randomBytes } from 'node:crypto';
import { type Stats, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { FingerprintComponents } from './fingerprint.ts';
import { instanceDirName } from './graph.ts';
import type { InstanceKey } from './types.ts';
import { type FileStat, exists, fileStat, listFiles, readJson, sameStat, sha256, sha256File } from './util.ts';
import { writeFileAtomic } from '../base/atomic.ts';

export interface FileEntry {
  sha256: string;
  size: number;
  /** Stats when last verified: equal stats mean the content is trusted without re-hashing. */
  stat: FileStat;
}

export interface Manifest {
  fingerprint: string;
  stage: string;
  label: string;
  instance: InstanceKey;
  components: FingerprintComponents;
  files: Record<string, FileEntry>;
  /** Hash of the outputs' names and content hashes: what downstream fingerprints include. */
  contentHash: string;
  committedAt: string;
  runId: string;
  seconds: number;
}

export interface Ref {
  label: string;
  fingerprint: string;
  at: string;
}

export type Verification = { ok: true; manifest: Manifest } | { ok: false; missing: true } | { ok: false; missing: false; problem: string };

export function contentHashOf(files: Record<string, { sha256: string }>): string {
  return sha256(
    Object.keys(files)
      .sort()
      .map((f) => `${f}\0${files[f].sha256}\n`)
      .join(''),
  );
}

/** Hash every file below dir (done by the child that produced them, in parallel with other jobs). */
export async function hashOutputs(dir: string): Promise<Record<string, FileEntry>> {
  const files: Record<string, FileEntry> = {};
  for (const rel of await listFiles(dir)) {
    const abs = path.join(dir, rel);
    const sha = await sha256File(abs);
    const stat = await fileStat(abs);
    files[rel] = { sha256: sha, size: stat.size, stat };
  }
  return files;
}

export class Store {
  constructor(readonly dir: string) {}

  objectDir(fp: string): string {
    return path.join(this.dir, 'objects', fp);
  }
  outDir(fp: string): string {
    return path.join(this.objectDir(fp), 'out');
  }
  scratchDir(fp: string): string {
    return path.join(this.dir, 'scratch', fp);
  }
  get lockFile(): string {
    return path.join(this.dir, 'lock');
  }
  private refFile(stage: string, label: string): string {
    return path.join(this.dir, 'refs', stage, `${sha256(label).slice(0, 24)}.json`);
  }

  async readManifest(fp: string): Promise<Manifest | undefined> {
    return readJson<Manifest>(path.join(this.objectDir(fp), 'manifest.json'));
  }

  /**
   * Is the entry there and intact? Files whose size + mtime + ctime + inode match the manifest are
   * trusted; others are re-hashed (and their new stats recorded when the content still matches).
   * Any write to a file changes its ctime, which cannot be set back, so an in-place edit is always
   * re-hashed. `rehash: true` hashes every file whatever its stats (`verify` command, `run --verify`).
   */
  async verify(fp: string, opts: { rehash?: boolean } = {}): Promise<Verification> {
    const out = this.outDir(fp);
    const [manifest, present] = await Promise.all([this.readManifest(fp), listFiles(out).catch(() => null)]);
    if (!manifest) return (await exists(this.objectDir(fp))) ? { ok: false, missing: false, problem: 'manifest.json unreadable' } : { ok: false, missing: true };
    if (!present) return { ok: false, missing: false, problem: 'out/ directory missing' };
    const extra = present.filter((f) => !(f in manifest.files));
    if (extra.length > 0) return { ok: false, missing: false, problem: `unexpected file ${extra[0]}` };
    let restat = false;
    const entries = Object.entries(manifest.files);
    // every file's stat at once (one after the other, they were most of a no-op run's cache checks)
    const stats = await Promise.all(entries.map(([rel]) => fileStat(path.join(out, rel)).catch(() => null)));
    for (const [i, [rel, entry]] of entries.entries()) {
      const abs = path.join(out, rel);
      const stat = stats[i];
      if (!stat) return { ok: false, missing: false, problem: `file ${rel} missing` };
      if (!opts.rehash && sameStat(stat, entry.stat)) continue;
      if (stat.size !== entry.size) return { ok: false, missing: false, problem: `file ${rel} changed size` };
      if ((await sha256File(abs)) !== entry.sha256) return { ok: false, missing: false, problem: `file ${rel} content changed` };
      if (!sameStat(stat, entry.stat)) {
        entry.stat = stat;
        restat = true;
      }
    }
    if (restat) await writeFileAtomic(path.join(this.objectDir(fp), 'manifest.json'), JSON.stringify(manifest, null, 1));
    return { ok: true, manifest };
  }

  /** A fresh temporary folder with out/ inside, for one attempt. */
  async makeTmp(): Promise<{ dir: string; out: string }> {
    const dir = path.join(this.dir, 'tmp', `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(path.join(dir, 'out'), { recursive: true });
    return { dir, out: path.join(dir, 'out') };
  }

  /** Leftovers of killed attempts. Call only while holding the lock. */
  async clearTmp(): Promise<number> {
    const tmp = path.join(this.dir, 'tmp');
    const entries = await fs.readdir(tmp).catch(() => [] as string[]);
    await Promise.all(entries.map((e) => fs.rm(path.join(tmp, e), { recursive: true, force: true })));
    return entries.length;
  }

  /**
   * Atomically publish tmpDir (with out/ inside) as objects/<fp>/. Safe when several commits of the
   * same fingerprint race in one store (a worker with --concurrency > 1 pulling one input for two
   * jobs): the rename of a directory onto a non-empty one fails, so the first commit wins and a later
   * one adopts it if it is intact with the same content (its own copy is dropped); a corrupted or
   * different entry is moved aside and replaced. Returns whether tmpDir became the entry.
   */
  async commit(tmpDir: string, manifest: Manifest): Promise<boolean> {
    for (const [rel, entry] of Object.entries(manifest.files)) {
      const abs = path.join(tmpDir, 'out', rel);
      await fs.chmod(abs, 0o444);
      // chmod changed the ctime the child recorded: record the stats the committed file really has.
      entry.stat = await fileStat(abs);
    }
    await fs.writeFile(path.join(tmpDir, 'manifest.json'), JSON.stringify(manifest, null, 1));
    await fs.mkdir(path.join(this.dir, 'objects'), { recursive: true });
    const final = this.objectDir(manifest.fingerprint);
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.rename(tmpDir, final);
        return true;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || attempt >= 3) throw e;
      }
      const existing = await this.verify(manifest.fingerprint);
      if (existing.ok && existing.manifest.contentHash === manifest.contentHash) {
        await fs.rm(tmpDir, { recursive: true, force: true });
        return false;
      }
      await this.remove(manifest.fingerprint);
    }
  }

  /** Remove an entry (e.g. a corrupted one): moved aside first so no reader sees half of it. */
  async remove(fp: string): Promise<void> {
    const final = this.objectDir(fp);
    if (!(await exists(final))) return;
    const aside = path.join(this.dir, 'tmp', `removed-${fp.slice(0, 12)}-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(path.dirname(aside), { recursive: true });
    await fs.rename(final, aside);
    await fs.rm(aside, { recursive: true, force: true });
  }

  async readRef(stage: string, label: string): Promise<Ref | undefined> {
    return readJson<Ref>(this.refFile(stage, label));
  }

  async writeRef(stage: string, label: string, fingerprint: string): Promise<void> {
    const current = await this.readRef(stage, label);
    if (current?.fingerprint === fingerprint) return;
    await writeFileAtomic(this.refFile(stage, label), JSON.stringify({ label, fingerprint, at: new Date().toISOString() } satisfies Ref));
  }

  /** Every committed entry's fingerprint. */
  async fingerprints(): Promise<string[]> {
    return (await fs.readdir(path.join(this.dir, 'objects')).catch(() => [] as string[])).sort();
  }

  /** Fingerprints that some instance last used (refs/). */
  async referenced(): Promise<Set<string>> {
    return new Set((await this.refs()).map((r) => r.fingerprint));
  }

  /** Every ref: the entry each instance last used, with its stage. */
  async refs(): Promise<Array<Ref & { stage: string }>> {
    const out: Array<Ref & { stage: string }> = [];
    const refs = path.join(this.dir, 'refs');
    for (const stage of (await fs.readdir(refs).catch(() => [] as string[])).sort()) {
      for (const f of (await fs.readdir(path.join(refs, stage)).catch(() => [] as string[])).sort()) {
        const ref = await readJson<Ref>(path.join(refs, stage, f));
        if (ref) out.push({ ...ref, stage });
      }
    }
    return out;
  }

  /**
   * Remove every entry that no instance last used (older params, removed matrix values).
   * Call while holding the lock. Returns what was (or, with dryRun, would be) removed.
   */
  async gc(dryRun: boolean): Promise<{ removed: Array<{ fingerprint: string; label: string; bytes: number }>; kept: number }> {
    const keep = await this.referenced();
    const removed: Array<{ fingerprint: string; label: string; bytes: number }> = [];
    let kept = 0;
    for (const fp of await fs.readdir(path.join(this.dir, 'objects')).catch(() => [] as string[])) {
      if (keep.has(fp)) {
        kept++;
        continue;
      }
      const manifest = await this.readManifest(fp);
      const bytes = Object.values(manifest?.files ?? {}).reduce((a, f) => a + f.size, 0);
      removed.push({ fingerprint: fp, label: manifest?.label ?? '?', bytes });
      if (!dryRun) await this.remove(fp);
    }
    return { removed, kept };
  }

  async clearScratch(fp: string): Promise<void> {
    await fs.rm(this.scratchDir(fp), { recursive: true, force: true });
  }
}

/**
 * results/<stage>/ (plain stage) or results/<stage>/<var=value,...>/ (matrix instance): a relative
 * symlink to the committed outputs, replaced atomically.
 */
export async function linkResult(resultsDir: string, stage: string, instance: InstanceKey, target: string): Promise<void> {
  const isMatrix = Object.keys(instance).length > 0;
  const stageDir = path.join(resultsDir, stage);
  const link = isMatrix ? path.join(stageDir, instanceDirName(instance)) : stageDir;
  // synchronous metadata calls, as in util.ts (a no-op run links every instance)
  mkdirSync(resultsDir, { recursive: true });
  const st = lstatSync(stageDir, { throwIfNoEntry: false });
  if (isMatrix) {
    if (st?.isSymbolicLink()) unlinkSync(stageDir);
    mkdirSync(stageDir, { recursive: true });
  } else if (st?.isDirectory()) {
    // Left by a matrix version of the stage: only engine-made links inside, safe to remove.
    const entries = await fs.readdir(stageDir, { withFileTypes: true });
    if (entries.every((e) => e.isSymbolicLink())) await fs.rm(stageDir, { recursive: true });
    else return;
  }
  const rel = path.relative(path.dirname(link), target);
  if (readlinkOrNull(link) === rel) return;
  symlinkAtomicSync(rel, link);
}

/** symlinkAtomic with synchronous calls (three metadata calls of microseconds each). */
function symlinkAtomicSync(target: string, link: string): void {
  const tmp = `${link}.${process.pid}.tmp-link`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, link);
}

function readlinkOrNull(p: string): string | null {
  try {
    return readlinkSync(p);
  } catch {
    return null;
  }
}

/** One instance as results/ shows it: its stage, matrix values and committed outputs folder. */
export interface ResultEntry {
  stage: string;
  instance: InstanceKey;
  target: string;
}

/** A results/<stage> path the engine made: a symlink, or a folder holding only symlinks. */
function engineMade(p: string): boolean {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (!st) return false;
  if (st.isSymbolicLink()) return true;
  if (!st.isDirectory()) return false;
  return readdirSync(p, { withFileTypes: true }).every((e) => e.isSymbolicLink());
}

/** Does results/<stage> (`final`, lstat `st`) hold exactly the links switchResults would make? */
function showsExactly(final: string, st: Stats, plain: boolean, list: ResultEntry[]): boolean {
  const target = (l: string): string | null => {
    try {
      return readlinkSync(l);
    } catch {
      return null;
    }
  };
  if (plain) return st.isSymbolicLink() && target(final) === path.relative(path.dirname(final), list[0].target);
  if (!st.isDirectory()) return false;
  const names = readdirSync(final);
  if (names.length !== list.length) return false;
  const want = new Map(list.map((e) => [instanceDirName(e.instance), path.relative(final, e.target)]));
  return names.every((n) => want.get(n) !== undefined && target(path.join(final, n)) === want.get(n));
}

/**
 * Make results/ show one run: for every stage of `entries`, results/<stage> is replaced by links to
 * exactly that run's instances (a matrix stage's folder is built aside and swapped in, so instances
 * the run does not have disappear); each stage in `remove` (not in the run, but downstream of a
 * stage that is, so possibly stale) loses its links. Paths that hold anything but engine-made links
 * are left alone and returned. Synchronous file calls (metadata only; one promise per link was most
 * of the end of a no-op run).
 */
export async function switchResults(resultsDir: string, entries: ResultEntry[], remove: string[]): Promise<string[]> {
  mkdirSync(resultsDir, { recursive: true });
  const skipped: string[] = [];
  const byStage = new Map<string, ResultEntry[]>();
  for (const e of entries) {
    if (!byStage.has(e.stage)) byStage.set(e.stage, []);
    byStage.get(e.stage)!.push(e);
  }
  const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
  for (const [stage, list] of byStage) {
    const final = path.join(resultsDir, stage);
    const st = lstatSync(final, { throwIfNoEntry: false });
    if (st && !engineMade(final)) {
      skipped.push(final);
      continue;
    }
    const plain = list.length === 1 && Object.keys(list[0].instance).length === 0;
    if (st && showsExactly(final, st, plain, list)) continue; // a no-op run: already what it should be
    const next = path.join(resultsDir, `.${stage}.next-${tag}`);
    if (plain) {
      symlinkSync(path.relative(resultsDir, list[0].target), next);
    } else {
      mkdirSync(next);
      for (const e of list) symlinkSync(path.relative(final, e.target), path.join(next, instanceDirName(e.instance)));
    }
    if (plain && (!st || st.isSymbolicLink())) {
      renameSync(next, final); // one atomic step
      continue;
    }
    const old = path.join(resultsDir, `.${stage}.old-${tag}`);
    if (st) renameSync(final, old);
    renameSync(next, final);
    if (st) rmSync(old, { recursive: true, force: true });
  }
  for (const stage of remove) {
    const p = path.join(resultsDir, stage);
    if (!lstatSync(p, { throwIfNoEntry: false })) continue;
    if (engineMade(p)) rmSync(p, { recursive: true, force: true });
    else skipped.push(p);
  }
  return skipped;
}
