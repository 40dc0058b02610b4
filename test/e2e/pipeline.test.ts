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
    for (const stage of ['corpus', 'tokenize', 'lm', 'collect', 'sae', 'downstream', 'steering', 'compare', 'report']) {
      expect(first.out, `stage ${stage} did not run`).toMatch(new RegExp(`✓ ${stage.replace('[', '\\[')}`));
    }
    // The report and the artifacts people look at.
    expect(fs.existsSync(path.join(dir, 'results/report/index.html'))).toBe(true);
    expect(fs.readdirSync(path.join(dir, 'results/report')).some((f) => f.endsWith('.vl.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'results/sae/arch=gsae,beta=3,k=8,seed=0/sae_weights.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'results/sae/arch=topk,k=8,seed=0/sae_weights.safetensors'))).toBe(true);

    // Every stage left numbers in DuckDB.
    const db = path.join(dir, 'results/results.duckdb');
    const perStage = await querySql(db, `select stage, count(*) as n from latest_metrics group by stage order by stage`);
    const stages = perStage.rows.map((r) => r[0]);
    for (const s of ['tokenize', 'lm', 'collect', 'sae', 'downstream', 'steering']) expect(stages).toContain(s);
    const steer = await querySql(db, `select count(*) as n from steering_latents`);
    expect(Number(steer.rows[0][0])).toBeGreaterThan(0);
    // TopK for both k, g-SAEs for both β and both k were evaluated downstream.
    const ds = await querySql(
      db,
      `select count(distinct instance) as n from latest_metrics where stage = 'downstream' and name = 'delta_ce'`,
    );
    expect(Number(ds.rows[0][0])).toBe(6);
    // The paired verdicts: one primary aggregate test row per claim 1–3 and k at β*, with a CI.
    const paired = await querySql(
      db,
      `select claim, k, beta, diff, lo, hi, verdict, verdict_holm, change_rate from paired
       where "primary" and seed is null and split = 'test' and is_beta_star order by claim, k`,
    );
    expect(paired.rows.map((r) => `${r[0]}:${r[1]}`)).toEqual(['1:4', '1:8', '2:4', '2:8', '3:4', '3:8']);
    for (const r of paired.rows) {
      expect([0.3, 3]).toContain(Number(r[2]));
      expect(['reproduced', 'not reproduced', 'inconclusive']).toContain(r[6]);
      expect(r[7]).not.toBeNull();
    }
    // claims 1 and 2 always have a CI; the change rate is a fraction
    for (const r of paired.rows.filter((r) => Number(r[0]) < 3)) expect(Number(r[5])).toBeGreaterThanOrEqual(Number(r[4]));
    for (const r of paired.rows) expect(Number(r[8])).toBeGreaterThan(0);
    const sel = await querySql(db, `select k, count(*) n, sum(case when chosen then 1 else 0 end) chosen from beta_selection group by k order by k`);
    expect(sel.rows.map((r) => [Number(r[0]), Number(r[1]), Number(r[2])])).toEqual([[4, 2, 1], [8, 2, 1]]);

    const second = pipeline(dir);
    expect(second.code, second.out).toBe(0);
    expect(second.out).toMatch(/nothing to run: all \d+ instances cached/);

    // Adding a β value runs only the new g-SAE instances and what reads them; every TopK stays cached.
    const dry = spawnSync('npm', ['run', '--silent', 'pipeline', '--', '--params', 'params.smoke.yaml', '--progress', 'plain', '--dry-run', '--set', 'sae.beta=[0.3, 3, 1]'], { cwd: dir, encoding: 'utf8' });
    expect(dry.status, dry.stdout + dry.stderr).toBe(0);
    const toRun = dry.stdout.split('\n').filter((l) => l.startsWith('to run'));
    expect(toRun.some((l) => /sae\[arch=gsae,beta=1,k=4,seed=0\]/.test(l))).toBe(true);
    expect(toRun.some((l) => /^to run\s+\w+\[arch=topk/.test(l)), toRun.join('\n')).toBe(false);
    expect(toRun.some((l) => /^to run\s+\w+\[arch=gsae,beta=(0\.3|3),/.test(l)), toRun.join('\n')).toBe(false);
    expect(toRun).toHaveLength(8); // 2 sae + 2 downstream + 2 steering + compare + report
  }, 600_000);
});
