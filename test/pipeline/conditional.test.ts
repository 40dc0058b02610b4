/**
 * Conditional matrix variables (`{ key, when }` in `matrix`) and conditional params keys
 * (`{ key, when }` in `params`): expansion, labels, input and target matching, declaration errors,
 * the params projection and the fingerprint (in-process), then a toy project through the real CLI.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toMermaid } from '../../pipeline/dag.ts';
import { querySql } from '../../pipeline/db.ts';
import { buildInstances, declaredKeys, hiddenKeys, matchTargets, matrixAxes, matrixKey, matrixKeys, withDependencies } from '../../pipeline/graph.ts';
import { declaredValues, projectParams } from '../../pipeline/params.ts';
import { checkStageDefs } from '../../pipeline/project.ts';
import { dryRun, planPipeline } from '../../pipeline/runner.ts';
import type { StageDef } from '../../pipeline/types.ts';
import { canonicalJson } from '../../pipeline/util.ts';
import { cli, labelsWith, makeProject, removeProject, stageStatuses, takeTrace } from './helpers.ts';

const stage = (name: string, extra: Partial<StageDef> = {}): StageDef => ({ name, params: [], outputs: [], run: async () => {}, ...extra });

const MATRIX: StageDef['matrix'] = { arch: 'sae.arch', beta: { key: 'sae.beta', when: { arch: 'gsae' } }, k: 'sae.k', seed: 'sae.seeds' };
const params = { sae: { arch: ['topk', 'gsae'], beta: [0.5, 1], k: [8], seeds: [0], lr: 0.01 }, extra: { gamma: 2 } };
const ids = (stages: StageDef[], p: unknown = params): string[] => buildInstances(stages, p).map((i) => i.id);

describe('conditional matrix variables', () => {
  it('expand only where `when` matches; labels follow declaration order; values keep their JSON type', () => {
    const inst = buildInstances([stage('sae', { matrix: MATRIX })], params);
    expect(inst.map((i) => i.id)).toEqual(['sae[arch=topk,k=8,seed=0]', 'sae[arch=gsae,beta=0.5,k=8,seed=0]', 'sae[arch=gsae,beta=1,k=8,seed=0]']);
    expect(inst.map((i) => i.instance)).toEqual([
      { arch: 'topk', k: 8, seed: 0 },
      { arch: 'gsae', beta: 0.5, k: 8, seed: 0 },
      { arch: 'gsae', beta: 1, k: 8, seed: 0 },
    ]);
    expect(Object.keys(inst[2].instance)).toEqual(['arch', 'beta', 'k', 'seed']);
    expect(Object.hasOwn(inst[0].instance, 'beta')).toBe(false);
    expect(typeof inst[2].instance.beta).toBe('number');
    expect(canonicalJson(inst[2].instance)).toBe('{"arch":"gsae","beta":1,"k":8,"seed":0}');
  });

  it('an empty list gives no instance for matching combinations; the list is read only if some combination needs it', () => {
    const empty = { sae: { ...params.sae, beta: [] } };
    expect(ids([stage('sae', { matrix: MATRIX })], empty)).toEqual(['sae[arch=topk,k=8,seed=0]']);
    const topkOnly = { sae: { arch: ['topk'], beta: 'not a list', k: [8], seeds: [0] } };
    expect(ids([stage('sae', { matrix: MATRIX })], topkOnly)).toEqual(['sae[arch=topk,k=8,seed=0]']);
    expect(() => ids([stage('sae', { matrix: MATRIX })], { sae: { ...topkOnly.sae, arch: ['gsae'] } })).toThrow(
      /stage "sae": matrix variable "beta" needs params\.sae\.beta to be a list; got "not a list"/,
    );
  });

  it('`when` takes a list of values, several variables, and conditional variables', () => {
    const p = { v: { a: ['x', 'y', 'z'], b: [1, 2], c: [true] } };
    const s = stage('s', { matrix: { a: 'v.a', b: { key: 'v.b', when: { a: ['y', 'z'] } }, c: { key: 'v.c', when: { a: 'z', b: 2 } } } });
    expect(ids([s], p)).toEqual(['s[a=x]', 's[a=y,b=1]', 's[a=y,b=2]', 's[a=z,b=1]', 's[a=z,b=2,c=true]']);
    expect(matrixAxes(s)).toEqual([
      { variable: 'a', key: 'v.a' },
      { variable: 'b', key: 'v.b', when: { a: ['y', 'z'] } },
      { variable: 'c', key: 'v.c', when: { a: 'z', b: 2 } },
    ]);
    expect(matrixKey('v.a')).toBe('v.a');
    expect(matrixKey({ key: 'v.b', when: { a: 'y' } })).toBe('v.b');
    expect(matrixKeys(s)).toEqual(['v.a', 'v.b', 'v.c']);
  });

  it('inputs: a stage with the same conditional variable reads exactly its own upstream instance', () => {
    const stages = [stage('sae', { matrix: MATRIX }), stage('down', { matrix: MATRIX, inputs: { sae: { stage: 'sae' } } })];
    const byId = new Map(buildInstances(stages, params).map((i) => [i.id, i]));
    expect(byId.get('down[arch=topk,k=8,seed=0]')!.inputs[0].from).toEqual(['sae[arch=topk,k=8,seed=0]']);
    expect(byId.get('down[arch=gsae,beta=1,k=8,seed=0]')!.inputs[0].from).toEqual(['sae[arch=gsae,beta=1,k=8,seed=0]']);
    expect(byId.get('down[arch=gsae,beta=0.5,k=8,seed=0]')!.inputs[0].from).toEqual(['sae[arch=gsae,beta=0.5,k=8,seed=0]']);
  });

  it('inputs: upstream instances with a variable the downstream lacks are ambiguous (or all, with all: true)', () => {
    const plain = { arch: 'sae.arch', k: 'sae.k', seed: 'sae.seeds' };
    // Downstream without beta: topk matches one, gsae matches both betas.
    expect(() => buildInstances([stage('sae', { matrix: MATRIX }), stage('down', { matrix: plain, inputs: { sae: { stage: 'sae' } } })], params)).toThrow(
      /down\[arch=gsae,k=8,seed=0\]: input "sae" must match exactly one instance of "sae" on the shared matrix variables \(arch, k, seed\), but 2 match; declare it with all: true/,
    );
    const all = buildInstances([stage('sae', { matrix: MATRIX }), stage('down', { matrix: plain, inputs: { sae: { stage: 'sae', all: true } } })], params);
    expect(all.find((i) => i.id === 'down[arch=gsae,k=8,seed=0]')!.inputs[0].from).toEqual(['sae[arch=gsae,beta=0.5,k=8,seed=0]', 'sae[arch=gsae,beta=1,k=8,seed=0]']);
    expect(all.find((i) => i.id === 'down[arch=topk,k=8,seed=0]')!.inputs[0].from).toEqual(['sae[arch=topk,k=8,seed=0]']);
    // Downstream lacks beta where the upstream has it everywhere: absent must meet absent, so no match.
    expect(() =>
      buildInstances([stage('sae', { matrix: { ...plain, beta: 'sae.beta' } }), stage('down', { matrix: MATRIX, inputs: { sae: { stage: 'sae' } } })], params),
    ).toThrow(/down\[arch=topk,k=8,seed=0\]: input "sae" must match exactly one instance of "sae" on the shared matrix variables \(arch, k, seed, beta absent\), but 0 match/);
    // Downstream has beta where the upstream lacks it.
    expect(() =>
      buildInstances([stage('sae', { matrix: MATRIX }), stage('down', { matrix: { ...plain, beta: 'sae.beta' }, inputs: { sae: { stage: 'sae' } } })], params),
    ).toThrow(/down\[arch=topk,k=8,seed=0,beta=0\.5\]: input "sae" .* but 0 match/);
  });

  it('targets: a filter on a conditional variable selects only instances that have it', () => {
    const stages = [stage('sae', { matrix: MATRIX }), stage('down', { matrix: MATRIX, inputs: { sae: { stage: 'sae' } } })];
    const inst = buildInstances(stages, params);
    expect([...matchTargets(inst, ['sae[beta=1]'])]).toEqual(['sae[arch=gsae,beta=1,k=8,seed=0]']);
    expect([...matchTargets(inst, ['sae[arch=topk]'])]).toEqual(['sae[arch=topk,k=8,seed=0]']);
    expect(withDependencies(inst, matchTargets(inst, ['down[beta=0.5]'])).map((i) => i.id)).toEqual([
      'sae[arch=gsae,beta=0.5,k=8,seed=0]',
      'down[arch=gsae,beta=0.5,k=8,seed=0]',
    ]);
    expect(() => matchTargets(inst, ['sae[beta=undefined]'])).toThrow(/matches no instance of "sae"/);
    expect(() => matchTargets(inst, ['sae[gamma=1]'])).toThrow(/target "sae\[gamma=1\]": stage "sae" has no matrix variable "gamma"/);
    expect(() => matchTargets(inst, ['sae[toString=1]'])).toThrow(/has no matrix variable "toString"/);
  });

  it('dag shows the condition', () => {
    expect(toMermaid([stage('sae', { matrix: MATRIX })])).toContain('sae["sae [arch × (beta if arch=gsae) × k × seed]"]');
  });
});

describe('conditional params keys, the projection and the fingerprint params', () => {
  const sae = stage('sae', { params: ['sae', { key: 'extra.gamma', when: { arch: 'gsae' } }], matrix: MATRIX });
  const [topk, gsae] = buildInstances([sae], params);

  it('a conditional key is declared only for matching instances', () => {
    expect(declaredKeys(sae, topk.instance)).toEqual(['sae']);
    expect(declaredKeys(sae, gsae.instance)).toEqual(['sae', 'extra.gamma']);
  });

  it('fingerprint params: every matrix list left out; a non-matching instance is byte-identical to the entry being absent', () => {
    const fp = (s: StageDef, inst: typeof topk): string => canonicalJson(declaredValues(params, declaredKeys(s, inst.instance), matrixKeys(s)));
    const without = { ...sae, params: ['sae'] };
    expect(fp(sae, topk)).toBe(fp(without, topk));
    expect(fp(sae, topk)).toBe('{"sae":{"lr":0.01}}'); // no matrix list, in particular no beta list
    expect(fp(sae, gsae)).not.toBe(fp(without, gsae));
    expect(fp(sae, gsae)).toBe('{"extra.gamma":2,"sae":{"lr":0.01}}');
    // A new beta value leaves the topk params untouched.
    const more = { ...params, sae: { ...params.sae, beta: [0.5, 1, 2] } };
    expect(canonicalJson(declaredValues(more, declaredKeys(sae, topk.instance), matrixKeys(sae)))).toBe(fp(sae, topk));
  });

  it('ctx.params: the conditional key and the lists of absent variables are unreadable where they do not apply', () => {
    const view = (inst: typeof topk) => projectParams(params, declaredKeys(sae, inst.instance), 'sae', hiddenKeys(sae, inst.instance)) as typeof params;
    expect(hiddenKeys(sae, topk.instance)).toEqual({ 'sae.beta': 'beta' });
    expect(hiddenKeys(sae, gsae.instance)).toEqual({});
    const t = view(topk);
    expect(t.sae.lr).toBe(0.01);
    expect(t.sae.k).toEqual([8]);
    expect(() => t.sae.beta).toThrow(/stage "sae" read params key "sae\.beta", the list of matrix variable "beta", which this instance does not have/);
    expect(() => t.extra.gamma).toThrow(/stage "sae" read params key "extra", which it does not declare \(declared: sae\)/);
    expect(JSON.stringify(t)).toBe('{"sae":{"arch":["topk","gsae"],"k":[8],"seeds":[0],"lr":0.01}}');
    const g = view(gsae);
    expect(g.sae.beta).toEqual([0.5, 1]);
    expect(g.extra.gamma).toBe(2);
  });
});

describe('declaration checks', () => {
  const check = (extra: Partial<StageDef>): (() => void) => () => checkStageDefs([stage('sae', extra)]);

  it('accepts conditional variables over earlier ones and conditional params over matrix variables', () => {
    expect(check({ matrix: MATRIX, params: ['sae.lr', { key: 'extra.gamma', when: { arch: ['gsae'], beta: 1 } }] })).not.toThrow();
  });

  it('rejects conditions naming a later, unknown or the same variable, and malformed entries', () => {
    expect(check({ matrix: { beta: { key: 'sae.beta', when: { arch: 'gsae' } }, arch: 'sae.arch' } })).toThrow(
      /stage "sae": matrix variable "beta": "when" names "arch", which is declared after "beta" in the matrix \(a condition may use only variables declared before it: none\)/,
    );
    expect(check({ matrix: { arch: 'sae.arch', beta: { key: 'sae.beta', when: { model: 'gsae' } } } })).toThrow(
      /stage "sae": matrix variable "beta": "when" names "model", which is not a matrix variable of the stage \(variables: arch, beta\)/,
    );
    expect(check({ matrix: { arch: 'sae.arch', beta: { key: 'sae.beta', when: { beta: 1 } } } })).toThrow(/matrix variable "beta": "when" names "beta", which is this variable itself/);
    expect(check({ matrix: { arch: 'sae.arch', beta: { key: 'sae.beta', when: {} } } })).toThrow(/matrix variable "beta": "when" is empty/);
    expect(check({ matrix: { arch: 'sae.arch', beta: { key: 'sae.beta', when: { arch: [] } } } })).toThrow(
      /matrix variable "beta": "when\.arch" must be a string, number or boolean, or a non-empty list of them; got \[\]/,
    );
    expect(check({ matrix: { arch: 'sae.arch', beta: { key: 'sae.beta', when: { arch: { x: 1 } } } as never } })).toThrow(/"when\.arch" must be/);
    expect(check({ matrix: { arch: 'sae.arch', beta: { key: 'sae.beta', if: { arch: 'gsae' } } as never } })).toThrow(/matrix variable "beta": unknown field "if" \(allowed: key, when\)/);
    expect(check({ matrix: { arch: 'sae.arch', beta: { when: { arch: 'gsae' } } as never } })).toThrow(/matrix variable "beta": "key" must be a params key; got undefined/);
    expect(check({ matrix: { arch: 3 as never } })).toThrow(/matrix variable "arch" must be a params key or \{ key, when \}; got 3/);
  });

  it('rejects conditional params naming a non-variable, or inside a key declared for every instance', () => {
    expect(check({ matrix: MATRIX, params: [{ key: 'extra.gamma', when: { model: 'x' } }] })).toThrow(
      /stage "sae": conditional params "extra\.gamma": "when" names "model", which is not a matrix variable of the stage \(variables: arch, beta, k, seed\)/,
    );
    expect(check({ matrix: MATRIX, params: ['sae', { key: 'sae.lr', when: { arch: 'gsae' } }] })).toThrow(
      /stage "sae": conditional params "sae\.lr" is inside "sae", which the stage declares for every instance, so the condition has no effect/,
    );
    expect(check({ matrix: MATRIX, params: [42 as never] })).toThrow(/stage "sae": conditional params entry 0 must be a params key or \{ key, when \}; got 42/);
  });
});

describe('conditional matrix and params through the real CLI (fixture "conditional")', () => {
  let root: string;
  const FIT_A = ['fit[arch=a,k=1]', 'fit[arch=a,k=2]'];
  const SCORE_A = ['score[arch=a,k=1]', 'score[arch=a,k=2]'];
  const B05 = ['fit[arch=b,beta=0.5,k=1]', 'fit[arch=b,beta=0.5,k=2]', 'score[arch=b,beta=0.5,k=1]', 'score[arch=b,beta=0.5,k=2]'];
  const B1 = ['fit[arch=b,beta=1,k=1]', 'fit[arch=b,beta=1,k=2]', 'score[arch=b,beta=1,k=1]', 'score[arch=b,beta=1,k=2]'];
  const TWO_BETAS = ['--set', 'model.beta=[0.5, 1]'];
  const readResult = async (rel: string): Promise<Record<string, unknown>> => JSON.parse(await fs.readFile(path.join(root, 'results', rel), 'utf8'));

  beforeAll(async () => {
    root = await makeProject('conditional');
  });
  afterAll(async () => {
    await removeProject(root);
  });

  it('first run: a-instances lack beta, b-instances have it; each score reads its own fit; DuckDB holds beta only where it exists', async () => {
    const r = await cli(root, ['run', '--jobs', '2']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(labelsWith(await stageStatuses(root), 'ran')).toEqual([...FIT_A, ...B05.slice(0, 2), ...SCORE_A, ...B05.slice(2)].sort());
    expect(await readResult('score/arch=b,beta=0.5,k=2/score.json')).toEqual({ read: { arch: 'b', beta: 0.5, k: 2 }, score: 47 });
    expect(await readResult('score/arch=a,k=1/score.json')).toEqual({ read: { arch: 'a', k: 1 }, score: 20 });
    // Inside the stage: an a-instance can read neither the beta list nor the b-only key.
    const a = await readResult('fit/arch=a,k=1/fit.json');
    expect(a.betaListError).toMatch(/read params key "model\.beta", the list of matrix variable "beta", which this instance does not have/);
    expect(a.bonusError).toMatch(/read params key "extra", which it does not declare \(declared: model\)/);
    expect(await readResult('fit/arch=b,beta=0.5,k=1/fit.json')).toMatchObject({ betaListError: null, bonusError: null, value: 13.5 });
    const db = path.join(root, 'results/results.duckdb');
    const { rows } = await querySql(db, "SELECT instance::VARCHAR, (instance->'beta')::VARCHAR FROM stage_runs WHERE stage = 'fit' ORDER BY label");
    expect(rows).toEqual([
      ['{"arch":"a","k":1}', null],
      ['{"arch":"a","k":2}', null],
      ['{"arch":"b","beta":0.5,"k":1}', '0.5'],
      ['{"arch":"b","beta":0.5,"k":2}', '0.5'],
    ]);
    const metrics = await querySql(db, "SELECT (instance->>'beta')::DOUBLE, value FROM latest_metrics WHERE stage = 'fit' AND (instance->>'arch') = 'b' ORDER BY value");
    expect(metrics.rows).toEqual([
      [0.5, 13.5],
      [0.5, 23.5],
    ]);
    await takeTrace(root);
  });

  it('a new beta value runs only the new b-instances; every a-instance and every existing b-instance stays cached', async () => {
    const dry = await cli(root, ['run', '--dry-run', ...TWO_BETAS]);
    expect(dry.stdout).toContain('4 of 12 instances to run');
    expect(dry.stdout).toMatch(/cached\s+fit\[arch=a,k=1\]/);
    const r = await cli(root, ['run', '--jobs', '2', ...TWO_BETAS]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const statuses = await stageStatuses(root);
    expect(labelsWith(statuses, 'ran')).toEqual([...B1].sort());
    expect(labelsWith(statuses, 'cached')).toEqual([...FIT_A, ...SCORE_A, ...B05].sort());
    expect(await takeTrace(root)).toEqual([
      'fit {"arch":"b","beta":1,"k":1}',
      'fit {"arch":"b","beta":1,"k":2}',
      'score {"arch":"b","beta":1,"k":1}',
      'score {"arch":"b","beta":1,"k":2}',
    ]);
    expect(await readResult('score/arch=b,beta=1,k=1/score.json')).toEqual({ read: { arch: 'b', beta: 1, k: 1 }, score: 28 });
    // A target on the conditional variable selects only instances having it.
    const t = await cli(root, ['run', '--dry-run', 'score[beta=1]', ...TWO_BETAS]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toContain('nothing to run: all 4 instances cached');
    expect(t.stdout).not.toContain('arch=a');
  });

  it('changing a conditional params key reruns only the instances it applies to', async () => {
    const dry = await cli(root, ['run', '--dry-run', ...TWO_BETAS, '--set', 'extra.b_bonus=4']);
    expect(dry.stdout).toMatch(/to run\s+fit\[arch=b,beta=1,k=2\]\s+param extra\.b_bonus: 3 → 4/);
    const r = await cli(root, ['run', '--jobs', '2', ...TWO_BETAS, '--set', 'extra.b_bonus=4']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const statuses = await stageStatuses(root);
    expect(labelsWith(statuses, 'ran')).toEqual([...B05, ...B1].sort());
    expect(labelsWith(statuses, 'cached')).toEqual([...FIT_A, ...SCORE_A].sort());
    expect((await takeTrace(root)).filter((l) => l.includes('"arch":"a"'))).toEqual([]);
  });

  it('the fingerprint of a non-matching instance equals the one with the conditional entry absent', async () => {
    const plan = await planPipeline({ root });
    const withEntry = new Map((await dryRun(plan)).map((r) => [r.label, r.fingerprint]));
    const selected = plan.selected.map((i) => ({ ...i, stage: { ...i.stage, params: i.stage.params.filter((p) => typeof p === 'string') } }));
    const without = new Map((await dryRun({ ...plan, selected })).map((r) => [r.label, r.fingerprint]));
    for (const label of FIT_A) expect(withEntry.get(label), label).toBe(without.get(label));
    for (const label of B05.slice(0, 2)) expect(withEntry.get(label), label).not.toBe(without.get(label));
  });
});
