/**
 * The per-chunk forward + hand-written backward pass of a TopK / g-SAE training step.
 *
 * A batch of N rows is split into `chunks` fixed row ranges; each chunk's gradient is written to
 * its own buffers (shared memory), and the update (update.ts) sums the chunks in a fixed order.
 * Chunks may run on the main thread or on worker threads: the numbers do not depend on how many
 * threads run them.
 *
 * Work per chunk (measured on tfjs-wasm): the encoder forward is a dense tfjs matMul [rows, d] ×
 * [d, m] (wasm SIMD), and so is the g-SAE's W_dec g ([rows, d] × W_decᵀ [d, m], W_decᵀ kept up to
 * date by the parameter update: no transpose flags). Everything sparse — selection, decode (k rows
 * of W_dec per token) and the backward pass — runs on the k selected rows only: one chunk loop
 * (SaeKernel.runChunk) over the row arithmetic of either the WebAssembly SIMD kernels generated
 * for this d (SimdRows, simd.ts; ~5× faster than plain loops, used when d and m are multiples of
 * 4) or plain TypeScript loops (TsRows, the fallback).
 * All buffers live in one shared WebAssembly.Memory so worker threads work on the same arrays.
 *
 * Loss (per batch of N rows, x in the trainer's internal (normalised) units):
 *   L = (1/N) Σ_t ‖x̂_t − x_t‖² + α (1/N) Σ_t ‖ê_t − e_t‖²,  e_t = x_t − x̂_t (held constant),
 *   x̂_t = Σ_{j∈S_t} z_tj W_dec[j] + b_dec,  ê_t = Σ_{j∈A_t} z_tj W_dec[j] (no b_dec),
 *   z_tj = ReLU(u_tj), u_t = (x_t − b_dec) W_enc + b_enc; S_t: the k selected; A_t: top auxK dead.
 * Gradients (r_t = x̂_t − x_t, q_t = ê_t − e_t = ê_t + r_t, c = 2/N):
 *   dx̂ = c r;  dê = α c q;  dW_dec[j] += z_tj dx̂ (j∈S) and z_tj dê (j∈A);  db_dec += Σ dx̂
 *   du_tj = [z_tj > 0] (W_dec[j]·dx̂  or  W_dec[j]·dê);  dW_enc[:, j] += du_tj (x_t − b_dec);
 *   db_enc[j] += du_tj;  db_dec −= W_enc db_enc (added by update.ts after the chunk sum).
 * dW_enc is accumulated transposed ([m, d], contiguous rows) in `gWeT`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { SCORE, SelectScratch, WasmSelector, selectAmong, selectCap, selectTopK } from './select.ts';
import { buildSimdModule, type SimdExports } from './simd.ts';
import { ortEnabled } from '../backend.ts';
import { gemm } from '../native/ort.ts';
import { updateBlockSimd, updateBlocks, type AdamStep } from './update.ts';

/** Sizes fixed for a training run. */
export interface KernelSpec {
  d: number;
  m: number;
  k: number;
  auxK: number;
  batch: number;
  chunks: number;
  /** Whether the g-SAE score is used (arch gsae with beta != 0): needs g and W_decT. */
  useGrad: boolean;
  /** Rows per encoder matMul block (bounds the [rows, m] temporary). */
  blockRows: number;
  /** Threads that run chunks (each has its own scratch). */
  participants: number;
  /** Use the WebAssembly SIMD kernels (needs d % 4 == 0 and m % 4 == 0). */
  simd: boolean;
}

/** Control words written by the trainer before each step. */
export const CTRL = {
  nDead: 0,
  beta: 1,
  auxAlpha: 2,
  auxK: 3, // effective: min(auxK, nDead)
  auxUsesGrad: 4,
  /** 1: g-SAE scores from a dense matMul A = g W_decᵀ; 0: from dot products of the candidates only. */
  denseA: 5,
  /** An upper bound of the decoder row norms (for the sparse g-SAE score bound). */
  rowNormMax: 6,
  size: 16,
  // Adam parameters of the current update (written by the trainer)
  adamB1: 8,
  adamB2: 9,
  adamStep: 10,
  adamEps: 12,
  adamSqrtBc2: 13,
} as const;

/** Write the Adam constants of the step into ctrl (read by every thread's update blocks). */
export function writeAdamCtrl(ctrl: Float64Array, h: AdamStep): void {
  ctrl[CTRL.adamB1] = h.b1;
  ctrl[CTRL.adamB2] = h.b2;
  ctrl[CTRL.adamStep] = h.stepSize;
  ctrl[CTRL.adamEps] = h.eps;
  ctrl[CTRL.adamSqrtBc2] = h.sqrtBc2;
}

