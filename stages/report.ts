/**
 * report: DuckDB → Vega-Lite charts → results/report/index.html, with the claims table and a
 * latent browser (top-activating held-out contexts and steering targets of sampled latents).
 */
import path from 'node:path';
import type { StageContext } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { initStageBackend, readJson, spreadWindows } from './common.ts';
import type { LatentBrowserData } from '../lib/report/types.ts';

/** β* per k as the compare stage chose it for the running run (empty when it wrote none). */
async function betaStars(ctx: StageContext<Params>): Promise<Map<number, number>> {
  const { resolveRunId, wrapConnection } = await import('../lib/report/index.ts');
  const { betaSelectionSql } = await import('../lib/report/sql.ts');
  return ctx.readResults(async (connection) => {
    const db = wrapConnection(connection);
    if (!(await db.hasRelation('beta_selection'))) return new Map();
    const rows = await db.query(betaSelectionSql(await resolveRunId(db)));
    return new Map(rows.filter((r) => r.chosen === true).map((r) => [Number(r.k), Number(r.beta)]));
  });
}

async function latentBrowser(ctx: StageContext<Params>): Promise<LatentBrowserData> {
  const nLatents = ctx.params.report.browser_latents;
  const nContexts = ctx.params.report.browser_contexts;
  if (nLatents === 0) return [];
  const { ShardReader } = await import('../lib/activations.ts');
  const { readTokenSplits } = await import('../lib/tokens.ts');
  const { loadTokenizer } = await import('../lib/tokenizer/index.ts');
  const { loadSae, encodeSparse } = await import('../lib/sae/index.ts');
  const { browserEntries, browserK, pickInstance } = await import('../lib/report/latentBrowser.ts');
  const saes = ctx.inputsAll.sae;
  const steers = ctx.inputsAll.steering;
  const k = browserK(saes.map((u) => Number(u.instance.k)));
  const reader = new ShardReader(path.join(ctx.inputs.acts, 'test'));
  const acts = reader.readAll();
  const man = reader.manifest as unknown as { seq_len: number; windows: number };
  const { test } = readTokenSplits(ctx.inputs.tokens);
  const tok = loadTokenizer(path.join(ctx.inputs.tokens, 'tokenizer.json'));
  const T = man.seq_len;
  const starts = spreadWindows(test.length, T, man.windows);
  const tokens = { rows: man.windows * T, token: (row: number) => test[starts[Math.floor(row / T)] + (row % T)], pos: (row: number) => row % T };
  // The g-SAE shown is the one the claims use at this k (β*).
  const betaStar = (await betaStars(ctx)).get(k);
  const out: LatentBrowserData = [];
  for (const arch of ['topk', 'gsae']) {
    const s = pickInstance(saes, arch, k, arch === 'gsae' ? betaStar : undefined);
    const beta = s?.instance.beta === undefined ? undefined : Number(s.instance.beta);
    const st = s && pickInstance(steers, arch, k, beta);
    if (!s || !st) continue;
    const w = loadSae(s.dir);
    const code = encodeSparse(w, acts.x, arch === 'gsae' ? acts.g : null);
    const sae = { code, tokens, decode: (id: number) => tok.decode([id]), arch, k, seed: Number(s.instance.seed), beta, betaStar: beta === undefined ? undefined : beta === betaStar };
    out.push(...browserEntries(sae, readJson(path.join(st.dir, 'latents.json')).rows, nLatents, nContexts));
  }
  return out;
}

const stage = defineStage<Params>()({
  name: 'report',
  description: 'Charts, claims table (the compare stage\'s paired verdicts) and latent browser: results/report/index.html',
  // interp.rating_*: claim 4 from the `ratings` table, which the report reads directly; env field
  // `ratings` (results/ratings.version, written by npm run rate) reruns the report when ratings change.
  params: ['report', 'sae.k', 'interp.rating_margin', 'interp.min_ratings', 'compare.bootstrap_resamples', 'compare.seed'],
  inputs: {
    downstream: { stage: 'downstream', all: true },
    steering: { stage: 'steering', all: true },
    sae: { stage: 'sae', all: true },
    acts: { stage: 'collect' },
    tokens: { stage: 'tokenize' },
    // Not read as files: the claims come from its DuckDB tables, so the report must run after it.
    compare: { stage: 'compare' },
  },
  outputs: ['index.html', 'summary.json'],
  env: ['backend', 'ratings'],
  // Reads the coordinator's results/results.duckdb: never sent to a BullMQ worker.
  local: true,
  async run(ctx) {
    await initStageBackend(ctx); // the latent browser encodes held-out activations with tfjs
    const { buildReport, wrapConnection } = await import('../lib/report/index.ts');
    const browser = await latentBrowser(ctx);
    const ratings = { margin: ctx.params.interp.rating_margin, minRatings: ctx.params.interp.min_ratings, resamples: ctx.params.compare.bootstrap_resamples, seed: ctx.params.compare.seed };
    const res = await ctx.readResults((connection) => buildReport({ db: wrapConnection(connection), outDir: ctx.outDir, latentBrowser: browser, ratings }));
    for (const c of res.charts) ctx.log(`${c.status === 'ok' ? '✓' : '·'} ${c.name}: ${c.status}${c.message ? ` (${c.message})` : ''}, ${c.rows} rows`);
    for (const c of res.claims.summary) ctx.log(`claim ${c.claim} (${c.text}): ${c.status}`);
    const errors = res.charts.filter((c) => c.status === 'error');
    if (errors.length > 0) throw new Error(`report: ${errors.length} chart(s) failed: ${errors.map((c) => `${c.name}: ${c.message}`).join('; ')}`);
    if (res.claims.error) throw new Error(`report: ${res.claims.error}`);
  },
});
export default stage;
