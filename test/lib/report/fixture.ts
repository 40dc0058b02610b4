/**
 * TEST DATA ONLY: a synthetic results.duckdb in the schema of docs/CONTRACTS.md, with made-up
 * numbers shaped so the report has something in every chart and every verdict kind appears:
 *   ΔCE:        g-SAE clearly better at k = 8, 16 (reproduced), overlapping at k = 32 (inconclusive)
 *   dead_frac:  g-SAE better at k = 8, TopK better at k = 32 (not reproduced)
 * An older run holds superseded values (99) that must never reach the report.
 * appendRun adds later runs with other k sets (the smoke preset next to the default one).
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { ENGINE_SCHEMA } from '../../../pipeline/db.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import type { LatentBrowserData } from '../../../lib/report/types.ts';

export const KS = [8, 16, 32];
export const SEEDS = [0, 1, 2];
export const ALPHAS = [2, 4];
export const ARCHS = ['topk', 'gsae'] as const;

const sqlStr = (s: string) => `'${s.replace(/'/g, "''")}'`;
const inst = (o: Record<string, unknown>) => JSON.stringify(o);

export interface FixtureOptions {
  /** Leave out the steering tables (a pipeline that has not reached steering yet). */
  withoutSteering?: boolean;
  /** Only this many seeds (1 → CIs come from the stored bootstrap bounds). */
  seeds?: number;
}