function readAdamCtrl(ctrl: Float64Array): AdamStep {
  return { b1: ctrl[CTRL.adamB1], b2: ctrl[CTRL.adamB2], stepSize: ctrl[CTRL.adamStep], eps: ctrl[CTRL.adamEps], sqrtBc2: ctrl[CTRL.adamSqrtBc2] };
}

export const STATS = {
  mse: 0, // Σ ‖x̂ − x‖² (internal units)
  aux: 1, // Σ ‖ê − e‖²
  l0: 2, // Σ L0
  sumsq: 3, // Σ ‖x‖²
  scored: 4, // candidates whose |W_dec g| was computed (sparse g-SAE scores)
  sumx: 5, // Σ x (d values follow)
} as const;

/** Per-thread scratch. */
export interface KernelScratch {
  U: Float32Array; // [blockRows, m] encoder output (without b_enc)
  A: Float32Array; // [blockRows, m] W_dec g (length 0 unless useGrad)
  xc: Float32Array; // [blockRows, d] x − b_dec
  xh: Float32Array; // [d]
  dx: Float32Array; // [d]
  q: Float32Array; // [d]
  cand: Int32Array; // selection candidates
  /** The candidate scores and indices of the top-k selection (SelectScratch's cs / ci, for scoreSparse). */
  cs: Float64Array;
  ci: Int32Array;
}

/** Optimiser state (main thread only, in the same memory so the SIMD Adam can use it). */
export interface OptBuffers {
  W_encT: Float32Array; // [m, d] master copy of W_enc
  mWe: Float32Array;
  vWe: Float32Array;
  mWd: Float32Array;
  vWd: Float32Array;
  mbe: Float32Array; // [m]
  vbe: Float32Array; // [m]
  /** Σ_c db_enc of the step (float64, written by the update blocks). */
  gbe: Float64Array; // [m]
  /** Per update block: Σ_{j in block} db_enc[j] W_enc[:, j] (pre-update), for db_dec. */
  gbdPart: Float64Array; // [updateBlocks, d]
}

/** All arrays are views on one shared WebAssembly.Memory (byteOffset = wasm pointer). */
export interface KernelBuffers {
  memory: WebAssembly.Memory;
  /** The compiled SIMD kernels for this memory (null without simd). */
  module: WebAssembly.Module | null;
  W_enc: Float32Array; // [d, m]
  W_dec: Float32Array; // [m, d]
  W_decT: Float32Array; // [d, m] (length 0 unless useGrad)
  b_enc: Float32Array; // [m]
  b_dec: Float32Array; // [d]
  x: Float32Array; // [batch, d]
  g: Float32Array; // [batch, d] (length 0 unless useGrad)
  dead: Int32Array; // [m] ascending ids of dead latents, first ctrl[nDead] valid
  ctrl: Float64Array; // [CTRL.size]
  /** [0]: next chunk to run (dynamic scheduling with Atomics.add). */
  sched: Int32Array;
  gWeT: Float32Array[]; // per chunk [m, d]
  gWd: Float32Array[]; // per chunk [m, d]
  gbe: Float32Array[]; // per chunk [m]
  gbd: Float32Array[]; // per chunk [d]
  fired: Int32Array[]; // per chunk [m]: tokens on which the latent fired (selected, z > 0)
  stats: Float64Array[]; // per chunk [4 + d]
  scratch: KernelScratch[]; // per participant
  opt: OptBuffers;
}

const PAGE = 65536;
const MAX_PAGES = 65536; // 4 GiB, the wasm32 limit

/** Whether the SIMD kernels can run here for these sizes. */
export function simdAvailable(d: number, m: number): boolean {
  if (d % 4 !== 0 || m % 4 !== 0) return false;
  try {
    return WebAssembly.validate(buildSimdModule(4, { min: 1, max: 1 }));
  } catch {
    return false;
  }
}

/** Typed arrays taken one after the other from one memory (each start 16-byte aligned). */
interface Take {
  f32(n: number): Float32Array;
  f64(n: number): Float64Array;
  i32(n: number): Int32Array;
}

