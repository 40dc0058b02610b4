/**
 * SAE inference on Float32Arrays (raw units, SaeWeights as saved): sparse encode / decode per the
 * contract in types.ts, and the held-out evaluation (FVU, MSE, L0, dead fraction, cosine).
 * The encoder matMul runs on the active tfjs backend; selection and decode are TypeScript.
 * Synchronous; call after initBackend().
 */
import * as tf from '@tensorflow/tfjs-core';
import { defaultBlockRows } from './kernel.ts';
import { SelectScratch, selectTopK } from './select.ts';
import { ortEnabled } from '../backend.ts';
import { encodeRowsOrt } from './encodeOrt.ts';
import type { SaeWeights, SparseCode } from './types.ts';

/** Shapes of the weight arrays agree with d, m, k (throws naming the array). */
export function checkWeights(w: SaeWeights): void {
  const { d, m, k } = w;
  if (!(d > 0 && m > 0 && k > 0 && k <= m)) throw new Error(`sae: bad sizes d=${d} m=${m} k=${k}`);
  if (w.W_enc.length !== d * m) throw new Error(`sae: W_enc has ${w.W_enc.length} values, expected d*m=${d * m}`);
  if (w.W_dec.length !== m * d) throw new Error(`sae: W_dec has ${w.W_dec.length} values, expected m*d=${m * d}`);
  if (w.b_enc.length !== m) throw new Error(`sae: b_enc has ${w.b_enc.length} values, expected m=${m}`);
  if (w.b_dec.length !== d) throw new Error(`sae: b_dec has ${w.b_dec.length} values, expected d=${d}`);
}

/** Whether selection uses the g-SAE score: a g-SAE with beta != 0, given a gradient (or `true`: one will be given). */
export function usesGradient(w: SaeWeights, g: Float32Array | boolean | null | undefined): boolean {
  return w.arch === 'gsae' && w.beta !== 0 && !!g;
}

type OnRow = (r: number, idx: Int32Array, val: Float32Array, l0: number) => void;

/**
 * Encode rows x [n, d] (g [n, d] or null: gradient-free selection). Calls `onRow(r, idx, val, l0)`
 * with the row's selection in scratch arrays (valid during the call only). On wasm+ort the whole
 * encode runs as one ONNX Runtime graph per block (encodeOrt.ts); otherwise `encodeRowsTs`.
 */
function encodeRows(w: SaeWeights, x: Float32Array, g: Float32Array | null | undefined, onRow: OnRow): number {
  const n = checkRows(w, x, g);
  if (!ortEnabled()) return encodeRowsTs(w, x, g, onRow);
  encodeRowsOrt(w, x, g ?? null, usesGradient(w, g) ? 'gradient' : 'plain', defaultBlockRows(w.m), onRow);
  return n;
}

/** Checks the weights and the rows; returns the number of rows. */
function checkRows(w: SaeWeights, x: Float32Array, g: Float32Array | null | undefined): number {
  checkWeights(w);
  const { d } = w;
  if (x.length % d !== 0) throw new Error(`sae: x has ${x.length} values, not a multiple of d=${d}`);
  if (usesGradient(w, g) && g!.length !== x.length) throw new Error('sae: g and x differ in length');
  return x.length / d;
}

/**
 * encodeRows on any tfjs backend: the encoder (and g-SAE score) matMuls in tfjs, the selection by
 * selectTopK (select.ts). The reference the ORT path is tested against.
 */
