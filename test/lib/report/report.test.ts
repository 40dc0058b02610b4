/**
 * buildReport on a synthetic results.duckdb (test/lib/report/fixture.ts — TEST DATA ONLY):
 * every chart has rows, every .vl.json validates against vega-lite's JSON schema, the page holds
 * what the issue asks for, superseded runs never leak in, and a report shows only the instances
 * of its run (a database shared by params sets with different k lists).
 */
import { Ajv } from 'ajv';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { querySql } from '../../../pipeline/db.ts';
import { buildReport, chartDefs, openReportDb, packageDir, type ReportResult } from '../../../lib/report/index.ts';
import { curveSql, finalMetricsOverSeedsSql, runMetricsCtes } from '../../../lib/report/sql.ts';
import { appendRun, createSyntheticDb, KS, syntheticLatentBrowser } from './fixture.ts';

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

describe('buildReport on the synthetic database', () => {
  it('renders every chart, each with data rows and no vega-lite warnings', () => {
    expect(full.charts.length).toBeGreaterThanOrEqual(13);
    for (const c of full.charts) {
      expect(c.status, `${c.name}: ${c.message}`).toBe('ok');
      expect(c.rows, c.name).toBeGreaterThan(0);
      expect(c.warnings, c.name).toEqual([]);
    }
  });

  it('writes <name>.vl.json with inline data rows and <name>.svg with marks for every chart', () => {
    for (const c of full.charts) {
      const spec = JSON.parse(readFileSync(path.join(full.outDir, `${c.name}.vl.json`), 'utf8'));
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

  it('judges the claims as the synthetic numbers were built', () => {
    const v = (label: string, k: number) => full.claims.rows.find((r) => r.label === label && r.k === k && r.alpha === null)?.verdict;
    expect(v('ΔCE', 8)).toBe('reproduced');
    expect(v('ΔCE', 16)).toBe('reproduced');
    expect(v('ΔCE', 32)).toBe('inconclusive');
    expect(v('dead fraction', 8)).toBe('reproduced');
    expect(v('dead fraction', 32)).toBe('not reproduced');
    const effect = full.claims.rows.filter((r) => r.label === 'steering effect');
    expect(effect.length).toBe(KS.length * 2);
    expect(full.claims.summary.find((s) => s.claim === 4)?.status).toBe('not measured (requires raters)');
    for (const r of full.claims.rows) {
      if (r.topk) expect(r.topk.n).toBe(3);
      if (r.gsae) expect(r.gsae.n).toBe(3);
    }
  });

  it('uses the latest run that ran each instance (superseded values never appear)', () => {
    const dce = JSON.parse(readFileSync(path.join(full.outDir, 'delta_ce_vs_k.vl.json'), 'utf8'));
    for (const r of dce.data.values) expect(r.mean).toBeLessThan(1);
    const eff = JSON.parse(readFileSync(path.join(full.outDir, 'steering_effect_vs_k.vl.json'), 'utf8'));
    for (const r of eff.data.values) expect(r.mean).toBeLessThan(10);
    // Cached stages keep the numbers of the run that computed them.
    const lm = JSON.parse(readFileSync(path.join(full.outDir, 'lm_loss_curve.vl.json'), 'utf8'));
    expect(lm.data.values.length).toBe(27);
  });

  it('holds the header, claims, SQL, latent browser and methods', () => {
    expect(html).toContain('run-new');
    expect(html).toContain('Wall time per stage');
    expect(html).toMatch(/fingerprint/i);
    expect(html).toContain('<code>wasm</code>');
    expect(html).toContain('State of the Union');
    expect(html).toContain('not measured (requires raters)');
    expect(html).toContain('class="verdict v-reproduced"');
    expect(html).toContain('class="verdict v-not-reproduced"');
    expect(html).toContain('class="verdict v-inconclusive"');
    // One SQL block per chart plus header and claims blocks, each with a copy button.
    const copies = html.match(/<button type="button" class="copy"/g) ?? [];
    expect(copies.length).toBeGreaterThanOrEqual(full.charts.length + 5);
    // Every query is scoped to the reported run, named literally (copy-paste gives the same rows).
    expect(html).toContain('FROM run_metrics');
    expect(html).toContain("WHERE run_id = 'run-new' AND status IN ('ran', 'cached')");
    expect(html).not.toContain('ORDER BY started DESC');
    // Latent browser: tokens shaded by activation, escaped.
    expect(html).toContain('id="latents"');
    expect(html).toMatch(/class="tok peak" style="background: rgba\(230, 85, 13, 0\.880\)"/);
    expect(html).toContain('&lt;b&gt;');
    expect(html).not.toContain(' <b></span>');
    // Methods: ours vs paper, with the params that control them.
    expect(html).toContain('Steering protocol');
    expect(html).toContain('gradient-free');
    expect(html).toContain('<code>sae.b_dec_init</code> = <code>&quot;geometric_median&quot;</code>');
    expect(html).toContain('GPT-2 small on OpenWebText');
  });
});

describe('the SQL', () => {
  it('CI over seeds is mean ± t(0.975, n−1) · sd / √n', async () => {
    const db = await openReportDb(path.join(tmp, 'results.duckdb'));
    try {
      const rows = await db.query(finalMetricsOverSeedsSql('run-new', 'downstream', ['delta_ce']));
      const r = rows.find((x) => x.arch === 'topk' && x.k === 8)!;
      expect(r.n_seeds).toBe(3);
      expect(r.sd as number).toBeCloseTo(0.005, 10);
      const half = (4.303 * 0.005) / Math.sqrt(3);
      expect(r.hi as number).toBeCloseTo((r.mean as number) + half, 10);
      expect(r.lo as number).toBeCloseTo((r.mean as number) - half, 10);
      expect(r.ci).toBe('t over seeds');
    } finally {
      db.close();
    }
  });

  it('training curves are thinned to about maxPoints per curve, keeping the last step', async () => {
    const db = await openReportDb(path.join(tmp, 'results.duckdb'));
    try {
      const rows = await db.query(curveSql('run-new', 'sae', ['fvu'], true, 4));
      const curve = rows.filter((x) => x.arch === 'gsae' && x.k === 16 && x.seed === 1).map((x) => x.tokens);
      expect(curve).toEqual([200_000, 800_000, 1_400_000, 2_000_000]);
    } finally {
      db.close();
    }
  });
});

describe('buildReport with missing stages and a single seed', () => {
  let res: ReportResult;
  let page: string;
  let emptyRes: ReportResult;
  beforeAll(async () => {
    const db = path.join(tmp, 'partial.duckdb');
    await createSyntheticDb(db, { withoutSteering: true, seeds: 1 });
    res = await buildReport({ dbPath: db, outDir: path.join(tmp, 'partial') });
    page = readFileSync(res.indexHtml, 'utf8');
    // A database with none of the engine's tables yet.
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const emptyDb = path.join(tmp, 'empty.duckdb');
    const inst = await DuckDBInstance.create(emptyDb);
    (await inst.connect()).closeSync();
    inst.closeSync();
    emptyRes = await buildReport({ dbPath: emptyDb, outDir: path.join(tmp, 'empty') });
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
    expect(res.charts.filter((c) => c.section !== 'Steering').every((c) => c.status === 'ok')).toBe(true);
  });

  it('with one seed, the CIs are the stored bootstrap bounds', () => {
    const r = res.claims.rows.find((x) => x.label === 'ΔCE' && x.k === 8)!;
    expect(r.topk?.n).toBe(1);
    expect(r.topk?.ci).toBe('bootstrap, 1 seed');
    expect(r.topk!.hi! - r.topk!.lo!).toBeCloseTo(0.02, 10);
    expect(r.verdict).toBe('reproduced');
  });

  it('an empty database gives a page of notes, not an error', () => {
    expect(emptyRes.charts.every((c) => c.status === 'no data')).toBe(true);
    expect(emptyRes.claims.rows).toHaveLength(0);
    const p = readFileSync(emptyRes.indexHtml, 'utf8');
    expect(p).toContain('no run recorded');
    expect(p).toContain('not measured (requires raters)');
  });
});

describe('a report is of one run (several params sets share the database)', () => {
  // run-new: k = 8, 16, 32 (fingerprint v1). run-mid: k = 8 only, with another fingerprint (v2,
  // every number 55). run-smoke (the latest): k = 4 (v3, every number 0.5) and k = 8 cached with
  // v1 again, so its k = 8 numbers are run-new's, not run-mid's.
  let db: string;
  let smoke: ReportResult;
  let fromNew: ReportResult;
  let fromMid: ReportResult;
  let smokeHtml: string;
  const spec = (res: ReportResult, chart: string) => JSON.parse(readFileSync(path.join(res.outDir, `${chart}.vl.json`), 'utf8'));
  const ksOf = (res: ReportResult) => {
    const ks = new Set<number>();
    for (const c of res.charts.filter((x) => x.status === 'ok')) for (const r of spec(res, c.name).data.values) if (r.k !== undefined) ks.add(r.k);
    for (const r of res.claims.rows) ks.add(r.k);
    return [...ks].sort((a, b) => a - b);
  };
  /** Chart rows at one k. */
  const rowsAt = (res: ReportResult, chart: string, k: number) => spec(res, chart).data.values.filter((r: { k: number }) => r.k === k);
  /** Numbers to 12 significant digits: DuckDB's parallel sums may differ in the last bit between queries. */
  const round = (x: unknown): unknown => JSON.parse(JSON.stringify(x, (_, v) => (typeof v === 'number' ? Number(v.toPrecision(12)) : v)));

  beforeAll(async () => {
    db = path.join(tmp, 'shared.duckdb');
    await createSyntheticDb(db);
    await appendRun(db, { runId: 'run-mid', started: '2025-01-03 10:00:00', ks: [8], fp: 'v2', value: 55 });
    await appendRun(db, { runId: 'run-smoke', started: '2025-01-04 10:00:00', ks: [4, 8], cachedKs: [8], fp: 'v3', value: 0.5 });
    smoke = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-smoke') });
    fromNew = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-new'), meta: { runId: 'run-new' } });
    fromMid = await buildReport({ dbPath: db, outDir: path.join(tmp, 'shared-mid'), meta: { runId: 'run-mid' } });
    smokeHtml = readFileSync(smoke.indexHtml, 'utf8');
  });

  it('the latest run by default, and only its k values everywhere', () => {
    expect(JSON.parse(readFileSync(path.join(smoke.outDir, 'summary.json'), 'utf8')).runId).toBe('run-smoke');
    for (const c of smoke.charts) expect(c.status, `${c.name}: ${c.message}`).toBe('ok');
    expect(ksOf(smoke)).toEqual([4, 8]);
    for (const chart of ['delta_ce_vs_k', 'dead_frac_vs_k', 'steering_effect_vs_k', 'steering_effect_distribution', 'sae_training_fvu']) {
      expect(new Set(spec(smoke, chart).data.values.map((r: { k: number }) => r.k)), chart).toEqual(new Set([4, 8]));
    }
    expect(new Set(smoke.claims.rows.filter((r) => r.label === 'ΔCE').map((r) => r.k))).toEqual(new Set([4, 8]));
    expect(smokeHtml).toContain('run-smoke');
    expect(smokeHtml).toContain("WHERE run_id = 'run-smoke' AND status IN ('ran', 'cached')");
    expect(smokeHtml).not.toContain("run_id = 'run-new'");
    // The instance table of the header lists this run's instances: 2 archs × 2 k × 3 seeds per SAE stage.
    expect(smokeHtml).toContain('Fingerprints per stage instance (39)');
  });

  it('an instance that ran in this run shows this run’s numbers', () => {
    for (const r of rowsAt(smoke, 'delta_ce_vs_k', 4)) expect(r.mean).toBe(0.5);
    for (const r of rowsAt(smoke, 'steering_effect_vs_k', 4)) expect(r.mean).toBe(0.5);
    expect(smoke.claims.rows.find((r) => r.label === 'ΔCE' && r.k === 4)?.topk?.mean).toBe(0.5);
  });

  it('a cached instance keeps the numbers of the run that computed its fingerprint, not of a later run with another one', () => {
    for (const chart of ['delta_ce_vs_k', 'dead_frac_vs_k', 'steering_effect_vs_k', 'steering_kl_vs_k', 'sae_training_fvu', 'steering_effect_distribution']) {
      const mine = rowsAt(smoke, chart, 8);
      expect(mine.length, chart).toBeGreaterThan(0);
      expect(round(mine), chart).toEqual(round(rowsAt(fromNew, chart, 8)));
      expect(JSON.stringify(mine), chart).not.toMatch(/\b55\b/);
    }
    const claim = (res: ReportResult) => res.claims.rows.filter((r) => r.k === 8);
    expect(round(claim(smoke))).toEqual(round(claim(fromNew)));
    // The header facts of cached stages come from the runs that computed them (tokenize, lm: run-old).
    expect(smokeHtml).toContain('final_val_loss');
  });

  it('meta.runId reports an older run with its own k values and its own numbers', () => {
    expect(ksOf(fromNew)).toEqual(KS);
    expect(JSON.parse(readFileSync(path.join(fromNew.outDir, 'summary.json'), 'utf8')).runId).toBe('run-new');
    expect(ksOf(fromMid)).toEqual([8]);
    for (const r of rowsAt(fromMid, 'delta_ce_vs_k', 8)) expect(r.mean).toBe(55);
    for (const r of rowsAt(fromMid, 'steering_effect_vs_k', 8)) expect(r.mean).toBe(55);
  });

  it('the SQL shown runs as is (as npm run query does) and gives the chart’s rows', async () => {
    for (const def of chartDefs('run-smoke')) {
      const c = smoke.charts.find((x) => x.name === def.name)!;
      const { rows } = await querySql(db, def.sql);
      expect(rows.length, def.name).toBe(c.rows);
    }
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
