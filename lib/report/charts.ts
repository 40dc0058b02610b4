/**
 * The report's charts: each one is a SQL query over results.duckdb plus a function turning its
 * rows into a Vega-Lite spec with the rows inlined, so the .vl.json file is self-contained.
 * Every query is scoped to the reported run (sql.ts: only the instances it ran or cached).
 */
import type { TopLevelSpec } from 'vega-lite';
import type { Row } from './db.ts';
import {
  DEFAULT_STAGES,
  curveSql,
  finalMetricsOverSeedsSql,
  steeringLatentsSql,
  steeringOverSeedsSql,
  type StageNames,
} from './sql.ts';

export interface ChartDef {
  /** File stem: <name>.vl.json, <name>.svg; also the page anchor. */
  name: string;
  title: string;
  /** Report section the chart belongs to. */
  section: 'Downstream faithfulness' | 'Dead latents' | 'Steering' | 'Training';
  /** The stage whose rows the chart needs (for the "no data" note). */
  stage: string;
  /** Tables or views the query reads; when one is missing the chart is "no data", not an error. */
  tables: string[];
  sql: string;
  spec(rows: Row[]): TopLevelSpec;
  caption: string;
}

export const VL_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

const ARCH_LABEL: Record<string, string> = { topk: 'TopK', gsae: 'g-SAE' };
const SERIES_ORDER = ['TopK', 'g-SAE', 'g-SAE (gradient-free eval)'];
const SERIES_COLOR: Record<string, string> = {
  TopK: '#4c78a8',
  'g-SAE': '#e45756',
  'g-SAE (gradient-free eval)': '#f58518',
};

export function archLabel(arch: unknown): string {
  const a = String(arch ?? '');
  return ARCH_LABEL[a] ?? a;
}

/** Display label of a (arch, variant) series. */
export function seriesLabel(arch: unknown, variant: unknown): string {
  const base = archLabel(arch);
  return variant ? `${base} (${variant} eval)` : base;
}

function withSeries(rows: Row[]): Row[] {
  return rows.map((r) => ({ ...r, series: seriesLabel(r.arch, r.variant) }));
}

function colorScale(rows: Row[], field = 'series') {
  const present = new Set(rows.map((r) => String(r[field])));
  const domain = [...SERIES_ORDER.filter((s) => present.has(s)), ...[...present].filter((s) => !SERIES_ORDER.includes(s)).sort()];
  const palette = ['#54a24b', '#b279a2', '#9d755d', '#72b7b2'];
  const range = domain.map((s, i) => SERIES_COLOR[s] ?? palette[i % palette.length]);
  return { domain, range };
}

function distinctNumbers(rows: Row[], field: string): number[] {
  return [...new Set(rows.map((r) => r[field]).filter((v): v is number => typeof v === 'number'))].sort((a, b) => a - b);
}

const fmt = (field: string, title: string, format = '.4g') => ({ field, type: 'quantitative' as const, title, format });

/**
 * Mean over seeds vs k with a 95% CI band (area + error rules), one line per series.
 * Faceted in columns by `facetField` when given (e.g. alpha for steering).
 */
