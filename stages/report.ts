/**
 * report: DuckDB → Vega-Lite charts → results/report/index.html, with the claims table and a
 * latent browser (top-activating held-out contexts and steering targets of sampled latents).
 */
import path from 'node:path';
import type { StageContext, StageDef, UpstreamInstance } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { initStageBackend, readJson, spreadWindows } from './common.ts';
import type { LatentBrowserData } from '../lib/report/types.ts';

/** The k shown in the latent browser: the middle of the k list. */
function browserK(ks: number[]): number {
  const sorted = [...ks].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The instance of arch at k with the lowest seed; for the g-SAE at β = `beta` when there is one. */
function pick(list: UpstreamInstance[], arch: string, k: number, beta?: number): UpstreamInstance | undefined {
  const mine = list.filter((u) => u.instance.arch === arch && Number(u.instance.k) === k);
  const atBeta = beta === undefined ? [] : mine.filter((u) => Number(u.instance.beta) === beta);
  return (atBeta.length ? atBeta : mine).sort(
    (a, b) => Number(a.instance.beta ?? 0) - Number(b.instance.beta ?? 0) || Number(a.instance.seed) - Number(b.instance.seed),
  )[0];
}

/** β* per k as the compare stage chose it for the running run (empty when it wrote none). */
async function betaStars(dbPath: string): Promise<Map<number, number>> {
  const { openReportDb, resolveRunId } = await import('../lib/report/index.ts');
  const { betaSelectionSql } = await import('../lib/report/sql.ts');
  const db = await openReportDb(dbPath);
  try {
    if (!(await db.hasRelation('beta_selection'))) return new Map();
    const rows = await db.query(betaSelectionSql(await resolveRunId(db)));
    return new Map(rows.filter((r) => r.chosen === true).map((r) => [Number(r.k), Number(r.beta)]));
  } finally {
    db.close();
  }
}

interface SteeredLatent {
  rule?: string;
  alpha: number;
  latent: number;
  target_tokens: string[];
  effect: number;
}

async function latentBrowser(ctx: StageContext<Params>, dbPath: string): Promise<LatentBrowserData> {
  const nLatents = ctx.params.report.browser_latents;
  const nContexts = ctx.params.report.browser_contexts;
  if (nLatents === 0) return [];
  const { ShardReader } = await import('../lib/activations.ts');
  const { readTokenSplits } = await import('../lib/tokens.ts');
  const { loadTokenizer } = await import('../lib/tokenizer/index.ts');
  const { loadSae, encodeSparse } = await import('../lib/sae/index.ts');
  const saes = ctx.inputsAll.sae;
  const steers = ctx.inputsAll.steering;
  const k = browserK(saes.map((u) => Number(u.instance.k)));
  const testDir = path.join(ctx.inputs.acts, 'test');
  const reader = new ShardReader(testDir);
  const acts = reader.readAll();
  const man = reader.manifest as unknown as { seq_len: number; windows: number };
  const { test } = readTokenSplits(ctx.inputs.tokens);
  const tok = loadTokenizer(path.join(ctx.inputs.tokens, 'tokenizer.json'));
  const T = man.seq_len;
  const starts = spreadWindows(test.length, T, man.windows);
  const tokenAt = (row: number): number => test[starts[Math.floor(row / T)] + (row % T)];
  // The g-SAE shown is the one the claims use at this k (β*).
  const betaStar = (await withRetry(() => betaStars(dbPath))).get(k);
  const out: LatentBrowserData = [];
  for (const arch of ['topk', 'gsae']) {
    const beta = arch === 'gsae' ? betaStar : undefined;
    const s = pick(saes, arch, k, beta);
    const st = s && pick(steers, arch, k, s.instance.beta === undefined ? undefined : Number(s.instance.beta));
    if (!s || !st) continue;
    const w = loadSae(s.dir);
    const steer = readJson(path.join(st.dir, 'latents.json'));
    const all = steer.rows as SteeredLatent[];
    // Targets of the rule that decides claim 3 (logit_lens) when the steering stage recorded rules.
    const rule = all.some((r) => r.rule === 'logit_lens') ? 'logit_lens' : all[0]?.rule;
    const firstAlpha = all.find((r) => r.rule === rule)?.alpha;
    const rows = all.filter((r) => r.rule === rule && r.alpha === firstAlpha);
    const chosen = rows.slice(0, nLatents);
    const code = encodeSparse(w, acts.x, arch === 'gsae' ? acts.g : null);
    for (const r of chosen) {
      // Activation of this latent at every held-out position.
      const a = new Float32Array(code.n);
      let fires = 0;
      for (let i = 0; i < code.n; i++) {
        for (let j = 0; j < code.k; j++) {
          if (code.indices[i * code.k + j] === r.latent && code.values[i * code.k + j] > 0) {
            a[i] = code.values[i * code.k + j];
            fires++;
          }
        }
      }
      const order = Array.from(a.keys()).filter((i) => a[i] > 0).sort((x, y) => a[y] - a[x] || x - y);
      const contexts: LatentBrowserData[number]['contexts'] = [];
      const usedSeq = new Set<number>();
      for (const row of order) {
        const seq = Math.floor(row / T);
        if (usedSeq.has(seq)) continue;
        usedSeq.add(seq);
        const lo = Math.max(seq * T, row - 10);
        const hi = Math.min(seq * T + T - 1, row + 3);
        const tokens: string[] = [];
        const vals: number[] = [];
        for (let q = lo; q <= hi; q++) {
          tokens.push(tok.decode([tokenAt(q)]));
          vals.push(a[q]);
        }
        contexts.push({ tokens, acts: vals });
        if (contexts.length >= nContexts) break;
      }
      out.push({
        arch,
        k,
        ...(s.instance.beta !== undefined ? { beta: Number(s.instance.beta), betaStar: Number(s.instance.beta) === betaStar } : {}),
        latent: r.latent,
        seed: Number(s.instance.seed),
        contexts,
        promoted: r.target_tokens,
        note: `fires on ${((100 * fires) / code.n).toFixed(2)}% of held-out tokens; steering effect ${r.effect.toFixed(3)} at α = ${firstAlpha}${rule ? ` (${rule} targets)` : ''}`,
      });
    }
  }
  return out;
}

/** DuckDB allows one writer process: the engine may be writing right now, so retry briefly. */
async function withRetry<T>(fn: () => Promise<T>, tries = 40): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= tries || !/lock|Conflicting/i.test(String((e as Error).message))) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const stage: StageDef<Params> = {
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
    const { buildReport } = await import('../lib/report/index.ts');
    const dbPath = path.resolve('results', 'results.duckdb');
    const browser = await latentBrowser(ctx, dbPath);
    const res = await withRetry(() => buildReport({
        dbPath,
        outDir: ctx.outDir,
        latentBrowser: browser,
        ratings: { margin: ctx.params.interp.rating_margin, minRatings: ctx.params.interp.min_ratings, resamples: ctx.params.compare.bootstrap_resamples, seed: ctx.params.compare.seed },
      }));
    for (const c of res.charts) ctx.log(`${c.status === 'ok' ? '✓' : '·'} ${c.name}: ${c.status}${c.message ? ` (${c.message})` : ''}, ${c.rows} rows`);
    for (const c of res.claims.summary) ctx.log(`claim ${c.claim} (${c.text}): ${c.status}`);
    const errors = res.charts.filter((c) => c.status === 'error');
    if (errors.length > 0) throw new Error(`report: ${errors.length} chart(s) failed: ${errors.map((c) => `${c.name}: ${c.message}`).join('; ')}`);
    if (res.claims.error) throw new Error(`report: ${res.claims.error}`);
  },
};
export default stage;
