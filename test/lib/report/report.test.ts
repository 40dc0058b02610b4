/**
 * buildReport on a synthetic results.duckdb (test/lib/report/fixture.ts — TEST DATA ONLY):
 * every chart has rows, every .vl.json validates against vega-lite's JSON schema, the claims table
 * shows exactly what the compare stage's `paired` table says at β*, superseded runs never leak in,
 * and a report shows only the instances of its run (a database shared by params sets with
 * different k lists).
 */
import { Ajv } from 'ajv';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { querySql } from '../../../pipeline/db.ts';
import { buildReport, chartDefs, openReportDb, packageDir, type ReportResult } from '../../../lib/report/index.ts';
import { AT_BETA_STAR, curveSql, finalMetricsOverSeedsSql, pairedSql, runMetricsCtes } from '../../../lib/report/sql.ts';
import { STATS_TEXT } from '../../../lib/report/texts.ts';
import {
  ALPHAS,
  appendRun,
  BETA_STAR,
  BETAS,
  betaStarOf,
  changeRate,
  createSyntheticDb,
  DECOY_VERDICT,
  EXPECTED,
  KS,
  pairedRows,
  RULES,
  SEEDS,
  syntheticLatentBrowser,
} from './fixture.ts';

let tmp: string;
let full: ReportResult;
let html: string;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'report-test-'));
  const db = path.join(tmp, 'results.duckdb');
  await createSyntheticDb(db);
  full = await buildReport({ dbPath: db, outDir: path.join(tmp, 'report'), latentBrowser: syntheticLatentBrowser() });
  html = readFileSync(full.indexHtml, 'utf8');
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const specOf = (res: ReportResult, chart: string) => JSON.parse(readFileSync(path.join(res.outDir, `${chart}.vl.json`), 'utf8'));
/** The <tr> elements of the page's main claims table with their data attributes. */
function primaryTableRows(page: string): Array<Record<string, string>> {
  const table = page.slice(page.indexOf('<table class="claims primary-table">'));
  const body = table.slice(0, table.indexOf('</table>'));
  return [...body.matchAll(/<tr class="primary" ([^>]*)>/g)].map((m) => Object.fromEntries([...m[1].matchAll(/data-([a-z-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]])));
}
const NEW_CHARTS = ['change_rate_vs_beta', 'paired_delta_ce_vs_beta', 'steering_effect_vs_kl'];

describe('buildReport on the synthetic database', () => {
  it('renders every chart, each with data rows and no vega-lite warnings', () => {
    expect(full.charts.length).toBeGreaterThanOrEqual(16);
    for (const name of NEW_CHARTS) expect(full.charts.map((c) => c.name)).toContain(name);
    for (const c of full.charts) {
      expect(c.status, `${c.name}: ${c.message}`).toBe('ok');
      expect(c.rows, c.name).toBeGreaterThan(0);
      expect(c.warnings, c.name).toEqual([]);
    }
  });

  it('writes <name>.vl.json with inline data rows and <name>.svg with marks for every chart', () => {
    for (const c of full.charts) {
      const spec = specOf(full, c.name);
      expect(spec.data.values.length, c.name).toBe(c.rows);
      const svg = readFileSync(path.join(full.outDir, `${c.name}.svg`), 'utf8');
      expect(svg.startsWith('<svg'), c.name).toBe(true);
      expect(svg, c.name).toMatch(/class="mark-[a-z]+ role-mark/);
    }
  });

  it('every .vl.json validates against the Vega-Lite JSON schema shipped in vega-lite', () => {
    const schema = JSON.parse(readFileSync(path.join(packageDir('vega-lite'), 'build/vega-lite-schema.json'), 'utf8'));
    const ajv = new Ajv({ strict: false, allowUnionTypes: true, validateFormats: false });
    // Formats (uri, uri-reference) are not checked: only $schema and data URLs use them.
    const validate = ajv.compile(schema);
    expect(validate({ data: { values: [] }, mark: 'no-such-mark' }), 'the validator rejects a bad spec').toBe(false);
    const files = readdirSync(full.outDir).filter((f) => f.endsWith('.vl.json'));
    expect(files.length).toBe(full.charts.length);
    for (const f of files) {
      const ok = validate(JSON.parse(readFileSync(path.join(full.outDir, f), 'utf8')));
      expect(ok, `${f}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
  });

  it('copies the vega browser builds into vendor/ and references them relatively', () => {
    for (const f of ['vega.min.js', 'vega-lite.min.js', 'vega-embed.min.js']) {
      expect(existsSync(path.join(full.outDir, 'vendor', f)), f).toBe(true);
      expect(html).toContain(`<script src="vendor/${f}"></script>`);
    }
    expect(html).not.toMatch(/<script[^>]+src="(https?:)?\/\//);
    expect(html).not.toMatch(/<link[^>]+href="(https?:)?\/\//);
  });

  it('the claims table shows exactly the paired table’s verdicts and Holm verdicts at β*', () => {
    const expected = ([1, 2, 3] as const).flatMap((claim) => KS.map((k) => ({ claim, k, beta: BETA_STAR[k], ...EXPECTED[claim][k] })));
    expect(full.claims.rows.map((r) => ({ claim: r.claim, k: r.k, beta: r.beta, verdict: r.verdict, holm: r.verdictHolm }))).toEqual(expected);
    for (const r of full.claims.rows) {
      expect(r.primary && r.split === 'test' && r.seed === null && r.isBetaStar).toBe(true);
      expect(r.seeds).toBe(SEEDS.length);
      expect(r.interval).toBe('t-interval over 2 seeds of the per-seed paired differences');
      expect(r.changeRate).toBe(changeRate(r.k, r.beta!));
      if (r.claim === 3) expect([r.check, r.rule]).toEqual(['steer_effect_matched_kl', 'logit_lens']);
    }
    // The page: one row per claim and k, in the same order, with the same verdicts.
    const page = primaryTableRows(html);
    expect(page.map((r) => [Number(r.claim), Number(r.k), Number(r.beta), r.verdict, r['verdict-holm']])).toEqual(expected.map((e) => [e.claim, e.k, e.beta, e.verdict, e.holm]));
    // The decoys (primary checks at the other β) never reach the claims table or its summary.
    expect(full.claims.rows.some((r) => r.verdict === DECOY_VERDICT && r.claim !== 2)).toBe(false);
    const status = (c: number) => full.claims.summary.find((s) => s.claim === c)!.status;
    expect(status(1)).toBe('reproduced at k = 8, 16 (Holm: reproduced at k = 8; inconclusive at k = 16)');
    expect(status(2)).toBe('not reproduced at k = 8; inconclusive at k = 16 (Holm: not reproduced at k = 8; inconclusive at k = 16)');
    expect(status(3)).toBe('reproduced at k = 16; inconclusive at k = 8 (Holm: reproduced at k = 16; inconclusive at k = 8)');
    expect(status(4)).toBe('not measured (no automatic score rows: the interp and compare stages have not run)');
    for (const c of [1, 2, 3]) expect(html).toContain(status(c));
  });

  it('secondary checks are the other rows at β*; every paired row and the β selection are shown too', () => {
    expect(full.claims.secondary.length).toBeGreaterThan(0);
    for (const r of full.claims.secondary) expect(!r.primary && r.split === 'test' && r.seed === null && r.isBetaStar && r.beta === betaStarOf(r.k)).toBe(true);
    // Equal-α steering rows of both rules sit beside the primary matched-KL row.
    const steer = full.claims.secondary.filter((r) => r.check === 'steer_effect');
    expect(new Set(steer.map((r) => `${r.rule} ${r.alpha}`)).size).toBe(RULES.length * ALPHAS.length);
    expect(full.claims.all.length).toBe(pairedRows(KS, SEEDS, true).length);
    expect(html).toContain('<table class="claims secondary-table">');
    expect(html).toContain('<table class="claims all-table">');
    expect(full.claims.betaSelection.filter((r) => r.chosen).map((r) => [r.k, r.beta])).toEqual(KS.map((k) => [k, BETA_STAR[k]]));
    expect(html).toContain('How β* was chosen (validation split)');
  });

  it('with two seeds there is no one-seed note', () => {
    expect(full.claims.seeds).toEqual({ min: 2, max: 2 });
    expect(html).not.toContain('class="note one-seed"');
    expect(html).toContain('Seeds per arm: 2.');
  });

  it('uses the latest run that ran each instance (superseded values never appear)', () => {
    for (const r of specOf(full, 'delta_ce_vs_k').data.values) expect(r.mean).toBeLessThan(1);
    for (const r of specOf(full, 'change_rate_vs_beta').data.values) expect(r.mean).toBeLessThan(1);
    for (const r of specOf(full, 'steering_effect_vs_k').data.values) expect(r.mean).toBeLessThan(10);
    for (const r of specOf(full, 'steering_effect_vs_kl').data.values) expect(r.kl).toBeLessThan(10);
    for (const r of specOf(full, 'paired_delta_ce_vs_beta').data.values) expect(Math.abs(r.diff)).toBeLessThan(1);
    for (const r of full.claims.all) expect(r.topk!).toBeLessThan(10);
    for (const r of full.claims.betaSelection) expect(r.valDiff!).toBeLessThan(1);
    // Cached stages keep the numbers of the run that computed them.
    expect(specOf(full, 'lm_loss_curve').data.values.length).toBe(27);
  });

  it('g-SAE series carry their β, and the SQL groups by β', () => {
    const dce = specOf(full, 'delta_ce_vs_k').data.values as Array<{ series: string; k: number; beta: number | null }>;
    expect(new Set(dce.map((r) => r.series))).toEqual(
      new Set(['TopK', ...BETAS.flatMap((b) => [`g-SAE β=${b}`, `g-SAE β=${b} (gradient-free eval)`])]),
    );
    expect(dce.length).toBe((1 + 2 * BETAS.length) * KS.length); // one row per series and k
    const rate = specOf(full, 'change_rate_vs_beta').data.values as Array<{ k: number; beta: number; mean: number; n_seeds: number }>;
    expect(rate.length).toBe(KS.length * BETAS.length);
    for (const r of rate) {
      expect(r.mean).toBeCloseTo(changeRate(r.k, r.beta), 10);
      expect(r.n_seeds).toBe(SEEDS.length);
    }
    const paired = specOf(full, 'paired_delta_ce_vs_beta').data.values as Array<{ k: number; beta: number; split: string; is_beta_star: boolean }>;
    expect(paired.length).toBe(KS.length * BETAS.length * 2);
    for (const r of paired) expect(r.is_beta_star).toBe(r.beta === BETA_STAR[r.k]);
    const ekl = specOf(full, 'steering_effect_vs_kl').data.values as Array<{ rule: string; series: string }>;
    expect(ekl.length).toBe(RULES.length * (1 + BETAS.length) * KS.length * ALPHAS.length);
    expect(new Set(ekl.map((r) => r.rule))).toEqual(new Set(RULES));
    const fvu = specOf(full, 'sae_training_fvu').data.values as Array<{ series: string }>;
    expect(new Set(fvu.map((r) => r.series))).toEqual(new Set(['TopK', ...BETAS.map((b) => `g-SAE β=${b}`)]));
  });

  it('holds the header, claims, SQL, latent browser and methods', () => {
    expect(html).toContain('run-new');
    expect(html).toContain('Wall time per stage');
    expect(html).toMatch(/fingerprint/i);
    expect(html).toContain('<code>wasm</code>');
    expect(html).toContain('State of the Union');
    expect(html).toContain('not measured (no automatic score rows: the interp and compare stages have not run)');
    expect(html).toContain('class="verdict v-reproduced"');
    expect(html).toContain('class="verdict v-not-reproduced"');
    expect(html).toContain('class="verdict v-inconclusive"');
    // One SQL block per chart plus header and claims blocks, each with a copy button.
    const copies = html.match(/<button type="button" class="copy"/g) ?? [];
    expect(copies.length).toBeGreaterThanOrEqual(full.charts.length + 5);
    // Every query is scoped to the reported run, named literally (copy-paste gives the same rows).
    expect(html).toContain('FROM run_metrics');
    expect(html).toContain("WHERE run_id = 'run-new' AND status IN ('ran', 'cached')");
    expect(html).toContain("AND stage IN ('compare')");
    expect(html).not.toContain('ORDER BY started DESC');
    // Latent browser: tokens shaded by activation, escaped; the g-SAE column names its β.
    expect(html).toContain('id="latents"');
    expect(html).toMatch(/class="tok peak" style="background: rgba\(230, 85, 13, 0\.880\)"/);
    expect(html).toContain('&lt;b&gt;');
    expect(html).not.toContain(' <b></span>');
    expect(html).toContain('<h4>g-SAE β=2 (β*)</h4>');
    // Methods: ours vs paper, with the params that control them, and the statistics in plain words.
    expect(html).toContain('Steering protocol');
    expect(html).toContain('gradient-free');
    expect(html).toContain('<code>sae.b_dec_init</code> = <code>&quot;geometric_median&quot;</code>');
    expect(html).toContain('GPT-2 small on OpenWebText');
    const methods = html.slice(html.indexOf('<section id="methods">'));
    for (const text of [STATS_TEXT.downstream, STATS_TEXT.seeds, STATS_TEXT.dead, STATS_TEXT.steering, STATS_TEXT.holm, STATS_TEXT.betaStar, STATS_TEXT.steeringPrimary]) {
      expect(methods).toContain(text);
    }
    expect(methods).toContain('at equal α a direction that disrupts the model more can raise any target more');
  });
});

describe('the SQL', () => {
  it('CI over seeds is mean ± t(0.975, n−1) · sd / √n', async () => {
    const db = await openReportDb(path.join(tmp, 'results.duckdb'));
    try {
      const rows = await db.query(finalMetricsOverSeedsSql('run-new', 'downstream', ['delta_ce']));
      const r = rows.find((x) => x.arch === 'topk' && x.k === 8)!;
      expect(r.n_seeds).toBe(2);
      expect(r.beta).toBeNull();
      expect(r.sd as number).toBeCloseTo(0.01 / Math.SQRT2, 10);
      const half = (12.706 * (r.sd as number)) / Math.sqrt(2);
      expect(r.hi as number).toBeCloseTo((r.mean as number) + half, 10);
      expect(r.lo as number).toBeCloseTo((r.mean as number) - half, 10);
      expect(r.ci).toBe('t over seeds');
      expect(rows.filter((x) => x.arch === 'gsae' && x.k === 8 && x.variant === '').map((x) => x.beta)).toEqual(BETAS);
    } finally {
      db.close();
    }
  });

  it('training curves are thinned to about maxPoints per curve, keeping the last step', async () => {
    const db = await openReportDb(path.join(tmp, 'results.duckdb'));
    try {
      const rows = await db.query(curveSql('run-new', 'sae', ['fvu'], true, 4));
      const curve = rows.filter((x) => x.arch === 'gsae' && x.beta === 0.5 && x.k === 16 && x.seed === 1).map((x) => x.tokens);
      expect(curve).toEqual([200_000, 800_000, 1_400_000, 2_000_000]);
    } finally {
      db.close();
    }
  });

  it('pairedSql gives every column its contract type, whatever type the engine gave the table column', async () => {
    const db = await openReportDb(path.join(tmp, 'results.duckdb'));
    try {
      const rows = await db.query(pairedSql('run-new', 'compare', AT_BETA_STAR));
      const r = rows.find((x) => x.check === 'delta_ce' && x.k === 8)!;
      expect([typeof r.claim, typeof r.k, typeof r.primary, typeof r.is_beta_star, typeof r.n, r.seed, r.alpha]).toEqual(['number', 'number', 'boolean', 'boolean', 'number', null, null]);
      expect(Number.isInteger(r.k)).toBe(true);
    } finally {
      db.close();
    }
  });
});

describe('buildReport with missing stages and a single seed', () => {
  let res: ReportResult;
  let page: string;
  let emptyRes: ReportResult;
  let oldSteering: ReportResult;
  beforeAll(async () => {
    const db = path.join(tmp, 'partial.duckdb');
    await createSyntheticDb(db, { withoutSteering: true, seeds: 1 });
    res = await buildReport({ dbPath: db, outDir: path.join(tmp, 'partial') });
    page = readFileSync(res.indexHtml, 'utf8');
    const { DuckDBInstance } = await import('@duckdb/node-api');
    // A database with none of the engine's tables yet.
    const emptyDb = path.join(tmp, 'empty.duckdb');
    const inst = await DuckDBInstance.create(emptyDb);
    (await inst.connect()).closeSync();
    inst.closeSync();
    emptyRes = await buildReport({ dbPath: emptyDb, outDir: path.join(tmp, 'empty') });
    // Steering tables written before the steering stage recorded a target rule.
    const oldDb = path.join(tmp, 'old-steering.duckdb');
    await createSyntheticDb(oldDb, { seeds: 1 });
    const old = await DuckDBInstance.create(oldDb);
    const c = await old.connect();
    await c.run('ALTER TABLE steering_summary DROP COLUMN rule; ALTER TABLE steering_latents DROP COLUMN rule');
    c.closeSync();
    old.closeSync();
    oldSteering = await buildReport({ dbPath: oldDb, outDir: path.join(tmp, 'old-steering') });
  });

  it('skips charts without rows with a visible note instead of failing', () => {
    const steering = res.charts.filter((c) => c.section === 'Steering');
    expect(steering.length).toBeGreaterThan(0);
    for (const c of steering) {
      expect(c.status).toBe('no data');
      expect(c.message).toMatch(/^no data: stage steering has not run/);
      expect(existsSync(path.join(res.outDir, `${c.name}.vl.json`))).toBe(false);
    }
    expect(page).toContain('no data: stage steering has not run');
    expect(page).toContain('no data: no latent browser data was provided');
    for (const c of res.charts.filter((x) => x.section !== 'Steering')) {
      expect(c.status, `${c.name}: ${c.message}`).toBe('ok');
      expect(c.warnings, c.name).toEqual([]);
    }
    expect(res.claims.summary.find((s) => s.claim === 3)!.status).toBe('no data: the compare stage wrote no rows for this claim');
  });

  it('with one seed, the page says seed-to-seed variation is not measured, and the intervals are over held-out data', () => {
    expect(res.claims.seeds).toEqual({ min: 1, max: 1 });
    expect(page).toContain('class="note one-seed"');
    expect(page).toContain(STATS_TEXT.oneSeed.replace(/&/g, '&amp;'));
    const r = res.claims.rows.find((x) => x.check === 'delta_ce' && x.k === 8)!;
    expect([r.interval, r.n, r.seeds, r.verdict, r.verdictHolm]).toEqual([
      'paired bootstrap over 512 held-out sequences (1 seed: evaluation noise only)',
      512,
      1,
      EXPECTED[1][8].verdict,
      EXPECTED[1][8].holm,
    ]);
    expect(res.claims.rows.find((x) => x.check === 'dead_frac' && x.k === 8)!.interval).toBe('Newcombe interval for a difference of proportions (1 seed: evaluation noise only)');
  });

  it('steering tables without the rule column give "no data" notes, not errors', () => {
    const steering = oldSteering.charts.filter((c) => c.section === 'Steering');
    for (const c of steering) {
      expect(c.status, c.name).toBe('no data');
      expect(c.message, c.name).toMatch(/^no data: the steering rows predate column steering_(summary|latents)\.rule/);
    }
    expect(oldSteering.charts.filter((c) => c.status === 'error')).toEqual([]);
  });

  it('an empty database gives a page of notes, not an error', () => {
    expect(emptyRes.charts.every((c) => c.status === 'no data')).toBe(true);
    expect(emptyRes.claims.rows).toHaveLength(0);
    expect(emptyRes.claims.error).toBeUndefined();
    const p = readFileSync(emptyRes.indexHtml, 'utf8');
    expect(p).toContain('no run recorded');
    expect(p).toContain('no data: the compare stage has not run');
    expect(p).toContain('not measured (no automatic score rows: the interp and compare stages have not run)');
    expect(p).not.toContain('class="note one-seed"');
  });
});

describe('a report is of one run (several params sets share the database)', () => {
  // run-new: k = 8, 16 (fingerprint v1). run-repeat: everything cached with v1 (compare too).
  // run-mid: k = 8 only, with another fingerprint (v2, every number 55). run-smoke (the latest):
  // k = 4 (v3, every number 0.5) and k = 8 cached with v1 again, so its k = 8 SAE numbers are
  // run-new's, not run-mid's; its compare stage ran (v3), so all its paired rows are 0.5.
  let db: string;
  let smoke: ReportResult;
  let fromNew: ReportResult;
  let fromRepeat: ReportResult;
  let fromMid: ReportResult;
  let smokeHtml: string;
  const ksOf = (res: ReportResult) => {
    const ks = new Set<number>();
    for (const c of res.charts.filter((x) => x.status === 'ok')) for (const r of specOf(res, c.name).data.values) if (r.k !== undefined) ks.add(r.k);
    for (const r of [...res.claims.rows, ...res.claims.all, ...res.claims.betaSelection]) ks.add(r.k);
    return [...ks].sort((a, b) => a - b);
  };
  /** Chart rows at one k. */
  const rowsAt = (res: ReportResult, chart: string, k: number) => specOf(res, chart).data.values.filter((r: { k: number }) => r.k === k);
  /** Numbers to 12 significant digits: DuckDB's parallel sums may differ in the last bit between queries. */
  const round = (x: unknown): unknown => JSON.parse(JSON.stringify(x, (_, v) => (typeof v === 'number' ? Number(v.toPrecision(12)) : v)));

  beforeAll(async () => {
    db = path.join(tmp, 'shared.duckdb');
    await createSyntheticDb(db);
    await appendRun(db, { runId: 'run-repeat', started: '2025-01-02 18:00:00', ks: KS, cachedKs: KS, fp: 'unused', value: 77 });
    await appendRun(db, { runId: 'run-mid', started: '2025-01-03 10:00:00', ks: [8], fp: 'v2', value: 55 });
    await appendRun(db, { runId: 'run-smoke', started: '2025-01-04 10:00:00', ks: [4, 8], cachedKs: [8], fp: 'v3', value: 0.5 });
    smoke = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-smoke') });
    fromNew = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-new'), meta: { runId: 'run-new' } });
    fromRepeat = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-repeat'), meta: { runId: 'run-repeat' } });
    fromMid = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-mid'), meta: { runId: 'run-mid' } });
    smokeHtml = readFileSync(smoke.indexHtml, 'utf8');
  });

  it('the latest run by default, and only its k values everywhere', () => {
    expect(JSON.parse(readFileSync(path.join(smoke.outDir, 'summary.json'), 'utf8')).runId).toBe('run-smoke');
    for (const c of smoke.charts) expect(c.status, `${c.name}: ${c.message}`).toBe('ok');
    expect(ksOf(smoke)).toEqual([4, 8]);
    for (const chart of ['delta_ce_vs_k', 'dead_frac_vs_k', 'change_rate_vs_beta', 'paired_delta_ce_vs_beta', 'steering_effect_vs_k', 'steering_effect_vs_kl', 'steering_effect_distribution', 'sae_training_fvu']) {
      expect(new Set(specOf(smoke, chart).data.values.map((r: { k: number }) => r.k)), chart).toEqual(new Set([4, 8]));
    }
    expect(new Set(smoke.claims.rows.map((r) => r.k))).toEqual(new Set([4, 8]));
    expect(smokeHtml).toContain('run-smoke');
    expect(smokeHtml).toContain("WHERE run_id = 'run-smoke' AND status IN ('ran', 'cached')");
    expect(smokeHtml).not.toContain("run_id = 'run-new'");
    // The header's instance table lists this run's instances: tokenize, lm, collect, compare, and
    // per SAE stage TopK (2 k × 2 seeds) + g-SAE (2 β × 2 k × 2 seeds).
    const perStage = 2 * SEEDS.length * (1 + BETAS.length);
    expect(smokeHtml).toContain(`Fingerprints per stage instance (${4 + 3 * perStage})`);
  });

  it('an instance that ran in this run shows this run’s numbers', () => {
    for (const r of rowsAt(smoke, 'delta_ce_vs_k', 4)) expect(r.mean).toBe(0.5);
    for (const r of rowsAt(smoke, 'steering_effect_vs_k', 4)) expect(r.mean).toBe(0.5);
    for (const r of rowsAt(smoke, 'change_rate_vs_beta', 4)) expect(r.mean).toBe(0.5);
    // The compare stage ran in run-smoke: every paired row is its own, at k = 8 too.
    for (const r of [...smoke.claims.rows, ...smoke.claims.all]) expect([r.topk, r.diff, r.verdict]).toEqual([0.5, 0.5, 'inconclusive']);
    for (const r of specOf(smoke, 'paired_delta_ce_vs_beta').data.values) expect(r.diff).toBe(0.5);
  });

  it('a cached instance keeps the numbers of the run that computed its fingerprint, not of a later run with another one', () => {
    for (const chart of ['delta_ce_vs_k', 'dead_frac_vs_k', 'change_rate_vs_beta', 'steering_effect_vs_k', 'steering_kl_vs_k', 'steering_effect_vs_kl', 'sae_training_fvu', 'steering_effect_distribution']) {
      const mine = rowsAt(smoke, chart, 8);
      expect(mine.length, chart).toBeGreaterThan(0);
      expect(round(mine), chart).toEqual(round(rowsAt(fromNew, chart, 8)));
      expect(JSON.stringify(mine), chart).not.toMatch(/\b55\b/);
    }
    // A run that cached its compare stage shows the claims of the run that computed it.
    expect(round(fromRepeat.claims)).toEqual(round(fromNew.claims));
    expect(fromRepeat.claims.rows.map((r) => r.verdictHolm)).toEqual(([1, 2, 3] as const).flatMap((c) => KS.map((k) => EXPECTED[c][k].holm)));
    // The header facts of cached stages come from the runs that computed them (tokenize, lm: run-old).
    expect(smokeHtml).toContain('final_val_loss');
  });

  it('meta.runId reports an older run with its own k values and its own numbers', () => {
    expect(ksOf(fromNew)).toEqual(KS);
    expect(JSON.parse(readFileSync(path.join(fromNew.outDir, 'summary.json'), 'utf8')).runId).toBe('run-new');
    expect(ksOf(fromMid)).toEqual([8]);
    for (const r of rowsAt(fromMid, 'delta_ce_vs_k', 8)) expect(r.mean).toBe(55);
    for (const r of rowsAt(fromMid, 'steering_effect_vs_k', 8)) expect(r.mean).toBe(55);
    for (const r of fromMid.claims.rows) expect(r.gsae).toBe(55);
    expect(fromMid.claims.rows.length).toBe(3);
  });

  it('the SQL shown runs as is (as npm run query does) and gives the chart’s and the claims’ rows', async () => {
    for (const def of chartDefs('run-smoke')) {
      const c = smoke.charts.find((x) => x.name === def.name)!;
      const { rows } = await querySql(db, def.sql);
      expect(rows.length, def.name).toBe(c.rows);
    }
    const atStar = await querySql(db, pairedSql('run-smoke', 'compare', AT_BETA_STAR));
    expect(atStar.rows.length).toBe(smoke.claims.rows.length + smoke.claims.secondary.length);
    expect((await querySql(db, pairedSql('run-smoke'))).rows.length).toBe(smoke.claims.all.length);
  });

  it('for the latest run, run_metrics equals latest_metrics restricted to the run’s instances', async () => {
    const stages = ['tokenize', 'lm', 'collect', 'sae', 'downstream'];
    const sql = (a: string, b: string) => `WITH ${runMetricsCtes('run-smoke', stages)},
latest AS (
  SELECT l.stage, CAST(l.instance AS VARCHAR) AS inst, l.name, l.step, l.value
  FROM latest_metrics l JOIN scope ON scope.stage = l.stage AND scope.inst = CAST(l.instance AS VARCHAR)
),
mine AS (SELECT stage, CAST(instance AS VARCHAR) AS inst, name, step, value FROM run_metrics)
SELECT count(*)::INT AS n FROM (SELECT * FROM ${a} EXCEPT ALL SELECT * FROM ${b})`;
    expect((await querySql(db, sql('latest', 'mine'))).rows).toEqual([[0]]);
    expect((await querySql(db, sql('mine', 'latest'))).rows).toEqual([[0]]);
    expect((await querySql(db, `WITH ${runMetricsCtes('run-smoke', stages)} SELECT count(*)::INT FROM run_metrics`)).rows[0][0]).toBeGreaterThan(100);
  });
});
