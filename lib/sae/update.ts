/**
 * The parameter update of an SAE step, after every chunk wrote its gradient (kernel.ts):
 *   sum the chunk gradients in a fixed order; db_dec = Σ_c db_dec_c − W_enc db_enc;
 *   W_dec rows: g −= (g·w) w (remove the component parallel to the row), Adam, w /= ‖w‖;
 *   W_enc (on its transposed master copy W_encᵀ [m, d]), b_enc, b_dec: Adam.
 * Adam in PyTorch form: m = β1 m + (1 − β1) g; v = β2 v + (1 − β2) g²;
 *   p −= (lr / (1 − β1ᵗ)) m / (√v / √(1 − β2ᵗ) + ε).
 *
 * Two implementations of the same update (chosen with the kernels, `KernelSpec.simd`):
 * - `updateBlockSimd`: blocks of UPDATE_BLOCK latents taken by every thread, W_dec and W_encᵀ
 *   through the SIMD `adam` kernel (float32 arithmetic); db_dec's W_enc db_enc summed per block.
 * - `updateSerial`: plain TypeScript on the calling thread (the fallback when d or m is not a
 *   multiple of 4).
 * The biases always use `adam` below (float64 arithmetic, float32 state).
 */
import type { SimdExports } from './simd.ts';
import type { KernelBuffers, KernelSpec } from './kernel.ts';

/** The Adam constants of one step t (1-based). */
export interface AdamStep {
  b1: number;
  b2: number;
  eps: number;
  /** lr / (1 − β1ᵗ). */
  stepSize: number;
  /** √(1 − β2ᵗ). */
  sqrtBc2: number;
}

export function adamStep(opt: { adamBeta1: number; adamBeta2: number; adamEps: number }, lr: number, t: number): AdamStep {
  const b1 = opt.adamBeta1;
  const b2 = opt.adamBeta2;
  return { b1, b2, eps: opt.adamEps, stepSize: lr / (1 - b1 ** t), sqrtBc2: Math.sqrt(1 - b2 ** t) };
}

/**
 * Adam on p[o, o + n) with gradient g[go, go + n) and moments mo, vo[o, o + n) (float64
 * arithmetic; the parameters and moments are stored as float32).
 */
export function adam(
  h: AdamStep,
  p: Float32Array,
  g: ArrayLike<number>,
  mo: Float32Array,
  vo: Float32Array,
  o = 0,
  n = p.length,
  go = o,
): void {
  const { b1, b2, eps, stepSize, sqrtBc2 } = h;
  for (let i = 0; i < n; i++) {
    const gi = g[go + i];
    const mm = b1 * mo[o + i] + (1 - b1) * gi;
    const vv = b2 * vo[o + i] + (1 - b2) * gi * gi;
    mo[o + i] = mm;
    vo[o + i] = vv;
    p[o + i] -= (stepSize * mm) / (Math.sqrt(vv) / sqrtBc2 + eps);
  }
}

/** Latents per block of the parallel parameter update. */
export const UPDATE_BLOCK = 64;
export function updateBlocks(m: number): number {
  return Math.ceil(m / UPDATE_BLOCK);
}

/**
 * Update block `blk` (latents [64 blk, 64 blk + 64)) with the SIMD kernels: sum its chunk
 * gradients (fixed chunk order), db_enc and the block's part of W_enc·db_enc (pre-update W_enc,
 * into opt.gbdPart for `finishBDecBlocks`), then the decoder rows, the encoder (W_encᵀ rows, then
 * W_enc columns), W_decᵀ columns (g-SAE, unless ONNX Runtime reads W_dec with transB) and b_enc.
 * Every element's arithmetic is the same whichever thread runs the block.
 */
