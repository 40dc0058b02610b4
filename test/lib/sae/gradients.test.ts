/**
 * The hand-written backward pass (kernel.ts + the chunk reduction in train.ts) against central
 * finite differences of a float64 reference loss, for TopK and g-SAE, with AuxK active.
 * The selection is piecewise constant: the reference recomputes it at every perturbation and
 * the test asserts it did not change (random data, no ties).
 */
import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../lib/backend.ts';
import { CTRL, SaeKernel, allocKernelBuffers, type KernelSpec } from '../../../lib/sae/kernel.ts';
import { sumChunkGradients } from '../../../lib/sae/update.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

interface Params {
  We: Float64Array; // [d, m]
  Wd: Float64Array; // [m, d]
  be: Float64Array;
  bd: Float64Array;
}

interface Problem {
  d: number;
  m: number;
  k: number;
  auxK: number;
  n: number;
  beta: number;
  alpha: number;
  auxScore: boolean;
  x: Float64Array;
  g: Float64Array | null;
  dead: number[];
}

/** Top-k indices of s (desc, ties lower index) restricted to `among`. */
function topk(s: number[], k: number, among: number[]): number[] {
  return among
    .slice()
    .sort((a, b) => s[b] - s[a] || a - b)
    .slice(0, k);
}

/** Reference loss (float64); eFixed: the AuxK target e = x − x̂ held constant (null: compute it). */
function refLoss(P: Problem, p: Params, eFixed: Float64Array[] | null): { loss: number; sel: string; e: Float64Array[] } {
  const { d, m, k, n } = P;
  let loss = 0;
  const sels: string[] = [];
  const es: Float64Array[] = [];
  const all = Array.from({ length: m }, (_, j) => j);
  for (let t = 0; t < n; t++) {
    const z: number[] = [];
    const s: number[] = [];
    for (let j = 0; j < m; j++) {
      let u = p.be[j];
      for (let i = 0; i < d; i++) u += (P.x[t * d + i] - p.bd[i]) * p.We[i * m + j];
      const zz = Math.max(0, u);
      z.push(zz);
      let a = 0;
      if (P.g) for (let i = 0; i < d; i++) a += p.Wd[j * d + i] * P.g[t * d + i];
      s.push(P.g && P.beta !== 0 ? zz + P.beta * zz * Math.abs(a) : zz);
    }
    const S = topk(s, k, all);
    const xh = new Float64Array(d);
    for (let i = 0; i < d; i++) xh[i] = p.bd[i];
    for (const j of S) for (let i = 0; i < d; i++) xh[i] += z[j] * p.Wd[j * d + i];
    const e = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      e[i] = P.x[t * d + i] - xh[i];
      loss += (e[i] * e[i]) / n;
    }
    es.push(e);
    const kA = Math.min(P.auxK, P.dead.length);
    const A = kA > 0 ? topk(P.auxScore ? s : z, kA, P.dead) : [];
    const target = eFixed ? eFixed[t] : e;
    if (kA > 0) {
      const eh = new Float64Array(d);
      for (const j of A) for (let i = 0; i < d; i++) eh[i] += z[j] * p.Wd[j * d + i];
      for (let i = 0; i < d; i++) loss += (P.alpha * (eh[i] - target[i]) ** 2) / n;
    }
    sels.push(S.slice().sort((a, b) => a - b).join(',') + '|' + A.slice().sort((a, b) => a - b).join(','));
  }
  return { loss, sel: sels.join(';'), e: es };
}