function perKSpec(opts: {
  title: string;
  yTitle: string;
  rows: Row[];
  facetField?: string;
  facetTitle?: string;
  xField?: string;
  xTitle?: string;
}): TopLevelSpec {
  const rows = withSeries(opts.rows);
  const xField = opts.xField ?? 'k';
  const xs = distinctNumbers(rows, xField);
  const positive = xs.length > 0 && xs[0] > 0;
  const x = {
    field: xField,
    type: 'quantitative' as const,
    title: opts.xTitle ?? 'k (active latents per token)',
    scale: positive ? { type: 'log' as const, base: 2, nice: false, padding: 12 } : { zero: false, padding: 12 },
    axis: { values: xs, format: '~g' },
  };
  const legend = { symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolOpacity: 1, symbolSize: 300 };
  const color = { field: 'series', type: 'nominal' as const, title: 'SAE', scale: colorScale(rows), legend };
  const tooltip = [
    { field: 'series', type: 'nominal' as const, title: 'SAE' },
    { field: xField, type: 'quantitative' as const, title: opts.xTitle ?? 'k' },
    ...(opts.facetField ? [{ field: opts.facetField, type: 'quantitative' as const, title: opts.facetTitle ?? opts.facetField }] : []),
    fmt('mean', 'mean'),
    fmt('lo', '95% CI low'),
    fmt('hi', '95% CI high'),
    { field: 'n_seeds', type: 'quantitative' as const, title: 'seeds' },
    { field: 'ci', type: 'nominal' as const, title: 'CI method' },
  ];
  const layer = [
    {
      mark: { type: 'area' as const, opacity: 0.15 },
      encoding: { x, y: { field: 'lo', type: 'quantitative' as const }, y2: { field: 'hi' }, color },
    },
    {
      mark: { type: 'rule' as const, strokeWidth: 1.5 },
      encoding: { x, y: { field: 'lo', type: 'quantitative' as const }, y2: { field: 'hi' }, color },
    },
    {
      mark: { type: 'line' as const, point: true },
      encoding: {
        x,
        y: { field: 'mean', type: 'quantitative' as const, title: opts.yTitle, scale: { zero: false } },
        color,
        strokeDash: {
          field: 'series',
          type: 'nominal' as const,
          title: 'SAE',
          legend,
          scale: { domain: colorScale(rows).domain, range: colorScale(rows).domain.map((s) => (s.includes('gradient-free') ? [5, 3] : [1, 0])) },
        },
        tooltip,
      },
    },
  ];
  if (opts.facetField) {
    return {
      $schema: VL_SCHEMA,
      title: opts.title,
      data: { values: rows },
      facet: { column: { field: opts.facetField, type: 'ordinal', title: opts.facetTitle ?? opts.facetField } },
      spec: { width: 260, height: 220, layer },
    } as TopLevelSpec;
  }
  return { $schema: VL_SCHEMA, title: opts.title, width: 380, height: 240, data: { values: rows }, layer } as TopLevelSpec;
}

/** A training curve: value vs tokens, colour by arch, one line per seed, columns by k. */
function curveSpec(title: string, yTitle: string, rows: Row[]): TopLevelSpec {
  const data = rows.map((r) => ({ ...r, series: archLabel(r.arch) }));
  return {
    $schema: VL_SCHEMA,
    title,
    data: { values: data },
    facet: { column: { field: 'k', type: 'ordinal', title: 'k' } },
    spec: {
      width: 220,
      height: 180,
      mark: { type: 'line', strokeWidth: 1.2, opacity: 0.85 },
      encoding: {
        x: { field: 'tokens', type: 'quantitative', title: 'training tokens', axis: { format: '~s' } },
        y: { field: 'value', type: 'quantitative', title: yTitle, scale: { zero: false } },
        color: { field: 'series', type: 'nominal', title: 'SAE', scale: colorScale(data) },
        detail: { field: 'seed', type: 'nominal' },
        tooltip: [
          { field: 'series', type: 'nominal', title: 'SAE' },
          { field: 'seed', type: 'nominal' },
          { field: 'tokens', type: 'quantitative', format: ',' },
          { field: 'value', type: 'quantitative', format: '.4g' },
        ],
      },
    },
    resolve: { scale: { x: 'independent' } },
  } as TopLevelSpec;
}

const CI_NOTE =
  'Line: mean over seeds; band and bars: 95% CI (Student-t over the per-seed values; with one seed, the stored bootstrap CI of that seed).';

/** Tables and views a metrics chart reads (scoped to a run: stage_runs and runs too). */
const METRICS_TABLES = ['metrics', 'stage_runs', 'runs'];