/** The buffers, in their fixed order in the memory. */
function layout(s: KernelSpec, take: Take): Omit<KernelBuffers, 'memory' | 'module'> {
  const { d, m, batch, chunks, participants, blockRows } = s;
  const cap = Math.max(4 * Math.max(s.k, s.auxK), 64);
  const perChunk = <T>(make: () => T): T[] => Array.from({ length: chunks }, make);
  return {
    W_enc: take.f32(d * m),
    W_dec: take.f32(m * d),
    W_decT: take.f32(s.useGrad ? d * m : 0),
    b_enc: take.f32(m),
    b_dec: take.f32(d),
    x: take.f32(batch * d),
    g: take.f32(s.useGrad ? batch * d : 0),
    dead: take.i32(m),
    ctrl: take.f64(CTRL.size),
    sched: take.i32(4),
    gWeT: perChunk(() => take.f32(m * d)),
    gWd: perChunk(() => take.f32(m * d)),
    gbe: perChunk(() => take.f32(m)),
    gbd: perChunk(() => take.f32(d)),
    fired: perChunk(() => take.i32(m)),
    stats: perChunk(() => take.f64(STATS.sumx + d)),
    scratch: Array.from({ length: participants }, () => ({
      U: take.f32(blockRows * m),
      A: take.f32(s.useGrad ? blockRows * m : 0),
      xc: take.f32(blockRows * d),
      xh: take.f32(d),
      dx: take.f32(d),
      q: take.f32(d),
      cand: take.i32(cap),
      cs: take.f64(selectCap(s.k)),
      ci: take.i32(selectCap(s.k)),
    })),
    opt: {
      W_encT: take.f32(m * d),
      mWe: take.f32(m * d),
      vWe: take.f32(m * d),
      mWd: take.f32(m * d),
      vWd: take.f32(m * d),
      mbe: take.f32(m),
      vbe: take.f32(m),
      gbe: take.f64(m),
      gbdPart: take.f64(updateBlocks(m) * d),
    },
  };
}

const alignedBytes = (n: number, bytesPer: number): number => Math.ceil((n * bytesPer) / 16) * 16;

export function allocKernelBuffers(s: KernelSpec): KernelBuffers {
  // sizing pass, then the views
  let bytes = 0;
  const size = (bytesPer: number) => (n: number): never => {
    bytes += alignedBytes(n, bytesPer);
    return null as never;
  };
  layout(s, { f32: size(4), f64: size(8), i32: size(4) });
  const pages = Math.max(1, Math.ceil(bytes / PAGE));
  if (pages > MAX_PAGES) {
    throw new Error(`sae: the training buffers need ${(bytes / 2 ** 30).toFixed(2)} GiB, above the 4 GiB wasm32 limit; use a smaller batch or fewer chunks`);
  }
  // Shared only when worker threads use it: ONNX Runtime's binding cannot read SharedArrayBuffer
  // views, so a single-thread run (the pipeline's default) lets it work on this memory directly.
  const shared = s.participants > 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
  const buffer = memory.buffer;
  let off = 0;
  const view =
    <A>(Ctor: new (b: ArrayBufferLike, offset: number, n: number) => A, bytesPer: number) =>
    (n: number): A => {
      const a = new Ctor(buffer, off, n);
      off += alignedBytes(n, bytesPer);
      return a;
    };
  const arrays = layout(s, { f32: view(Float32Array, 4), f64: view(Float64Array, 8), i32: view(Int32Array, 4) });
  const module = s.simd ? new WebAssembly.Module(buildSimdModule(s.d, { min: pages, max: pages, shared })) : null;
  return { memory, module, ...arrays };
}

/** Instantiate the SIMD kernels on the buffers' memory (null without simd). */
export function instantiateSimd(buf: KernelBuffers): SimdExports | null {
  if (!buf.module) return null;
  return new WebAssembly.Instance(buf.module, { env: { memory: buf.memory } }).exports as unknown as SimdExports;
}

/**
 * Copy a float32 tensor's values into dst. On the wasm backend this reads the backend's heap
 * directly (one copy, no temporary array); elsewhere it uses dataSync().
 */
export function copyTensorInto(t: tf.Tensor, dst: Float32Array): void {
  const backend = tf.backend() as unknown as {
    dataIdMap?: { get(id: unknown): { memoryOffset?: number | null } | undefined };
    wasm?: { HEAPU8?: Uint8Array };
  };
  const info = backend.dataIdMap?.get(t.dataId);
  const heap = backend.wasm?.HEAPU8;
  if (tf.getBackend() === 'wasm' && heap && info && typeof info.memoryOffset === 'number' && info.memoryOffset % 4 === 0) {
    dst.set(new Float32Array(heap.buffer, heap.byteOffset + info.memoryOffset, t.size));
  } else {
    dst.set(t.dataSync() as Float32Array);
  }
}