function makeProblem(opts: { arch: 'topk' | 'gsae'; auxScore?: boolean; seed: number }): { P: Problem; p: Params } {
  const d = 8;
  const m = 24;
  const k = 4;
  const n = 10;
  const rng = mulberry32(opts.seed);
  const nr = randn(rng);
  const x = Float64Array.from({ length: n * d }, () => Math.fround(nr()));
  const g = opts.arch === 'gsae' ? Float64Array.from({ length: n * d }, () => Math.fround(nr() * 0.5)) : null;
  const p: Params = {
    We: Float64Array.from({ length: d * m }, () => Math.fround(nr() * 0.5)),
    Wd: Float64Array.from({ length: m * d }, () => Math.fround(nr() * 0.4)),
    be: Float64Array.from({ length: m }, () => Math.fround(nr() * 0.3 + 0.3)),
    bd: Float64Array.from({ length: d }, () => Math.fround(nr() * 0.2)),
  };
  const dead = [1, 3, 4, 7, 9, 12, 15, 16, 18, 20, 22, 23];
  return {
    P: { d, m, k, auxK: 3, n, beta: opts.arch === 'gsae' ? 0.8 : 0, alpha: 0.5, auxScore: !!opts.auxScore, x, g, dead },
    p,
  };
}

/** The kernel's gradient for the problem: {We [d,m], Wd [m,d], be, bd}. */
function kernelGrad(P: Problem, p: Params, chunks: number, simd = true, dense = false): Params {
  const { d, m, k, n } = P;
  const useGrad = P.g !== null && P.beta !== 0;
  const spec: KernelSpec = { d, m, k, auxK: P.auxK, batch: n, chunks, useGrad, blockRows: 3, participants: 1, simd };
  const buf = allocKernelBuffers(spec);
  buf.W_enc.set(p.We);
  buf.W_dec.set(p.Wd);
  buf.b_enc.set(p.be);
  buf.b_dec.set(p.bd);
  buf.x.set(P.x);
  if (useGrad) {
    buf.g.set(P.g!);
    for (let j = 0; j < m; j++) for (let i = 0; i < d; i++) buf.W_decT[i * m + j] = p.Wd[j * d + i];
  }
  P.dead.forEach((j, t) => (buf.dead[t] = j));
  buf.ctrl[CTRL.nDead] = P.dead.length;
  buf.ctrl[CTRL.beta] = P.beta;
  buf.ctrl[CTRL.auxAlpha] = P.alpha;
  buf.ctrl[CTRL.auxK] = Math.min(P.auxK, P.dead.length);
  buf.ctrl[CTRL.auxUsesGrad] = P.auxScore ? 1 : 0;
  buf.ctrl[CTRL.denseA] = dense || P.auxScore ? 1 : 0;
  let maxNorm = 0;
  for (let j = 0; j < m; j++) {
    let q = 0;
    for (let i = 0; i < d; i++) q += p.Wd[j * d + i] ** 2;
    maxNorm = Math.max(maxNorm, Math.sqrt(q));
  }
  buf.ctrl[CTRL.rowNormMax] = maxNorm; // these test rows are not unit norm
  const kern = new SaeKernel(spec, buf);
  kern.beginStep();
  for (let c = 0; c < chunks; c++) kern.runChunk(c);
  kern.endStep();
  const WeT = new Float32Array(m * d);
  for (let j = 0; j < m; j++) for (let i = 0; i < d; i++) WeT[j * d + i] = p.We[i * m + j];
  const gbe = new Float64Array(m);
  const gbd = new Float64Array(d);
  sumChunkGradients(buf, spec, WeT, gbe, gbd);
  const gWe = new Float64Array(d * m);
  for (let j = 0; j < m; j++) for (let i = 0; i < d; i++) gWe[i * m + j] = buf.gWeT[0][j * d + i];
  return { We: gWe, Wd: Float64Array.from(buf.gWd[0]), be: gbe, bd: gbd };
}

