// @ts-check
/**
 * Fast start of the CLI (`npm run pipeline`, `query`, `dag`, `report`): the engine and the
 * project's stages module run from an esbuild bundle instead of through the tsx loader.
 *
 * Why: on Node 20 the tsx loader alone costs ~0.2–0.3 s before the first line of the CLI runs (its
 * ESM hooks live in a separate thread, and every module's resolve and load crosses to it), and
 * the CLI's module graph another ~0.15 s through it. A no-op run took ~1.0 s, of which the
 * engine's own work was ~0.3 s.
 *
 * What is bundled: pipeline/cli.ts, the stages module of the project being run (`--root`, else the
 * current directory) and the stages module's direct local imports (the engine imports those by
 * path to find which file declares each stage; their bundled copies are handed to it, see
 * `importLocal` in project.ts). Packages stay external: Node loads them from node_modules as
 * usual. `import.meta.url` in every local file is replaced by that file's own URL, so paths built
 * from it (the child script, assets, createRequire) are the same as when run from source.
 *
 * When the bundle is reused: only when every local file that went into it has the same content
 * (sha256, read every start: ~130 files, ~5 ms) and the same esbuild and launcher built it.
 * Anything else rebuilds it (~0.3 s) into a fresh directory, switched to atomically. The bundle
 * only decides how the engine's code is loaded: cache fingerprints hash the sources themselves
 * (closure.ts), whatever runs them.
 *
 * When the bundle is not used: if the build or the bundle's loading fails for any reason (a syntax
 * error in a stage file, say), the CLI runs from source through tsx, exactly as
 * `node --import tsx pipeline/cli.ts` would, so the error reads as it always has. Set
 * PIPELINE_LAUNCH=tsx to always run from source; PIPELINE_LAUNCH_DEBUG=1 prints which path ran.
 * Stage instances always run from source in their own processes (spawn.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ENGINE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ENGINE_ROOT, 'pipeline', 'cli.ts');
const LAUNCH_KEY = Symbol.for('pipeline.launch');
/** A bundle's layout changes with this file: its own hash is part of every manifest. */
const SELF_HASH = sha256(fs.readFileSync(fileURLToPath(import.meta.url)));
const debug = process.env.PIPELINE_LAUNCH_DEBUG === '1' ? (/** @type {string} */ m) => process.stderr.write(`launch: ${m}\n`) : () => undefined;

/** @param {Buffer | string} data */
function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

/** The project root the CLI will use: `--root <dir>` / `--root=<dir>`, else the current directory. */
function projectRoot(/** @type {string[]} */ argv) {
  let root = process.cwd();
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--root' && i + 1 < argv.length) root = path.resolve(argv[i + 1]);
    else if (argv[i].startsWith('--root=')) root = path.resolve(argv[i].slice('--root='.length));
  }
  return root;
}

/** Where bundles of this project live (one directory per build, `current.json` names the one in use). */
function cacheDir(/** @type {string} */ stagesModule) {
  const base = process.env.PIPELINE_LAUNCH_CACHE ?? path.join(ENGINE_ROOT, 'node_modules', '.cache', 'pipeline-launch');
  return path.join(base, sha256(stagesModule).slice(0, 16));
}

/**
 * @typedef {{ version: 1, self: string, esbuild: string, stagesModule: string, inputs: Record<string, string>, dir: string }} Manifest
 */

/** The manifest of the bundle in use, if every input still has the content it was built from. */
function validBundle(/** @type {string} */ dir, /** @type {string} */ stagesModule, /** @type {string} */ esbuildVersion) {
  /** @type {Manifest} */
  let m;
  try {
    m = JSON.parse(fs.readFileSync(path.join(dir, 'current.json'), 'utf8'));
  } catch {
    return null;
  }
  if (m.version !== 1 || m.self !== SELF_HASH || m.esbuild !== esbuildVersion || m.stagesModule !== stagesModule) return null;
  for (const [file, hash] of Object.entries(m.inputs)) {
    let data;
    try {
      data = fs.readFileSync(file);
    } catch {
      return null;
    }
    if (sha256(data) !== hash) {
      debug(`${path.relative(process.cwd(), file)} changed: rebuilding`);
      return null;
    }
  }
  return fs.existsSync(path.join(dir, m.dir, 'entry.mjs')) ? m : null;
}