/** Rows [r0, r1) of chunk c for a batch of n rows in C chunks. */
export function chunkRange(c: number, n: number, C: number): [number, number] {
  return [Math.floor((c * n) / C), Math.floor(((c + 1) * n) / C)];
}

/** Default rows per encoder block: at most ~4M floats of [rows, m] output. */
export function defaultBlockRows(m: number): number {
  return Math.max(8, Math.min(4096, Math.floor((1 << 22) / m)));
}

/** The latents selected for the current row: the k main ones and up to auxK AuxK ones. */
interface RowSelection {
  idx: Int32Array;
  val: Float32Array;
  aidx: Int32Array;
  aval: Float32Array;
}

/**
 * The per-row arithmetic of a chunk (x̂, r, q, dx as in the header), in one of two
 * implementations: SimdRows (the generated kernels, float32) and TsRows (TypeScript loops, float64
 * scratch; the fallback when d or m is not a multiple of 4). SaeKernel.runChunk is the one loop
 * over them.
 */
interface RowMath {
  /** Start chunk c (its gradient buffers). */
  beginChunk(c: number): void;
  /** xc = x − b_dec for the rows [b0, b0 + nb) of the batch (scratch rows 0 .. nb). */
  centre(b0: number, nb: number): void;
  /** Select the k latents of block row r (batch row `row`) into idx/val; returns L0. */
  select(r: number, row: number): number;
  /** x̂ = b_dec + Σ val W_dec[idx]; r = x̂ − x; q = r; dx = (2/N) r; gbd += dx. Returns ‖r‖². */
  residual(r: number, row: number): number;
  /** ê: q += Σ aval W_dec[aidx] (the first na); dx = alphaC q. Returns ‖q‖². */
  auxResidual(na: number, alphaC: number): number;
  /** Latent j (value v) of block row r: gW_dec[j] += v dx; du = W_dec[j]·dx; gW_encᵀ[j] += du xc. Returns du. */
  back(j: number, v: number, r: number): number;
  /** The dense g-SAE scores A = g W_decᵀ of this block, when computed (else null). */
  readonly denseA: Float32Array | null;
  /** Candidates whose |W_dec g| was computed in this chunk (sparse g-SAE scores). */
  readonly scored: number;
}

class SimdRows implements RowMath {
  private readonly selector: WasmSelector;
  private mode: number = SCORE.plain;
  private beta = 0;
  private rowNormMax = 1;
  /** Byte offsets (wasm pointers) of the buffers: fixed for the kernel's life (the memory never grows). */
  private readonly p: { rowBytes: number; Wd: number; be: number; x: number; g: number; U: number; A: number; xc: number; xh: number; dx: number; q: number };
  /** … and of the current chunk's gradient buffers. */
  private pgWd = 0;
  private pgWe = 0;
  private pgbd = 0;
  denseA: Float32Array | null = null;

  constructor(
    private readonly simd: SimdExports,
    private readonly spec: KernelSpec,
    private readonly buf: KernelBuffers,
    private readonly sc: KernelScratch,
    private readonly s: RowSelection,
    sel: SelectScratch,
  ) {
    this.selector = new WasmSelector(simd, buf.memory, sc.cand, sel, spec.m, spec.k, spec.d * 4);
    const useGrad = spec.useGrad;
    this.p = {
      rowBytes: spec.d * 4,
      Wd: buf.W_dec.byteOffset,
      be: buf.b_enc.byteOffset,
      x: buf.x.byteOffset,
      g: useGrad ? buf.g.byteOffset : 0,
      U: sc.U.byteOffset,
      A: useGrad ? sc.A.byteOffset : 0,
      xc: sc.xc.byteOffset,
      xh: sc.xh.byteOffset,
      dx: sc.dx.byteOffset,
      q: sc.q.byteOffset,
    };
  }

  get scored(): number {
    return this.selector.scored;
  }

  beginChunk(c: number): void {
    const { ctrl } = this.buf;
    this.beta = ctrl[CTRL.beta];
    this.mode = !this.spec.useGrad || this.beta === 0 ? SCORE.plain : ctrl[CTRL.denseA] !== 0 ? SCORE.dense : SCORE.sparse;
    this.denseA = this.mode === SCORE.dense ? this.sc.A : null;
    // float32 rounding margin on top of the row-norm bound and of ‖g‖ computed in float32
    this.rowNormMax = (ctrl[CTRL.rowNormMax] || 1) * (1 + 1e-4);
    this.pgWd = this.buf.gWd[c].byteOffset;
    this.pgWe = this.buf.gWeT[c].byteOffset;
    this.pgbd = this.buf.gbd[c].byteOffset;
    this.selector.scored = 0;
  }