export function encodeRowsTs(w: SaeWeights, x: Float32Array, g: Float32Array | null | undefined, onRow: OnRow): number {
  const n = checkRows(w, x, g);
  const { d, m, k } = w;
  const useG = usesGradient(w, g);
  const B = defaultBlockRows(m);
  const Wenc = tf.tensor2d(w.W_enc, [d, m]);
  let WdecT: tf.Tensor2D | null = null;
  if (useG) {
    const Wdec = tf.tensor2d(w.W_dec, [m, d]);
    WdecT = tf.transpose(Wdec) as tf.Tensor2D;
    Wdec.dispose();
  }
  const xc = new Float32Array(Math.min(B, n) * d);
  const sc = new SelectScratch(k);
  const idx = new Int32Array(k);
  const val = new Float32Array(k);
  try {
    for (let b0 = 0; b0 < n; b0 += B) {
      const nb = Math.min(B, n - b0);
      for (let r = 0; r < nb; r++) for (let i = 0; i < d; i++) xc[r * d + i] = x[(b0 + r) * d + i] - w.b_dec[i];
      const xt = tf.tensor2d(xc.subarray(0, nb * d), [nb, d]);
      const ut = tf.matMul(xt, Wenc);
      const U = ut.dataSync() as Float32Array;
      xt.dispose();
      ut.dispose();
      let A: Float32Array | null = null;
      if (useG) {
        const gt = tf.tensor2d(g!.subarray(b0 * d, (b0 + nb) * d), [nb, d]);
        const at = tf.matMul(gt, WdecT!);
        A = at.dataSync() as Float32Array;
        gt.dispose();
        at.dispose();
      }
      for (let r = 0; r < nb; r++) {
        const l0 = selectTopK(U, r * m, w.b_enc, m, k, A, r * m, w.beta, idx, val, 0, sc);
        onRow(b0 + r, idx, val, l0);
      }
    }
  } finally {
    Wenc.dispose();
    WdecT?.dispose();
  }
  return n;
}

/**
 * Sparse code of rows x [n, d]: for a g-SAE with beta != 0 and a gradient g [n, d], the g-SAE
 * selection; otherwise (topk, or g = null: gradient-free inference) plain TopK.
 */
export function encodeSparse(w: SaeWeights, x: Float32Array, g: Float32Array | null = null): SparseCode {
  return collectCode(w, x, (onRow) => encodeRows(w, x, g, onRow));
}

/** encodeSparse through encodeRowsTs whatever the backend (the reference in the tests). */
export function encodeSparseTs(w: SaeWeights, x: Float32Array, g: Float32Array | null = null): SparseCode {
  return collectCode(w, x, (onRow) => encodeRowsTs(w, x, g, onRow));
}

function collectCode(w: SaeWeights, x: Float32Array, encode: (onRow: OnRow) => void): SparseCode {
  const n = x.length / w.d;
  const k = w.k;
  const indices = new Int32Array(n * k);
  const values = new Float32Array(n * k);
  encode((r, idx, val) => {
    indices.set(idx, r * k);
    values.set(val, r * k);
  });
  return { n, k, indices, values };
}

/** x̂ [n, d] = Σ values W_dec[indices] + b_dec (float64 accumulation). */
export function decodeSparse(w: SaeWeights, code: SparseCode): Float32Array {
  const { d } = w;
  const out = new Float32Array(code.n * d);
  const acc = new Float64Array(d);
  for (let r = 0; r < code.n; r++) {
    for (let i = 0; i < d; i++) acc[i] = w.b_dec[i];
    for (let t = 0; t < code.k; t++) {
      const v = code.values[r * code.k + t];
      if (v === 0) continue;
      const o = code.indices[r * code.k + t] * d;
      for (let i = 0; i < d; i++) acc[i] += v * w.W_dec[o + i];
    }
    for (let i = 0; i < d; i++) out[r * d + i] = acc[i];
  }
  return out;
}

export interface SaeEvaluation {
  n: number;
  /** Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over the rows. */
  fvu: number;
  /** Mean over rows of ‖x − x̂‖² (summed over the d dimensions). */
  mse: number;
  /** Mean number of latents firing (selected with value > 0) per row. */
  l0: number;
  /** Fraction of latents that never fire on these rows. */
  dead_frac: number;
  /** Mean over rows of cos(x, x̂) (rows with a zero norm count as 0). */
  cosine: number;
  /** Rows on which each latent fired, [m]. */
  firing: Float64Array;
  /** With opts.changeRate: selectionChangeRate on the same rows (on wasm+ort from the same encoder GEMM). */
  changeRate?: number;
}

/**
 * Held-out evaluation of an SAE on rows x [n, d]; with g [n, d] a g-SAE selects with the
 * gradient, without it (null/undefined) it selects like TopK (gradient-free inference).
 */
