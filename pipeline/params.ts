/**
 * Params: load params.yaml, apply `--set` overrides, validate against params.schema.json with ajv,
 * and build the per-stage projection that throws on undeclared keys.
 */
import * as fs from 'node:fs/promises';
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type YAMLModule from 'yaml';
import { writeFileAtomicSync } from '../base/atomic.ts';
import { ParamsError } from './errors.ts';
import { canonicalJson, getPath, showValue } from './util.ts';

export { isDeclared, projectParams } from './projection.ts';

const require = createRequire(import.meta.url);

/** The yaml package, loaded on first use: ~50 ms that a run whose params.yaml is unchanged skips. */
function yaml(): typeof YAMLModule {
  return require('yaml') as typeof YAMLModule;
}

export interface Override {
  key: string;
  value: unknown;
}

/** Parse `a.b=<yaml value>` (the value is YAML, so `[8,16]`, `0.1`, `true`, `gsae` all work). */
export function parseOverride(text: string): Override {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new ParamsError(`--set ${text}: expected key=value (e.g. --set sae.k=[8,16])`);
  const key = text.slice(0, eq).trim();
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(key)) {
    throw new ParamsError(`--set ${text}: "${key}" is not a dotted params key`);
  }
  let value: unknown;
  try {
    value = yaml().parse(text.slice(eq + 1));
  } catch (e) {
    throw new ParamsError(`--set ${text}: the value is not valid YAML (${(e as Error).message})`);
  }
  return { key, value: value === undefined ? null : value };
}

export function applyOverrides(params: Record<string, unknown>, overrides: Override[]): Record<string, unknown> {
  const out = structuredClone(params);
  for (const { key, value } of overrides) {
    const parts = key.split('.');
    let cur: Record<string, unknown> = out;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = cur[parts[i]];
      if (next === undefined) cur[parts[i]] = {};
      else if (next === null || typeof next !== 'object' || Array.isArray(next)) {
        throw new ParamsError(
          `--set ${key}: params.${parts.slice(0, i + 1).join('.')} is ${showValue(next)}, not a mapping`,
        );
      }
      cur = cur[parts[i]] as Record<string, unknown>;
    }
    cur[parts[parts.length - 1]] = value;
  }
  return out;
}

export async function readParamsFile(file: string): Promise<Record<string, unknown>> {
  return parseParams(file, await readText(file));
}

async function readText(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    throw new ParamsError(`params file ${file} not found`);
  }
}

/**
 * readParamsFile, with the parsed value of a file already seen read from
 * `<cacheDir>/params/<hash>.json` (keyed by the file's text and the yaml package's version). `keep`
 * stores a new one: call it once the params are valid (nothing is written before). A value JSON
 * cannot hold exactly, such as .inf or -0, is never stored.
 */
export async function loadParamsFile(file: string, cacheDir: string): Promise<{ params: Record<string, unknown>; keep: () => void }> {
  const text = await readText(file);
  const version = (JSON.parse(fsSync.readFileSync(require.resolve('yaml/package.json'), 'utf8')) as { version: string }).version;
  const key = createHash('sha256').update(`yaml ${version}\n`).update(text).digest('hex');
  const cached = path.join(cacheDir, 'params', `${key}.json`);
  try {
    return { params: JSON.parse(fsSync.readFileSync(cached, 'utf8')) as Record<string, unknown>, keep: () => undefined };
  } catch {
    // not parsed before (or unreadable): parse it
  }
  const params = parseParams(file, text);
  const json = jsonExact(params) ? JSON.stringify(params) : null; // now: the caller may change params
  const keep = (): void => {
    if (json === null) return;
    try {
      fsSync.mkdirSync(path.dirname(cached), { recursive: true });
      writeFileAtomicSync(cached, json);
    } catch {
      // a read-only cache: parse again next time
    }
  };
  return { params, keep };
}