  centre(b0: number, nb: number): void {
    this.simd.subRows(this.p.xc, this.p.x + b0 * this.p.rowBytes, this.buf.b_dec.byteOffset, nb);
  }

  select(r: number, row: number): number {
    const p = this.p;
    const uo = r * this.spec.m * 4;
    const pg = p.g + row * p.rowBytes;
    let gB = 0;
    if (this.mode === SCORE.sparse) gB = 1 + this.beta * Math.sqrt(this.simd.dot(pg, pg)) * this.rowNormMax;
    const xc = p.xc + r * p.rowBytes;
    const scale = Math.sqrt(this.simd.dot(xc, xc)); // ‖x − b_dec‖: the threshold guess's scale
    return this.selector.select(p.U + uo, p.be, this.mode, this.beta, p.A + uo, p.Wd, pg, gB, this.s.idx, this.s.val, 0, scale);
  }

  residual(_r: number, row: number): number {
    const { k, batch } = this.spec;
    const { simd, p } = this;
    const { idx, val } = this.s;
    this.sc.xh.set(this.buf.b_dec);
    for (let t = 0; t < k; t++) {
      const v = val[t];
      if (v !== 0) simd.axpy(v, p.Wd + idx[t] * p.rowBytes, p.xh);
    }
    return simd.resid(p.xh, p.x + row * p.rowBytes, 2 / batch, p.dx, p.q, this.pgbd);
  }

  auxResidual(na: number, alphaC: number): number {
    const { simd, p } = this;
    const { aidx, aval } = this.s;
    for (let t = 0; t < na; t++) simd.axpy(aval[t], p.Wd + aidx[t] * p.rowBytes, p.q);
    return simd.scale(p.q, alphaC, p.dx);
  }

  back(j: number, v: number, r: number): number {
    const p = this.p;
    const o = j * p.rowBytes;
    return this.simd.back(p.Wd + o, v, p.dx, this.pgWd + o, this.pgWe + o, p.xc + r * p.rowBytes);
  }
}

class TsRows implements RowMath {
  private readonly xh: Float64Array;
  private readonly dx: Float64Array;
  private readonly q: Float64Array;
  private readonly xcRow: Float64Array;
  private gWd: Float32Array;
  private gWeT: Float32Array;
  private gbd: Float32Array;
  readonly denseA: Float32Array | null;
  readonly scored = 0;

  constructor(
    private readonly spec: KernelSpec,
    private readonly buf: KernelBuffers,
    private readonly sc: KernelScratch,
    private readonly s: RowSelection,
    private readonly sel: SelectScratch,
  ) {
    const { d } = spec;
    this.xh = new Float64Array(d);
    this.dx = new Float64Array(d);
    this.q = new Float64Array(d);
    this.xcRow = new Float64Array(d);
    this.gWd = buf.gWd[0];
    this.gWeT = buf.gWeT[0];
    this.gbd = buf.gbd[0];
    this.denseA = spec.useGrad ? sc.A : null;
  }

  beginChunk(c: number): void {
    this.gWd = this.buf.gWd[c];
    this.gWeT = this.buf.gWeT[c];
    this.gbd = this.buf.gbd[c];
  }

  centre(b0: number, nb: number): void {
    const { d } = this.spec;
    const bd = this.buf.b_dec;
    const x = this.buf.x;
    const xc = this.sc.xc;
    for (let r = 0; r < nb; r++) {
      const xo = (b0 + r) * d;
      const co = r * d;
      for (let i = 0; i < d; i++) xc[co + i] = x[xo + i] - bd[i];
    }
  }

  select(r: number): number {
    const { m, k, d } = this.spec;
    const uo = r * m;
    const xc = this.sc.xc;
    let ss = 0;
    for (let i = r * d; i < (r + 1) * d; i++) ss += xc[i] * xc[i];
    return selectTopK(this.sc.U, uo, this.buf.b_enc, m, k, this.denseA, uo, this.buf.ctrl[CTRL.beta], this.s.idx, this.s.val, 0, this.sel, Math.sqrt(ss));
  }

