/**
 * params.yaml is validated before anything runs: each kind of mistake gets a message naming the
 * key, the value and what is allowed; exit code 2; nothing in the store or results changes.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParamsError } from '../../pipeline/errors.ts';
import { applyOverrides, declaredValues, loadParamsFile, parseOverride, projectParams, readParamsFile, readSchema, validateParams } from '../../pipeline/params.ts';
import { cli, makeProject, removeProject, snapshot } from './helpers.ts';

const GOOD = `source:
  n: 5
double:
  factor: 2
train:
  k: [1, 2]
  seeds: [0]
  lr: 0.1
  arch: topk
`;

const BAD: Array<{ kind: string; yaml?: string; set?: string[]; message: RegExp }> = [
  { kind: 'unknown key', yaml: GOOD.replace('lr: 0.1', 'lr: 0.1\n  lerning_rate: 3'), message: /params\.train\.lerning_rate: unknown key \(allowed keys in params\.train: k, seeds, lr, arch, fail_k\)/ },
  { kind: 'unknown top-level key', yaml: `${GOOD}extra: 1\n`, message: /params\.extra: unknown key/ },
  { kind: 'wrong type', yaml: GOOD.replace('n: 5', 'n: five'), message: /params\.source\.n: must be integer; got "five"/ },
  { kind: 'out of range', yaml: GOOD.replace('lr: 0.1', 'lr: 2'), message: /params\.train\.lr: must be <= 1; got 2/ },
  { kind: 'out of range (exclusive)', yaml: GOOD.replace('lr: 0.1', 'lr: 0'), message: /params\.train\.lr: must be > 0; got 0/ },
  { kind: 'duplicate k values', yaml: GOOD.replace('k: [1, 2]', 'k: [8, 8]'), message: /params\.train\.k: must be an array of unique items \(items 0 and 1 are equal\); got \[8,8\]/ },
  { kind: 'not in enum', yaml: GOOD.replace('arch: topk', 'arch: dense'), message: /params\.train\.arch: must be one of "topk", "gsae"; got "dense"/ },
  { kind: 'missing key', yaml: GOOD.replace('double:\n  factor: 2\n', ''), message: /params\.double: required key is missing/ },
  { kind: 'duplicate YAML key', yaml: GOOD.replace('n: 5', 'n: 5\n  n: 6'), message: /Map keys must be unique/ },
  { kind: 'bad --set value', set: ['train.k=[4,4]'], message: /params\.train\.k: must be an array of unique items .*got \[4,4\]/ },
  { kind: 'bad --set syntax', set: ['train.k'], message: /--set train\.k: expected key=value/ },
  { kind: 'cross-field (the project\'s validate)', set: ['train.k=[1,900]'], message: /invalid params:\n  params\.train\.k: every k must be ≤ 100 × source\.n \(500\); got \[1,900\]\n?$/ },
];

describe('params validation through the CLI', () => {
  let root: string;
  let before: string[];
  beforeAll(async () => {
    root = await makeProject('toy');
    const ok = await cli(root, ['run', 'source']);
    expect(ok.code, ok.stderr).toBe(0);
    for (const [i, c] of BAD.entries()) await fs.writeFile(path.join(root, `bad-${i}.yaml`), c.yaml ?? GOOD);
    before = await snapshot(root);
  });
  afterAll(async () => {
    await removeProject(root);
  });

  it('each kind of bad params gives its message, exit code 2, and changes nothing', async () => {
    // Independent read-only checks: run them a few at a time.
    const results: Array<Awaited<ReturnType<typeof cli>>> = [];
    for (let i = 0; i < BAD.length; i += 4) {
      const batch = BAD.slice(i, i + 4).map((c, j) => cli(root, ['run', '--params', `bad-${i + j}.yaml`, ...(c.set ?? []).flatMap((s) => ['--set', s])]));
      results.push(...(await Promise.all(batch)));
    }
    for (const [i, c] of BAD.entries()) {
      expect(results[i].code, `${c.kind}: ${results[i].stderr}`).toBe(2);
      expect(results[i].stderr, c.kind).toMatch(c.message);
      expect(results[i].stdout, c.kind).not.toContain('▶');
    }
    expect(await snapshot(root)).toEqual(before);
  });

  it('types: writes params.gen.ts from the schema, --check passes, and fails once the schema changes', async () => {
    const gen = await cli(root, ['types']);
    expect(gen.code, gen.stderr).toBe(0);
    const text = await fs.readFile(path.join(root, 'stages/params.gen.ts'), 'utf8');
    expect(text).toMatch(/export interface Params \{/);
    expect(text).toMatch(/arch: 'topk' \| 'gsae';/);
    expect((await cli(root, ['types', '--check'])).code).toBe(0);

    const schemaFile = path.join(root, 'params.schema.json');
    const schema = JSON.parse(await fs.readFile(schemaFile, 'utf8')) as { properties: Record<string, unknown> };
    schema.properties.extra = { type: 'string' };
    await fs.writeFile(schemaFile, JSON.stringify(schema));
    const stale = await cli(root, ['types', '--check']);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('params.gen.ts is stale');
  });
});

describe('params helpers', () => {
  it('validateParams lists every problem at once', async () => {
    const schema = await readSchema(path.resolve(__dirname, '../fixtures/pipeline/toy/params.schema.json'));
    let error: unknown;
    try {
      validateParams({ source: { n: 0 }, double: { factor: 'x' }, train: { k: [1], seeds: [0], lr: 0.1, arch: 'topk' } }, schema);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ParamsError);
    expect((error as ParamsError).problems).toEqual(['params.source.n: must be >= 1; got 0', 'params.double.factor: must be number; got "x"']);
  });

  it('the validator kept in the cache dir gives the same answers, and a changed schema is compiled anew', async () => {
    const schema = await readSchema(path.resolve(__dirname, '../fixtures/pipeline/toy/params.schema.json'));
    const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'validators-')); // an existing store
    const bad = { source: { n: 0 }, double: { factor: 'x' }, train: { k: [1], seeds: [0], lr: 0.1, arch: 'topk' } };
    const problems = (s: Record<string, unknown>, dir?: string): string[] => {
      try {
        validateParams(bad, s, dir);
        return [];
      } catch (e) {
        return (e as ParamsError).problems;
      }
    };
    const fresh = problems(schema);
    expect(problems(schema, cacheDir)).toEqual(fresh); // compiles; bad params: nothing written
    expect(fsSync.existsSync(path.join(cacheDir, 'validators'))).toBe(false);
    validateParams({ ...bad, source: { n: 1 }, double: { factor: 2 } }, schema, cacheDir)(); // good params, kept
    const validators = async (): Promise<string[]> => (await fs.readdir(path.join(cacheDir, 'validators'))).filter((f) => f.endsWith('.cjs'));
    expect(await validators()).toHaveLength(1);
    expect(problems(schema, cacheDir)).toEqual(fresh); // loads the kept code
    const stricter = structuredClone(schema) as { properties: { source: { properties: { n: { minimum: number } } } } };
    stricter.properties.source.properties.n.minimum = 5;
    const changed = problems(stricter as unknown as Record<string, unknown>, cacheDir);
    expect(changed).toContain('params.source.n: must be >= 5; got 0');
    validateParams({ ...bad, source: { n: 6 }, double: { factor: 2 } }, stricter as unknown as Record<string, unknown>, cacheDir)();
    expect(await validators()).toHaveLength(2);
    await fs.rm(cacheDir, { recursive: true, force: true });
  });

  it('a value that passed a validator is not validated again by it; any other value or schema is', async () => {
    const schema = await readSchema(path.resolve(__dirname, '../fixtures/pipeline/toy/params.schema.json'));
    const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'validators-'));
    const good = { source: { n: 1 }, double: { factor: 2 }, train: { k: [1], seeds: [0], lr: 0.1, arch: 'topk' } };
    validateParams(good, schema, cacheDir); // not kept (a run's later checks failed): nothing recorded
    const marks = async (): Promise<string[]> => (await fs.readdir(path.join(cacheDir, 'validators')).catch(() => [])).filter((f) => f.startsWith('passed-'));
    expect(await marks()).toEqual([]);
    validateParams(good, schema, cacheDir)();
    expect(await marks()).toHaveLength(1);
    // Marks are per value: another value is validated (that the marked one skips the validator is
    // a matter of time, measured by the no-op benchmark, not something a test can see).
    const bad = { ...good, source: { n: 0 } };
    expect(() => validateParams(bad, schema, cacheDir)).toThrow(/params\.source\.n: must be >= 1; got 0/);
    const reordered = { train: good.train, double: good.double, source: good.source }; // same value, other key order
    validateParams(reordered, schema, cacheDir)();
    expect(await marks()).toHaveLength(1); // the same mark
    const stricter = structuredClone(schema) as { properties: { source: { properties: { n: { minimum: number } } } } };
    stricter.properties.source.properties.n.minimum = 5;
    expect(() => validateParams(good, stricter as unknown as Record<string, unknown>, cacheDir)).toThrow(/must be >= 5; got 1/);
    // -0 has no exact JSON text (it would read as 0): such a value is always validated, never marked
    validateParams({ ...good, train: { ...good.train, seeds: [-0] } }, schema, cacheDir)();
    expect(await marks()).toHaveLength(1);
    await fs.rm(cacheDir, { recursive: true, force: true });
  });

  it('--set values are YAML and create nested keys', () => {
    expect(parseOverride('sae.k=[8,16]')).toEqual({ key: 'sae.k', value: [8, 16] });
    expect(parseOverride('a.b=gsae')).toEqual({ key: 'a.b', value: 'gsae' });
    expect(parseOverride('a=0.5')).toEqual({ key: 'a', value: 0.5 });
    expect(applyOverrides({ a: { b: 1, c: 2 } }, [{ key: 'a.b', value: 3 }, { key: 'x.y', value: true }])).toEqual({ a: { b: 3, c: 2 }, x: { y: true } });
    expect(() => applyOverrides({ a: 1 }, [{ key: 'a.b', value: 3 }])).toThrow(/params\.a is 1, not a mapping/);
  });

  it('ctx.params holds only declared keys; reading another throws', () => {
    const params = { lm: { lr: 0.1, n_layer: 2 }, sae: { k: [8, 16], lr: 0.01 }, seed: 3 };
    const p = projectParams(params, ['lm.lr', 'sae'], 'demo') as typeof params;
    expect(p.lm.lr).toBe(0.1);
    expect(p.sae).toEqual({ k: [8, 16], lr: 0.01 });
    expect(() => p.lm.n_layer).toThrow(/stage "demo" read params key "lm\.n_layer", which it does not declare \(declared: lm\.lr, sae\)/);
    expect(() => p.seed).toThrow(/"seed"/);
    expect(JSON.stringify(p)).toBe('{"lm":{"lr":0.1},"sae":{"k":[8,16],"lr":0.01}}');
  });

  it('the fingerprint takes declared values without the matrix lists', () => {
    const params = { sae: { k: [8, 16], lr: 0.01 }, seeds: [0, 1] };
    expect(declaredValues(params, ['sae', 'seeds'], ['sae.k', 'seeds'])).toEqual({ sae: { lr: 0.01 } });
    expect(declaredValues(params, ['sae.lr', 'missing.key'], [])).toEqual({ 'sae.lr': 0.01, 'missing.key': null });
  });

  it('loadParamsFile: the parse of a file seen before comes from the cache dir, kept only when asked, never for values JSON cannot hold', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'params-cache-'));
    try {
      const file = path.join(dir, 'params.yaml');
      const cacheDir = path.join(dir, '.cache');
      const entries = (): string[] => (fsSync.existsSync(path.join(cacheDir, 'params')) ? fsSync.readdirSync(path.join(cacheDir, 'params')) : []);
      await fs.writeFile(file, 'sae:\n  k: [8, 16]   # a comment\n  lr: 0.1\nname: "x: y"\n');
      const first = await loadParamsFile(file, cacheDir);
      expect(first.params).toEqual(await readParamsFile(file));
      expect(entries()).toEqual([]); // nothing written until keep()
      first.keep();
      expect(entries()).toHaveLength(1);
      // The next load is the stored value, not a new parse (shown by editing the stored copy).
      const stored = path.join(cacheDir, 'params', entries()[0]);
      await fs.writeFile(stored, JSON.stringify({ from: 'cache' }));
      expect((await loadParamsFile(file, cacheDir)).params).toEqual({ from: 'cache' });
      // Another text is another key: parsed again.
      await fs.appendFile(file, 'extra: 1\n');
      const edited = await loadParamsFile(file, cacheDir);
      expect(edited.params).toEqual({ sae: { k: [8, 16], lr: 0.1 }, name: 'x: y', extra: 1 });
      edited.keep();
      expect(entries()).toHaveLength(2);
      // .inf, .nan and -0 do not survive JSON: parsed every time, never stored.
      await fs.writeFile(file, 'a: .inf\nb: -0\n');
      const special = await loadParamsFile(file, cacheDir);
      special.keep();
      expect(entries()).toHaveLength(2);
      expect(special.params.a).toBe(Number.POSITIVE_INFINITY);
      expect(Object.is(special.params.b, -0)).toBe(true);
      // YAML errors are the same as readParamsFile's.
      await fs.writeFile(file, 'a: 1\na: 2\n');
      await expect(loadParamsFile(file, cacheDir)).rejects.toThrow(/Map keys must be unique/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
