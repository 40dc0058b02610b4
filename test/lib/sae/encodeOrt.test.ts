/**
 * The ONNX Runtime encode (lib/sae/encodeOrt.ts) against the TypeScript selection (select.ts via
 * encodeRowsTs): the same indices in the same canonical order and the same values, for TopK and
 * g-SAE weights, with zero-valued fillers (fewer than k positive latents) and exact ties.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, initBackend } from '../../../lib/backend.ts';
import { encodeSparse, encodeSparseTs, evaluateSae, selectionChangeRate } from '../../../lib/sae/infer.ts';
import type { SaeWeights } from '../../../lib/sae/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';
import { unitRows } from './unitRows.ts';

beforeAll(async () => {
  await initBackend('wasm+ort');
});

function weights(arch: SaeWeights['arch'], beta: number, d: number, m: number, k: number, seed: number, bEnc = 0): SaeWeights {
  const z = randn(mulberry32(seed));
  const W_dec = unitRows(m, d, z);
  const W_enc = new Float32Array(d * m);
  for (let i = 0; i < d; i++) for (let j = 0; j < m; j++) W_enc[i * m + j] = W_dec[j * d + i] * (1 + 0.3 * z());
  const b_enc = Float32Array.from({ length: m }, () => bEnc + 0.1 * z());
  const b_dec = Float32Array.from({ length: d }, () => 0.2 * z());
  return { arch, d, m, k, beta, W_enc, W_dec, b_enc, b_dec };
}

/** Values agree to float32 rounding (the GEMMs of ORT and tfjs sum in different orders). */
function expectClose(a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  expect(worst).toBeLessThan(2e-6);
  for (let i = 0; i < a.length; i++) expect(a[i] > 0).toBe(b[i] > 0);
}

function rows(n: number, d: number, seed: number): Float32Array {
  const z = randn(mulberry32(seed));
  return Float32Array.from({ length: n * d }, () => z());
}

describe('encodeRowsOrt', () => {
  it('runs on wasm+ort', () => {
    expect(activeBackend()).toBe('wasm+ort');
  });

  for (const [arch, beta] of [['topk', 0], ['gsae', 0.5], ['gsae', 3]] as const) {
    it(`equals the TypeScript selection (${arch}, β ${beta})`, () => {
      const d = 16;
      const m = 256;
      const k = 8;
      const w = weights(arch, beta, d, m, k, 1);
      const n = 3000;
      const x = rows(n, d, 2);
      const g = rows(n, d, 3);
      const a = encodeSparse(w, x, g);
      const b = encodeSparseTs(w, x, g);
      expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
      expectClose(a.values, b.values);
    });
  }

  it('block boundaries do not matter (m large enough for several blocks of rows)', () => {
    const w = weights('gsae', 1, 8, 4096, 4, 4); // defaultBlockRows(4096) = 1024 rows per block
    const x = rows(2500, 8, 5);
    const g = rows(2500, 8, 6);
    const a = encodeSparse(w, x, g);
    const b = encodeSparseTs(w, x, g);
    expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
    expectClose(a.values, b.values);
  });

  it('fills with the lowest-index zero latents when fewer than k are positive', () => {
    const w = weights('gsae', 1, 16, 64, 8, 7, -2.2); // most pre-activations negative
    const x = rows(400, 16, 8);
    const g = rows(400, 16, 9);
    for (const gg of [g, null]) {
      const a = encodeSparse(w, x, gg);
      const b = encodeSparseTs(w, x, gg);
      expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
      expectClose(a.values, b.values);
      let short = 0;
      for (let r = 0; r < a.n; r++) if (a.values[r * 8 + 7] === 0) short++;
      expect(short).toBeGreaterThan(50); // the case is exercised
    }
  });

  it('breaks exact ties by the lower index', () => {
    const w = weights('topk', 0, 8, 32, 4, 10);
    // latents 3, 9, 20 and 27 get identical encoder columns and biases: always tied
    for (const j of [9, 20, 27]) {
      for (let i = 0; i < 8; i++) w.W_enc[i * 32 + j] = w.W_enc[i * 32 + 3];
      w.b_enc[j] = w.b_enc[3] = 5;
    }
    const x = rows(200, 8, 11);
    const a = encodeSparse(w, x, null);
    const b = encodeSparseTs(w, x, null);
    expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
    // where the tied group is only partly kept, the lower indices win
    let partial = 0;
    for (let r = 0; r < a.n; r++) {
      const sel = Array.from(a.indices.subarray(r * 4, r * 4 + 4));
      const tied = sel.filter((j) => [3, 9, 20, 27].includes(j));
      if (tied.length > 0 && tied.length < 4) {
        partial++;
        expect(tied).toEqual([3, 9, 20, 27].slice(0, tied.length));
      }
    }
    expect(partial).toBeGreaterThan(0);
  });

  it('evaluateSae and the change rate agree with the TypeScript path', () => {
    const w = weights('gsae', 2, 16, 256, 8, 12);
    const x = rows(1000, 16, 13);
    const g = rows(1000, 16, 14);
    const codeP = encodeSparseTs(w, x, null);
    const codeG = encodeSparseTs(w, x, g);
    let changed = 0;
    for (let r = 0; r < 1000; r++) {
      const p = new Set(codeP.indices.subarray(r * 8, r * 8 + 8));
      for (const j of codeG.indices.subarray(r * 8, r * 8 + 8)) if (!p.has(j)) changed++;
    }
    expect(changed).toBeGreaterThan(0);
    expect(selectionChangeRate(w, x, g)).toBe(changed / 8000);
    const ev = evaluateSae(w, x, g);
    let l0 = 0;
    for (let r = 0; r < 1000; r++) for (let t = 0; t < 8; t++) if (codeG.values[r * 8 + t] > 0) l0++;
    expect(ev.l0).toBe(l0 / 1000);
  });
});