  residual(r: number, row: number): number {
    const { d, k, batch } = this.spec;
    const { xh, dx, q, xcRow, gbd } = this;
    const { idx, val } = this.s;
    const bd = this.buf.b_dec;
    const x = this.buf.x;
    const Wd = this.buf.W_dec;
    // x_c (float32 values as used by the encoder) and the decode x̂ = Σ v W_dec[j] + b_dec
    const co = r * d;
    for (let i = 0; i < d; i++) {
      xcRow[i] = this.sc.xc[co + i];
      xh[i] = bd[i];
    }
    for (let t = 0; t < k; t++) {
      const v = val[t];
      if (v !== 0) axpy(v, Wd, idx[t] * d, xh, d);
    }
    const cc = 2 / batch;
    const xo = row * d;
    let e2 = 0;
    for (let i = 0; i < d; i++) {
      const ri = xh[i] - x[xo + i];
      e2 += ri * ri;
      q[i] = ri;
      const g = cc * ri;
      dx[i] = g;
      gbd[i] += g;
    }
    return e2;
  }

  auxResidual(na: number, alphaC: number): number {
    const { d } = this.spec;
    const { q, dx } = this;
    const { aidx, aval } = this.s;
    for (let t = 0; t < na; t++) axpy(aval[t], this.buf.W_dec, aidx[t] * d, q, d);
    let a2 = 0;
    for (let i = 0; i < d; i++) {
      a2 += q[i] * q[i];
      dx[i] = alphaC * q[i];
    }
    return a2;
  }

  back(j: number, v: number): number {
    const { d } = this.spec;
    return backLatent(j * d, v, this.dx, this.buf.W_dec, this.gWd, this.gWeT, this.xcRow, d);
  }
}

export class SaeKernel {
  private Wenc: tf.Tensor2D | null = null;
  private WdecT: tf.Tensor2D | null = null;
  private readonly selAux: SelectScratch;
  private readonly s: RowSelection;
  private readonly sc: KernelScratch;
  private readonly rows: RowMath;
  /** The SIMD kernels (null: TypeScript loops). */
  readonly wasm: SimdExports | null;
  /** Dense products through ONNX Runtime on the shared memory (backend wasm+ort; one thread per participant). */
  readonly ort: boolean;

  constructor(
    readonly spec: KernelSpec,
    readonly buf: KernelBuffers,
    readonly participant = 0,
  ) {
    const { d, k, auxK } = spec;
    this.sc = buf.scratch[participant];
    // the selection's candidate buffers live in the kernels' memory (scoreSparse writes them)
    const sel = new SelectScratch(k, { cs: this.sc.cs, ci: this.sc.ci });
    this.selAux = new SelectScratch(auxK);
    this.s = { idx: new Int32Array(k), val: new Float32Array(k), aidx: new Int32Array(Math.max(1, auxK)), aval: new Float32Array(Math.max(1, auxK)) };
    this.wasm = spec.simd ? instantiateSimd(buf) : null;
    this.rows = this.wasm ? new SimdRows(this.wasm, spec, buf, this.sc, this.s, sel) : new TsRows(spec, buf, this.sc, this.s, sel);
    this.ort = ortEnabled();
    if (this.ort && typeof SharedArrayBuffer !== 'undefined' && buf.memory.buffer instanceof SharedArrayBuffer) {
      const { m, blockRows, useGrad } = spec;
      this.staging = {
        We: new Float32Array(d * m),
        Wd: useGrad ? new Float32Array(m * d) : new Float32Array(0),
        x: new Float32Array(blockRows * d),
        U: new Float32Array(blockRows * m),
      };
    }
  }

  /**
   * Private copies for ONNX Runtime when the memory is shared (its binding cannot read
   * SharedArrayBuffer views): the weights once per step, each block's input and output.
   */
  private staging: { We: Float32Array; Wd: Float32Array; x: Float32Array; U: Float32Array } | null = null;

  private ortGemm(a: Float32Array, w: Float32Array, wStage: Float32Array | null, out: Float32Array, nb: number, transB: boolean): void {
    const { d, m } = this.spec;
    const st = this.staging;
    if (!st) {
      gemm(a, w, out, nb, d, m, { transB, threads: 1 });
      return;
    }
    st.x.set(a.subarray(0, nb * d));
    gemm(st.x, wStage!, st.U, nb, d, m, { transB, threads: 1 });
    out.set(st.U.subarray(0, nb * m));
  }

