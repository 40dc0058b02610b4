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
  pairedSql,
  steeringEffectVsKlSql,
  steeringLatentsSql,
  steeringOverSeedsSql,
  type StageNames,
} from './sql.ts';
import { ruleLabel, STATS_TEXT, STEERING_RULE_TEXT } from './texts.ts';
import { type DownstreamMetric, type VariantMetric, variantMetric } from '../eval/metricNames.ts';

export interface ChartDef {
  /** File stem: <name>.vl.json, <name>.svg; also the page anchor. */
  name: string;
  title: string;
  /** Report section the chart belongs to. */
  section: 'Paired differences and β' | 'Downstream faithfulness' | 'Dead latents' | 'Steering' | 'Training';
  /** The stage whose rows the chart needs (for the "no data" note). */
  stage: string;
  /** Tables or views the query reads; when one is missing the chart is "no data", not an error. */
  tables: string[];
  /** Columns the query needs that older databases may lack: [table, column]; missing → "no data". */
  columns?: Array<[string, string]>;
  sql: string;
  /** Metric names of `stage` the query reads (a complete run records every one: the e2e test checks). */
  metrics?: string[];
  spec(rows: Row[]): TopLevelSpec;
  caption: string;
}

export const VL_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

const ARCH_LABEL: Record<string, string> = { topk: 'TopK', gsae: 'g-SAE' };
const TOPK_COLOR = '#4c78a8';
/** g-SAE colours by β rank (the gradient-free series of a β shares its colour, dashed). */
const GSAE_COLORS = ['#e45756', '#f58518', '#b279a2', '#9d755d', '#54a24b', '#eeca3b', '#ff9da6', '#72b7b2'];
const OTHER_COLORS = ['#bab0ac', '#79706e', '#d67195', '#439894'];

export function archLabel(arch: unknown): string {
  const a = String(arch ?? '');
  return ARCH_LABEL[a] ?? a;
}

export function fmtBeta(beta: number): string {
  return String(Number(beta.toPrecision(4)));
}

/** Display label of an (arch, β, variant) series: 'TopK', 'g-SAE β=0.5', 'g-SAE β=0.5 (gradient-free eval)'. */
export function seriesLabel(arch: unknown, variant: unknown, beta?: unknown): string {
  const base = archLabel(arch) + (typeof beta === 'number' ? ` β=${fmtBeta(beta)}` : '');
  return variant ? `${base} (${variant} eval)` : base;
}

function withSeries(rows: Row[]): Row[] {
  return rows.map((r) => ({ ...r, series: seriesLabel(r.arch, r.variant, r.beta) }));
}

/** Series in display order (TopK, then g-SAE by β, each β's gradient-free series after it) with colours. */
function colorScale(rows: Row[]) {
  const seen = new Map<string, { arch: string; beta: number | null; gradfree: boolean }>();
  for (const r of rows) {
    const label = String(r.series);
    if (!seen.has(label)) seen.set(label, { arch: String(r.arch ?? ''), beta: typeof r.beta === 'number' ? r.beta : null, gradfree: Boolean(r.variant) });
  }
  const rank = (arch: string) => (arch === 'topk' ? 0 : arch === 'gsae' ? 1 : 2);
  const domain = [...seen.keys()].sort((a, b) => {
    const x = seen.get(a)!;
    const y = seen.get(b)!;
    return rank(x.arch) - rank(y.arch) || (x.beta ?? -Infinity) - (y.beta ?? -Infinity) || Number(x.gradfree) - Number(y.gradfree) || a.localeCompare(b);
  });
  const betas = [...new Set([...seen.values()].filter((v) => v.arch === 'gsae').map((v) => v.beta ?? -Infinity))].sort((a, b) => a - b);
  let other = 0;
  const range = domain.map((label) => {
    const v = seen.get(label)!;
    if (v.arch === 'topk') return TOPK_COLOR;
    if (v.arch === 'gsae') return GSAE_COLORS[betas.indexOf(v.beta ?? -Infinity) % GSAE_COLORS.length];
    return OTHER_COLORS[other++ % OTHER_COLORS.length];
  });
  const dash = domain.map((label) => (seen.get(label)!.gradfree ? [5, 3] : [1, 0]));
  return { domain, range, dash };
}

function distinctNumbers(rows: Row[], field: string): number[] {
  return [...new Set(rows.map((r) => r[field]).filter((v): v is number => typeof v === 'number'))].sort((a, b) => a - b);
}

