/**
 * The cache decides exactly what reruns: nothing when nothing changed; a param's dependents; the one
 * stage whose helper module changed; only new matrix instances; a corrupted entry is recomputed.
 * One project is evolved step by step through the real CLI.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { querySql } from '../../pipeline/db.ts';
import { cli, labelsWith, makeProject, removeProject, stageStatuses, takeTrace } from './helpers.ts';

const ALL = [
  'double',
  'evaluate[k=1,seed=0]',
  'evaluate[k=2,seed=0]',
  'report',
  'slow',
  'source',
  'train[k=1,seed=0]',
  'train[k=2,seed=0]',
];

describe('cache and fingerprints (toy project, real CLI)', () => {
  let root: string;
  const editParams = async (from: string, to: string): Promise<void> => {
    const file = path.join(root, 'params.yaml');
    const text = await fs.readFile(file, 'utf8');
    expect(text).toContain(from);
    await fs.writeFile(file, text.replace(from, to));
  };

  beforeAll(async () => {
    root = await makeProject('toy');
  });
  afterAll(async () => {
    await removeProject(root);
  });

  it('first run runs every instance; an unchanged rerun runs nothing and says so', async () => {
    const first = await cli(root, ['run', '--jobs', '2']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    expect(labelsWith(await stageStatuses(root), 'ran')).toEqual(ALL);
    await takeTrace(root);

    const again = await cli(root, ['run', '--jobs', '2']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('nothing to run: all 8 instances cached');
    expect(labelsWith(await stageStatuses(root), 'cached')).toEqual(ALL);
    expect(await takeTrace(root)).toEqual([]);

    const dry = await cli(root, ['run', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('nothing to run: all 8 instances cached');
    // results/ shows the latest outputs
    expect(await fs.readFile(path.join(root, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n');
    expect(await fs.readFile(path.join(root, 'results/train/k=2,seed=0/model.json'), 'utf8')).toContain('"k":2');
  });

  it('changing one params key reruns exactly the instances that depend on it', async () => {
    await editParams('lr: 0.1', 'lr: 0.2');
    const dry = await cli(root, ['run', '--dry-run']);
    expect(dry.stdout).toMatch(/to run\s+train\[k=1,seed=0\]\s+param train\.lr: 0\.1 → 0\.2/);
    expect(dry.stdout).toMatch(/cached\s+double/);

    const r = await cli(root, ['run', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    const statuses = await stageStatuses(root);
    expect(labelsWith(statuses, 'ran')).toEqual(['evaluate[k=1,seed=0]', 'evaluate[k=2,seed=0]', 'report', 'train[k=1,seed=0]', 'train[k=2,seed=0]']);
    expect(labelsWith(statuses, 'cached')).toEqual(['double', 'slow', 'source']);
    // The recorded reasons name the param for train and the changed input downstream.
    const { rows } = await querySql(
      path.join(root, 'results/results.duckdb'),
      "SELECT label, reason FROM stage_runs WHERE status = 'ran' AND run_id = (SELECT run_id FROM runs ORDER BY started DESC LIMIT 1) ORDER BY label",
    );
    expect(rows).toEqual([
      ['evaluate[k=1,seed=0]', 'input train[k=1,seed=0] changed'],
      ['evaluate[k=2,seed=0]', 'input train[k=2,seed=0] changed'],
      ['report', 'input scores: evaluate[k=1,seed=0] changed, evaluate[k=2,seed=0] changed'],
      ['train[k=1,seed=0]', 'param train.lr: 0.1 → 0.2'],
      ['train[k=2,seed=0]', 'param train.lr: 0.1 → 0.2'],
    ]);
    await takeTrace(root);
  });

  it('an environment field enters the fingerprint of the stages that declare it', async () => {
    const dry = await cli(root, ['run', '--dry-run'], { TOY_BACKEND: 'wasm' });
    expect(dry.stdout).toMatch(/to run\s+train\[k=1,seed=0\]\s+env backend: cpu → wasm/);
    expect(dry.stdout).toMatch(/cached\s+source/);
    expect(dry.stdout).toMatch(/to run\s+evaluate\[k=1,seed=0\]\s+input train\[k=1,seed=0\] will be recomputed/);
  });

  it('a --set override runs with the new value, is recorded, and leaves params.yaml alone', async () => {
    const r = await cli(root, ['run', 'double', '--set', 'double.factor=3']);
    expect(r.code, r.stderr).toBe(0);
    expect(labelsWith(await stageStatuses(root), 'ran')).toEqual(['double']);
    expect(await fs.readFile(path.join(root, 'results/double/doubled.txt'), 'utf8')).toContain('value=15');
    const { rows } = await querySql(path.join(root, 'results/results.duckdb'), "SELECT overrides::VARCHAR FROM runs WHERE overrides::VARCHAR <> '{}'");
    expect(rows).toEqual([['{"double.factor":3}']]);
    expect(await fs.readFile(path.join(root, 'params.yaml'), 'utf8')).toContain('factor: 2');
    // Back to the file's value: that entry is still in the store.
    const back = await cli(root, ['run', 'double']);
    expect(labelsWith(await stageStatuses(root), 'cached')).toEqual(['double', 'source']);
    expect(back.code).toBe(0);
    await takeTrace(root);
  });

  it('editing a helper module imported by one stage invalidates that stage only', async () => {
    const helper = path.join(root, 'stages/lib/format.ts');
    await fs.writeFile(helper, (await fs.readFile(helper, 'utf8')).replace('`value=${value}`', '`value: ${value}`'));
    const dry = await cli(root, ['run', '--dry-run']);
    expect(dry.stdout).toMatch(/to run\s+double\s+code: stages\/lib\/format\.ts changed/);
    expect(dry.stdout).toContain('1 of 8 instances to run');

    const r = await cli(root, ['run', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(labelsWith(await stageStatuses(root), 'ran')).toEqual(['double']);
    expect(await takeTrace(root)).toEqual(['double']);
    expect(await fs.readFile(path.join(root, 'results/double/doubled.txt'), 'utf8')).toContain('value: 2');
  });

  it('growing a matrix list runs only the new instances (and what reads all of them)', async () => {
    await editParams('k: [1, 2]', 'k: [1, 2, 3]');
    const r = await cli(root, ['run', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    const statuses = await stageStatuses(root);
    expect(labelsWith(statuses, 'ran')).toEqual(['evaluate[k=3,seed=0]', 'report', 'train[k=3,seed=0]']);
    expect(labelsWith(statuses, 'cached')).toEqual(ALL.filter((l) => l !== 'report'));
    await takeTrace(root);
  });

  it('a corrupted cache entry is detected before use, reported, and recomputed', async () => {
    const file = path.join(root, 'results/source/data.txt');
    const real = await fs.realpath(file);
    expect(real).toContain(`${path.sep}.cache${path.sep}objects${path.sep}`);
    await fs.chmod(real, 0o644);
    await fs.writeFile(real, '1\n2\n3\n4\n6\n'); // same size, other content

    const dry = await cli(root, ['run', '--dry-run']);
    expect(dry.stdout).toMatch(/to run\s+source\s+cache entry corrupted \(file data\.txt/);

    const r = await cli(root, ['run', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cache entry source \([0-9a-f]{12}\) corrupted \(file data\.txt content changed\): recomputing/);
    const statuses = await stageStatuses(root);
    expect(labelsWith(statuses, 'ran')).toEqual(['source']);
    // Recomputed content equals the original, so nothing downstream had to run.
    expect(statuses['train[k=1,seed=0]']).toBe('cached');
    expect(await fs.readFile(file, 'utf8')).toBe('1\n2\n3\n4\n5\n');
    expect((await cli(root, ['run'])).stdout).toContain('nothing to run');
  });

  it('--force reruns a stage even though it is cached', async () => {
    await takeTrace(root);
    const r = await cli(root, ['run', '--force', 'train[k=3]']);
    expect(r.code, r.stderr).toBe(0);
    const statuses = await stageStatuses(root);
    expect(labelsWith(statuses, 'ran')).toEqual(['train[k=3,seed=0]']);
    expect(await takeTrace(root)).toEqual(['train k=3 seed=0']);
  });

  it('gc removes the entries no instance uses any more, and the pipeline stays cached', async () => {
    const objects = async (): Promise<number> => (await fs.readdir(path.join(root, '.cache/objects'))).length;
    expect(await objects()).toBeGreaterThan(10);
    const gc = await cli(root, ['gc']);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/removed train\[k=1,seed=0\] [0-9a-f]{12}/); // the lr=0.1 entry
    expect(await objects()).toBe(10);
    expect((await cli(root, ['run'])).stdout).toContain('nothing to run: all 10 instances cached');
  });
});
