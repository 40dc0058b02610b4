/** Locating and loading a project: paths, the stages module, and which file declares each stage. */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CodeGraph } from './closure.ts';
import { UsageError } from './errors.ts';
import type { Project, StageDef } from './types.ts';

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

export async function importProject(stagesModule: string): Promise<Project> {
  let mod: Partial<Project> & { default?: Partial<Project> };
  try {
    mod = (await import(pathToFileURL(stagesModule).href)) as typeof mod;
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
  return { stages, environment };
}

const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Check the declarations themselves (names, inputs, matrix variables) before anything runs. */
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
    for (const v of Object.keys(s.matrix ?? {})) {
      if (!NAME.test(v)) throw new UsageError(`stage "${s.name}": matrix variable "${v}" is not a valid name`);
    }
  }
  for (const s of stages) {
    for (const [input, spec] of Object.entries(s.inputs ?? {})) {
      if (!names.has(spec.stage)) {
        throw new UsageError(`stage "${s.name}": input "${input}" reads unknown stage "${spec.stage}" (stages: ${[...names].join(', ')})`);
      }
    }
  }
}

/**
 * Which source file declares each stage: the direct local import of the stages module whose exports
 * contain that very StageDef object (falls back to the stages module itself).
 */
export async function stageModules(project: Project, graph: CodeGraph, root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const candidates = graph.files[graph.entry]?.imports ?? [];
  for (const rel of candidates) {
    if (!/\.[cm]?[jt]sx?$/.test(rel)) continue;
    const mod = (await import(pathToFileURL(path.resolve(root, rel)).href)) as Record<string, unknown>;
    for (const value of Object.values(mod)) {
      const stage = project.stages.find((s) => s === value);
      if (stage && !out.has(stage.name)) out.set(stage.name, rel);
    }
  }
  for (const s of project.stages) if (!out.has(s.name)) out.set(s.name, graph.entry);
  return out;
}
