/**
 * End to end: the smoke preset through every stage with the real CLI, in a copy of the project
 * (its own cache and results), then a rerun that must run nothing.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { querySql } from '../../pipeline/index.ts';

const ROOT = path.resolve(__dirname, '../..');
const COPY = ['pipeline', 'lib', 'stages', 'params.yaml', 'params.smoke.yaml', 'params.schema.json', 'package.json', 'package-lock.json', 'tsconfig.json'];

function pipeline(cwd: string, ...args: string[]) {
  const r = spawnSync('npm', ['run', '--silent', 'pipeline', '--', '--params', 'params.smoke.yaml', '--progress', 'plain', ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe('smoke preset end to end', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gsae-e2e-'));
    for (const f of COPY) fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs every stage, writes the report and DuckDB, then reruns nothing', async () => {
    const first = pipeline(dir);
    expect(first.code, first.out).toBe(0);
    for (const stage of ['corpus', 'tokenize', 'lm', 'collect', 'sae', 'downstream', 'steering', 'report']) {
      expect(first.out, `stage ${stage} did not run`).toMatch(new RegExp(`✓ ${stage.replace('[', '\\[')}`));
    }
    // The report and the artifacts people look at.
    expect(fs.existsSync(path.join(dir, 'results/report/index.html'))).toBe(true);
    expect(fs.readdirSync(path.join(dir, 'results/report')).some((f) => f.endsWith('.vl.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'results/sae/arch=gsae,k=8,seed=0/sae_weights.safetensors'))).toBe(true);

    // Every stage left numbers in DuckDB.
    const db = path.join(dir, 'results/results.duckdb');
    const perStage = await querySql(db, `select stage, count(*) as n from latest_metrics group by stage order by stage`);
    const stages = perStage.rows.map((r) => r[0]);
    for (const s of ['tokenize', 'lm', 'collect', 'sae', 'downstream', 'steering']) expect(stages).toContain(s);
    const steer = await querySql(db, `select count(*) as n from steering_latents`);
    expect(Number(steer.rows[0][0])).toBeGreaterThan(0);
    // Both archs and both k values were evaluated downstream.
    const ds = await querySql(
      db,
      `select count(distinct instance) as n from latest_metrics where stage = 'downstream' and name = 'delta_ce'`,
    );
    expect(Number(ds.rows[0][0])).toBe(4);

    const second = pipeline(dir);
    expect(second.code, second.out).toBe(0);
    expect(second.out).toMatch(/nothing to run: all \d+ instances cached/);
  }, 600_000);
});
