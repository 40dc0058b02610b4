/** Synthetic data from a known sparse dictionary (test helper). */
import { mulberry32, randn } from '../../../lib/util/random.ts';

export interface Planted {
  d: number;
  atoms: Float32Array; // [A, d] unit rows
  nAtoms: number;
  x: Float32Array; // [n, d]
  g: Float32Array; // [n, d] a synthetic "gradient" (random, for g-SAE plumbing)
  active: Int32Array; // [n, s] atom ids per row
}

/**
 * n rows in d dims, each the sum of `s` distinct atoms (of nAtoms random unit vectors) with
 * magnitudes uniform in [0.5, 1.5], plus Gaussian noise of std `noise` per dimension, plus `offset`.
 */
export function plantedData(opts: { d: number; nAtoms: number; s: number; n: number; noise?: number; seed?: number; offset?: number }): Planted {
  const { d, nAtoms, s, n } = opts;
  const rng = mulberry32(opts.seed ?? 0);
  const nr = randn(rng);
  const atoms = new Float32Array(nAtoms * d);
  for (let a = 0; a < nAtoms; a++) {
    let q = 0;
    for (let i = 0; i < d; i++) {
      atoms[a * d + i] = nr();
      q += atoms[a * d + i] ** 2;
    }
    const inv = 1 / Math.sqrt(q);
    for (let i = 0; i < d; i++) atoms[a * d + i] *= inv;
  }
  const x = new Float32Array(n * d);
  const g = new Float32Array(n * d);
  const active = new Int32Array(n * s);
  const noise = opts.noise ?? 0.01;
  const off = opts.offset ?? 0;
  for (let r = 0; r < n; r++) {
    const chosen = new Set<number>();
    while (chosen.size < s) chosen.add(Math.floor(rng() * nAtoms));
    let t = 0;
    for (const a of chosen) {
      active[r * s + t++] = a;
      const c = 0.5 + rng();
      for (let i = 0; i < d; i++) x[r * d + i] += c * atoms[a * d + i];
    }
    for (let i = 0; i < d; i++) {
      x[r * d + i] += noise * nr() + off;
      g[r * d + i] = 0.1 * nr();
    }
  }
  return { d, atoms, nAtoms, x, g, active };
}

/** For each atom, the best |cosine| with any decoder row; returns the fraction above `thr`. */
export function recovered(atoms: Float32Array, nAtoms: number, W_dec: Float32Array, m: number, d: number, thr = 0.9): number {
  let ok = 0;
  for (let a = 0; a < nAtoms; a++) {
    let best = -1;
    for (let j = 0; j < m; j++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += atoms[a * d + i] * W_dec[j * d + i];
      if (dot > best) best = dot;
    }
    if (best > thr) ok++;
  }
  return ok / nAtoms;
}
