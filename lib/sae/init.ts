/** SAE initialisation helpers: random unit decoder rows, geometric median of a sample. */
import { mulberry32, randn } from '../util/random.ts';

/** Decoder rows: seeded standard normal vectors scaled to unit norm, [m, d]. */
export function randomUnitRows(m: number, d: number, seed: number): Float32Array {
  const normal = randn(mulberry32(seed));
  const W = new Float32Array(m * d);
  const row = new Float64Array(d);
  for (let j = 0; j < m; j++) {
    let s = 0;
    for (let i = 0; i < d; i++) {
      row[i] = normal();
      s += row[i] * row[i];
    }
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < d; i++) W[j * d + i] = row[i] * inv;
  }
  return W;
}

/** Mean of the rows of x [n, d]. */
export function meanRows(x: Float32Array, d: number): Float64Array {
  const n = x.length / d;
  const mu = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) mu[i] += x[r * d + i];
  for (let i = 0; i < d; i++) mu[i] /= Math.max(1, n);
  return mu;
}

/**
 * Geometric median of the rows of x [n, d] by Weiszfeld's algorithm, started at the mean
 * (`iters` iterations or until the step is below tol × the mean distance).
 */
export function geometricMedian(x: Float32Array, d: number, iters = 30, tol = 1e-6): Float64Array {
  const n = x.length / d;
  let y = meanRows(x, d);
  const next = new Float64Array(d);
  for (let it = 0; it < iters; it++) {
    next.fill(0);
    let wsum = 0;
    let dsum = 0;
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let i = 0; i < d; i++) {
        const t = x[r * d + i] - y[i];
        s += t * t;
      }
      const dist = Math.sqrt(s);
      dsum += dist;
      const w = 1 / Math.max(dist, 1e-12);
      wsum += w;
      for (let i = 0; i < d; i++) next[i] += w * x[r * d + i];
    }
    let step = 0;
    for (let i = 0; i < d; i++) {
      next[i] /= wsum;
      step += (next[i] - y[i]) ** 2;
    }
    y = Float64Array.from(next);
    if (Math.sqrt(step) < tol * (dsum / Math.max(1, n))) break;
  }
  return y;
}
