/**
 * The report: DuckDB → Vega-Lite charts → one offline HTML page with the compare stage's verdict
 * per claim and k (the report displays the `paired` table; it judges nothing itself).
 *
 *   const res = await buildReport({ dbPath: 'results/results.duckdb', outDir: 'results/report' });
 *
 * Writes outDir/index.html, <chart>.vl.json and <chart>.svg for every chart with data,
 * vendor/ (vega, vega-lite, vega-embed browser builds) and summary.json.
 *
 * The report is of ONE run: meta.runId, else the most recent run in `runs` (inside the pipeline
 * that is the running run; the engine writes the records of every upstream stage before it starts
 * the report stage). Charts, claims and header facts show only the instances that run used (ran
 * or cached), with the numbers computed for the fingerprint it used (see sql.ts).
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TopLevelSpec } from 'vega-lite';
import { chartDefs, type ChartDef } from './charts.ts';
import { openReportDb, type ReportDb, type Row } from './db.ts';
import { readHeader, resolveRunId } from './header.ts';
import { renderHtml, renderSvg, type RenderedChart } from './render.ts';
import { AT_BETA_STAR, betaSelectionSql, DEFAULT_STAGES, pairedSql, type StageNames } from './sql.ts';
import type { ChartResult, ClaimsSql, LatentBrowserData, ReportMeta } from './types.ts';
import { buildClaims, type ClaimsTable } from './verdicts.ts';
import { ratingsComparison } from '../eval/compare.ts';
import { interpSummarySql } from './sql.ts';

/** Claim 4 from the `ratings` table (lib/eval/compare.ts ratingsComparison). */
export interface RatingsOptions {
  margin: number;
  minRatings: number;
  resamples: number;
  seed: number;
}

export type { ChartDef } from './charts.ts';
export type { ClaimsTable, PairedRow, BetaSelectionRow, ClaimSummary, CellVerdict } from './verdicts.ts';
export type * from './types.ts';
export { chartDefs } from './charts.ts';
export { buildClaims, CLAIMS } from './verdicts.ts';
export { renderSvg } from './render.ts';
export { openReportDb, wrapConnection } from './db.ts';
export { resolveRunId } from './header.ts';

export interface BuildReportOptions {
  /** results.duckdb, opened read-only. */
  dbPath?: string;
  /** Or an already open database (e.g. the engine's connection); not closed by buildReport. */
  db?: ReportDb;
  outDir: string;
  latentBrowser?: LatentBrowserData;
  meta?: ReportMeta;
  /** Stage names, if they differ from docs/CONTRACTS.md. */
  stages?: Partial<StageNames>;
  /** Decide claim 4 from human ratings too (the `ratings` table) with these options. */
  ratings?: RatingsOptions;
}

export interface ReportResult {
  outDir: string;
  indexHtml: string;
  charts: ChartResult[];
  claims: ClaimsTable;
}

/** Browser builds copied to vendor/, in load order (vega-embed needs the other two as globals). */
const VENDOR: Array<{ pkg: string; file: string }> = [
  { pkg: 'vega', file: 'build/vega.min.js' },
  { pkg: 'vega-lite', file: 'build/vega-lite.min.js' },
  { pkg: 'vega-embed', file: 'build/vega-embed.min.js' },
];