const LOCAL_SOURCE = /\.[cm]?[jt]sx?$/;
const BUILTINS = new Set(builtinModules);

/** The package.json of the package a resolved file belongs to (its name and exports decide resolution). */
function packageJsonOf(/** @type {string} */ file) {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const p = path.join(dir, 'package.json');
    try {
      if (typeof JSON.parse(fs.readFileSync(p, 'utf8')).name === 'string') return p;
    } catch {
      // no package.json here, or one without a name (a nested "type" marker): keep going up
    }
  }
  return null;
}

/**
 * An esbuild plugin: packages external; local sources read here (so the manifest hashes exactly
 * what was compiled) with `import.meta.url` replaced by the file's own URL.
 * @param {Record<string, string>} inputs filled with file -> sha256
 * @returns {import('esbuild').Plugin}
 */
function localSources(inputs) {
  return {
    name: 'pipeline-launch-sources',
    setup(b) {
      b.onResolve({ filter: /^launch:entry$/ }, () => ({ path: 'entry', namespace: 'launch' }));
      // A package stays external, imported by the absolute path it resolves to from the importing
      // source file (so the bundle may live anywhere); its package.json is an input of the bundle.
      b.onResolve({ filter: /^[^./]/ }, async (a) => {
        if (a.pluginData === 'pipeline-launch' || a.kind === 'entry-point') return undefined; // esbuild's own resolution
        if (a.path.startsWith('node:') || BUILTINS.has(a.path.split('/')[0])) return { external: true };
        const r = await b.resolve(a.path, { kind: a.kind, resolveDir: a.resolveDir, importer: a.importer, pluginData: 'pipeline-launch' });
        if (r.errors.length > 0) return { external: true }; // not installed: Node decides at run time, as from source
        const manifest = packageJsonOf(r.path);
        if (manifest) inputs[manifest] = sha256(fs.readFileSync(manifest));
        return { path: r.path, external: true };
      });
      b.onLoad({ filter: LOCAL_SOURCE }, (a) => {
        if (a.path.split(path.sep).includes('node_modules')) return undefined;
        const data = fs.readFileSync(a.path);
        inputs[a.path] = sha256(data);
        const url = JSON.stringify(pathToFileURL(a.path).href);
        const ext = path.extname(a.path).slice(1);
        /** @type {import('esbuild').Loader} */
        const loader = ext.startsWith('t') || ext.endsWith('ts') ? 'ts' : 'js';
        return { contents: data.toString('utf8').replace(/\bimport\.meta\.url\b/g, url), loader, resolveDir: path.dirname(a.path) };
      });
      b.onLoad({ filter: /.*/ }, (a) => {
        if (a.namespace === 'file' && !a.path.split(path.sep).includes('node_modules')) inputs[a.path] = sha256(fs.readFileSync(a.path));
        return undefined;
      });
    },
  };
}