export async function createSyntheticDb(file: string, opts: FixtureOptions = {}): Promise<void> {
  const seeds = SEEDS.slice(0, opts.seeds ?? SEEDS.length);
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
    sae: { arch: [...ARCHS], k: KS, seeds, beta: 1, dead_tokens: 1000000, b_dec_init: 'geometric_median' },
    downstream: { bootstrap_resamples: 1000 },
    steering: { n_latents: 32, alphas: ALPHAS, contexts: 32, n_targets: 5, seed: 0, bootstrap_resamples: 1000 },
  };
  const env = { backend: 'wasm', node: 'v20 (synthetic)' };
  await c.run(`INSERT INTO runs VALUES
    ('run-old', TIMESTAMP '2025-01-01 10:00:00', TIMESTAMP '2025-01-01 11:00:00', 'aaaaaaa', ${sqlStr(JSON.stringify(params))}, '{}', ${sqlStr(JSON.stringify(env))}, 'wasm', 'ok', 'pipeline run', 1),
    ('run-new', TIMESTAMP '2025-01-02 10:00:00', TIMESTAMP '2025-01-02 12:00:00', 'bbbbbbb', ${sqlStr(JSON.stringify(params))}, '{"sae.seeds":[0,1,2]}', ${sqlStr(JSON.stringify(env))}, 'wasm', 'ok', 'pipeline run', 2)`);

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
  for (const [name, v] of Object.entries({ tokens_train: 1_860_000, tokens_val: 103_000, tokens_test: 104_000, vocab_size: 4096, bytes_per_token: 4.2 })) m('run-old', 'tokenize', '{}', name, null, v);
  for (let s = 0; s <= 20; s++) {
    const tokens = s * 100_000;
    m('run-old', 'lm', '{}', 'train_loss', tokens, 3.4 + 4.9 * Math.exp(-s / 4) + 0.03 * noise());
    if (s % 4 === 0) m('run-old', 'lm', '{}', 'val_loss', tokens, 3.6 + 4.8 * Math.exp(-s / 4));
  }
  m('run-old', 'lm', '{}', 'final_val_loss', null, 3.62);
  m('run-new', 'collect', '{}', 'mean_norm_x', null, 11.3);

  for (const arch of ARCHS) {
    for (const k of KS) {
      for (const seed of seeds) {
        const i = inst({ arch, k, seed });
        sr('sae', i, 'ran', 120 + k);
        sr('downstream', i, 'ran', 20);
        if (!opts.withoutSteering) sr('steering', i, 'ran', 15);
        // SAE training curves.
        for (let s = 1; s <= 10; s++) {
          const tokens = s * 200_000;
          m('run-new', 'sae', i, 'fvu', tokens, (0.12 + 1 / k) * (1 + 2 * Math.exp(-s / 2)) + 0.004 * noise());
          m('run-new', 'sae', i, 'dead_frac', tokens, Math.max(0, (arch === 'gsae' ? 0.05 : 0.08) * (1 - Math.exp(-s / 3)) + 0.003 * noise()));
        }
        m('run-new', 'sae', i, 'final_fvu', null, 0.12 + 1 / k);
        // Downstream: seed-to-seed spread ±0.005 around the arm's mean.
        const jitter = (seed - 1) * 0.005;
        const gap = k === 32 ? 0.002 : 0.05; // overlap at k = 32
        const dce = 0.4 / Math.sqrt(k) + 0.05 + (arch === 'gsae' ? -gap : 0) + jitter;
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
        const dead = k === 8 ? (arch === 'gsae' ? 0.01 : 0.06) : k === 32 ? (arch === 'gsae' ? 0.09 : 0.03) : 0.04 + (arch === 'gsae' ? 0.001 : 0);
        put('dead_frac', dead + jitter / 5, 0.004);
        m('run-new', 'downstream', i, 'l0', null, k);
        m('run-new', 'downstream', i, 'ce_clean', null, ceClean);
        m('run-new', 'downstream', i, 'ce_spliced', null, ceClean + dce);
        if (arch === 'gsae') {
          const gf = dce + gap * 1.5;
          put('delta_ce_gradfree', gf);
          put('loss_recovered_gradfree', (ceZero - (ceClean + gf)) / (ceZero - ceClean), 0.003);
          put('kl_gradfree', gf * 0.9, 0.008);
          put('fvu_gradfree', 0.15 + 1 / k + jitter / 5);
        }
        // Superseded numbers from the older run: must not appear anywhere.
        sr('downstream', i, 'ran', 20, 'run-old', 'v0');
        m('run-old', 'downstream', i, 'delta_ce', null, 99);
        if (!opts.withoutSteering) sr('steering', i, 'ran', 15, 'run-old', 'v0');
      }
    }
  }
  await c.run(`INSERT INTO metrics VALUES ${metrics.join(',\n')}`);
  await c.run(`INSERT INTO stage_runs VALUES ${stageRuns.join(',\n')}`);

  if (!opts.withoutSteering) {
    await c.run(`
      CREATE TABLE steering_latents(run_id VARCHAR, stage VARCHAR, instance JSON, alpha DOUBLE, latent DOUBLE, effect DOUBLE, consistency DOUBLE, kl DOUBLE, targets VARCHAR);
      CREATE TABLE steering_summary(run_id VARCHAR, stage VARCHAR, instance JSON, alpha DOUBLE, n_latents DOUBLE,
        effect_mean DOUBLE, effect_lo DOUBLE, effect_hi DOUBLE, consistency_mean DOUBLE, consistency_lo DOUBLE, consistency_hi DOUBLE,
        kl_mean DOUBLE, kl_lo DOUBLE, kl_hi DOUBLE);
    `);
    const lat: string[] = [];
    const sum: string[] = [];
    for (const arch of ARCHS) {
      for (const k of KS) {
        for (const seed of seeds) {
          const i = inst({ arch, k, seed });
          for (const alpha of ALPHAS) {
            const effects: number[] = [];
            for (let l = 0; l < 16; l++) {
              const e = alpha * (arch === 'gsae' ? 0.6 : 0.4) * (1 + 0.3 * noise()) + (l % 5 === 0 ? -0.2 : 0);
              effects.push(e);
              lat.push(`('run-new', 'steering', ${sqlStr(i)}, ${alpha}, ${l * 7 + seed}, ${e}, ${Math.min(1, 0.5 + e / 4)}, ${0.05 * alpha}, ${sqlStr(JSON.stringify(['the', 'nation']))})`);
            }
            const mean = effects.reduce((a, b) => a + b, 0) / effects.length;
            const cons = Math.min(1, 0.5 + mean / 4);
            sum.push(`('run-new', 'steering', ${sqlStr(i)}, ${alpha}, 16, ${mean}, ${mean - 0.1}, ${mean + 0.1}, ${cons}, ${cons - 0.03}, ${cons + 0.03}, ${0.05 * alpha}, ${0.04 * alpha}, ${0.06 * alpha})`);
            // Superseded.
            sum.push(`('run-old', 'steering', ${sqlStr(i)}, ${alpha}, 16, 99, 98, 100, 0.99, 0.98, 1, 99, 98, 100)`);
          }
        }
      }
    }
    await c.run(`INSERT INTO steering_latents VALUES ${lat.join(',\n')}`);
    await c.run(`INSERT INTO steering_summary VALUES ${sum.join(',\n')}`);
  }
  c.closeSync();
  instance.closeSync();
}

