/**
 * Contract between SAE training (lib/sae), activation shards (lib/activations) and the
 * evaluations (lib/eval). Layout follows SAELens: W_enc [d, m], W_dec [m, d], b_enc [m], b_dec [d],
 * all row-major Float32Array.
 */
export type SaeArch = 'topk' | 'gsae';

export interface SaeWeights {
  arch: SaeArch;
  d: number; // d_in
  m: number; // d_sae = expansion * d
  k: number;
  /** g-SAE selection weight; 0 for topk (and g-SAE with beta = 0 equals topk exactly). */
  beta: number;
  W_enc: Float32Array; // [d, m]
  W_dec: Float32Array; // [m, d], rows unit norm
  b_enc: Float32Array; // [m]
  b_dec: Float32Array; // [d]
}

/**
 * Selection rule (docs/METHOD.md), per token with activation x and loss gradient g:
 *   z_pre = ReLU((x - b_dec) W_enc + b_enc)                       [m]
 *   s     = z_pre + beta * z_pre ∘ |W_dec g|     (gsae; topk: s = z_pre)
 *   idx   = indices of the k largest s (ties: lower index first); values = z_pre[idx]
 *   x̂     = Σ_j values_j W_dec[idx_j] + b_dec
 * Without a gradient (gradient-free inference) a g-SAE selects like topk.
 */
export interface SparseCode {
  n: number; // tokens
  k: number;
  indices: Int32Array; // [n, k]
  values: Float32Array; // [n, k]
}