/** The directory of an installed package, found by walking up from this file (and then the cwd). */
export function packageDir(pkg: string): string {
  const starts = [path.dirname(fileURLToPath(import.meta.url)), process.cwd()];
  for (const start of starts) {
    let dir = start;
    for (;;) {
      const cand = path.join(dir, 'node_modules', pkg);
      if (existsSync(path.join(cand, 'package.json'))) return cand;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new Error(`report: package ${pkg} not found in node_modules`);
}

async function copyVendor(outDir: string): Promise<string[]> {
  const vendorDir = path.join(outDir, 'vendor');
  await mkdir(vendorDir, { recursive: true });
  const rel: string[] = [];
  for (const { pkg, file } of VENDOR) {
    const src = path.join(packageDir(pkg), file);
    const name = path.basename(file);
    await copyFile(src, path.join(vendorDir, name));
    if (existsSync(`${src}.map`)) await copyFile(`${src}.map`, path.join(vendorDir, `${name}.map`));
    rel.push(`vendor/${name}`);
  }
  return rel;
}

async function missingTables(db: ReportDb, tables: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const t of tables) if (!(await db.hasRelation(t))) missing.push(t);
  return missing;
}

async function missingColumns(db: ReportDb, columns: Array<[string, string]>): Promise<string[]> {
  const missing: string[] = [];
  for (const [t, c] of columns) if (!(await db.hasColumn(t, c))) missing.push(`${t}.${c}`);
  return missing;
}

async function runChart(db: ReportDb, def: ChartDef, outDir: string, runId: string | null): Promise<RenderedChart> {
  const base: ChartResult = { name: def.name, title: def.title, section: def.section, status: 'no data', rows: 0, files: [], warnings: [] };
  const missing = await missingTables(db, def.tables);
  if (missing.length) {
    return { def, result: { ...base, message: `no data: stage ${def.stage} has not run (missing ${missing.join(', ')})` } };
  }
  const missingCols = await missingColumns(db, def.columns ?? []);
  if (missingCols.length) {
    return { def, result: { ...base, message: `no data: the ${def.stage} rows predate column ${missingCols.join(', ')} (rerun stage ${def.stage})` } };
  }
  let rows: Row[];
  try {
    rows = await db.query(def.sql);
  } catch (e) {
    return { def, result: { ...base, status: 'error', message: `query failed: ${(e as Error).message}` } };
  }
  if (rows.length === 0) {
    const where = runId === null ? 'no run recorded' : `no rows for the instances run ${runId} ran or cached`;
    return { def, result: { ...base, message: `no data: stage ${def.stage} has not run, or recorded none of these values (${where})` } };
  }
  try {
    const spec: TopLevelSpec = def.spec(rows);
    const { svg, warnings } = await renderSvg(spec);
    const specFile = `${def.name}.vl.json`;
    const svgFile = `${def.name}.svg`;
    await writeFile(path.join(outDir, specFile), JSON.stringify(spec, null, 2) + '\n');
    await writeFile(path.join(outDir, svgFile), svg);
    return { def, spec, svg, result: { ...base, status: 'ok', rows: rows.length, files: [specFile, svgFile], warnings } };
  } catch (e) {
    return { def, result: { ...base, status: 'error', rows: rows.length, message: `rendering failed: ${(e as Error).message}` } };
  }
}

/** The claims table from the compare stage's tables (no rows when that stage has not run). */
async function readClaims(db: ReportDb, sql: ClaimsSql, ro?: RatingsOptions): Promise<ClaimsTable> {
  const needed = ['paired', 'runs', 'stage_runs'];
  if ((await missingTables(db, needed)).length) return buildClaims([], [], []);
  try {
    const atBetaStar = await db.query(sql.atBetaStar);
    const all = await db.query(sql.all);
    const betaSelection = (await db.hasRelation('beta_selection')) ? await db.query(sql.betaSelection) : [];
    // Human ratings are read here, not by a stage: a new rating needs only the report to rerun.
    let ratings: ReturnType<typeof ratingsComparison> = [];
    if (ro && (await db.hasRelation('ratings'))) {
      const star = new Map(betaSelection.filter((r) => r.chosen === true).map((r) => [Number(r.k), Number(r.beta)]));
      const rows = await db.query('SELECT CAST(arch AS VARCHAR) AS arch, CAST(beta AS DOUBLE) AS beta, CAST(k AS INTEGER) AS k, CAST(score AS INTEGER) AS score FROM ratings');
      ratings = ratingsComparison(rows.map((r) => ({ arch: r.arch as 'topk' | 'gsae', beta: r.beta === null ? null : Number(r.beta), k: Number(r.k), score: Number(r.score) })), star, ro);
    }
    const claims = buildClaims(atBetaStar, all, betaSelection, 'no data: no paired rows at β* for the instances this run used', ratings, ro?.minRatings ?? 0);
    if (await db.hasRelation('interp_summary')) {
      const ctl = (await db.query(interpSummarySql(sql.runId ?? null))).filter((r) => r.control === true);
      if (ctl.length) claims.summary[3].status += `; control (TopK SAE on a random-init LM): score ${ctl.map((r) => `${Number(r.mean).toFixed(3)} at k = ${r.k}`).join(', ')}`;
    }
    return claims;
  } catch (e) {
    const error = `claims query failed: ${(e as Error).message.split('\n')[0]}`;
    return { ...buildClaims([], [], [], error), error };
  }
}

export async function buildReport(opts: BuildReportOptions): Promise<ReportResult> {
  if (!opts.db && !opts.dbPath) throw new Error('buildReport: pass dbPath or db');
  const stages = { ...DEFAULT_STAGES, ...opts.stages };
  const outDir = path.resolve(opts.outDir);
  await mkdir(outDir, { recursive: true });
  // Stale charts from an earlier report must not survive (a chart may now have no data).
  for (const def of chartDefs(null, stages)) {
    await rm(path.join(outDir, `${def.name}.vl.json`), { force: true });
    await rm(path.join(outDir, `${def.name}.svg`), { force: true });
  }
  const db = opts.db ?? (await openReportDb(opts.dbPath!));
  try {
    const meta = opts.meta ?? {};
    // Resolved once: every query shown in the page embeds this literal run id.
    const runId = await resolveRunId(db, meta.runId);
    const header = await readHeader(db, runId, stages);
    const claimsSql: ClaimsSql = {
      atBetaStar: pairedSql(runId, stages.compare, AT_BETA_STAR),
      all: pairedSql(runId, stages.compare),
      betaSelection: betaSelectionSql(runId, stages.compare),
    };
    const claims = await readClaims(db, { ...claimsSql, runId }, opts.ratings);
    const charts: RenderedChart[] = [];
    for (const def of chartDefs(runId, stages)) charts.push(await runChart(db, def, outDir, runId));
    const vendorScripts = await copyVendor(outDir);
    const html = renderHtml({
      meta,
      header,
      claims,
      claimsSql,
      charts,
      latentBrowser: opts.latentBrowser,
      generatedAt: new Date().toISOString().replace('T', ' ').slice(0, 19) + ' UTC',
      vendorScripts,
    });
    const indexHtml = path.join(outDir, 'index.html');
    await writeFile(indexHtml, html);
    const results = charts.map((c) => c.result);
    await writeFile(
      path.join(outDir, 'summary.json'),
      JSON.stringify({ runId: header.runId ?? runId, charts: results, claims: claims.summary, claimRows: claims.rows, claimsError: claims.error ?? null, seeds: claims.seeds }, null, 2) + '\n',
    );
    return { outDir, indexHtml, charts: results, claims };
  } finally {
    if (!opts.db) db.close();
  }
}
