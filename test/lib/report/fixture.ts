/**
 * TEST DATA ONLY: a synthetic results.duckdb in the schema of docs/CONTRACTS.md, with made-up
 * numbers shaped so the report has something in every chart and every verdict kind appears.
 * SAE instances: TopK {arch, k, seed} and g-SAE {arch, beta, k, seed} for k ∈ KS, β ∈ BETAS.
 * The compare stage's tables `paired` and `beta_selection` carry hand-set verdicts (EXPECTED at
 * β*, decoys elsewhere), so a test can check the report shows exactly what the table says.
 * An older run holds superseded values (99) that must never reach the report.
 * appendRun adds later runs with other k sets (the smoke preset next to the default one).
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { ENGINE_SCHEMA } from '../../../pipeline/db.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import type { LatentBrowserData } from '../../../lib/report/types.ts';

export const KS = [8, 16];
export const BETAS = [0.5, 2];
export const SEEDS = [0, 1];
export const ALPHAS = [0.25, 0.5, 1];
export const RULES = ['calibration', 'logit_lens'] as const;
export const ARCHS = ['topk', 'gsae'] as const;
/** The KL level of the matched-KL steering rows. */
export const MATCH_KL = 0.05;

/** β* per k as the fixture's compare stage chose it (a k not listed: BETAS[0]). */
export const BETA_STAR: Record<number, number> = { 8: 0.5, 16: 2 };
export const betaStarOf = (k: number) => BETA_STAR[k] ?? BETAS[0];

type V = 'reproduced' | 'not reproduced' | 'inconclusive';
/** Per claim and k, the primary check's verdict and Holm verdict at β* on the test split. */
export const EXPECTED: Record<1 | 2 | 3, Record<number, { verdict: V; holm: V }>> = {
  1: { 8: { verdict: 'reproduced', holm: 'reproduced' }, 16: { verdict: 'reproduced', holm: 'inconclusive' } },
  2: { 8: { verdict: 'not reproduced', holm: 'not reproduced' }, 16: { verdict: 'inconclusive', holm: 'inconclusive' } },
  3: { 8: { verdict: 'inconclusive', holm: 'inconclusive' }, 16: { verdict: 'reproduced', holm: 'reproduced' } },
};
/** The verdict of a primary check at a β that is not β* (a decoy: must never reach the claims table). */
export const DECOY_VERDICT: V = 'not reproduced';

const sqlStr = (s: string) => `'${s.replace(/'/g, "''")}'`;
type Instance = Record<string, string | number>;
const inst = (o: Instance) => JSON.stringify(o);

/** The SAE matrix: TopK per (k, seed), g-SAE per (β, k, seed); keys in canonical (sorted) order. */
export function saeInstances(ks: number[], seeds: number[]): Instance[] {
  const out: Instance[] = [];
  for (const k of ks) for (const seed of seeds) out.push({ arch: 'topk', k, seed });
  for (const beta of BETAS) for (const k of ks) for (const seed of seeds) out.push({ arch: 'gsae', beta, k, seed });
  return out;
}

type Cell = string | number | boolean | null;
type TableRow = Record<string, Cell>;

function sqlCell(v: Cell): string {
  if (v === null) return 'NULL';
  if (typeof v === 'boolean') return v ? 'TRUE' : 'FALSE';
  if (typeof v === 'number') return String(v);
  return sqlStr(v);
}

/**
 * Rows of a project table, typed as the engine types them (pipeline/db.ts writeTable): a column
 * takes the type of its first non-null value (number → DOUBLE), an all-NULL column is VARCHAR.
 */