/** Build the bundle into a fresh directory and switch current.json to it. */
async function build(/** @type {typeof import('esbuild')} */ esbuild, /** @type {string} */ dir, /** @type {string} */ stagesModule) {
  // Resolution as Node's own: no "module" condition or main field (esbuild adds them by default).
  const common = /** @type {const} */ ({ bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'silent', absWorkingDir: ENGINE_ROOT, conditions: [], mainFields: ['main'] });
  // 1. The stages module's direct local imports (the modules the engine will ask for by path).
  /** @type {Record<string, string>} */
  const scan = {};
  const first = await esbuild.build({ ...common, entryPoints: [stagesModule], write: false, metafile: true, outdir: dir, plugins: [localSources(scan)] });
  const rel = (/** @type {string} */ p) => path.resolve(ENGINE_ROOT, p);
  const entryKey = Object.keys(first.metafile.inputs).find((k) => rel(k) === stagesModule);
  const direct = (entryKey ? first.metafile.inputs[entryKey].imports : []).filter((i) => !i.external && LOCAL_SOURCE.test(i.path)).map((i) => rel(i.path));
  const modules = [stagesModule, ...direct.filter((p) => p !== stagesModule)];
  // 2. One entry: the CLI's main, and a table of those modules, loaded lazily; shared code is split
  //    into chunks, so a module reached both ways is one instance.
  const entry = [
    `export { main } from ${JSON.stringify(CLI)};`,
    `export const modules = {`,
    ...modules.map((m) => `  ${JSON.stringify(m)}: () => import(${JSON.stringify(m)}),`),
    `};`,
  ].join('\n');
  /** @type {Record<string, string>} */
  const inputs = {};
  const name = `b-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const tmp = path.join(dir, `${name}.tmp`);
  await esbuild.build({
    ...common,
    entryPoints: { entry: 'launch:entry' },
    outdir: tmp,
    splitting: true,
    outExtension: { '.js': '.mjs' },
    sourcemap: 'linked',
    sourcesContent: false,
    plugins: [
      {
        name: 'pipeline-launch-entry',
        setup(b) {
          b.onLoad({ filter: /.*/, namespace: 'launch' }, () => ({ contents: entry, loader: 'js', resolveDir: ENGINE_ROOT }));
        },
      },
      localSources(inputs),
    ],
  });
  fs.renameSync(tmp, path.join(dir, name));
  /** @type {Manifest} */
  const manifest = { version: 1, self: SELF_HASH, esbuild: esbuild.version, stagesModule, inputs, dir: name };
  const next = path.join(dir, `current.json.${process.pid}.tmp`);
  fs.writeFileSync(next, JSON.stringify(manifest));
  fs.renameSync(next, path.join(dir, 'current.json'));
  // Older builds go once they are a day old (a long run started from one may still load its
  // lazy chunks); a build is ~1.6 MB.
  for (const e of fs.readdirSync(dir)) {
    if (e === name || e === 'current.json') continue;
    const p = path.join(dir, e);
    try {
      if (Date.now() - fs.statSync(p).mtimeMs > 24 * 3600_000) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // another launcher removed it
    }
  }
  return manifest;
}

/** The bundle's entry module (built if missing or stale). */
async function loadBundle(/** @type {string} */ stagesModule) {
  const require = createRequire(import.meta.url);
  const esbuildVersion = JSON.parse(fs.readFileSync(require.resolve('esbuild/package.json'), 'utf8')).version;
  const dir = cacheDir(stagesModule);
  let m = validBundle(dir, stagesModule, esbuildVersion);
  if (m) debug(`bundle ${m.dir} (${Object.keys(m.inputs).length} files unchanged)`);
  else {
    fs.mkdirSync(dir, { recursive: true });
    const t0 = Date.now();
    m = await build(await import('esbuild'), dir, stagesModule);
    debug(`built ${m.dir} from ${Object.keys(m.inputs).length} files in ${Date.now() - t0} ms`);
  }
  // Stack traces through the bundle point at the sources.
  process.setSourceMapsEnabled(true);
  return /** @type {{ main: (argv: string[]) => Promise<number>, modules: Record<string, () => Promise<unknown>> }} */ (
    await import(pathToFileURL(path.join(dir, m.dir, 'entry.mjs')).href)
  );
}

let tsxRegistered = false;
/** Register the tsx loader in this process (for a module not in the bundle). */
async function ensureLoader() {
  if (tsxRegistered) return;
  tsxRegistered = true;
  await import('tsx'); // what `node --import tsx` does: tsx's ESM and CommonJS hooks
}

async function fromSource() {
  await ensureLoader();
  const { main } = /** @type {{ main: (argv: string[]) => Promise<number> }} */ (await import(pathToFileURL(CLI).href));
  return main(process.argv);
}

async function launch() {
  const root = projectRoot(process.argv.slice(2));
  const stagesModule = path.join(root, 'stages', 'index.ts');
  if (process.env.PIPELINE_LAUNCH !== 'tsx' && fs.existsSync(stagesModule)) {
    let bundle;
    try {
      bundle = await loadBundle(stagesModule);
    } catch (e) {
      debug(`bundle unavailable (${String(/** @type {Error} */ (e)?.message ?? e).split('\n')[0]}): running from source`);
    }
    if (bundle) {
      /** @type {Record<symbol, unknown>} */ (globalThis)[LAUNCH_KEY] = { modules: bundle.modules, ensureLoader };
      return bundle.main(process.argv);
    }
  } else debug('running from source');
  return fromSource();
}

process.exitCode = await launch();
