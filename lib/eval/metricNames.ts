/**
 * The names of the downstream stage's metrics (results.duckdb `metrics`, summary.json): the one list
 * both the writer (evaluateDownstream, downstreamCIs, stages/downstream.ts) and the readers (the
 * report) are typed with, so a misspelt name is a type error rather than an empty chart.
 * No imports: the report reads it without loading the model code.
 */

/** Cross-entropies that do not depend on the SAE: clean, zero-ablated, mean-ablated. */
export const BASELINE_METRICS = ['ce_clean', 'ce_zero', 'ce_mean'] as const;
/** The metrics of one SAE variant, in the order evaluateDownstream computes them. */
export const VARIANT_METRICS = ['ce_spliced', 'delta_ce', 'loss_recovered', 'kl', 'fvu', 'l0', 'dead_frac'] as const;
/** '' = the primary variant; '_gradfree' = a g-SAE selecting with plain TopK at eval time. */
export const VARIANT_SUFFIXES = ['', '_gradfree'] as const;
/** The split β* is chosen on: these test metrics again, with this suffix. */
export const VAL_METRICS = ['delta_ce', 'kl', 'loss_recovered', 'change_rate'] as const;
export const VAL_SUFFIX = '_val';

export type BaselineMetric = (typeof BASELINE_METRICS)[number];
export type VariantMetric = (typeof VARIANT_METRICS)[number];
export type VariantSuffix = (typeof VARIANT_SUFFIXES)[number];
/** A metric with a 95% CI: stored beside it as `<name>_lo` and `<name>_hi`. */
export type WithCI<N extends string> = N | `${N}_lo` | `${N}_hi`;

/** Every metric name the downstream stage records (test split, val split, counts). */
export type DownstreamMetric =
  | WithCI<BaselineMetric | `${VariantMetric}${VariantSuffix}`>
  /** Held-out firing alone (dead_frac also requires dead at the end of training). */
  | `dead_frac_heldout${VariantSuffix}`
  /** g-SAE only: share of selections that change when the gradient is dropped. */
  | 'change_rate'
  | `${(typeof VAL_METRICS)[number]}${typeof VAL_SUFFIX}`
  | 'positions'
  | 'positions_val'
  | 'positions_per_second';

/** The dead fraction of a variant (held-out AND end-of-training dead, with a Wilson CI). */
export type DeadFracMetric = `dead_frac${VariantSuffix}`;

/** The name of metric `metric` of variant `suffix` (`delta_ce` + `_gradfree`). */
export function variantMetric(metric: VariantMetric, suffix: VariantSuffix): `${VariantMetric}${VariantSuffix}` {
  return `${metric}${suffix}`;
}

/** The val-split name of a test metric (`delta_ce` → `delta_ce_val`). */
export function valMetric(metric: (typeof VAL_METRICS)[number]): `${(typeof VAL_METRICS)[number]}${typeof VAL_SUFFIX}` {
  return `${metric}${VAL_SUFFIX}`;
}

/** Metric name → value, keyed by the downstream names. */
export type DownstreamValues = Partial<Record<DownstreamMetric, number>>;
