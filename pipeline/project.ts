/** Locating and loading a project: paths, the stages module, and which file declares each stage. */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CodeGraph } from './closure.ts';
import { ParamsError, UsageError } from './errors.ts';
import { isDeclared } from './projection.ts';
import type { Project, StageDef } from './types.ts';
import { showValue } from './util.ts';

export interface ProjectPaths {
  root: string;
  stagesModule: string;
  params: string;
  schema: string;
  cacheDir: string;
  resultsDir: string;
}

export interface PathOptions {
  root?: string;
  params?: string;
  stagesModule?: string;
  schema?: string;
  cacheDir?: string;
  resultsDir?: string;
}

export function projectPaths(opts: PathOptions = {}): ProjectPaths {
  const root = path.resolve(opts.root ?? process.cwd());
  const at = (p: string | undefined, def: string): string => path.resolve(root, p ?? def);
  return {
    root,
    stagesModule: at(opts.stagesModule, 'stages/index.ts'),
    params: at(opts.params, 'params.yaml'),
    schema: at(opts.schema, 'params.schema.json'),
    cacheDir: at(opts.cacheDir, '.cache'),
    resultsDir: at(opts.resultsDir, 'results'),
  };
}

/** What pipeline/launch.mjs hands the engine when the CLI runs from its bundle. */
interface Launch {
  /** Bundled copies of the stages module and its direct local imports, by absolute path. */
  modules: Record<string, () => Promise<unknown>>;
  /** Registers the TypeScript loader (tsx), for a module not in the bundle. */
  ensureLoader(): Promise<void>;
}

/** Import a local module by absolute path: its bundled copy when the CLI runs from the bundle. */
export async function importLocal(file: string): Promise<unknown> {
  const launch = (globalThis as Record<symbol, Launch | undefined>)[Symbol.for('pipeline.launch')];
  const bundled = launch?.modules[file];
  if (bundled) return bundled();
  await launch?.ensureLoader();
  return import(pathToFileURL(file).href);
}

export async function importProject(stagesModule: string): Promise<Project> {
  let mod: Partial<Project> & { default?: Partial<Project> };
  try {
    mod = (await importLocal(stagesModule)) as typeof mod;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(stagesModule)) {
      throw new UsageError(`stages module ${stagesModule} not found`);
    }
    throw e;
  }
  const stages = mod.stages ?? mod.default?.stages;
  if (!Array.isArray(stages)) throw new UsageError(`${stagesModule} must export \`stages: StageDef[]\``);
  const environment = mod.environment ?? mod.default?.environment;
  const validate = mod.validate ?? mod.default?.validate;
  if (validate !== undefined && typeof validate !== 'function') throw new UsageError(`${stagesModule}: \`validate\` must be a function (params) => string[]`);
  return { stages, environment, validate };
}