export function updateBlockSimd(simd: SimdExports, buf: KernelBuffers, spec: KernelSpec, blk: number, h: AdamStep, keepWdecT: boolean): void {
  const { d, m, chunks } = spec;
  const opt = buf.opt;
  const rowBytes = d * 4;
  const j0 = blk * UPDATE_BLOCK;
  const j1 = Math.min(m, j0 + UPDATE_BLOCK);
  const o = j0 * rowBytes;
  const n4 = ((j1 - j0) * d) >> 2;
  const { b1, b2, stepSize, eps } = h;
  const rsb2 = 1 / h.sqrtBc2;
  const GWe = buf.gWeT[0];
  const GWd = buf.gWd[0];
  for (let c = 1; c < chunks; c++) {
    simd.addInto(GWe.byteOffset + o, buf.gWeT[c].byteOffset + o, n4);
    simd.addInto(GWd.byteOffset + o, buf.gWd[c].byteOffset + o, n4);
  }
  // db_enc and this block's part of W_enc · db_enc (pre-update W_enc)
  chunkSumBEnc(buf, spec, opt.gbe, j0, j1);
  const WeT = opt.W_encT;
  const part = opt.gbdPart;
  const po = blk * d;
  for (let i = 0; i < d; i++) part[po + i] = 0;
  for (let j = j0; j < j1; j++) {
    const g = opt.gbe[j];
    if (g !== 0) {
      const wo = j * d;
      for (let i = 0; i < d; i++) part[po + i] += WeT[wo + i] * g;
    }
  }
  const Wd = buf.W_dec;
  for (let j = j0; j < j1; j++) simd.projRow(GWd.byteOffset + j * rowBytes, Wd.byteOffset + j * rowBytes);
  simd.adam(Wd.byteOffset + o, GWd.byteOffset + o, opt.mWd.byteOffset + o, opt.vWd.byteOffset + o, n4, b1, b2, stepSize, rsb2, eps);
  for (let j = j0; j < j1; j++) simd.normRow(Wd.byteOffset + j * rowBytes);
  simd.adam(WeT.byteOffset + o, GWe.byteOffset + o, opt.mWe.byteOffset + o, opt.vWe.byteOffset + o, n4, b1, b2, stepSize, rsb2, eps);
  transposeColumns(WeT, buf.W_enc, d, m, j0, j1);
  if (keepWdecT) transposeColumns(Wd, buf.W_decT, d, m, j0, j1);
  adam(h, buf.b_enc, opt.gbe, opt.mbe, opt.vbe, j0, j1 - j0);
}

/** After every block ran: db_dec = Σ_c db_dec_c − Σ_blocks (W_enc db_enc)_block (block order), then Adam on b_dec. */
export function finishBDecBlocks(buf: KernelBuffers, spec: KernelSpec, h: AdamStep, mbd: Float32Array, vbd: Float32Array): void {
  const { d, m } = spec;
  const gbd = chunkSumBDec(buf, spec);
  const part = buf.opt.gbdPart;
  const nb = updateBlocks(m);
  for (let b = 0; b < nb; b++) for (let i = 0; i < d; i++) gbd[i] -= part[b * d + i];
  adam(h, buf.b_dec, gbd, mbd, vbd);
}

/**
 * The whole update in TypeScript on this thread: chunk sums, the decoder rows (projection, Adam,
 * renormalisation), the encoder, W_enc = W_encᵀᵀ, the biases, and W_decᵀ (g-SAE, `keepWdecT`).
 */
export function updateSerial(buf: KernelBuffers, spec: KernelSpec, h: AdamStep, mbd: Float32Array, vbd: Float32Array, keepWdecT: boolean): void {
  const { d, m } = spec;
  const opt = buf.opt;
  const gbd = new Float64Array(d);
  sumChunkGradients(buf, spec, opt.W_encT, opt.gbe, gbd);
  const GWd = buf.gWd[0];
  const Wd = buf.W_dec;
  const gRow = new Float64Array(d);
  for (let j = 0; j < m; j++) {
    const o = j * d;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += GWd[o + i] * Wd[o + i];
    for (let i = 0; i < d; i++) gRow[i] = GWd[o + i] - dot * Wd[o + i];
    adam(h, Wd, gRow, opt.mWd, opt.vWd, o, d, 0);
    let nrm = 0;
    for (let i = 0; i < d; i++) nrm += Wd[o + i] * Wd[o + i];
    const inv = nrm > 0 ? 1 / Math.sqrt(nrm) : 0;
    if (inv > 0) for (let i = 0; i < d; i++) Wd[o + i] *= inv;
  }
  adam(h, opt.W_encT, buf.gWeT[0], opt.mWe, opt.vWe);
  transposeInto(opt.W_encT, m, d, buf.W_enc);
  adam(h, buf.b_enc, opt.gbe, opt.mbe, opt.vbe);
  adam(h, buf.b_dec, gbd, mbd, vbd);
  if (keepWdecT) transposeInto(Wd, m, d, buf.W_decT);
}

