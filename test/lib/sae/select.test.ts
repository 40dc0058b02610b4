import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../lib/backend.ts';
import { decodeSparse, encodeSparse } from '../../../lib/sae/infer.ts';
import { SCORE, SelectScratch, WasmSelector, selectAmong, selectTopK } from '../../../lib/sae/select.ts';
import { buildSimdModule, type SimdExports } from '../../../lib/sae/simd.ts';
import type { SaeWeights } from '../../../lib/sae/types.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

/** Sort-based reference of the contract's rule: indices sorted ascending. */
function reference(U: Float32Array, be: Float32Array, A: Float32Array | null, beta: number, k: number, among?: number[]): number[] {
  const m = U.length;
  const z = Array.from(U, (u, j) => Math.max(0, u + be[j]));
  const s = z.map((zz, j) => (A && beta !== 0 ? zz + beta * zz * Math.abs(A[j]) : zz));
  const ids = among ?? Array.from({ length: m }, (_, j) => j);
  return ids
    .slice()
    .sort((a, b) => s[b] - s[a] || a - b)
    .slice(0, k)
    .sort((a, b) => a - b);
}

describe('selectTopK', () => {
  it('matches the sort-based reference, including ties, zeros and fewer than k positives', () => {
    const rng = mulberry32(5);
    for (let trial = 0; trial < 3000; trial++) {
      const m = 1 + Math.floor(rng() * 300);
      const k = 1 + Math.floor(rng() * Math.min(m, 70));
      // many exact ties (half-integers) and many non-positive values
      const U = Float32Array.from({ length: m }, () => (rng() < 0.3 ? Math.round((rng() - 0.7) * 6) / 2 : (rng() - 0.6) * 3));
      const be = Float32Array.from({ length: m }, () => (rng() < 0.5 ? 0 : (rng() - 0.5) * 0.5));
      const A = rng() < 0.5 ? Float32Array.from({ length: m }, () => (rng() - 0.5) * 2) : null;
      const beta = A ? (rng() < 0.2 ? 0 : rng() * 3) : 0;
      const sc = new SelectScratch(k);
      sc.ratio = rng() * 3; // a stale threshold guess must not change the result
      const idx = new Int32Array(k);
      const val = new Float32Array(k);
      const l0 = selectTopK(U, 0, be, m, k, A, 0, beta, idx, val, 0, sc);
      expect(Array.from(idx).sort((a, b) => a - b)).toEqual(reference(U, be, A, beta, k));
      let pos = 0;
      for (let t = 0; t < k; t++) {
        expect(val[t]).toBe(Math.fround(Math.max(0, U[idx[t]] + be[idx[t]])));
        if (val[t] > 0) pos++;
      }
      expect(l0).toBe(pos);
    }
  });

  it('one scratch reused over many rows stays exact whatever the scales passed for the guess', () => {
    const rng = mulberry32(11);
    const m = 200;
    const k = 12;
    const sc = new SelectScratch(k);
    const idx = new Int32Array(k);
    const val = new Float32Array(k);
    for (let row = 0; row < 2000; row++) {
      // the rows' magnitudes jump by 100x, and the scale is often unrelated to them (or 0)
      const mag = row % 97 < 10 ? 100 : 1;
      const U = Float32Array.from({ length: m }, () => (rng() - 0.6) * 3 * mag);
      const be = Float32Array.from({ length: m }, () => (rng() - 0.5) * 0.5);
      const scale = row % 5 === 0 ? rng() * 10 : row % 7 === 0 ? 0 : mag;
      const l0 = selectTopK(U, 0, be, m, k, null, 0, 0, idx, val, 0, sc, scale);
      expect(Array.from(idx).sort((a, b) => a - b)).toEqual(reference(U, be, null, 0, k));
      expect(l0).toBe(k);
    }
    expect(sc.ratio).toBeGreaterThan(0);
  });

  it("the threshold guess tracks the 2% quantile of k-th score / scale", () => {
    // planted: k-th score / scale uniform on [1, 2], so the 2% quantile is 1.02
    const rng = mulberry32(12);
    const sc = new SelectScratch(8);
    let fails = 0;
    const N = 200000;
    for (let t = 0; t < N; t++) {
      const scale = 0.5 + rng() * 4;
      const kth = (1 + rng()) * scale;
      if (t >= N / 2 && sc.guess(scale) >= kth) fails++;
      sc.learn(kth, scale);
    }
    expect(sc.ratio).toBeGreaterThan(1.0);
    expect(sc.ratio).toBeLessThan(1.05);
    expect(fails / (N / 2)).toBeGreaterThan(0.01);
    expect(fails / (N / 2)).toBeLessThan(0.03);
    // no scale or no k-th score: nothing learnt, no guess
    const fresh = new SelectScratch(8);
    fresh.learn(0, 1);
    fresh.learn(1, 0);
    expect(fresh.ratio).toBe(0);
    expect(fresh.guess(1)).toBe(0);
  });

  it('the WebAssembly SIMD scan gives the same selection, in a canonical order (plain, dense and sparse scores)', () => {
    const pages = 4;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const d = 4;
    const ex = new WebAssembly.Instance(new WebAssembly.Module(buildSimdModule(d, { min: pages, max: pages })), { env: { memory } })
      .exports as unknown as SimdExports;
    const F = new Float32Array(memory.buffer);
    const rng = mulberry32(7);
    const pU = 0;
    const pB = 4 * 512;
    const pA = 8 * 512;
    const pW = 12 * 512; // W_dec [m, d] unit rows
    const pG = 40 * 512; // g [d]
    const cand = new Int32Array(memory.buffer, 48 * 512, 4 * 80);
    for (let trial = 0; trial < 3000; trial++) {
      const m = 4 * (1 + Math.floor(rng() * 120));
      const k = 1 + Math.floor(rng() * Math.min(m, 70));
      const U = Float32Array.from({ length: m }, () => (rng() < 0.3 ? Math.round((rng() - 0.7) * 6) / 2 : (rng() - 0.6) * 3));
      const be = Float32Array.from({ length: m }, () => (rng() < 0.5 ? 0 : (rng() - 0.5) * 0.5));
      const Wd = new Float32Array(m * d);
      for (let j = 0; j < m; j++) {
        let q = 0;
        for (let i = 0; i < d; i++) q += (Wd[j * d + i] = rng() - 0.5) ** 2;
        for (let i = 0; i < d; i++) Wd[j * d + i] /= Math.sqrt(q);
      }
      const g = Float32Array.from({ length: d }, () => (rng() - 0.5) * 2);
      // A = W_dec g computed exactly like the sparse path (float32 SIMD dot) so both modes agree
      F.set(Wd, pW / 4);
      F.set(g, pG / 4);
      const A = Float32Array.from({ length: m }, (_, j) => ex.dot(pW + j * d * 4, pG));
      const mode = [SCORE.plain, SCORE.dense, SCORE.sparse][trial % 3];
      const beta = mode === SCORE.plain ? 0 : rng() * 3;
      F.set(U, pU / 4);
      F.set(be, pB / 4);
      F.set(A, pA / 4);
      let gn = 0;
      for (const v of g) gn += v * v;
      const scW = new SelectScratch(k);
      scW.ratio = rng() * 3;
      const sel = new WasmSelector(ex, memory, cand, scW, m, k, d * 4);
      const idxW = new Int32Array(k);
      const valW = new Float32Array(k);
      const l0w = sel.select(pU, pB, mode, beta, pA, pW, pG, 1 + beta * Math.sqrt(gn) * (1 + 1e-4), idxW, valW, 0);
      const idx = new Int32Array(k);
      const val = new Float32Array(k);
      const l0 = selectTopK(U, 0, be, m, k, mode === SCORE.plain ? null : A, 0, beta, idx, val, 0, new SelectScratch(k));
      expect(Array.from(idxW).sort((a, b) => a - b)).toEqual(reference(U, be, mode === SCORE.plain ? null : A, beta, k));
      expect(idxW).toEqual(idx); // same canonical order as the TypeScript path
      expect(valW).toEqual(val);
      expect(l0w).toBe(l0);
      for (let t = 1; t < l0; t++) expect(idx[t]).toBeGreaterThan(idx[t - 1]);
    }
  });

  it('selectAmong picks the top auxK dead latents', () => {
    const rng = mulberry32(6);
    for (let trial = 0; trial < 500; trial++) {
      const m = 20 + Math.floor(rng() * 200);
      const dead = Array.from({ length: m }, (_, j) => j).filter(() => rng() < 0.4);
      if (dead.length === 0) continue;
      const auxK = 1 + Math.floor(rng() * dead.length);
      const U = Float32Array.from({ length: m }, () => rng() - 0.4);
      const be = new Float32Array(m);
      const idx = new Int32Array(auxK);
      const val = new Float32Array(auxK);
      const n = selectAmong(U, 0, be, Int32Array.from(dead), dead.length, auxK, null, 0, 0, idx, val, 0, new SelectScratch(auxK));
      const ref = reference(U, be, null, 0, auxK, dead).filter((j) => U[j] > 0);
      expect(Array.from(idx.subarray(0, n)).sort((a, b) => a - b)).toEqual(ref);
      for (let t = n; t < auxK; t++) expect(val[t]).toBe(0);
    }
  });
});