/** A log₂ axis when every value is positive (k, α, β grids are roughly geometric), else linear. */
function gridAxis(rows: Row[], field: string, title: string) {
  const xs = distinctNumbers(rows, field);
  const positive = xs.length > 0 && xs[0] > 0;
  return {
    field,
    type: 'quantitative' as const,
    title,
    scale: positive ? { type: 'log' as const, base: 2, nice: false, padding: 12 } : { zero: false, padding: 12 },
    axis: { values: xs, format: '~g' },
  };
}

/** Whether any row has both CI bounds (a layer over all-NULL bounds makes vega warn of an infinite extent). */
function hasCI(rows: Row[], lo = 'lo', hi = 'hi'): boolean {
  return rows.some((r) => typeof r[lo] === 'number' && typeof r[hi] === 'number');
}

const fmt = (field: string, title: string, format = '.4g') => ({ field, type: 'quantitative' as const, title, format });

/** Steering rules in display order (alphabetical, as the facets order them: calibration, logit_lens). */
function ruleSort(rows: Row[]): string[] {
  return [...new Set(rows.map((r) => String(r.rule)))].sort();
}

/** A facet in the natural (ascending) order of its values: an explicit sort breaks independent scales. */
interface Facet {
  field: string;
  title: string;
}

function facetDef(f: Facet) {
  return { field: f.field, type: 'ordinal' as const, title: f.title };
}

/**
 * Mean over seeds vs k with a 95% CI band (area + error rules), one line per series.
 * Faceted in columns by `column` and in rows by `row` when given (e.g. α and the steering rule).
 */
function perKSpec(opts: {
  title: string;
  yTitle: string;
  rows: Row[];
  column?: Facet;
  row?: Facet;
  xField?: string;
  xTitle?: string;
}): TopLevelSpec {
  const rows = withSeries(opts.rows);
  const xField = opts.xField ?? 'k';
  const x = gridAxis(rows, xField, opts.xTitle ?? 'k (active latents per token)');
  const scale = colorScale(rows);
  const legend = { symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolOpacity: 1, symbolSize: 300 };
  const color = { field: 'series', type: 'nominal' as const, title: 'SAE', scale: { domain: scale.domain, range: scale.range }, legend };
  const facets = [opts.column, opts.row].filter((f): f is Facet => Boolean(f));
  const tooltip = [
    { field: 'series', type: 'nominal' as const, title: 'SAE' },
    { field: xField, type: 'quantitative' as const, title: opts.xTitle ?? 'k' },
    ...facets.map((f) => ({ field: f.field, type: 'ordinal' as const, title: f.title })),
    fmt('mean', 'mean'),
    fmt('lo', '95% CI low'),
    fmt('hi', '95% CI high'),
    { field: 'n_seeds', type: 'quantitative' as const, title: 'seeds' },
    { field: 'ci', type: 'nominal' as const, title: 'CI method' },
  ];
  const bands = [
    {
      mark: { type: 'area' as const, opacity: 0.15 },
      encoding: { x, y: { field: 'lo', type: 'quantitative' as const }, y2: { field: 'hi' }, color },
    },
    {
      mark: { type: 'rule' as const, strokeWidth: 1.5 },
      encoding: { x, y: { field: 'lo', type: 'quantitative' as const }, y2: { field: 'hi' }, color },
    },
  ];
  const layer = [
    ...(hasCI(rows) ? bands : []),
    {
      mark: { type: 'line' as const, point: true },
      encoding: {
        x,
        y: { field: 'mean', type: 'quantitative' as const, title: opts.yTitle, scale: { zero: false } },
        color,
        strokeDash: { field: 'series', type: 'nominal' as const, title: 'SAE', legend, scale: { domain: scale.domain, range: scale.dash } },
        tooltip,
      },
    },
  ];
  if (facets.length) {
    return {
      $schema: VL_SCHEMA,
      title: opts.title,
      data: { values: rows },
      facet: { ...(opts.column ? { column: facetDef(opts.column) } : {}), ...(opts.row ? { row: facetDef(opts.row) } : {}) },
      spec: { width: 240, height: 200, layer },
      // The two target rules measure effect in different units (log-probability rise, added probability).
      ...(opts.row?.field === 'rule' ? { resolve: { scale: { y: 'independent' } } } : {}),
    } as TopLevelSpec;
  }
  return { $schema: VL_SCHEMA, title: opts.title, width: 380, height: 240, data: { values: rows }, layer } as TopLevelSpec;
}