export function evaluateSae(w: SaeWeights, x: Float32Array, g?: Float32Array | null, opts: { changeRate?: boolean } = {}): SaeEvaluation {
  const { d, m } = w;
  const n = x.length / d;
  const firing = new Float64Array(m);
  const mean = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) mean[i] += x[r * d + i];
  for (let i = 0; i < d; i++) mean[i] /= Math.max(1, n);
  let se = 0;
  let sv = 0;
  let l0s = 0;
  let cos = 0;
  const xh = new Float64Array(d);
  // the change rate from the same encodes (wasm+ort): the 'both' graph gives both selections
  const rateHere = !!opts.changeRate && usesGradient(w, g) && ortEnabled();
  const rate = rateHere ? new ChangeCounter(w.m, w.k) : null;
  const onRow: OnRow = (r, idx, val, l0) => {
    for (let i = 0; i < d; i++) xh[i] = w.b_dec[i];
    for (let t = 0; t < idx.length; t++) {
      const v = val[t];
      if (v === 0) continue;
      firing[idx[t]]++;
      const o = idx[t] * d;
      for (let i = 0; i < d; i++) xh[i] += v * w.W_dec[o + i];
    }
    l0s += l0;
    let e2 = 0;
    let v2 = 0;
    let dot = 0;
    let nx = 0;
    let nh = 0;
    for (let i = 0; i < d; i++) {
      const xi = x[r * d + i];
      const hi = Math.fround(xh[i]);
      e2 += (xi - hi) ** 2;
      v2 += (xi - mean[i]) ** 2;
      dot += xi * hi;
      nx += xi * xi;
      nh += hi * hi;
    }
    se += e2;
    sv += v2;
    cos += nx > 0 && nh > 0 ? dot / Math.sqrt(nx * nh) : 0;
  };
  if (rate) {
    checkRows(w, x, g);
    encodeRowsOrt(w, x, g!, 'both', defaultBlockRows(w.m), onRow, (_r, pIdx, gIdx) => rate.count(pIdx, 0, gIdx));
  } else {
    encodeRows(w, x, g, onRow);
  }
  let dead = 0;
  for (let j = 0; j < m; j++) if (firing[j] === 0) dead++;
  return {
    n,
    fvu: sv > 0 ? se / sv : NaN,
    mse: se / Math.max(1, n),
    l0: l0s / Math.max(1, n),
    dead_frac: dead / m,
    cosine: cos / Math.max(1, n),
    firing,
    ...(opts.changeRate ? { changeRate: rate ? rate.changed / (n * w.k) : selectionChangeRate(w, x, g ?? null) } : {}),
  };
}

/** |S_g \ S_plain| summed over rows (a scratch mask of m latents): the selection change rate's count. */
export class ChangeCounter {
  changed = 0;
  private readonly inPlain: Uint8Array;
  constructor(
    m: number,
    private readonly k: number,
  ) {
    this.inPlain = new Uint8Array(m);
  }
  count(plainIdx: ArrayLike<number>, po: number, gradIdx: ArrayLike<number>): void {
    const { k, inPlain } = this;
    for (let t = 0; t < k; t++) inPlain[plainIdx[po + t]] = 1;
    for (let t = 0; t < k; t++) if (!inPlain[gradIdx[t]]) this.changed++;
    for (let t = 0; t < k; t++) inPlain[plainIdx[po + t]] = 0;
  }
}

/**
 * Selection change rate of a g-SAE on rows x, g [n, d]: the fraction of the k selected latents
 * that differ between the g-SAE selection and plain TopK selection with the same weights,
 * |S_g \ S_topk| / k averaged over rows. 0 for topk weights, beta = 0 or no gradient. It says
 * how much the gradient term actually changes which latents are kept.
 */
export function selectionChangeRate(w: SaeWeights, x: Float32Array, g: Float32Array | null): number {
  if (!usesGradient(w, g)) return 0;
  const n = checkRows(w, x, g);
  const k = w.k;
  const c = new ChangeCounter(w.m, k);
  if (ortEnabled()) {
    // one graph: the encoder GEMM once, both selections
    encodeRowsOrt(w, x, g, 'both', defaultBlockRows(w.m), () => {}, (_r, pIdx, gIdx) => c.count(pIdx, 0, gIdx));
  } else {
    const plain = encodeSparseTs(w, x, null);
    encodeRowsTs(w, x, g, (r, idx) => c.count(plain.indices, r * k, idx));
  }
  return c.changed / (n * k);
}
