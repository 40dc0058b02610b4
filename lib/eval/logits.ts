/**
 * Per-position reductions of logits in plain TypeScript (float64 accumulation).
 *
 * Why not tfjs: on the wasm backend each transcendental pass over a [N, V] tensor costs about as
 * much as this whole single pass (exp of 16 M floats: 315 ms; logSoftmax 410 ms; a broadcast
 * `where` 4 s), and copying logits out with dataSync is cheap (~10 ms per 8 M floats). One loop per
 * row computes the log-partition function and the KL terms together.
 *
 * Identities used (l = logits, lse = log Σ exp l, p = exp(l − lse)):
 *   log p(v)            = l(v) − lse
 *   KL(p_a ‖ p_b)       = Σ_v p_a(v) (l_a(v) − l_b(v)) − lse_a + lse_b
 */

/** log Σ_v exp(l[off + v]) over one row of V logits. */
export function rowLogSumExp(l: Float32Array, off: number, V: number): number {
  let mx = -Infinity;
  for (let v = 0; v < V; v++) if (l[off + v] > mx) mx = l[off + v];
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(l[off + v] - mx);
  return mx + Math.log(s);
}

/** Log-partition per row of logits [rows, V]. */
export function logSumExpRows(l: Float32Array, V: number): Float64Array {
  const rows = l.length / V;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) out[r] = rowLogSumExp(l, r * V, V);
  return out;
}

/** Softmax probabilities [rows, V] from logits and their log-partition. */
export function softmaxRows(l: Float32Array, lse: Float64Array, V: number): Float32Array {
  const p = new Float32Array(l.length);
  for (let r = 0; r < lse.length; r++) {
    const o = r * V;
    for (let v = 0; v < V; v++) p[o + v] = Math.exp(l[o + v] - lse[r]);
  }
  return p;
}

/**
 * One row of `a` against a reference row `b` (with its log-partition lseB), in one exp pass over a:
 * returns lse_a and KL(p_a ‖ p_b).
 */
export function rowKlFrom(a: Float32Array, aOff: number, b: Float32Array, bOff: number, lseB: number, V: number): { lse: number; kl: number } {
  let mx = -Infinity;
  for (let v = 0; v < V; v++) if (a[aOff + v] > mx) mx = a[aOff + v];
  let s = 0;
  let w = 0;
  for (let v = 0; v < V; v++) {
    const av = a[aOff + v];
    const e = Math.exp(av - mx);
    s += e;
    w += e * (av - b[bOff + v]);
  }
  const lse = mx + Math.log(s);
  return { lse, kl: w / s - lse + lseB };
}

/**
 * One row of `b` against a reference distribution a given by its probabilities pA and logits lA
 * (log-partition lseA): returns lse_b and KL(p_a ‖ p_b) (one exp pass over b).
 */
export function rowKlTo(
  pA: Float32Array,
  lA: Float32Array,
  aOff: number,
  lseA: number,
  b: Float32Array,
  bOff: number,
  V: number,
): { lse: number; kl: number } {
  const lse = rowLogSumExp(b, bOff, V);
  let w = 0;
  for (let v = 0; v < V; v++) w += pA[aOff + v] * (lA[aOff + v] - b[bOff + v]);
  return { lse, kl: w - lseA + lse };
}

/** log Σ_{t ∈ set} exp(l[off + t]) − lse: the log-probability of a set of tokens. */
export function setLogProb(l: Float32Array, off: number, set: ArrayLike<number>, lse: number): number {
  let mx = -Infinity;
  for (let i = 0; i < set.length; i++) if (l[off + set[i]] > mx) mx = l[off + set[i]];
  let s = 0;
  for (let i = 0; i < set.length; i++) s += Math.exp(l[off + set[i]] - mx);
  return mx + Math.log(s) - lse;
}