/** The charts of the report of run `runId` (null: no run recorded, every chart is empty). */
export function chartDefs(runId: string | null, stages: Partial<StageNames> = {}): ChartDef[] {
  const S = { ...DEFAULT_STAGES, ...stages };
  const downstream = (name: string, title: string, yTitle: string, metric: string, caption: string, section: ChartDef['section'] = 'Downstream faithfulness', gradfree = true): ChartDef => ({
    name,
    title,
    section,
    stage: S.downstream,
    tables: METRICS_TABLES,
    sql: finalMetricsOverSeedsSql(runId, S.downstream, gradfree ? [metric, `${metric}_gradfree`] : [metric]),
    spec: (rows) => perKSpec({ title, yTitle, rows }),
    caption: `${caption} ${CI_NOTE}`,
  });
  return [
    downstream(
      'delta_ce_vs_k',
      'ΔCE vs k (spliced − clean cross-entropy)',
      'ΔCE (nats/token)',
      'delta_ce',
      'Increase in the LM\'s next-token cross-entropy on held-out tokens when the SAE reconstruction replaces the residual at the hook. Lower is more faithful (claim 1). The dashed series is the g-SAE evaluated without gradients (plain TopK selection at inference).',
    ),
    downstream(
      'loss_recovered_vs_k',
      'Loss recovered vs k',
      'loss recovered',
      'loss_recovered',
      '(CE_zero − CE_spliced) / (CE_zero − CE_clean): the fraction of the loss gap to zero-ablation that the reconstruction recovers. Higher is better (claim 1).',
    ),
    downstream(
      'kl_vs_k',
      'KL(clean ‖ spliced) vs k',
      'KL (nats/token)',
      'kl',
      'Mean over held-out positions of the KL divergence from the clean to the spliced next-token distribution. Lower is better (claim 1).',
    ),
    downstream(
      'fvu_vs_k',
      'FVU vs k (held-out activations)',
      'fraction of variance unexplained',
      'fvu',
      'Reconstruction error ‖x − x̂‖² / ‖x − mean(x)‖² on held-out activations. Not a paper claim: the g-SAE trades some reconstruction for faithfulness.',
    ),
    downstream(
      'dead_frac_vs_k',
      'Dead latents vs k',
      'dead fraction',
      'dead_frac',
      'Fraction of latents that never fire on the held-out set and did not fire during the last dead_tokens of training. Lower is better (claim 2).',
      'Dead latents',
      false,
    ),
    {
      name: 'steering_effect_vs_k',
      title: 'Steering effect vs k',
      section: 'Steering',
      stage: S.steering,
      tables: ['steering_summary', 'runs', 'stage_runs'],
      sql: steeringOverSeedsSql(runId, ['effect'], S.steering),
      spec: (rows) => perKSpec({ title: 'Steering effect vs k', yTitle: 'mean rise of log p(targets)', rows, facetField: 'alpha', facetTitle: 'α (steering scale)' }),
      caption:
        'Per SAE: mean over sampled alive latents of the rise in log-probability of the latent\'s 5 target tokens (chosen on a calibration half) on held-out evaluation contexts, steering with α · r · W_dec[i] at every position. Higher is better (claim 3). One column per α. ' +
        'Per seed the steering stage stores a bootstrap CI over latents; across seeds: ' + CI_NOTE,
    },
    {
      name: 'steering_consistency_vs_k',
      title: 'Steering consistency vs k',
      section: 'Steering',
      stage: S.steering,
      tables: ['steering_summary', 'runs', 'stage_runs'],
      sql: steeringOverSeedsSql(runId, ['consistency'], S.steering),
      spec: (rows) => perKSpec({ title: 'Steering consistency vs k', yTitle: 'fraction of positions where log p(targets) rises', rows, facetField: 'alpha', facetTitle: 'α (steering scale)' }),
      caption: 'Per SAE: mean over sampled latents of the fraction of evaluation positions where the target tokens\' log-probability rises. Higher is better. ' + CI_NOTE,
    },
    {
      name: 'steering_effect_vs_alpha',
      title: 'Steering effect vs α',
      section: 'Steering',
      stage: S.steering,
      tables: ['steering_summary', 'runs', 'stage_runs'],
      sql: steeringOverSeedsSql(runId, ['effect'], S.steering),
      spec: (rows) =>
        perKSpec({ title: 'Steering effect vs α', yTitle: 'mean rise of log p(targets)', rows, xField: 'alpha', xTitle: 'α (steering scale, × mean ‖x‖)', facetField: 'k', facetTitle: 'k' }),
      caption: 'The same effect as a function of the steering scale α, one column per k. ' + CI_NOTE,
    },
    {
      name: 'steering_kl_vs_k',
      title: 'KL(steered ‖ clean) vs k',
      section: 'Steering',
      stage: S.steering,
      tables: ['steering_summary', 'runs', 'stage_runs'],
      sql: steeringOverSeedsSql(runId, ['kl'], S.steering),
      spec: (rows) => perKSpec({ title: 'KL(steered ‖ clean) vs k', yTitle: 'KL (nats/token)', rows, facetField: 'alpha', facetTitle: 'α (steering scale)' }),
      caption: 'How much steering moves the whole next-token distribution (not only the targets). Context for the effect: a larger effect at equal KL is a more targeted latent. ' + CI_NOTE,
    },
    {
      name: 'steering_effect_distribution',
      title: 'Per-latent steering effect, by SAE',
      section: 'Steering',
      stage: S.steering,
      tables: ['steering_latents', 'runs', 'stage_runs'],
      sql: steeringLatentsSql(runId, S.steering),
      spec: (rows) => {
        const data = rows.map((r) => ({ ...r, series: archLabel(r.arch) }));
        return {
          $schema: VL_SCHEMA,
          title: 'Per-latent steering effect, by SAE',
          data: { values: data },
          facet: {
            column: { field: 'k', type: 'ordinal', title: 'k' },
            row: { field: 'alpha', type: 'ordinal', title: 'α' },
          },
          spec: {
            width: 120,
            height: 160,
            mark: { type: 'boxplot', extent: 'min-max', size: 28 },
            encoding: {
              x: { field: 'series', type: 'nominal', title: null, sort: SERIES_ORDER },
              y: { field: 'effect', type: 'quantitative', title: 'effect (Δ log p)' },
              color: { field: 'series', type: 'nominal', title: 'SAE', scale: colorScale(data) },
            },
          },
        } as TopLevelSpec;
      },
      caption: 'Distribution over sampled latents (all seeds pooled) of the per-latent steering effect: box = quartiles, whiskers = min and max. A higher median with a shorter lower tail means fewer latents that do nothing when steered.',
    },
    {
      name: 'lm_loss_curve',
      title: 'Language model: train and validation loss',
      section: 'Training',
      stage: S.lm,
      tables: METRICS_TABLES,
      sql: curveSql(runId, S.lm, ['train_loss', 'val_loss'], false),
      spec: (rows) =>
        ({
          $schema: VL_SCHEMA,
          title: 'Language model: train and validation loss',
          width: 420,
          height: 240,
          data: { values: rows },
          mark: { type: 'line', point: { size: 12 } },
          encoding: {
            x: { field: 'tokens', type: 'quantitative', title: 'tokens seen', axis: { format: '~s' } },
            y: { field: 'value', type: 'quantitative', title: 'cross-entropy (nats/token)', scale: { zero: false } },
            color: { field: 'metric', type: 'nominal', title: 'split', scale: { domain: ['train_loss', 'val_loss'], range: ['#4c78a8', '#f58518'] } },
            tooltip: [
              { field: 'metric', type: 'nominal' },
              { field: 'tokens', type: 'quantitative', format: ',' },
              { field: 'value', type: 'quantitative', format: '.4f' },
            ],
          },
        }) as TopLevelSpec,
      caption: 'Next-token cross-entropy of the language model whose residual stream the SAEs decompose, on training batches and on the validation split.',
    },
    {
      name: 'sae_training_fvu',
      title: 'SAE training: FVU vs tokens',
      section: 'Training',
      stage: S.sae,
      tables: METRICS_TABLES,
      sql: curveSql(runId, S.sae, ['fvu']),
      spec: (rows) => curveSpec('SAE training: FVU vs tokens', 'FVU (training batches)', rows),
      caption: 'Fraction of variance unexplained on training batches during SAE training; one line per seed, one column per k.',
    },
    {
      name: 'sae_training_dead_frac',
      title: 'SAE training: dead fraction vs tokens',
      section: 'Training',
      stage: S.sae,
      tables: METRICS_TABLES,
      sql: curveSql(runId, S.sae, ['dead_frac']),
      spec: (rows) => curveSpec('SAE training: dead fraction vs tokens', 'dead fraction', rows),
      caption: 'Fraction of latents that have not fired for dead_tokens tokens, during SAE training; one line per seed, one column per k.',
    },
  ];
}
