/**
 * Logit lens of a residual-stream direction w [d]: the tokens it promotes DIRECTLY, through the
 * final LayerNorm's scale and the unembedding only (every later block is ignored):
 *
 *   score_v = Σ_j W_U[v, j] · γ_j · (w_j − mean_j w)        W_U [V, d], γ = ln_f weight [d]
 *
 * The centring mirrors LayerNorm's mean subtraction: a component of w along (1, …, 1) is removed
 * by ln_f before γ is applied, so it cannot promote anything. LayerNorm's division by the standard
 * deviation is a positive factor common to all tokens at a position (it does not change the
 * order), and ln_f's bias does not depend on w: both are dropped.
 * Targets = the n tokens with the largest score (ties: lower token id).
 * GPT-2's unembedding is tied to the token embedding: W_U = wte.weight.
 */
import type { HookedLM } from '../model/types.ts';
import { GPT2 } from '../model/gpt2.ts';

export interface LogitLensWeights {
  /** Unembedding [V, d], row v = the direction whose dot product is token v's logit. */
  W_U: Float32Array;
  /** Final LayerNorm scale γ [d]. */
  lnScale: Float32Array;
}

/** GPT-2's: W_U = wte.weight (tied), γ = ln_f.weight. */
export function gpt2LogitLens(model: GPT2): LogitLensWeights {
  return {
    W_U: model.param('wte.weight').dataSync() as Float32Array,
    lnScale: model.param('ln_f.weight').dataSync() as Float32Array,
  };
}

/** The model's logit-lens weights when it is known how to read them (GPT-2), else null. */
export function logitLensWeightsOf(model: HookedLM): LogitLensWeights | null {
  return model instanceof GPT2 ? gpt2LogitLens(model) : null;
}

/** score_v for every token v (header formula), float64. `w` is read at [off, off + d). */
export function logitLensScores(lens: LogitLensWeights, w: ArrayLike<number>, off = 0): Float64Array {
  const d = lens.lnScale.length;
  const V = lens.W_U.length / d;
  if (!Number.isInteger(V)) throw new Error(`logit lens: W_U has ${lens.W_U.length} entries, not a multiple of d=${d}`);
  let mean = 0;
  for (let j = 0; j < d; j++) mean += w[off + j];
  mean /= d;
  const g = new Float64Array(d);
  for (let j = 0; j < d; j++) g[j] = lens.lnScale[j] * (w[off + j] - mean);
  const scores = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let s = 0;
    const o = v * d;
    for (let j = 0; j < d; j++) s += lens.W_U[o + j] * g[j];
    scores[v] = s;
  }
  return scores;
}

/** The n tokens direction w promotes most through the logit lens (ties: lower token id). */
export function logitLensTargets(lens: LogitLensWeights, w: ArrayLike<number>, n: number, off = 0): number[] {
  return topIndices(logitLensScores(lens, w, off), n);
}

/** Indices of the n largest values (ties: lower index first). */
export function topIndices(v: Float64Array, n: number): number[] {
  const idx = Array.from(v.keys());
  idx.sort((a, b) => v[b] - v[a] || a - b);
  return idx.slice(0, n);
}
