/** SAE weight fixtures for the eval tests. */
import type { SaeArch, SaeWeights } from '../../../lib/sae/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

/** Random SAE: unit-norm decoder rows, W_enc = W_decᵀ, small random biases. */
export function randomSae(d: number, m: number, k: number, arch: SaeArch, beta: number, seed = 3): SaeWeights {
  const r = randn(mulberry32(seed));
  const W_dec = new Float32Array(m * d);
  for (let j = 0; j < m; j++) {
    let nrm = 0;
    for (let i = 0; i < d; i++) {
      const v = r();
      W_dec[j * d + i] = v;
      nrm += v * v;
    }
    nrm = Math.sqrt(nrm);
    for (let i = 0; i < d; i++) W_dec[j * d + i] /= nrm;
  }
  const W_enc = new Float32Array(d * m);
  for (let i = 0; i < d; i++) for (let j = 0; j < m; j++) W_enc[i * m + j] = W_dec[j * d + i];
  const b_enc = new Float32Array(m).map(() => 0.1 * r());
  const b_dec = new Float32Array(d).map(() => 0.1 * r());
  return { arch, d, m, k, beta, W_enc, W_dec, b_enc, b_dec };
}

/** d = m, W_enc = W_dec = I, zero biases, k = d: reconstructs any non-negative x exactly. */
export function identitySae(d: number, arch: SaeArch = 'topk', beta = 0): SaeWeights {
  const I = new Float32Array(d * d);
  for (let i = 0; i < d; i++) I[i * d + i] = 1;
  return { arch, d, m: d, k: d, beta, W_enc: I.slice(), W_dec: I.slice(), b_enc: new Float32Array(d), b_dec: new Float32Array(d) };
}

export function randomMatrix(n: number, d: number, seed: number, scale = 1): Float32Array {
  const r = randn(mulberry32(seed));
  return new Float32Array(n * d).map(() => scale * r());
}