/**
 * Sum the chunk gradients in a fixed order into chunk 0's buffers (gWeT[0] = dL/dW_encᵀ [m, d],
 * gWd[0] = dL/dW_dec [m, d], before any projection), and write the bias gradients: gbe = dL/db_enc,
 * gbd = dL/db_dec = Σ_c gbd_c − W_enc · dL/db_enc (W_encT: the encoder weights, transposed).
 */
export function sumChunkGradients(buf: KernelBuffers, spec: KernelSpec, W_encT: Float32Array, gbe: Float64Array, gbd: Float64Array): void {
  const { d, m, chunks } = spec;
  const GWe = buf.gWeT[0];
  const GWd = buf.gWd[0];
  for (let c = 1; c < chunks; c++) {
    const a = buf.gWeT[c];
    const b = buf.gWd[c];
    for (let i = 0; i < GWe.length; i++) GWe[i] += a[i];
    for (let i = 0; i < GWd.length; i++) GWd[i] += b[i];
  }
  chunkSumBEnc(buf, spec, gbe, 0, m);
  gbd.set(chunkSumBDec(buf, spec));
  for (let j = 0; j < m; j++) {
    const gj = gbe[j];
    if (gj === 0) continue;
    const o = j * d;
    for (let i = 0; i < d; i++) gbd[i] -= W_encT[o + i] * gj;
  }
}

/** out[j] = Σ_c db_enc_c[j] for j in [j0, j1) (fixed chunk order). */
function chunkSumBEnc(buf: KernelBuffers, spec: KernelSpec, out: Float64Array, j0: number, j1: number): void {
  for (let j = j0; j < j1; j++) {
    let s = 0;
    for (let c = 0; c < spec.chunks; c++) s += buf.gbe[c][j];
    out[j] = s;
  }
}

/** Σ_c db_dec_c (fixed chunk order). */
function chunkSumBDec(buf: KernelBuffers, spec: KernelSpec): Float64Array {
  const gbd = new Float64Array(spec.d);
  for (let c = 0; c < spec.chunks; c++) for (let i = 0; i < spec.d; i++) gbd[i] += buf.gbd[c][i];
  return gbd;
}

/** dst[i m + j] = src[j d + i] for the latents j in [j0, j1) (src [m, d] rows → dst [d, m] columns). */
function transposeColumns(src: Float32Array, dst: Float32Array, d: number, m: number, j0: number, j1: number): void {
  for (let i = 0; i < d; i++) {
    const dof = i * m;
    for (let j = j0; j < j1; j++) dst[dof + j] = src[j * d + i];
  }
}

/** dst[c rows + r] = src[r cols + c] (dst = srcᵀ). */
export function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array): void {
  // in 64 × 64 tiles, writing dst rows contiguously (measured: ~5× faster than reading src
  // contiguously for 24576 × 768)
  const T = 64;
  for (let c0 = 0; c0 < cols; c0 += T) {
    const c1 = Math.min(cols, c0 + T);
    for (let r0 = 0; r0 < rows; r0 += T) {
      const r1 = Math.min(rows, r0 + T);
      for (let c = c0; c < c1; c++) {
        const o = c * rows;
        for (let r = r0; r < r1; r++) dst[o + r] = src[r * cols + c];
      }
    }
  }
}