const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Check the declarations themselves (names, inputs, matrix variables, conditions) before anything runs. */
export function checkStageDefs(stages: StageDef[]): void {
  const names = new Set<string>();
  for (const s of stages) {
    if (!s || typeof s.name !== 'string' || !NAME.test(s.name)) {
      throw new UsageError(`stage name ${JSON.stringify(s?.name)} is invalid: letters, digits, '_' and '-', starting with a letter`);
    }
    if (names.has(s.name)) throw new UsageError(`two stages are named "${s.name}"`);
    names.add(s.name);
    if (typeof s.run !== 'function') throw new UsageError(`stage "${s.name}" has no run(ctx) function`);
    if (!Array.isArray(s.params)) throw new UsageError(`stage "${s.name}": params must be a list of keys`);
    if (!Array.isArray(s.outputs)) throw new UsageError(`stage "${s.name}": outputs must be a list of files`);
    checkMatrixAndParams(s);
  }
  for (const s of stages) {
    for (const [input, spec] of Object.entries(s.inputs ?? {})) {
      if (!names.has(spec.stage)) {
        throw new UsageError(`stage "${s.name}": input "${input}" reads unknown stage "${spec.stage}" (stages: ${[...names].join(', ')})`);
      }
    }
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isMatrixValue = (v: unknown): boolean => ['string', 'number', 'boolean'].includes(typeof v);

/**
 * A `{ key, when }` entry: `where` names it in messages; `allowed` are the matrix variables its
 * condition may name; `why` says why another variable is not allowed.
 */
function checkConditional(where: string, spec: unknown, allowed: string[], why: (variable: string) => string): void {
  if (!isPlainObject(spec)) throw new UsageError(`${where} must be a params key or { key, when }; got ${showValue(spec)}`);
  const extra = Object.keys(spec).filter((k) => k !== 'key' && k !== 'when');
  if (extra.length > 0) throw new UsageError(`${where}: unknown field ${extra.map((k) => `"${k}"`).join(', ')} (allowed: key, when)`);
  if (typeof spec.key !== 'string' || spec.key === '') throw new UsageError(`${where}: "key" must be a params key; got ${showValue(spec.key)}`);
  if (!isPlainObject(spec.when)) throw new UsageError(`${where}: "when" must map matrix variables to values; got ${showValue(spec.when)}`);
  const names = Object.keys(spec.when);
  if (names.length === 0) throw new UsageError(`${where}: "when" is empty (name at least one matrix variable, or use a plain key)`);
  for (const variable of names) {
    if (!allowed.includes(variable)) throw new UsageError(`${where}: "when" names "${variable}", ${why(variable)}`);
    const want = spec.when[variable];
    const ok = Array.isArray(want) ? want.length > 0 && want.every(isMatrixValue) : isMatrixValue(want);
    if (!ok) {
      throw new UsageError(`${where}: "when.${variable}" must be a string, number or boolean, or a non-empty list of them; got ${showValue(want)}`);
    }
  }
}

/** Matrix variables (names, keys, conditions over earlier variables) and params entries. */
function checkMatrixAndParams(s: StageDef): void {
  const matrix = s.matrix ?? {};
  if (!isPlainObject(matrix)) throw new UsageError(`stage "${s.name}": matrix must map variable names to params keys; got ${showValue(matrix)}`);
  const variables = Object.keys(matrix);
  const list = variables.join(', ') || 'none';
  const earlier: string[] = [];
  for (const [v, spec] of Object.entries(matrix)) {
    const where = `stage "${s.name}": matrix variable "${v}"`;
    if (!NAME.test(v)) throw new UsageError(`${where} is not a valid name`);
    if (typeof spec === 'string') {
      if (spec === '') throw new UsageError(`${where}: the params key is empty`);
    } else {
      checkConditional(where, spec, earlier, (w) =>
        w === v
          ? 'which is this variable itself (a condition may use only variables declared before it)'
          : variables.includes(w)
            ? `which is declared after "${v}" in the matrix (a condition may use only variables declared before it: ${earlier.join(', ') || 'none'})`
            : `which is not a matrix variable of the stage (variables: ${list})`,
      );
    }
    earlier.push(v);
  }
  const plain: string[] = [];
  for (const [i, entry] of s.params.entries()) {
    if (typeof entry === 'string') {
      if (entry === '') throw new UsageError(`stage "${s.name}": params entry ${i} is an empty key`);
      plain.push(entry);
    }
  }
  for (const [i, entry] of s.params.entries()) {
    if (typeof entry === 'string') continue;
    const key = isPlainObject(entry) && typeof entry.key === 'string' ? `"${entry.key}"` : `entry ${i}`;
    const where = `stage "${s.name}": conditional params ${key}`;
    checkConditional(where, entry, variables, () => `which is not a matrix variable of the stage (variables: ${list})`);
    const cover = plain.find((d) => isDeclared(entry.key, [d]));
    if (cover !== undefined) {
      throw new UsageError(
        `${where} is inside "${cover}", which the stage declares for every instance, so the condition has no effect ` +
          `(declare the keys of "${cover}" it needs one by one instead)`,
      );
    }
  }
}

/**
 * Which source file declares each stage: the direct local import of the stages module whose exports
 * contain that very StageDef object (falls back to the stages module itself).
 */
export async function stageModules(project: Project, graph: CodeGraph, root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const candidates = (graph.files[graph.entry]?.imports ?? []).filter((rel) => /\.[cm]?[jt]sx?$/.test(rel));
  // all at once (one by one, each dynamic import waited its own turns of the event loop), read in order
  const mods = await Promise.all(candidates.map((rel) => importLocal(path.resolve(root, rel)) as Promise<Record<string, unknown>>));
  for (const [i, rel] of candidates.entries()) {
    const mod = mods[i];
    for (const value of Object.values(mod)) {
      const stage = project.stages.find((s) => s === value);
      if (stage && !out.has(stage.name)) out.set(stage.name, rel);
    }
  }
  for (const s of project.stages) if (!out.has(s.name)) out.set(s.name, graph.entry);
  return out;
}

/** The project's cross-field checks (Project.validate): every problem at once, exit 2. */
export async function validateProject(project: Project, params: unknown): Promise<void> {
  if (!project.validate) return;
  let problems: unknown;
  try {
    problems = await project.validate(params);
  } catch (e) {
    throw new ParamsError(`invalid params:\n  ${(e as Error).message}`, [(e as Error).message]);
  }
  if (!Array.isArray(problems) || problems.some((p) => typeof p !== 'string')) {
    throw new UsageError(`the project's validate(params) must return a list of strings; got ${showValue(problems)}`);
  }
  if (problems.length > 0) throw new ParamsError(`invalid params:\n  ${(problems as string[]).join('\n  ')}`, problems as string[]);
}