export interface ExtraRun {
  runId: string;
  /** 'YYYY-MM-DD HH:MM:SS', after the runs already in the database. */
  started: string;
  /** The run's sae.k list: its sae, downstream and steering instances are these k × ARCHS × seeds. */
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
 * `value` everywhere (ΔCE, dead fraction, FVU curves, steering rows). Steering rows are written
 * only if the steering tables exist.
 */
export async function appendRun(file: string, run: ExtraRun): Promise<void> {
  const seeds = SEEDS.slice(0, run.seeds ?? SEEDS.length);
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  const hasSteering = (await c.runAndReadAll(`SELECT count(*)::INT AS n FROM information_schema.tables WHERE table_name = 'steering_summary'`)).getRowObjectsJS()[0].n === 1;
  const params = { sae: { arch: [...ARCHS], k: run.ks, seeds }, steering: { alphas: ALPHAS } };
  await c.run(`INSERT INTO runs VALUES (${sqlStr(run.runId)}, TIMESTAMP ${sqlStr(run.started)}, TIMESTAMP ${sqlStr(run.started)} + INTERVAL 1 HOUR,
    'ccccccc', ${sqlStr(JSON.stringify(params))}, ${sqlStr(JSON.stringify({ 'sae.k': run.ks }))}, '{"backend":"wasm"}', 'wasm', 'ok', 'pipeline run', 1)`);
  const stageRuns: string[] = [];
  const metrics: string[] = [];
  const sum: string[] = [];
  const lat: string[] = [];
  const sr = (stage: string, i: string, status: string, fp: string) =>
    stageRuns.push(`(${sqlStr(run.runId)}, ${sqlStr(stage)}, ${sqlStr(i)}, ${sqlStr(`${stage}${i}`)}, ${sqlStr(`${fp}-${stage}-${i}`)}, ${sqlStr(status)}, 1, ${sqlStr(status)}, NULL, NULL)`);
  let seq = 1_000_000;
  const m = (stage: string, i: string, name: string, step: number | null) =>
    metrics.push(`(${sqlStr(run.runId)}, ${sqlStr(stage)}, ${sqlStr(i)}, ${sqlStr(name)}, ${step === null ? 'NULL' : step}, ${run.value}, ${seq++})`);
  for (const stage of ['tokenize', 'lm', 'collect']) sr(stage, '{}', 'cached', 'v1');
  for (const arch of ARCHS) {
    for (const k of run.ks) {
      for (const seed of seeds) {
        const i = inst({ arch, k, seed });
        const cached = run.cachedKs?.includes(k) ?? false;
        for (const stage of ['sae', 'downstream', ...(hasSteering ? ['steering'] : [])]) sr(stage, i, cached ? 'cached' : 'ran', cached ? 'v1' : run.fp);
        if (cached) continue;
        for (const step of [200_000, 400_000]) {
          m('sae', i, 'fvu', step);
          m('sae', i, 'dead_frac', step);
        }
        for (const name of ['delta_ce', 'loss_recovered', 'kl', 'fvu', 'dead_frac']) for (const suffix of ['', '_lo', '_hi']) m('downstream', i, `${name}${suffix}`, null);
        if (arch === 'gsae') for (const suffix of ['', '_lo', '_hi']) m('downstream', i, `delta_ce_gradfree${suffix}`, null);
        for (const alpha of ALPHAS) {
          const v = run.value;
          sum.push(`(${sqlStr(run.runId)}, 'steering', ${sqlStr(i)}, ${alpha}, 16, ${v}, ${v}, ${v}, ${v}, ${v}, ${v}, ${v}, ${v}, ${v})`);
          lat.push(`(${sqlStr(run.runId)}, 'steering', ${sqlStr(i)}, ${alpha}, 1, ${v}, ${v}, ${v}, '[]')`);
        }
      }
    }
  }
  await c.run(`INSERT INTO stage_runs VALUES ${stageRuns.join(',\n')}`);
  if (metrics.length) await c.run(`INSERT INTO metrics VALUES ${metrics.join(',\n')}`);
  if (hasSteering && sum.length) {
    await c.run(`INSERT INTO steering_summary VALUES ${sum.join(',\n')}`);
    await c.run(`INSERT INTO steering_latents VALUES ${lat.join(',\n')}`);
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