/** A training curve: value vs tokens, colour by SAE (arch and β), one line per seed, columns by k. */
function curveSpec(title: string, yTitle: string, rows: Row[]): TopLevelSpec {
  const data = withSeries(rows);
  const scale = colorScale(data);
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
        color: { field: 'series', type: 'nominal', title: 'SAE', scale: { domain: scale.domain, range: scale.range } },
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

/** k as a colour: one line per k, ordered numerically. */
function kColor(rows: Row[]) {
  const ks = distinctNumbers(rows, 'k');
  return { field: 'k', type: 'ordinal' as const, title: 'k', scale: { domain: ks, scheme: 'viridis' } };
}

/** Selection change rate (mean over seeds, t-interval bars with ≥ 2 seeds) vs β, one line per k. */
function changeRateSpec(title: string, rows: Row[]): TopLevelSpec {
  const x = gridAxis(rows, 'beta', 'β (g-SAE selection weight)');
  const color = kColor(rows);
  return {
    $schema: VL_SCHEMA,
    title,
    width: 380,
    height: 240,
    data: { values: rows },
    layer: [
      ...(hasCI(rows) ? [{ mark: { type: 'rule', strokeWidth: 1.5 }, encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color } }] : []),
      {
        mark: { type: 'line', point: true },
        encoding: {
          x,
          y: { field: 'mean', type: 'quantitative', title: 'selection change rate (test tokens)' },
          color,
          tooltip: [
            { field: 'k', type: 'quantitative' },
            { field: 'beta', type: 'quantitative', title: 'β' },
            fmt('mean', 'change rate'),
            fmt('lo', '95% CI low'),
            fmt('hi', '95% CI high'),
            { field: 'n_seeds', type: 'quantitative', title: 'seeds' },
          ],
        },
      },
    ],
  } as TopLevelSpec;
}

/** Paired difference g-SAE − TopK vs β with its CI, columns val | test, rows k; β* marked. */
function pairedVsBetaSpec(title: string, yTitle: string, rows: Row[]): TopLevelSpec {
  const x = gridAxis(rows, 'beta', 'β');
  const data = rows.map((r) => ({ ...r, marker: r.is_beta_star ? 'β* (chosen on val)' : 'other β' }));
  const tooltip = [
    { field: 'split', type: 'nominal' as const },
    { field: 'k', type: 'quantitative' as const },
    { field: 'beta', type: 'quantitative' as const, title: 'β' },
    fmt('topk', 'TopK'),
    fmt('gsae', 'g-SAE'),
    fmt('diff', 'g-SAE − TopK'),
    fmt('lo', '95% CI low'),
    fmt('hi', '95% CI high'),
    { field: 'interval', type: 'nominal' as const },
    { field: 'n', type: 'quantitative' as const },
    { field: 'verdict', type: 'nominal' as const },
    { field: 'marker', type: 'nominal' as const, title: 'β' },
  ];
  return {
    $schema: VL_SCHEMA,
    title,
    data: { values: data },
    facet: {
      column: { field: 'split', type: 'nominal', title: 'split', sort: ['val', 'test'] },
      row: { field: 'k', type: 'ordinal', title: 'k' },
    },
    spec: {
      width: 260,
      height: 150,
      layer: [
        { mark: { type: 'rule', color: '#9ca3af', strokeDash: [4, 3] }, encoding: { y: { datum: 0, type: 'quantitative' } } },
        ...(hasCI(rows) ? [{ mark: { type: 'rule', strokeWidth: 1.5, color: '#e45756' }, encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } }] : []),
        {
          mark: { type: 'line', point: { filled: true }, color: '#e45756' },
          encoding: { x, y: { field: 'diff', type: 'quantitative', title: yTitle }, tooltip },
        },
        {
          mark: { type: 'point', shape: 'diamond', size: 160, filled: false, strokeWidth: 2 },
          encoding: {
            x,
            y: { field: 'diff', type: 'quantitative' },
            color: { field: 'marker', type: 'nominal', title: null, scale: { domain: ['β* (chosen on val)'], range: ['#111827'] } },
            tooltip,
          },
          transform: [{ filter: 'datum.is_beta_star' }],
        },
      ],
    },
  } as TopLevelSpec;
}

