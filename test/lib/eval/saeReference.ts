/**
 * Test oracle: a plain-TypeScript, float64-accumulating encoder/decoder that follows the SAE
 * contract (lib/sae/types.ts) literally. The tfjs hook (lib/eval/saeHook.ts) is checked against it.
 */
import { checkWeights } from '../../../lib/sae/infer.ts';
import type { SaeWeights, SparseCode } from '../../../lib/sae/types.ts';

/**
 * Pure TypeScript reference of the selection rule (float64 accumulation). x, g: [n, d] row-major.
 * g = null/undefined or arch 'topk' or beta = 0 → plain TopK. Ties: the lower index first.
 */
export function encodeReference(w: SaeWeights, x: Float32Array, g?: Float32Array | null): SparseCode {
  checkWeights(w);
  const { d, m, k } = w;
  const n = x.length / d;
  if (!Number.isInteger(n)) throw new Error('encodeReference: x length is not a multiple of d');
  const beta = w.arch === 'gsae' ? w.beta : 0;
  const useG = !!g && beta !== 0;
  if (useG && (g as Float32Array).length !== x.length) throw new Error('encodeReference: g and x differ in length');
  const indices = new Int32Array(n * k);
  const values = new Float32Array(n * k);
  const zPre = new Float64Array(m);
  const s = new Float64Array(m);
  const xc = new Float64Array(d);
  const order = new Int32Array(m);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < d; i++) xc[i] = x[r * d + i] - w.b_dec[i];
    for (let j = 0; j < m; j++) {
      let acc = w.b_enc[j];
      for (let i = 0; i < d; i++) acc += xc[i] * w.W_enc[i * m + j];
      zPre[j] = acc > 0 ? acc : 0;
    }
    for (let j = 0; j < m; j++) {
      if (useG) {
        let dd = 0;
        for (let i = 0; i < d; i++) dd += w.W_dec[j * d + i] * (g as Float32Array)[r * d + i];
        s[j] = zPre[j] + beta * zPre[j] * Math.abs(dd);
      } else {
        s[j] = zPre[j];
      }
      order[j] = j;
    }
    // Stable order: larger score first, then lower index.
    const sorted = Array.from(order).sort((a, b) => (s[b] - s[a]) || a - b);
    for (let j = 0; j < k; j++) {
      indices[r * k + j] = sorted[j];
      values[r * k + j] = zPre[sorted[j]];
    }
  }
  return { n, k, indices, values };
}

/** Pure TypeScript decode of a sparse code: x̂ = Σ values W_dec[idx] + b_dec, [n, d]. */
export function decodeReference(w: SaeWeights, code: SparseCode): Float32Array {
  const { d } = w;
  const out = new Float32Array(code.n * d);
  for (let r = 0; r < code.n; r++) {
    const acc = new Float64Array(d);
    for (let i = 0; i < d; i++) acc[i] = w.b_dec[i];
    for (let j = 0; j < code.k; j++) {
      const v = code.values[r * code.k + j];
      if (v === 0) continue;
      const row = code.indices[r * code.k + j] * d;
      for (let i = 0; i < d; i++) acc[i] += v * w.W_dec[row + i];
    }
    for (let i = 0; i < d; i++) out[r * d + i] = acc[i];
  }
  return out;
}