  /** Whether this step computes the dense g-SAE scores A = g W_decᵀ (always on the TypeScript path). */
  private denseScores(): boolean {
    return this.spec.useGrad && (!this.wasm || this.buf.ctrl[CTRL.denseA] !== 0);
  }

  /** Upload the current weights to tfjs (call after every parameter update). */
  beginStep(): void {
    this.endStep();
    if (this.ort) {
      this.begun = true;
      if (this.staging) {
        this.staging.We.set(this.buf.W_enc);
        if (this.denseScores()) this.staging.Wd.set(this.buf.W_dec);
      }
      return;
    }
    const { d, m } = this.spec;
    // The wasm backend copies tensor data into its heap; other backends may keep a reference to
    // the array, which the trainer overwrites later: give them a copy.
    const own = (a: Float32Array) => (tf.getBackend() === 'wasm' ? a : a.slice());
    this.Wenc = tf.tensor2d(own(this.buf.W_enc), [d, m]);
    if (this.denseScores()) this.WdecT = tf.tensor2d(own(this.buf.W_decT), [d, m]);
  }

  private begun = false;

  endStep(): void {
    this.begun = false;
    this.Wenc?.dispose();
    this.WdecT?.dispose();
    this.Wenc = null;
    this.WdecT = null;
  }

  /** Encoder output for rows [b0, b0 + nb) into scratch U (and A = g W_decᵀ); xc = x − b_dec. */
  private encodeBlock(b0: number, nb: number): void {
    const { d } = this.spec;
    const buf = this.buf;
    const sc = this.sc;
    this.rows.centre(b0, nb);
    const g = this.denseScores() ? buf.g.subarray(b0 * d, (b0 + nb) * d) : null;
    if (this.ort) {
      // U = xc W_enc and A = g W_decᵀ straight on the shared memory (one ORT thread per participant)
      this.ortGemm(sc.xc, buf.W_enc, this.staging?.We ?? null, sc.U, nb, false);
      if (g) this.ortGemm(g, buf.W_dec, this.staging?.Wd ?? null, sc.A, nb, true);
      return;
    }
    const xt = tf.tensor2d(sc.xc.subarray(0, nb * d), [nb, d]);
    const ut = tf.matMul(xt, this.Wenc!);
    copyTensorInto(ut, sc.U);
    xt.dispose();
    ut.dispose();
    if (g) {
      const gt = tf.tensor2d(g, [nb, d]);
      const at = tf.matMul(gt, this.WdecT!);
      copyTensorInto(at, sc.A);
      gt.dispose();
      at.dispose();
    }
  }

  /**
   * The parameter update of the latents, in blocks of UPDATE_BLOCK latents taken dynamically (via
   * Atomics.add on buf.sched[1]) by every thread (SIMD path only; update.ts updateBlockSimd), with
   * the Adam constants the trainer wrote to ctrl.
   */
  runUpdateBlocks(): void {
    const simd = this.wasm;
    if (!simd) throw new Error('SaeKernel.runUpdateBlocks needs the SIMD kernels');
    const nb = updateBlocks(this.spec.m);
    const h = readAdamCtrl(this.buf.ctrl);
    const keepWdecT = this.spec.useGrad && !this.ort; // (ONNX Runtime reads W_dec with transB: no W_decᵀ copy)
    for (;;) {
      const blk = Atomics.add(this.buf.sched, 1, 1);
      if (blk >= nb) return;
      updateBlockSimd(simd, this.buf, this.spec, blk, h, keepWdecT);
    }
  }

  /**
   * Run chunks until none is left: each participant takes the next chunk index with Atomics.add on
   * buf.sched[0] (reset to 0 by the trainer before each step). Which thread runs which chunk varies;
   * the numbers do not. Returns how many chunks this thread ran.
   */
  runAvailable(): number {
    const C = this.spec.chunks;
    let ran = 0;
    for (;;) {
      const c = Atomics.add(this.buf.sched, 0, 1);
      if (c >= C) return ran;
      this.runChunk(c);
      ran++;
    }
  }