/** Steering effect vs KL: one point per α, a line per SAE, columns by target rule, rows by k. */
function effectVsKlSpec(title: string, rows: Row[]): TopLevelSpec {
  const data = withSeries(rows);
  const scale = colorScale(data);
  const color = { field: 'series', type: 'nominal' as const, title: 'SAE', scale: { domain: scale.domain, range: scale.range } };
  const x = { field: 'kl', type: 'quantitative' as const, title: 'KL(steered ‖ clean) (nats/token)', scale: { zero: true } };
  return {
    $schema: VL_SCHEMA,
    title,
    data: { values: data },
    facet: {
      column: { field: 'rule', type: 'ordinal', title: 'target rule' },
      row: { field: 'k', type: 'ordinal', title: 'k' },
    },
    spec: {
      width: 260,
      height: 180,
      layer: [
        ...(hasCI(rows, 'effect_lo', 'effect_hi')
          ? [{ mark: { type: 'rule', strokeWidth: 1.2 }, encoding: { x, y: { field: 'effect_lo', type: 'quantitative' }, y2: { field: 'effect_hi' }, color } }]
          : []),
        {
          mark: { type: 'line', point: { filled: true, size: 40 } },
          encoding: {
            x,
            y: { field: 'effect', type: 'quantitative', title: 'steering effect', scale: { zero: false } },
            color,
            order: { field: 'alpha', type: 'quantitative' },
            tooltip: [
              { field: 'series', type: 'nominal', title: 'SAE' },
              { field: 'rule', type: 'nominal' },
              { field: 'alpha', type: 'quantitative', title: 'α' },
              fmt('effect', 'effect'),
              fmt('effect_lo', 'effect 95% CI low'),
              fmt('effect_hi', 'effect 95% CI high'),
              fmt('kl', 'KL'),
              { field: 'n_seeds', type: 'quantitative', title: 'seeds' },
            ],
          },
        },
      ],
    },
    // Effects of the two rules are in different units; KL is the same quantity everywhere.
    resolve: { scale: { y: 'independent' } },
  } as TopLevelSpec;
}

const CHANGE_RATE: DownstreamMetric[] = ['change_rate'];
/** The lm stage's loss curves (step = tokens seen). */
const LM_CURVES = ['train_loss', 'val_loss'];

const CI_NOTE =
  'Line: mean over seeds; band and bars: 95% CI of each SAE alone (Student-t over the per-seed values; with one seed, the stored bootstrap CI of that seed). These are not the paired intervals of the claims table.';

/** Tables and views a metrics chart reads (scoped to a run: stage_runs and runs too). */
const METRICS_TABLES = ['metrics', 'stage_runs', 'runs'];
const STEERING_RULE_COLUMN: Array<[string, string]> = [['steering_summary', 'rule']];