function checkFD(P: Problem, p: Params, grad: Params): { checked: number; worst: number } {
  const base = refLoss(P, p, null);
  const eFixed = base.e;
  const h = 1e-5;
  let checked = 0;
  let worst = 0;
  const rng = mulberry32(99);
  for (const name of ['We', 'Wd', 'be', 'bd'] as const) {
    const arr = p[name];
    const gk = grad[name];
    let gmax = 0;
    for (let i = 0; i < gk.length; i++) gmax = Math.max(gmax, Math.abs(gk[i]));
    // every entry with a non-zero kernel gradient is a candidate; test up to 12 of them plus 3 random
    const nz = Array.from({ length: arr.length }, (_, i) => i).filter((i) => gk[i] !== 0);
    const picks = new Set<number>();
    while (picks.size < Math.min(12, nz.length)) picks.add(nz[Math.floor(rng() * nz.length)]);
    for (let r = 0; r < 3; r++) picks.add(Math.floor(rng() * arr.length));
    for (const i of picks) {
      const orig = arr[i];
      arr[i] = orig + h;
      const lp = refLoss(P, p, eFixed);
      arr[i] = orig - h;
      const lm = refLoss(P, p, eFixed);
      arr[i] = orig;
      expect(lp.sel, `selection changed when perturbing ${name}[${i}]`).toBe(base.sel);
      expect(lm.sel).toBe(base.sel);
      const fd = (lp.loss - lm.loss) / (2 * h);
      const err = Math.abs(fd - gk[i]) / (Math.abs(fd) + 0.01 * gmax + 1e-12);
      worst = Math.max(worst, err);
      expect(err, `${name}[${i}]: kernel ${gk[i]} vs finite difference ${fd}`).toBeLessThan(2e-3);
      checked++;
    }
  }
  return { checked, worst };
}

describe.each([
  ['WebAssembly SIMD', true],
  ['TypeScript', false],
])('hand-written SAE gradients vs finite differences (%s kernels)', (_name, simd) => {
  it('TopK with AuxK', () => {
    const { P, p } = makeProblem({ arch: 'topk', seed: 1 });
    const r = checkFD(P, p, kernelGrad(P, p, 2, simd));
    expect(r.checked).toBeGreaterThan(40);
  });

  it('g-SAE (beta 0.8) with AuxK selecting by z_pre, sparse scores', () => {
    const { P, p } = makeProblem({ arch: 'gsae', seed: 2 });
    const r = checkFD(P, p, kernelGrad(P, p, 3, simd));
    expect(r.checked).toBeGreaterThan(40);
  });

  it('g-SAE (beta 0.8), dense scores (a matMul g W_decᵀ)', () => {
    const { P, p } = makeProblem({ arch: 'gsae', seed: 6 });
    const r = checkFD(P, p, kernelGrad(P, p, 2, simd, true));
    expect(r.checked).toBeGreaterThan(40);
  });

  it('g-SAE with AuxK selecting by the gradient score', () => {
    const { P, p } = makeProblem({ arch: 'gsae', auxScore: true, seed: 3 });
    const r = checkFD(P, p, kernelGrad(P, p, 1, simd));
    expect(r.checked).toBeGreaterThan(40);
  });

  it('the gradient does not depend on the chunk assignment beyond float rounding', () => {
    const { P, p } = makeProblem({ arch: 'gsae', seed: 4 });
    const a = kernelGrad(P, p, 1, simd);
    const b = kernelGrad(P, p, 4, simd);
    for (const name of ['We', 'Wd', 'be', 'bd'] as const) {
      for (let i = 0; i < a[name].length; i++) expect(b[name][i]).toBeCloseTo(a[name][i], 5);
    }
  });
});

describe('SIMD and TypeScript kernels agree', () => {
  it('to float32 rounding', () => {
    const { P, p } = makeProblem({ arch: 'gsae', seed: 5 });
    const a = kernelGrad(P, p, 2, true);
    const b = kernelGrad(P, p, 2, false);
    for (const name of ['We', 'Wd', 'be', 'bd'] as const) {
      let mx = 0;
      for (let i = 0; i < a[name].length; i++) mx = Math.max(mx, Math.abs(a[name][i]));
      for (let i = 0; i < a[name].length; i++) expect(Math.abs(a[name][i] - b[name][i])).toBeLessThan(1e-5 * mx + 1e-7);
    }
  });
});