  /** Forward + backward of chunk c; writes the chunk's gradient buffers and stats. */
  runChunk(c: number): void {
    if (!this.Wenc && !this.begun) throw new Error('SaeKernel: beginStep() was not called');
    const { d, m, k, batch, chunks, blockRows } = this.spec;
    const buf = this.buf;
    for (const a of [buf.gWeT[c], buf.gWd[c], buf.gbe[c], buf.gbd[c], buf.fired[c], buf.stats[c]]) a.fill(0);
    const rows = this.rows;
    const { idx, val, aidx, aval } = this.s;
    const gbe = buf.gbe[c];
    const fired = buf.fired[c];
    const stats = buf.stats[c];
    const x = buf.x;
    const ctrl = buf.ctrl;
    const nDead = ctrl[CTRL.nDead] | 0;
    const beta = ctrl[CTRL.beta];
    const auxK = ctrl[CTRL.auxK] | 0;
    const alphaC = ctrl[CTRL.auxAlpha] * (2 / batch);
    rows.beginChunk(c);
    const auxA = ctrl[CTRL.auxUsesGrad] !== 0 ? rows.denseA : null;
    const [r0, r1] = chunkRange(c, batch, chunks);
    let mseSum = 0;
    let auxSum = 0;
    let l0Sum = 0;
    let sumsq = 0;
    for (let b0 = r0; b0 < r1; b0 += blockRows) {
      const nb = Math.min(blockRows, r1 - b0);
      this.encodeBlock(b0, nb);
      for (let r = 0; r < nb; r++) {
        const row = b0 + r;
        l0Sum += rows.select(r, row);
        mseSum += rows.residual(r, row);
        const xo = row * d;
        for (let i = 0; i < d; i++) {
          const xi = x[xo + i];
          sumsq += xi * xi;
          stats[STATS.sumx + i] += xi;
        }
        // backward through the k selected latents
        for (let t = 0; t < k; t++) {
          const v = val[t];
          if (!(v > 0)) continue;
          const j = idx[t];
          fired[j]++;
          gbe[j] += rows.back(j, v, r);
        }
        if (auxK > 0) {
          const uo = r * m;
          const na = selectAmong(this.sc.U, uo, buf.b_enc, buf.dead, nDead, auxK, auxA, uo, beta, aidx, aval, 0, this.selAux);
          auxSum += rows.auxResidual(na, alphaC);
          for (let t = 0; t < na; t++) gbe[aidx[t]] += rows.back(aidx[t], aval[t], r);
        }
      }
    }
    stats[STATS.mse] = mseSum;
    stats[STATS.aux] = auxSum;
    stats[STATS.l0] = l0Sum;
    stats[STATS.sumsq] = sumsq;
    stats[STATS.scored] = rows.scored;
  }
}

/** y += v · W[o .. o + d) (unrolled by 4). */
function axpy(v: number, W: Float32Array, o: number, y: Float64Array, d: number): void {
  let i = 0;
  for (; i + 3 < d; i += 4) {
    y[i] += v * W[o + i];
    y[i + 1] += v * W[o + i + 1];
    y[i + 2] += v * W[o + i + 2];
    y[i + 3] += v * W[o + i + 3];
  }
  for (; i < d; i++) y[i] += v * W[o + i];
}

/**
 * Backward of one active latent (decoder row at offset o, value v > 0) for one token with output
 * gradient dy: gWd[row] += v dy; du = W_dec[row] · dy; gWeT[row] += du x_c. Returns du (for db_enc).
 */
function backLatent(
  o: number,
  v: number,
  dy: Float64Array,
  Wd: Float32Array,
  gWd: Float32Array,
  gWeT: Float32Array,
  xc: Float64Array,
  d: number,
): number {
  let d0 = 0;
  let d1 = 0;
  let d2 = 0;
  let d3 = 0;
  let i = 0;
  for (; i + 3 < d; i += 4) {
    const a0 = dy[i];
    const a1 = dy[i + 1];
    const a2 = dy[i + 2];
    const a3 = dy[i + 3];
    d0 += a0 * Wd[o + i];
    d1 += a1 * Wd[o + i + 1];
    d2 += a2 * Wd[o + i + 2];
    d3 += a3 * Wd[o + i + 3];
    gWd[o + i] += v * a0;
    gWd[o + i + 1] += v * a1;
    gWd[o + i + 2] += v * a2;
    gWd[o + i + 3] += v * a3;
  }
  for (; i < d; i++) {
    d0 += dy[i] * Wd[o + i];
    gWd[o + i] += v * dy[i];
  }
  const du = d0 + d1 + (d2 + d3);
  i = 0;
  for (; i + 3 < d; i += 4) {
    gWeT[o + i] += du * xc[i];
    gWeT[o + i + 1] += du * xc[i + 1];
    gWeT[o + i + 2] += du * xc[i + 2];
    gWeT[o + i + 3] += du * xc[i + 3];
  }
  for (; i < d; i++) gWeT[o + i] += du * xc[i];
  return du;
}