/** The charts of the report of run `runId` (null: no run recorded, every chart is empty). */
export function chartDefs(runId: string | null, stages: Partial<StageNames> = {}): ChartDef[] {
  const S = { ...DEFAULT_STAGES, ...stages };
  const seriesNote = 'One series per SAE: TopK and the g-SAE at each β of the run.';
  const downstream = (name: string, title: string, yTitle: string, metric: VariantMetric, caption: string, section: ChartDef['section'] = 'Downstream faithfulness', gradfree = true): ChartDef => {
    const metrics: DownstreamMetric[] = gradfree ? [metric, variantMetric(metric, '_gradfree')] : [metric];
    return {
      name,
      title,
      section,
      stage: S.downstream,
      tables: METRICS_TABLES,
      sql: finalMetricsOverSeedsSql(runId, S.downstream, metrics),
      metrics,
      spec: (rows) => perKSpec({ title, yTitle, rows }),
      caption: `${caption} ${seriesNote} ${CI_NOTE}`,
    };
  };
  const steeringTables = ['steering_summary', 'runs', 'stage_runs'];
  const alphaFacet: Facet = { field: 'alpha', title: 'α (steering scale)' };
  const ruleFacet: Facet = { field: 'rule', title: 'target rule' };
  const rulesNote = `Rows: target rules (${Object.values(STEERING_RULE_TEXT).join('; ')}).`;
  return [
    {
      name: 'change_rate_vs_beta',
      title: 'Selection change rate vs β',
      section: 'Paired differences and β',
      stage: S.downstream,
      tables: METRICS_TABLES,
      sql: finalMetricsOverSeedsSql(runId, S.downstream, CHANGE_RATE, { arch: 'gsae' }),
      metrics: CHANGE_RATE,
      spec: (rows) => changeRateSpec('Selection change rate vs β', rows),
      caption: `${STATS_TEXT.changeRate} One line per k; bars: 95% CI over seeds (t) when there are ≥ 2 seeds.`,
    },
    {
      name: 'paired_delta_ce_vs_beta',
      title: 'Paired ΔCE difference g-SAE − TopK vs β',
      section: 'Paired differences and β',
      stage: S.compare,
      tables: ['paired', 'runs', 'stage_runs'],
      sql: pairedSql(runId, S.compare, `"check" = 'delta_ce' AND seed IS NULL`),
      spec: (rows) => pairedVsBetaSpec('Paired ΔCE difference g-SAE − TopK vs β', 'ΔCE difference (nats/token)', rows),
      caption: `Below the dashed zero line the g-SAE is more faithful. Bars: the 95% CI of the paired difference (the interval named in the tooltip; ${STATS_TEXT.downstream}). Left: validation split, where β* is chosen (diamond); right: test split, where the verdict is made. ${STATS_TEXT.betaStar}`,
    },
    downstream(
      'delta_ce_vs_k',
      'ΔCE vs k (spliced − clean cross-entropy)',
      'ΔCE (nats/token)',
      'delta_ce',
      'Increase in the LM\'s next-token cross-entropy on held-out tokens when the SAE reconstruction replaces the residual at the hook. Lower is more faithful (claim 1). Dashed: the g-SAE evaluated without gradients (plain TopK selection at inference).',
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
      name: 'steering_effect_vs_kl',
      title: 'Steering effect vs KL (one point per α)',
      section: 'Steering',
      stage: S.steering,
      tables: steeringTables,
      columns: STEERING_RULE_COLUMN,
      sql: steeringEffectVsKlSql(runId, S.steering),
      spec: (rows) => effectVsKlSpec('Steering effect vs KL (one point per α)', rows),
      caption: `Per SAE and α: mean steering effect (bars: its 95% CI over seeds, or the stored bootstrap CI with one seed) against the mean KL(steered ‖ clean) it costs; the line joins the α values of one SAE. A curve above another is more effective at equal disruption, which is what claim 3's primary check compares. Columns: target rules (${Object.values(STEERING_RULE_TEXT).join('; ')}); rows: k.`,
    },
    {
      name: 'steering_effect_vs_k',
      title: 'Steering effect vs k (equal α)',
      section: 'Steering',
      stage: S.steering,
      tables: steeringTables,
      columns: STEERING_RULE_COLUMN,
      sql: steeringOverSeedsSql(runId, ['effect'], S.steering),
      spec: (rows) => perKSpec({ title: 'Steering effect vs k (equal α)', yTitle: 'steering effect', rows, column: alphaFacet, row: ruleFacet }),
      caption:
        'Per SAE: mean over sampled alive latents of the steering effect on held-out evaluation contexts, steering with α · r · W_dec[i] at every position. Higher is better, but at equal α only: a direction that disrupts the model more can raise any target more (see the effect-vs-KL chart). Columns: α. ' +
        `${rulesNote} ${CI_NOTE}`,
    },
    {
      name: 'steering_consistency_vs_k',
      title: 'Steering consistency vs k',
      section: 'Steering',
      stage: S.steering,
      tables: steeringTables,
      columns: STEERING_RULE_COLUMN,
      sql: steeringOverSeedsSql(runId, ['consistency'], S.steering),
      spec: (rows) => perKSpec({ title: 'Steering consistency vs k', yTitle: 'fraction of positions where the targets rise', rows, column: alphaFacet, row: ruleFacet }),
      caption: `Per SAE: mean over sampled latents of the fraction of evaluation positions where the targets' probability rises. Higher is better. Columns: α. ${rulesNote} ${CI_NOTE}`,
    },
    {
      name: 'steering_effect_vs_alpha',
      title: 'Steering effect vs α',
      section: 'Steering',
      stage: S.steering,
      tables: steeringTables,
      columns: STEERING_RULE_COLUMN,
      sql: steeringOverSeedsSql(runId, ['effect'], S.steering),
      spec: (rows) =>
        perKSpec({
          title: 'Steering effect vs α',
          yTitle: 'steering effect',
          rows,
          xField: 'alpha',
          xTitle: 'α (steering scale, × mean ‖x‖)',
          column: { field: 'k', title: 'k' },
          row: ruleFacet,
        }),
      caption: `The same effect as a function of the steering scale α, one column per k. ${rulesNote} ${CI_NOTE}`,
    },
    {
      name: 'steering_kl_vs_k',
      title: 'KL(steered ‖ clean) vs k',
      section: 'Steering',
      stage: S.steering,
      tables: steeringTables,
      columns: STEERING_RULE_COLUMN,
      sql: steeringOverSeedsSql(runId, ['kl'], S.steering),
      spec: (rows) => perKSpec({ title: 'KL(steered ‖ clean) vs k', yTitle: 'KL (nats/token)', rows, column: alphaFacet, row: ruleFacet }),
      caption: `How much steering moves the whole next-token distribution (not only the targets); the same for both rules (same steered passes). Columns: α. ${CI_NOTE}`,
    },
    {
      name: 'steering_effect_distribution',
      title: 'Per-latent steering effect, by SAE',
      section: 'Steering',
      stage: S.steering,
      tables: ['steering_latents', 'runs', 'stage_runs'],
      columns: [['steering_latents', 'rule']],
      sql: steeringLatentsSql(runId, S.steering),
      spec: (rows) => {
        // Panels are numbered in display order and labelled by header.labelExpr: a facet with an
        // explicit sort and independent y scales pairs cells with the wrong axes (vega-lite 6).
        const rules = ruleSort(rows);
        const keys = [...new Map(rows.map((r) => [`${r.rule}|${r.alpha}`, [rules.indexOf(String(r.rule)), Number(r.alpha), `${ruleLabel(r.rule)}, α=${r.alpha}`] as const])).values()].sort(
          (a, b) => a[0] - b[0] || a[1] - b[1],
        );
        const labels = keys.map((x) => x[2]);
        const data: Row[] = withSeries(rows).map((r) => ({ ...r, panel: labels.indexOf(`${ruleLabel(r.rule)}, α=${r.alpha}`) }));
        const scale = colorScale(data);
        return {
          $schema: VL_SCHEMA,
          title: 'Per-latent steering effect, by SAE',
          data: { values: data },
          facet: {
            column: { field: 'k', type: 'ordinal', title: 'k' },
            row: { field: 'panel', type: 'ordinal', title: 'target rule, α', header: { labelExpr: `${JSON.stringify(labels)}[datum.value]` } },
          },
          spec: {
            width: 40 + 28 * scale.domain.length,
            height: 140,
            mark: { type: 'boxplot', extent: 'min-max', size: 22 },
            encoding: {
              x: { field: 'series', type: 'nominal', title: null, sort: scale.domain },
              y: { field: 'effect', type: 'quantitative', title: 'effect' },
              color: { field: 'series', type: 'nominal', title: 'SAE', scale: { domain: scale.domain, range: scale.range } },
            },
          },
          resolve: { scale: { y: 'independent' } },
        } as TopLevelSpec;
      },
      caption: 'Distribution over sampled latents (all seeds pooled) of the per-latent steering effect: box = quartiles, whiskers = min and max. A higher median with a shorter lower tail means fewer latents that do nothing when steered. Rows: target rule and α.',
    },
    {
      name: 'lm_loss_curve',
      title: 'Language model: train and validation loss',
      section: 'Training',
      stage: S.lm,
      tables: METRICS_TABLES,
      sql: curveSql(runId, S.lm, LM_CURVES, false),
      metrics: LM_CURVES,
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
            color: { field: 'metric', type: 'nominal', title: 'split', scale: { domain: LM_CURVES, range: ['#4c78a8', '#f58518'] } },
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
      metrics: ['fvu'],
      spec: (rows) => curveSpec('SAE training: FVU vs tokens', 'FVU (training batches)', rows),
      caption: 'Fraction of variance unexplained on training batches during SAE training; one line per SAE and seed, one column per k.',
    },
    {
      name: 'sae_training_dead_frac',
      title: 'SAE training: dead fraction vs tokens',
      section: 'Training',
      stage: S.sae,
      tables: METRICS_TABLES,
      sql: curveSql(runId, S.sae, ['dead_frac']),
      metrics: ['dead_frac'],
      spec: (rows) => curveSpec('SAE training: dead fraction vs tokens', 'dead fraction', rows),
      caption: 'Fraction of latents that have not fired for dead_tokens tokens, during SAE training; one line per SAE and seed, one column per k.',
    },
  ];
}