/** Does JSON hold `v` exactly (plain data, finite numbers, no -0)? */
function jsonExact(v: unknown): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0);
  if (Array.isArray(v)) return v.every(jsonExact);
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.values(v as object).every(jsonExact);
  return false;
}

function parseParams(file: string, text: string): Record<string, unknown> {
  const doc = yaml().parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${file}: ${e.message.split('\n')[0]}`);
    throw new ParamsError(problems.join('\n'), problems);
  }
  const value = doc.toJS() as unknown;
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ParamsError(`${file}: the top level must be a mapping of keys, got ${showValue(value)}`);
  }
  return value as Record<string, unknown>;
}

export async function readSchema(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new ParamsError(`params schema ${file} not found`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ParamsError(`params schema ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

const AJV_OPTIONS = { allErrors: true, strict: false, allowUnionTypes: true, verbose: true } as const;

function compileSchema(schema: Record<string, unknown>, standalone = false): { validate: ValidateFunction; code?: string } {
  const draft2020 = String(schema.$schema ?? '').includes('2020-12');
  // ajv is CommonJS; createRequire avoids default-export interop differences between tsx and tsc.
  const AjvClass = (draft2020 ? require('ajv/dist/2020') : require('ajv')).default as new (
    opts: object,
  ) => { compile(s: object): ValidateFunction };
  const ajv = new AjvClass({ ...AJV_OPTIONS, code: { source: standalone } });
  try {
    const validate = ajv.compile(schema);
    if (!standalone) return { validate };
    const standaloneCode = require('ajv/dist/standalone').default as (a: unknown, v: ValidateFunction) => string;
    return { validate, code: standaloneCode(ajv, validate) };
  } catch (e) {
    throw new ParamsError(`params schema is invalid: ${(e as Error).message}`);
  }
}

/** Evaluate ajv's standalone CommonJS module text with this file's require (it needs ajv's runtime helpers). */
function loadStandalone(code: string): ValidateFunction {
  const mod: { exports: unknown } = { exports: {} };
  new Function('module', 'exports', 'require', code)(mod, mod.exports, require);
  return mod.exports as ValidateFunction;
}

/** The validator's identity: the ajv version, its options and the schema. */
function validatorKey(schema: Record<string, unknown>): string {
  const ajvVersion = (require('ajv/package.json') as { version: string }).version;
  return createHash('sha256').update(JSON.stringify([ajvVersion, AJV_OPTIONS, schema])).digest('hex').slice(0, 32);
}

/**
 * The compiled validator. Compiling the schema costs ~0.2 s, most of a no-op rerun, so with a
 * cacheDir the generated code (ajv standalone) is kept (once params pass) in `<cacheDir>/validators/<hash>.cjs`, keyed by
 * the schema's text, the ajv version and the options: a changed schema compiles anew.
 */
function validatorFor(schema: Record<string, unknown>, cacheDir?: string): { validate: ValidateFunction; keep: () => void } {
  const none = () => {};
  if (!cacheDir) return { validate: compileSchema(schema).validate, keep: none };
  const file = path.join(cacheDir, 'validators', `${validatorKey(schema)}.cjs`);
  try {
    return { validate: loadStandalone(fsSync.readFileSync(file, 'utf8')), keep: none };
  } catch {
    // absent or unreadable: compile, and keep the code for the next run
  }
  const { validate, code } = compileSchema(schema, true);
  const keep = () => {
    try {
      writeFileAtomicSync(file, code!);
    } catch {
      // a read-only cache only costs the compile next time
    }
  };
  return { validate, keep };
}

/**
 * Validate params; returns `keep`, which stores the compiled validator in cacheDir (call it once the
 * run's other checks pass). Throws ParamsError listing every problem as `params.a.b: <what is allowed>; got <value>`. */
export function validateParams(params: unknown, schema: Record<string, unknown>, cacheDir?: string): () => void {
  // A value that passed this very validator before passes again (validation is a pure function of
  // the two: no defaults or coercion), so it is not validated twice: loading and first running the
  // generated validator (~0.1 MB of code) was ~5–8 ms of a no-op rerun. Only values JSON holds exactly.
  const passed = cacheDir && jsonExact(params) ? path.join(cacheDir, 'validators', `passed-${createHash('sha256').update(`${validatorKey(schema)}\n`).update(canonicalJson(params)).digest('hex').slice(0, 32)}`) : null;
  if (passed && fsSync.existsSync(passed)) return () => undefined;
  const { validate, keep } = validatorFor(schema, cacheDir);
  // the caller keeps the compiled validator once every check has passed: bad params write nothing
  if (validate(params)) {
    return () => {
      keep();
      if (!passed) return;
      try {
        writeFileAtomicSync(passed, '');
      } catch {
        // a read-only cache: validate again next time
      }
    };
  }
  const problems = [...new Set((validate.errors ?? []).map((e) => formatAjvError(e, params)))];
  throw new ParamsError(`invalid params:\n  ${problems.join('\n  ')}`, problems);
}

function keyFromPointer(pointer: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let key = 'params';
  for (const p of parts) key += /^\d+$/.test(p) ? `[${p}]` : `.${p}`;
  return key;
}

function valueAtPointer(root: unknown, pointer: string): unknown {
  let cur = root;
  for (const raw of pointer.split('/').slice(1)) {
    const p = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

export function formatAjvError(e: ErrorObject, root: unknown): string {
  const key = keyFromPointer(e.instancePath);
  const value = valueAtPointer(root, e.instancePath);
  const got = `; got ${showValue(value)}`;
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const allowed = Object.keys(((e.parentSchema as Record<string, unknown>)?.properties ?? {}) as object);
      return `${key}.${String(p.additionalProperty)}: unknown key (allowed keys in ${key}: ${allowed.join(', ') || 'none'})`;
    }
    case 'required':
      return `${key}.${String(p.missingProperty)}: required key is missing`;
    case 'type':
      return `${key}: must be ${String(p.type)}${got}`;
    case 'enum':
      return `${key}: must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}${got}`;
    case 'const':
      return `${key}: must be ${JSON.stringify(p.allowedValue)}${got}`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${key}: must be ${String(p.comparison)} ${String(p.limit)}${got}`;
    case 'uniqueItems':
      return `${key}: must be an array of unique items (items ${Math.min(Number(p.i), Number(p.j))} and ${Math.max(Number(p.i), Number(p.j))} are equal)${got}`;
    case 'minItems':
    case 'maxItems':
    case 'minLength':
    case 'maxLength':
    case 'multipleOf':
    case 'pattern':
    case 'format':
      return `${key}: ${e.message ?? e.keyword}${got}`;
    default:
      return `${key}: ${e.message ?? e.keyword}${got}`;
  }
}

/**
 * The values of the declared keys (for the fingerprint), with the stage's matrix keys left out.
 * `declared` are the keys of one instance (conditional entries already resolved), so a conditional
 * key that does not apply leaves the result exactly as if the stage did not list it.
 */
export function declaredValues(params: unknown, declared: string[], matrixKeys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of declared) {
    if (matrixKeys.includes(key)) continue;
    let value = structuredClone(getPath(params, key));
    // A declared subtree that holds a matrix list: drop the list, the instance value stands for it.
    for (const m of matrixKeys) {
      if (m.startsWith(`${key}.`)) value = withoutPath(value, m.slice(key.length + 1));
    }
    out[key] = value === undefined ? null : value;
  }
  return out;
}

function withoutPath(value: unknown, rel: string): unknown {
  if (value === null || typeof value !== 'object') return value;
  const parts = rel.split('.');
  let cur = value as Record<string, unknown>;
  for (let i = 0; i < parts.length - 1; i++) {
    const next = cur[parts[i]];
    if (next === null || typeof next !== 'object') return value;
    cur = next as Record<string, unknown>;
  }
  delete cur[parts[parts.length - 1]];
  return value;
}
