/**
 * Code closure of stages: the real import graph from esbuild's metafile (one build over the stages
 * module), local files hashed by content, third-party packages pinned by their locked versions.
 * The graph is cached in the store keyed by every file's size + mtime + inode, so an unchanged
 * project never calls esbuild again.
 */
import { builtinModules } from 'node:module';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type FileStat, fileStat, readJson, sameStat, sha256File } from './util.ts';
import { writeFileAtomic } from '../base/atomic.ts';

export interface CodeFile {
  /** Local modules this file imports (paths relative to the project root). */
  imports: string[];
  /** Bare specifiers of third-party packages this file imports, as package names. */
  packages: string[];
  sha256: string;
  stat: FileStat;
}

export interface CodeGraph {
  /** Path of the entry (stages module) relative to root. */
  entry: string;
  files: Record<string, CodeFile>;
  /** package-lock.json entries: 'name' or 'a/node_modules/b' -> {version, dependencies}. */
  lock: Record<string, { version: string; dependencies: string[] }>;
}

interface CacheFile {
  version: number;
  entry: string;
  lockStat: FileStat | null;
  graph: CodeGraph;
}

const CACHE_VERSION = 2;
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

export function packageName(specifier: string): string | undefined {
  if (specifier.startsWith('node:') || builtins.has(specifier) || builtins.has(specifier.split('/')[0])) return undefined;
  if (specifier.startsWith('.') || specifier.startsWith('/')) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

async function statOrNull(file: string): Promise<FileStat | null> {
  try {
    return await fileStat(file);
  } catch {
    return null;
  }
}

async function cacheValid(root: string, cached: CacheFile | undefined, entry: string, lockStat: FileStat | null): Promise<boolean> {
  if (!cached || cached.version !== CACHE_VERSION || cached.entry !== entry) return false;
  if (JSON.stringify(cached.lockStat) !== JSON.stringify(lockStat)) return false;
  const checks = await Promise.all(
    Object.entries(cached.graph.files).map(async ([rel, f]) => sameStat(f.stat, (await statOrNull(path.resolve(root, rel))) ?? undefined)),
  );
  return checks.every(Boolean);
}

/** Build (or load from cache) the import graph of the stages module. */
export async function loadCodeGraph(root: string, entryAbs: string, cacheDir: string): Promise<CodeGraph> {
  const entry = path.relative(root, entryAbs).split(path.sep).join('/');
  const cacheFile = path.join(cacheDir, 'code-graph.json');
  const lockStat = await statOrNull(path.join(root, 'package-lock.json'));
  const cached = await readJson<CacheFile>(cacheFile);
  if (await cacheValid(root, cached, entry, lockStat)) return cached!.graph;

  const esbuild = await import('esbuild');
  const entries = [entryAbs];
  // Modules referenced as `new URL('./worker.ts', import.meta.url)` (worker threads) are not
  // imports for esbuild: scan for them and add them as entry points until nothing new turns up.
  // Other files referenced so (a stylesheet, a text read at run time) are assets: hashed, not built.
  const urlRefs = new Map<string, string[]>();
  const assets = new Set<string>();
  let metafile: import('esbuild').Metafile;
  for (;;) {
    const result = await esbuild.build({
      entryPoints: entries,
      absWorkingDir: root,
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'silent',
      outdir: path.join(cacheDir, 'esbuild-out'),
    });
    metafile = result.metafile;
    let added = false;
    for (const rel of Object.keys(metafile.inputs)) {
      if (urlRefs.has(rel) || !CODE_FILE.test(rel)) continue;
      const refs = await moduleUrlRefs(root, rel);
      urlRefs.set(rel, refs);
      for (const ref of refs) {
        if (!CODE_FILE.test(ref)) {
          assets.add(ref);
          continue;
        }
        const abs = path.resolve(root, ref);
        if (!(ref in metafile.inputs) && !entries.includes(abs)) {
          entries.push(abs);
          added = true;
        }
      }
    }
    if (!added) break;
  }
  const previous = cached?.graph.files ?? {};
  const files: Record<string, CodeFile> = {};
  const hashed = async (rel: string): Promise<Pick<CodeFile, 'sha256' | 'stat'>> => {
    const abs = path.resolve(root, rel);
    const stat = await fileStat(abs);
    const old = previous[rel];
    return { sha256: old && sameStat(old.stat, stat) ? old.sha256 : await sha256File(abs), stat };
  };
  await Promise.all(
    [...assets].filter((rel) => !(rel in metafile.inputs)).map(async (rel) => {
      files[rel] = { imports: [], packages: [], ...(await hashed(rel)) };
    }),
  );
  await Promise.all(
    Object.entries(metafile.inputs).map(async ([rel, input]) => {
      const { sha256, stat } = await hashed(rel);
      const imports: string[] = [];
      const packages = new Set<string>();
      for (const imp of input.imports) {
        if (imp.external) {
          const name = packageName(imp.path);
          if (name) packages.add(name);
        } else if (imp.path in metafile.inputs) imports.push(imp.path);
      }
      for (const ref of urlRefs.get(rel) ?? []) if ((ref in metafile.inputs || assets.has(ref)) && !imports.includes(ref)) imports.push(ref);
      files[rel] = { imports, packages: [...packages].sort(), sha256, stat };
    }),
  );
  const lock = lockStat ? await readLock(path.join(root, 'package-lock.json')) : {};
  const graph: CodeGraph = { entry, files, lock };
  await writeFileAtomic(cacheFile, JSON.stringify({ version: CACHE_VERSION, entry, lockStat, graph } satisfies CacheFile));
  return graph;
}

/** A module esbuild follows (anything else referenced by URL is an asset). */
const CODE_FILE = /\.[cm]?[jt]sx?$/;
const URL_REF = /new\s+URL\(\s*(['"`])(\.{1,2}\/[^'"`]+)\1\s*,\s*import\.meta\.url\s*\)/g;

/** Local files a module references with `new URL('./x.ts', import.meta.url)`, relative to root. */
async function moduleUrlRefs(root: string, rel: string): Promise<string[]> {
  const text = await fs.readFile(path.resolve(root, rel), 'utf8').catch(() => '');
  const out: string[] = [];
  for (const m of text.matchAll(URL_REF)) {
    const abs = path.resolve(root, path.dirname(rel), m[2]);
    const st = await fs.stat(abs).catch(() => undefined);
    if (st?.isFile()) out.push(path.relative(root, abs).split(path.sep).join('/'));
  }
  return out;
}

async function readLock(file: string): Promise<CodeGraph['lock']> {
  const lock = JSON.parse(await fs.readFile(file, 'utf8')) as {
    packages?: Record<string, { version?: string; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string> }>;
  };
  const out: CodeGraph['lock'] = {};
  for (const [p, info] of Object.entries(lock.packages ?? {})) {
    if (!p.startsWith('node_modules/')) continue;
    out[p.slice('node_modules/'.length)] = {
      version: info.version ?? 'unknown',
      dependencies: Object.keys({ ...info.dependencies, ...info.optionalDependencies, ...info.peerDependencies }),
    };
  }
  return out;
}

/** Local files reachable from `start` (inclusive), sorted. */
export function localClosure(graph: CodeGraph, start: string): string[] {
  const seen = new Set<string>();
  const stack = [start];
  while (stack.length > 0) {
    const f = stack.pop()!;
    if (seen.has(f) || !graph.files[f]) continue;
    seen.add(f);
    stack.push(...graph.files[f].imports);
  }
  return [...seen].sort();
}

/**
 * Third-party packages used by a closure, with the locked versions of them and of everything they
 * depend on (npm's nested node_modules resolution). Unlocked packages show as 'not in lockfile'.
 */
export function packageVersions(graph: CodeGraph, files: string[]): Record<string, string> {
  const names = new Set<string>();
  for (const f of files) for (const name of graph.files[f]?.packages ?? []) names.add(name);
  const key = [...names].sort().join('\0');
  let memo = versionSets.get(graph);
  if (!memo) versionSets.set(graph, (memo = new Map()));
  const known = memo.get(key);
  if (known) return { ...known };
  const out: Record<string, string> = {};
  for (const name of names) {
    const closure = packageClosure(graph, name);
    if (closure) Object.assign(out, closure);
    else out[name] = 'not in lockfile';
  }
  const sorted = Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  memo.set(key, sorted);
  return { ...sorted };
}

/** Per graph: the result for each set of imported packages (most stages import the same set). */
const versionSets = new WeakMap<CodeGraph, Map<string, Record<string, string>>>();

/** Per graph: each imported package's locked closure (stages share most of theirs). */
const closures = new WeakMap<CodeGraph, Map<string, Record<string, string> | null>>();

/** The locked versions of package `name` and of everything it depends on; null if not locked. */
function packageClosure(graph: CodeGraph, name: string): Record<string, string> | null {
  let memo = closures.get(graph);
  if (!memo) closures.set(graph, (memo = new Map()));
  const known = memo.get(name);
  if (known !== undefined) return known;
  const out: Record<string, string> = {};
  const resolve = (from: string | undefined, name: string): string | undefined => {
    // from = 'a' or 'a/node_modules/b'; npm looks in from/node_modules, then up the chain.
    let base = from;
    while (base !== undefined) {
      const candidate = `${base}/node_modules/${name}`;
      if (graph.lock[candidate]) return candidate;
      const idx = base.lastIndexOf('/node_modules/');
      base = idx >= 0 ? base.slice(0, idx) : undefined;
    }
    return graph.lock[name] ? name : undefined;
  };
  const visit = (key: string): void => {
    if (key in out) return;
    out[key] = graph.lock[key].version;
    for (const dep of graph.lock[key].dependencies) {
      const resolved = resolve(key, dep);
      if (resolved) visit(resolved);
    }
  };
  const key = resolve(undefined, name);
  if (key) visit(key);
  const result = key ? out : null;
  memo.set(name, result);
  return result;
}