describe('g-SAE selection (hand-checked case)', () => {
  // d = 2, m = 3. x = (1, 0), b_dec = 0, b_enc = 0 → z_pre = W_enc[0, :] = [1.0, 0.9, 0.5].
  // W_dec rows: (1, 0), (0, 1), (0.6, 0.8); g = (0, 2) → W_dec g = [0, 2, 1.6].
  // beta = 1: s = z (1 + |W_dec g|) = [1.0, 2.7, 1.3].
  const w: SaeWeights = {
    arch: 'gsae',
    d: 2,
    m: 3,
    k: 1,
    beta: 1,
    W_enc: Float32Array.from([1.0, 0.9, 0.5, 0.3, -0.2, 0.7]),
    W_dec: Float32Array.from([1, 0, 0, 1, 0.6, 0.8]),
    b_enc: new Float32Array(3),
    b_dec: new Float32Array(2),
  };
  const x = Float32Array.from([1, 0]);
  const g = Float32Array.from([0, 2]);
  const sorted = (c: { indices: Int32Array; values: Float32Array }) =>
    Array.from(c.indices)
      .map((j, t) => [j, c.values[t]] as const)
      .sort((a, b) => a[0] - b[0]);

  it('the gradient term changes which latents are selected; values stay z_pre', () => {
    expect(sorted(encodeSparse(w, x, null))).toEqual([[0, 1]]); // TopK: largest z_pre
    expect(sorted(encodeSparse(w, x, g))).toEqual([[1, Math.fround(0.9)]]); // g-SAE: s = 2.7 wins
    const w2 = { ...w, k: 2 };
    expect(sorted(encodeSparse(w2, x, g))).toEqual([
      [1, Math.fround(0.9)],
      [2, Math.fround(0.5)],
    ]);
    expect(sorted(encodeSparse(w2, x, null))).toEqual([
      [0, 1],
      [1, Math.fround(0.9)],
    ]);
    // beta = 0 or a topk SAE ignores the gradient
    expect(sorted(encodeSparse({ ...w, beta: 0 }, x, g))).toEqual([[0, 1]]);
    expect(sorted(encodeSparse({ ...w, arch: 'topk' }, x, g))).toEqual([[0, 1]]);
    // a smaller beta: s = [1.0, 0.9 + 0.9·0.1·2 = 1.08, 0.5 + 0.5·0.1·1.6 = 0.58] → still latent 1
    expect(sorted(encodeSparse({ ...w, beta: 0.1 }, x, g))).toEqual([[1, Math.fround(0.9)]]);
    // beta = 0.05: s1 = 0.9 + 0.09 = 0.99 < 1.0 → latent 0
    expect(sorted(encodeSparse({ ...w, beta: 0.05 }, x, g))).toEqual([[0, 1]]);
  });

  it('decodeSparse: x̂ = Σ values W_dec[idx] + b_dec', () => {
    const w2 = { ...w, k: 2, b_dec: Float32Array.from([0.5, -1]) };
    // x - b_dec = (0.5, 1): z_pre = 0.5·[1, .9, .5] + 1·[.3, -.2, .7] = [0.8, 0.25, 0.95]
    const code = encodeSparse(w2, x, null);
    expect(sorted(code)).toEqual([
      [0, Math.fround(0.8)],
      [2, Math.fround(0.95)],
    ]);
    const xh = decodeSparse(w2, code);
    expect(xh[0]).toBeCloseTo(0.5 + 0.8 * 1 + 0.95 * 0.6, 6);
    expect(xh[1]).toBeCloseTo(-1 + 0.95 * 0.8, 6);
  });
});