async function writeProjectTable(c: DuckDBConnection, table: string, run: string, stage: string, instance: string, rows: TableRow[]): Promise<void> {
  if (!rows.length) return;
  const types = new Map<string, string>();
  for (const row of rows) {
    for (const [k, v] of Object.entries(row)) {
      if (!types.has(k) || (v !== null && types.get(k) === 'NULL')) types.set(k, v === null ? 'NULL' : typeof v === 'number' ? 'DOUBLE' : typeof v === 'boolean' ? 'BOOLEAN' : 'VARCHAR');
    }
  }
  const cols = [...types.keys()];
  const q = (name: string) => `"${name}"`;
  const typeOf = (col: string) => (types.get(col) === 'NULL' ? 'VARCHAR' : types.get(col)!);
  await c.run(`CREATE TABLE IF NOT EXISTS ${table} (run_id VARCHAR, stage VARCHAR, instance JSON${cols.map((col) => `, ${q(col)} ${typeOf(col)}`).join('')})`);
  for (const col of cols) await c.run(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${q(col)} ${typeOf(col)}`);
  const all = ['run_id', 'stage', 'instance', ...cols];
  const tuples = rows.map((r) => `(${[sqlStr(run), sqlStr(stage), sqlStr(instance), ...cols.map((col) => sqlCell(r[col] ?? null))].join(', ')})`);
  for (let i = 0; i < tuples.length; i += 500) {
    await c.run(`INSERT INTO ${table} (${all.map(q).join(', ')}) VALUES ${tuples.slice(i, i + 500).join(',\n')}`);
  }
}

/** The selection change rate of the g-SAE at (k, β) on test tokens (made up: grows with β). */
export const changeRate = (k: number, beta: number) => Number((0.02 + (0.2 * beta) / (1 + beta) - k / 1000).toFixed(4));

interface CheckSpec {
  claim: 1 | 2 | 3;
  check: string;
  label: string;
  better: 'lower' | 'higher';
  primary: boolean;
  rule: string;
  alpha: number | null;
  matchKl: number | null;
  /** Interval and units of a single seed's row. */
  interval: string;
  n: number;
  base: number;
}

function checkSpecs(withSteering: boolean): CheckSpec[] {
  const seqs = 'paired bootstrap over 512 held-out sequences';
  const steer = 'bootstrap over latents and shared contexts';
  const d = { rule: '', alpha: null, matchKl: null, interval: seqs, n: 512 };
  const specs: CheckSpec[] = [
    { ...d, claim: 1, check: 'delta_ce', label: 'ΔCE', better: 'lower', primary: true, base: 0.07 },
    { ...d, claim: 1, check: 'kl', label: 'KL(clean ‖ spliced)', better: 'lower', primary: false, base: 0.06 },
    { ...d, claim: 1, check: 'loss_recovered', label: 'loss recovered', better: 'higher', primary: false, base: 0.97 },
    { ...d, claim: 1, check: 'delta_ce_gradfree', label: 'ΔCE, g-SAE gradient-free', better: 'lower', primary: false, base: 0.07 },
    { ...d, claim: 2, check: 'dead_frac', label: 'dead fraction', better: 'lower', primary: true, interval: 'Newcombe interval for a difference of proportions', n: 2048, base: 0.04 },
  ];
  if (!withSteering) return specs;
  const s = { interval: steer, n: 32, claim: 3 as const, better: 'higher' as const };
  for (const rule of RULES) {
    specs.push({ ...s, check: 'steer_effect_matched_kl', label: 'steering effect at matched KL', primary: rule === 'logit_lens', rule, alpha: null, matchKl: MATCH_KL, base: 0.3 });
    for (const alpha of ALPHAS) {
      specs.push({ ...s, check: 'steer_effect', label: 'steering effect', primary: false, rule, alpha, matchKl: null, base: 0.5 * alpha });
      specs.push({ ...s, check: 'steer_consistency', label: 'steering consistency', primary: false, rule, alpha, matchKl: null, base: 0.6 });
    }
  }
  return specs;
}

/** Numbers consistent with a verdict: the CI of diff excludes 0 on the verdict's side (or contains it). */
function numbersFor(verdict: V, better: 'lower' | 'higher', base: number) {
  const favour = better === 'lower' ? -1 : 1; // sign of a difference in the g-SAE's favour
  const u = Math.max(0.002, Math.abs(base) * 0.05);
  const diff = verdict === 'reproduced' ? favour * 2 * u : verdict === 'not reproduced' ? -favour * 2 * u : favour * 0.3 * u;
  const half = u;
  return { topk: base, gsae: base + diff, diff, lo: diff - half, hi: diff + half, mde: half, p: verdict === 'inconclusive' ? 0.41 : 0.004 };
}

/**
 * The compare stage's `paired` rows for ks × BETAS × {val, test} × (aggregate + per seed), as
 * lib/eval/compare.ts writes them (with one seed the aggregate is that seed's row, relabelled). `fill` replaces every number and verdict (superseded or later runs, easy to spot).
 */
export function pairedRows(ks: number[], seeds: number[], withSteering: boolean, fill?: { value: number; verdict: V }): TableRow[] {
  const rows: TableRow[] = [];
  const nSeeds = seeds.length;
  for (const spec of checkSpecs(withSteering)) {
    for (const k of ks) {
      for (const beta of BETAS) {
        const star = beta === betaStarOf(k);
        for (const split of ['val', 'test']) {
          for (const seed of [null, ...seeds]) {
            const aggregate = seed === null;
            const atStar = aggregate && split === 'test' && star;
            let verdict: V = 'inconclusive';
            let holm: V | null = null;
            if (atStar) {
              const e = spec.primary ? EXPECTED[spec.claim][k] ?? { verdict: 'inconclusive', holm: 'inconclusive' } : { verdict: 'inconclusive' as V, holm: 'inconclusive' as V };
              verdict = e.verdict;
              holm = e.holm;
            } else if (aggregate && split === 'test' && spec.primary) {
              verdict = DECOY_VERDICT;
            }
            if (fill) {
              verdict = fill.verdict;
              holm = atStar ? fill.verdict : null;
            }
            const x = numbersFor(verdict, spec.better, spec.base + (seed ?? 0) * 0.001);
            const v = (n: number) => (fill ? fill.value : n);
            const overSeeds = aggregate && nSeeds >= 2;
            rows.push({
              claim: spec.claim,
              check: spec.check,
              label: spec.label,
              rule: spec.rule,
              better: spec.better,
              primary: spec.primary,
              split,
              k,
              beta,
              alpha: spec.alpha,
              match_kl: spec.matchKl,
              seed,
              seeds: aggregate ? nSeeds : 1,
              topk: v(x.topk),
              gsae: v(x.gsae),
              diff: v(x.diff),
              lo: v(x.lo),
              hi: v(x.hi),
              interval: overSeeds ? `t-interval over ${nSeeds} seeds of the per-seed paired differences` : aggregate ? `${spec.interval} (1 seed: evaluation noise only)` : spec.interval,
              n: overSeeds ? nSeeds : spec.n,
              p: v(x.p),
              verdict,
              mde: v(x.mde),
              is_beta_star: star,
              p_holm: atStar ? v(holm === verdict ? Math.min(1, x.p * 2) : 0.09) : null,
              verdict_holm: holm,
              change_rate: v(changeRate(k, beta)),
            });
          }
        }
      }
    }
  }
  return rows;
}

export function betaSelectionRows(ks: number[], fill?: number): TableRow[] {
  const rows: TableRow[] = [];
  for (const k of ks) {
    for (const beta of BETAS) {
      const chosen = beta === betaStarOf(k);
      const diff = chosen ? -0.004 : 0.001;
      const v = (n: number) => (fill ?? n);
      rows.push({
        k,
        beta,
        val_delta_ce_diff: v(diff),
        val_delta_ce_lo: v(diff - 0.002),
        val_delta_ce_hi: v(diff + 0.002),
        change_rate_val: v(changeRate(k, beta)),
        chosen,
        criterion: 'lowest val ΔCE difference g-SAE − TopK',
      });
    }
  }
  return rows;
}

export interface FixtureOptions {
  /** Leave out the steering tables (a pipeline that has not reached steering yet). */
  withoutSteering?: boolean;
  /** Only this many seeds (1 → CIs come from the stored bootstrap bounds). */
  seeds?: number;
}

export async function createSyntheticDb(file: string, opts: FixtureOptions = {}): Promise<void> {
  const seeds = SEEDS.slice(0, opts.seeds ?? SEEDS.length);
  const withSteering = !opts.withoutSteering;
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  const rand = mulberry32(1234);
  const noise = randn(rand);
  // The engine's own schema (tables and views), so the fixture cannot drift from it.
  for (const sql of ENGINE_SCHEMA) await c.run(sql);
  const params = {
    backend: 'wasm',
    corpus: { source: 'sotu' },
    tokenizer: { kind: 'bpe', vocab_size: 4096 },
    lm: { pretrained: null, n_layer: 4, d_model: 128, n_head: 4, n_ctx: 128 },
    collect: { layer: 2, site: 'resid_pre' },
    sae: { arch: [...ARCHS], k: KS, seeds, beta: BETAS, dead_tokens: 1000000, b_dec_init: 'geometric_median' },
    downstream: { bootstrap_resamples: 1000 },
    steering: { n_latents: 32, alphas: ALPHAS, contexts: 32, n_targets: 5, seed: 0, bootstrap_resamples: 1000 },
  };
  const env = { backend: 'wasm', node: 'v20 (synthetic)' };
  await c.run(`INSERT INTO runs VALUES
    ('run-old', TIMESTAMP '2025-01-01 10:00:00', TIMESTAMP '2025-01-01 11:00:00', 'aaaaaaa', ${sqlStr(JSON.stringify(params))}, '{}', ${sqlStr(JSON.stringify(env))}, 'wasm', 'ok', 'pipeline run', 1),
    ('run-new', TIMESTAMP '2025-01-02 10:00:00', TIMESTAMP '2025-01-02 12:00:00', 'bbbbbbb', ${sqlStr(JSON.stringify(params))}, '{"sae.seeds":[0,1]}', ${sqlStr(JSON.stringify(env))}, 'wasm', 'ok', 'pipeline run', 2)`);

  const metrics: string[] = [];
  const stageRuns: string[] = [];
  let seq = 0;
  const m = (run: string, stage: string, instance: string, name: string, step: number | null, value: number) =>
    metrics.push(`(${sqlStr(run)}, ${sqlStr(stage)}, ${sqlStr(instance)}, ${sqlStr(name)}, ${step === null ? 'NULL' : step}, ${value}, ${seq++})`);
  // Fingerprints are stable per (stage, instance) unless `fp` says otherwise (changed params).
  const sr = (stage: string, instance: string, status: string, seconds: number, run = 'run-new', fp = 'v1') =>
    stageRuns.push(
      `(${sqlStr(run)}, ${sqlStr(stage)}, ${sqlStr(instance)}, ${sqlStr(`${stage}${instance}`)}, ${sqlStr(`${fp}-${stage}-${instance}`)}, ${sqlStr(status)}, ${seconds}, ${sqlStr(status === 'cached' ? 'fingerprint unchanged' : 'new')}, NULL, NULL)`,
    );

  // tokenize and lm ran in the older run and are cached in the newer one: their numbers must
  // still reach the report (latest_metrics keeps the run that computed them).
  sr('tokenize', '{}', 'ran', 12.5, 'run-old');
  sr('lm', '{}', 'ran', 1800, 'run-old');
  sr('tokenize', '{}', 'cached', 0.01);
  sr('lm', '{}', 'cached', 0.02);
  sr('collect', '{}', 'ran', 35.5);
  sr('compare', '{}', 'ran', 4.5);
  sr('compare', '{}', 'ran', 4.5, 'run-old', 'v0');
  for (const [name, v] of Object.entries({ tokens_train: 1_860_000, tokens_val: 103_000, tokens_test: 104_000, vocab_size: 4096, bytes_per_token: 4.2 })) m('run-old', 'tokenize', '{}', name, null, v);
  for (let s = 0; s <= 20; s++) {
    const tokens = s * 100_000;
    m('run-old', 'lm', '{}', 'train_loss', tokens, 3.4 + 4.9 * Math.exp(-s / 4) + 0.03 * noise());
    if (s % 4 === 0) m('run-old', 'lm', '{}', 'val_loss', tokens, 3.6 + 4.8 * Math.exp(-s / 4));
  }
  m('run-old', 'lm', '{}', 'final_val_loss', null, 3.62);
  m('run-new', 'collect', '{}', 'mean_norm_x', null, 11.3);

  for (const key of saeInstances(KS, seeds)) {
    const { arch } = key;
    const k = Number(key.k);
    const seed = Number(key.seed);
    const beta = arch === 'gsae' ? Number(key.beta) : 0;
    const i = inst(key);
    sr('sae', i, 'ran', 120 + k);
    sr('downstream', i, 'ran', 20);
    if (withSteering) sr('steering', i, 'ran', 15);
    // SAE training curves.
    for (let s = 1; s <= 10; s++) {
      const tokens = s * 200_000;
      m('run-new', 'sae', i, 'fvu', tokens, (0.12 + 1 / k) * (1 + 2 * Math.exp(-s / 2)) + 0.004 * noise());
      m('run-new', 'sae', i, 'dead_frac', tokens, Math.max(0, (arch === 'gsae' ? 0.05 : 0.08) * (1 - Math.exp(-s / 3)) + 0.003 * noise()));
    }
    m('run-new', 'sae', i, 'final_fvu', null, 0.12 + 1 / k);
    // Downstream: seed-to-seed spread ±0.005 around the arm's mean.
    const jitter = (seed - 0.5) * 0.01;
    const gap = arch === 'gsae' ? (0.02 * beta) / (1 + beta) : 0;
    const dce = 0.4 / Math.sqrt(k) + 0.05 - gap + jitter;
    const ceClean = 3.62;
    const ceZero = 7.5;
    const put = (name: string, v: number, half = 0.01) => {
      m('run-new', 'downstream', i, name, null, v);
      m('run-new', 'downstream', i, `${name}_lo`, null, v - half);
      m('run-new', 'downstream', i, `${name}_hi`, null, v + half);
    };
    put('delta_ce', dce);
    put('loss_recovered', (ceZero - (ceClean + dce)) / (ceZero - ceClean), 0.003);
    put('kl', dce * 0.9, 0.008);
    put('fvu', 0.15 + 1 / k + (arch === 'gsae' ? 0.01 : 0) + jitter / 5);
    put('dead_frac', 0.04 + (arch === 'gsae' ? -0.01 * beta : 0) + jitter / 5 + (k === 16 ? 0.01 : 0), 0.004);
    m('run-new', 'downstream', i, 'l0', null, k);
    m('run-new', 'downstream', i, 'ce_clean', null, ceClean);
    m('run-new', 'downstream', i, 'ce_spliced', null, ceClean + dce);
    if (arch === 'gsae') {
      const gf = dce + gap * 1.5;
      put('delta_ce_gradfree', gf);
      put('loss_recovered_gradfree', (ceZero - (ceClean + gf)) / (ceZero - ceClean), 0.003);
      put('kl_gradfree', gf * 0.9, 0.008);
      put('fvu_gradfree', 0.15 + 1 / k + jitter / 5);
      m('run-new', 'downstream', i, 'change_rate', null, changeRate(k, beta) + jitter / 10);
    }
    // Superseded numbers from the older run: must not appear anywhere.
    sr('downstream', i, 'ran', 20, 'run-old', 'v0');
    m('run-old', 'downstream', i, 'delta_ce', null, 99);
    m('run-old', 'downstream', i, 'change_rate', null, 99);
    if (withSteering) sr('steering', i, 'ran', 15, 'run-old', 'v0');
  }
  await c.run(`INSERT INTO metrics VALUES ${metrics.join(',\n')}`);
  await c.run(`INSERT INTO stage_runs VALUES ${stageRuns.join(',\n')}`);

  if (withSteering) {
    for (const key of saeInstances(KS, seeds)) {
      const i = inst(key);
      const gsae = key.arch === 'gsae';
      const lat: TableRow[] = [];
      const sum: TableRow[] = [];
      for (const rule of RULES) {
        for (const alpha of ALPHAS) {
          const effects: number[] = [];
          const scale = rule === 'logit_lens' ? 0.1 : 1; // added probability vs log-probability rise
          const kl = (gsae ? 0.6 : 0.5) * alpha * alpha;
          for (let l = 0; l < 16; l++) {
            const e = scale * alpha * (gsae ? 0.6 : 0.4) * (1 + 0.3 * noise()) + (l % 5 === 0 ? -0.02 : 0);
            effects.push(e);
            lat.push({ rule, alpha, latent: l * 7 + Number(key.seed), effect: e, consistency: Math.min(1, 0.5 + e / 4), kl, targets: JSON.stringify(['the', 'nation']) });
          }
          const mean = effects.reduce((a, b) => a + b, 0) / effects.length;
          const cons = Math.min(1, 0.5 + mean / 4);
          sum.push({
            rule, alpha, n_latents: 16,
            effect_mean: mean, effect_lo: mean - 0.1 * scale, effect_hi: mean + 0.1 * scale,
            consistency_mean: cons, consistency_lo: cons - 0.03, consistency_hi: cons + 0.03,
            kl_mean: kl, kl_lo: kl * 0.8, kl_hi: kl * 1.2,
          });
        }
      }
      await writeProjectTable(c, 'steering_latents', 'run-new', 'steering', i, lat);
      await writeProjectTable(c, 'steering_summary', 'run-new', 'steering', i, sum);
      // Superseded.
      await writeProjectTable(c, 'steering_summary', 'run-old', 'steering', i, sum.map((r) => ({ ...r, effect_mean: 99, effect_lo: 98, effect_hi: 100, kl_mean: 99 })));
    }
  }
  await writeProjectTable(c, 'paired', 'run-new', 'compare', '{}', pairedRows(KS, seeds, withSteering));
  await writeProjectTable(c, 'beta_selection', 'run-new', 'compare', '{}', betaSelectionRows(KS));
  await writeProjectTable(c, 'paired', 'run-old', 'compare', '{}', pairedRows(KS, seeds, withSteering, { value: 99, verdict: 'not reproduced' }));
  await writeProjectTable(c, 'beta_selection', 'run-old', 'compare', '{}', betaSelectionRows(KS, 99));
  c.closeSync();
  instance.closeSync();
}

export interface ExtraRun {
  runId: string;
  /** 'YYYY-MM-DD HH:MM:SS', after the runs already in the database. */
  started: string;
  /** The run's sae.k list: its sae, downstream and steering instances are these k × the SAE matrix. */
  ks: number[];
  /** k values whose instances are cached with the first fingerprint ('v1', computed in run-new). */
  cachedKs?: number[];
  /** Fingerprint tag of the instances that run (those not in cachedKs). */
  fp: string;
  /** Every metric and table value those instances record (easy to spot in a report). */
  value: number;
  seeds?: number;
}

/**
 * TEST DATA ONLY: one more run in a database made by createSyntheticDb. tokenize, lm and collect
 * are cached (fingerprint v1); sae, downstream and steering instances of cachedKs are cached with
 * fingerprint v1 (their numbers are run-new's), the others run with fingerprint `fp` and record
 * `value` everywhere (ΔCE, dead fraction, FVU curves, steering rows). The compare stage (one
 * instance over all k) is cached with v1 when every k is cached, else it runs and writes `paired`
 * and `beta_selection` rows for run.ks holding `value` (verdicts 'inconclusive').
 */
export async function appendRun(file: string, run: ExtraRun): Promise<void> {
  const seeds = SEEDS.slice(0, run.seeds ?? SEEDS.length);
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  const hasSteering = (await c.runAndReadAll(`SELECT count(*)::INT AS n FROM information_schema.tables WHERE table_name = 'steering_summary'`)).getRowObjectsJS()[0].n === 1;
  const params = { sae: { arch: [...ARCHS], k: run.ks, seeds, beta: BETAS }, steering: { alphas: ALPHAS } };
  await c.run(`INSERT INTO runs VALUES (${sqlStr(run.runId)}, TIMESTAMP ${sqlStr(run.started)}, TIMESTAMP ${sqlStr(run.started)} + INTERVAL 1 HOUR,
    'ccccccc', ${sqlStr(JSON.stringify(params))}, ${sqlStr(JSON.stringify({ 'sae.k': run.ks }))}, '{"backend":"wasm"}', 'wasm', 'ok', 'pipeline run', 1)`);
  const stageRuns: string[] = [];
  const metrics: string[] = [];
  const sr = (stage: string, i: string, status: string, fp: string) =>
    stageRuns.push(`(${sqlStr(run.runId)}, ${sqlStr(stage)}, ${sqlStr(i)}, ${sqlStr(`${stage}${i}`)}, ${sqlStr(`${fp}-${stage}-${i}`)}, ${sqlStr(status)}, 1, ${sqlStr(status)}, NULL, NULL)`);
  let seq = 1_000_000;
  const m = (stage: string, i: string, name: string, step: number | null) =>
    metrics.push(`(${sqlStr(run.runId)}, ${sqlStr(stage)}, ${sqlStr(i)}, ${sqlStr(name)}, ${step === null ? 'NULL' : step}, ${run.value}, ${seq++})`);
  for (const stage of ['tokenize', 'lm', 'collect']) sr(stage, '{}', 'cached', 'v1');
  const compareCached = run.ks.every((k) => run.cachedKs?.includes(k));
  sr('compare', '{}', compareCached ? 'cached' : 'ran', compareCached ? 'v1' : run.fp);
  const v = run.value;
  for (const key of saeInstances(run.ks, seeds)) {
    const i = inst(key);
    const cached = run.cachedKs?.includes(Number(key.k)) ?? false;
    for (const stage of ['sae', 'downstream', ...(hasSteering ? ['steering'] : [])]) sr(stage, i, cached ? 'cached' : 'ran', cached ? 'v1' : run.fp);
    if (cached) continue;
    for (const step of [200_000, 400_000]) {
      m('sae', i, 'fvu', step);
      m('sae', i, 'dead_frac', step);
    }
    for (const name of ['delta_ce', 'loss_recovered', 'kl', 'fvu', 'dead_frac']) for (const suffix of ['', '_lo', '_hi']) m('downstream', i, `${name}${suffix}`, null);
    if (key.arch === 'gsae') {
      for (const suffix of ['', '_lo', '_hi']) m('downstream', i, `delta_ce_gradfree${suffix}`, null);
      m('downstream', i, 'change_rate', null);
    }
    if (hasSteering) {
      const sum: TableRow[] = [];
      const lat: TableRow[] = [];
      for (const rule of RULES) {
        for (const alpha of ALPHAS) {
          sum.push({ rule, alpha, n_latents: 16, effect_mean: v, effect_lo: v, effect_hi: v, consistency_mean: v, consistency_lo: v, consistency_hi: v, kl_mean: v, kl_lo: v, kl_hi: v });
          lat.push({ rule, alpha, latent: 1, effect: v, consistency: v, kl: v, targets: '[]' });
        }
      }
      await writeProjectTable(c, 'steering_summary', run.runId, 'steering', i, sum);
      await writeProjectTable(c, 'steering_latents', run.runId, 'steering', i, lat);
    }
  }
  await c.run(`INSERT INTO stage_runs VALUES ${stageRuns.join(',\n')}`);
  if (metrics.length) await c.run(`INSERT INTO metrics VALUES ${metrics.join(',\n')}`);
  if (!compareCached) {
    await writeProjectTable(c, 'paired', run.runId, 'compare', '{}', pairedRows(run.ks, seeds, hasSteering, { value: v, verdict: 'inconclusive' }));
    await writeProjectTable(c, 'beta_selection', run.runId, 'compare', '{}', betaSelectionRows(run.ks, v));
  }
  c.closeSync();
  instance.closeSync();
}

/** TEST DATA ONLY: a small made-up latent browser payload. */
export function syntheticLatentBrowser(): LatentBrowserData {
  const words = ' The Congress shall have power to lay and collect taxes , duties , imposts and excises\n to pay the debts'.split(/(?=\s)/);
  const out: LatentBrowserData = [];
  for (const arch of ['topk', 'gsae']) {
    for (const latent of [3, 141]) {
      out.push({
        arch,
        k: 16,
        ...(arch === 'gsae' ? { beta: 2, betaStar: true } : {}),
        latent: latent + (arch === 'gsae' ? 1 : 0),
        seed: 0,
        contexts: [0, 1].map((c) => ({
          tokens: words.slice(c * 3, c * 3 + 12),
          acts: words.slice(c * 3, c * 3 + 12).map((_, j) => (j === 5 + c ? 4.2 : j % 3 === 0 ? 0.8 : 0)),
        })),
        promoted: [' taxes', ' duties', ' <b>', '\n', ' revenue'],
        note: 'synthetic test data',
      });
    }
  }
  return out;
}
