/**
 * The per-chunk forward + hand-written backward pass of a TopK / g-SAE training step.
 *
 * A batch of N rows is split into `chunks` fixed row ranges; each chunk's gradient is written to
 * its own buffers (shared memory), and the trainer sums the chunks in a fixed order. Chunks may run
 * on the main thread or on worker threads: the numbers do not depend on how many threads run them.
 *
 * Work per chunk (measured on tfjs-wasm): the encoder forward is a dense tfjs matMul [rows, d] × [d, m]
 * (wasm SIMD), and so is the g-SAE's W_dec g ([rows, d] × W_decᵀ [d, m], W_decᵀ materialised once
 * per step by the trainer: no transpose flags). Everything sparse — selection, decode (k rows of
 * W_dec per token) and the backward pass — runs on the k selected rows only, either as
 * WebAssembly SIMD kernels generated for this d (simd.ts; ~5× faster than plain loops, used when
 * d and m are multiples of 4) or as plain TypeScript loops (the fallback, and the reference).
 * All buffers live in one shared WebAssembly.Memory so worker threads work on the same arrays.
 *
 * Loss (per batch of N rows, x in the trainer's internal (normalised) units):
 *   L = (1/N) Σ_t ‖x̂_t − x_t‖² + α (1/N) Σ_t ‖ê_t − e_t‖²,  e_t = x_t − x̂_t (held constant),
 *   x̂_t = Σ_{j∈S_t} z_tj W_dec[j] + b_dec,  ê_t = Σ_{j∈A_t} z_tj W_dec[j] (no b_dec),
 *   z_tj = ReLU(u_tj), u_t = (x_t − b_dec) W_enc + b_enc; S_t: the k selected; A_t: top kAux dead.
 * Gradients (r_t = x̂_t − x_t, q_t = ê_t − e_t = ê_t + r_t, c = 2/N):
 *   dx̂ = c r;  dê = α c q;  dW_dec[j] += z_tj dx̂ (j∈S) and z_tj dê (j∈A);  db_dec += Σ dx̂
 *   du_tj = [z_tj > 0] (W_dec[j]·dx̂  or  W_dec[j]·dê);  dW_enc[:, j] += du_tj (x_t − b_dec);
 *   db_enc[j] += du_tj;  db_dec −= W_enc db_enc (added by the trainer after the chunk sum).
 * dW_enc is accumulated transposed ([m, d], contiguous rows) in `gWeT`.
 */
import * as tf from '@tensorflow/tfjs';
import { SCORE, SelectScratch, WasmSelector, selectAmong, selectTopK } from './select.ts';
import { buildSimdModule, type SimdExports } from './simd.ts';
import { ortEnabled } from '../backend.ts';
import { gemm } from '../native/ort.ts';

/** Sizes fixed for a training run. */
export interface KernelSpec {
  d: number;
  m: number;
  k: number;
  kAux: number;
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
  auxCoef: 2,
  kAux: 3, // effective: min(kAux, nDead)
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
  adamRsb2: 11,
  adamEps: 12,
  adamSqrtBc2: 13,
} as const;

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

export function allocKernelBuffers(s: KernelSpec): KernelBuffers {
  const { d, m, batch, chunks, participants, blockRows } = s;
  const cap = Math.max(4 * Math.max(s.k, s.kAux), 64);
  type Kind = 'f32' | 'f64' | 'i32';
  const plan: { kind: Kind; n: number; off: number }[] = [];
  let bytes = 0;
  const take = (kind: Kind, n: number) => {
    const e = { kind, n, off: bytes };
    plan.push(e);
    bytes += Math.ceil((n * (kind === 'f64' ? 8 : 4)) / 16) * 16;
    return e;
  };
  const L = {
    W_enc: take('f32', d * m),
    W_dec: take('f32', m * d),
    W_decT: take('f32', s.useGrad ? d * m : 0),
    b_enc: take('f32', m),
    b_dec: take('f32', d),
    x: take('f32', batch * d),
    g: take('f32', s.useGrad ? batch * d : 0),
    dead: take('i32', m),
    ctrl: take('f64', CTRL.size),
    sched: take('i32', 4),
    gWeT: Array.from({ length: chunks }, () => take('f32', m * d)),
    gWd: Array.from({ length: chunks }, () => take('f32', m * d)),
    gbe: Array.from({ length: chunks }, () => take('f32', m)),
    gbd: Array.from({ length: chunks }, () => take('f32', d)),
    fired: Array.from({ length: chunks }, () => take('i32', m)),
    stats: Array.from({ length: chunks }, () => take('f64', STATS.sumx + d)),
    scratch: Array.from({ length: participants }, () => ({
      U: take('f32', blockRows * m),
      A: take('f32', s.useGrad ? blockRows * m : 0),
      xc: take('f32', blockRows * d),
      xh: take('f32', d),
      dx: take('f32', d),
      q: take('f32', d),
      cand: take('i32', cap),
    })),
    opt: {
      W_encT: take('f32', m * d),
      mWe: take('f32', m * d),
      vWe: take('f32', m * d),
      mWd: take('f32', m * d),
      vWd: take('f32', m * d),
      mbe: take('f32', m),
      vbe: take('f32', m),
      gbe: take('f64', m),
      gbdPart: take('f64', updateBlocks(m) * d),
    },
  };
  const pages = Math.max(1, Math.ceil(bytes / PAGE));
  if (pages > MAX_PAGES) {
    throw new Error(`sae: the training buffers need ${(bytes / 2 ** 30).toFixed(2)} GiB, above the 4 GiB wasm32 limit; use a smaller batch or fewer chunks`);
  }
  // Shared only when worker threads use it: ONNX Runtime's binding cannot read SharedArrayBuffer
  // views, so a single-thread run (the pipeline's default) lets it work on this memory directly.
  const shared = participants > 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
  const buffer = memory.buffer;
  const view = <T extends { kind: Kind; n: number; off: number }>(e: T) =>
    e.kind === 'f32' ? new Float32Array(buffer, e.off, e.n) : e.kind === 'f64' ? new Float64Array(buffer, e.off, e.n) : new Int32Array(buffer, e.off, e.n);
  const f32 = (e: { kind: Kind; n: number; off: number }) => view(e) as Float32Array;
  const module = s.simd ? new WebAssembly.Module(buildSimdModule(d, { min: pages, max: pages, shared })) : null;
  return {
    memory,
    module,
    W_enc: f32(L.W_enc),
    W_dec: f32(L.W_dec),
    W_decT: f32(L.W_decT),
    b_enc: f32(L.b_enc),
    b_dec: f32(L.b_dec),
    x: f32(L.x),
    g: f32(L.g),
    dead: view(L.dead) as Int32Array,
    ctrl: view(L.ctrl) as Float64Array,
    sched: view(L.sched) as Int32Array,
    gWeT: L.gWeT.map(f32),
    gWd: L.gWd.map(f32),
    gbe: L.gbe.map(f32),
    gbd: L.gbd.map(f32),
    fired: L.fired.map((e) => view(e) as Int32Array),
    stats: L.stats.map((e) => view(e) as Float64Array),
    scratch: L.scratch.map((sc) => ({
      U: f32(sc.U),
      A: f32(sc.A),
      xc: f32(sc.xc),
      xh: f32(sc.xh),
      dx: f32(sc.dx),
      q: f32(sc.q),
      cand: view(sc.cand) as Int32Array,
    })),
    opt: {
      W_encT: f32(L.opt.W_encT),
      mWe: f32(L.opt.mWe),
      vWe: f32(L.opt.vWe),
      mWd: f32(L.opt.mWd),
      vWd: f32(L.opt.vWd),
      mbe: f32(L.opt.mbe),
      vbe: f32(L.opt.vbe),
      gbe: view(L.opt.gbe) as Float64Array,
      gbdPart: view(L.opt.gbdPart) as Float64Array,
    },
  };
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

/** Latents per block of the parallel parameter update. */
export const UPDATE_BLOCK = 64;
export function updateBlocks(m: number): number {
  return Math.ceil(m / UPDATE_BLOCK);
}

/** Rows [r0, r1) of chunk c for a batch of n rows in C chunks. */
export function chunkRange(c: number, n: number, C: number): [number, number] {
  return [Math.floor((c * n) / C), Math.floor(((c + 1) * n) / C)];
}

/** Default rows per encoder block: at most ~4M floats of [rows, m] output. */
export function defaultBlockRows(m: number): number {
  return Math.max(8, Math.min(4096, Math.floor((1 << 22) / m)));
}

export class SaeKernel {
  private Wenc: tf.Tensor2D | null = null;
  private WdecT: tf.Tensor2D | null = null;
  private readonly sel: SelectScratch;
  private readonly selAux: SelectScratch;
  private readonly idx: Int32Array;
  private readonly val: Float32Array;
  private readonly aidx: Int32Array;
  private readonly aval: Float32Array;
  private readonly xh: Float64Array;
  private readonly dx: Float64Array;
  private readonly q: Float64Array;
  private readonly xcRow: Float64Array;
  private readonly sc: KernelScratch;
  /** The SIMD kernels (null: TypeScript loops). */
  readonly wasm: SimdExports | null;
  private readonly F: Float32Array;
  private readonly selector: WasmSelector | null;
  /** Dense products through ONNX Runtime on the shared memory (backend wasm+ort; one thread per participant). */
  readonly ort: boolean;

  constructor(
    readonly spec: KernelSpec,
    readonly buf: KernelBuffers,
    readonly participant = 0,
  ) {
    const { d, k, kAux } = spec;
    this.sel = new SelectScratch(k);
    this.selAux = new SelectScratch(kAux);
    this.idx = new Int32Array(k);
    this.val = new Float32Array(k);
    this.aidx = new Int32Array(Math.max(1, kAux));
    this.aval = new Float32Array(Math.max(1, kAux));
    this.xh = new Float64Array(d);
    this.dx = new Float64Array(d);
    this.q = new Float64Array(d);
    this.xcRow = new Float64Array(d);
    this.sc = buf.scratch[participant];
    this.wasm = spec.simd ? instantiateSimd(buf) : null;
    this.F = new Float32Array(buf.memory.buffer);
    this.selector = this.wasm ? new WasmSelector(this.wasm, buf.memory, this.sc.cand, this.sel, spec.m, k, d * 4) : null;
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

  /** Upload the current weights to tfjs (call after every parameter update). */
  beginStep(): void {
    this.endStep();
    if (this.ort) {
      this.begun = true;
      if (this.staging) {
        this.staging.We.set(this.buf.W_enc);
        if (this.spec.useGrad && (!this.wasm || this.buf.ctrl[CTRL.denseA] !== 0)) this.staging.Wd.set(this.buf.W_dec);
      }
      return;
    }
    const { d, m } = this.spec;
    // The wasm backend copies tensor data into its heap; other backends may keep a reference to
    // the array, which the trainer overwrites later: give them a copy.
    const own = (a: Float32Array) => (tf.getBackend() === 'wasm' ? a : a.slice());
    this.Wenc = tf.tensor2d(own(this.buf.W_enc), [d, m]);
    if (this.spec.useGrad && (!this.wasm || this.buf.ctrl[CTRL.denseA] !== 0)) this.WdecT = tf.tensor2d(own(this.buf.W_decT), [d, m]);
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
    const B = this.buf;
    const sc = this.sc;
    if (this.wasm) {
      this.wasm.subRows(sc.xc.byteOffset, B.x.byteOffset + b0 * d * 4, B.b_dec.byteOffset, nb);
    } else {
      const bd = B.b_dec;
      const x = B.x;
      for (let r = 0; r < nb; r++) {
        const xo = (b0 + r) * d;
        const co = r * d;
        for (let i = 0; i < d; i++) sc.xc[co + i] = x[xo + i] - bd[i];
      }
    }
    if (this.ort) {
      // U = xc W_enc and A = g W_decᵀ straight on the shared memory (one ORT thread per participant)
      this.ortGemm(sc.xc, B.W_enc, this.staging?.We ?? null, sc.U, nb, false);
      if (this.spec.useGrad && (!this.wasm || B.ctrl[CTRL.denseA] !== 0)) {
        this.ortGemm(B.g.subarray(b0 * d, (b0 + nb) * d), B.W_dec, this.staging?.Wd ?? null, sc.A, nb, true);
      }
      return;
    }
    const xt = tf.tensor2d(sc.xc.subarray(0, nb * d), [nb, d]);
    const ut = tf.matMul(xt, this.Wenc!);
    copyTensorInto(ut, sc.U);
    xt.dispose();
    ut.dispose();
    if (this.spec.useGrad && (!this.wasm || B.ctrl[CTRL.denseA] !== 0)) {
      const gt = tf.tensor2d(B.g.subarray(b0 * d, (b0 + nb) * d), [nb, d]);
      const at = tf.matMul(gt, this.WdecT!);
      copyTensorInto(at, sc.A);
      gt.dispose();
      at.dispose();
    }
  }

  /**
   * The parameter update of the latents, in blocks of UPDATE_BLOCK latents taken dynamically (via
   * Atomics.add on buf.sched[1]) by every thread (SIMD path only). Per block: sum the chunk
   * gradients (fixed chunk order), db_enc, the block's part of W_enc·db_enc (for db_dec, summed by
   * the trainer in block order), then the decoder rows (remove the parallel component, Adam,
   * renormalise), the encoder (Adam on W_encᵀ rows, then W_enc columns), W_decᵀ columns (g-SAE)
   * and b_enc. Every element's arithmetic is the same whichever thread runs it.
   */
  runUpdateBlocks(): void {
    const ex = this.wasm;
    if (!ex) throw new Error('SaeKernel.runUpdateBlocks needs the SIMD kernels');
    const { d, m, chunks: C, useGrad } = this.spec;
    const B = this.buf;
    const O = B.opt;
    const ctrl = B.ctrl;
    const b1 = ctrl[CTRL.adamB1];
    const b2 = ctrl[CTRL.adamB2];
    const step = ctrl[CTRL.adamStep];
    const rsb2 = ctrl[CTRL.adamRsb2];
    const eps = ctrl[CTRL.adamEps];
    const sqrtBc2 = ctrl[CTRL.adamSqrtBc2];
    const rowBytes = d * 4;
    const nb = updateBlocks(m);
    const WeT = O.W_encT;
    const We = B.W_enc;
    const Wd = B.W_dec;
    const WdT = B.W_decT;
    for (;;) {
      const blk = Atomics.add(B.sched, 1, 1);
      if (blk >= nb) return;
      const j0 = blk * UPDATE_BLOCK;
      const j1 = Math.min(m, j0 + UPDATE_BLOCK);
      const rows = j1 - j0;
      const o = j0 * rowBytes;
      const n4 = (rows * d) >> 2;
      const GWe = B.gWeT[0];
      const GWd = B.gWd[0];
      for (let c = 1; c < C; c++) {
        ex.addInto(GWe.byteOffset + o, B.gWeT[c].byteOffset + o, n4);
        ex.addInto(GWd.byteOffset + o, B.gWd[c].byteOffset + o, n4);
      }
      // db_enc and this block's part of W_enc · db_enc (pre-update W_enc)
      const part = O.gbdPart;
      const po = blk * d;
      for (let i = 0; i < d; i++) part[po + i] = 0;
      for (let j = j0; j < j1; j++) {
        let g = 0;
        for (let c = 0; c < C; c++) g += B.gbe[c][j];
        O.gbe[j] = g;
        if (g !== 0) {
          const wo = j * d;
          for (let i = 0; i < d; i++) part[po + i] += WeT[wo + i] * g;
        }
      }
      // decoder rows
      for (let j = j0; j < j1; j++) ex.projRow(GWd.byteOffset + j * rowBytes, Wd.byteOffset + j * rowBytes);
      ex.adam(Wd.byteOffset + o, GWd.byteOffset + o, O.mWd.byteOffset + o, O.vWd.byteOffset + o, n4, b1, b2, step, rsb2, eps);
      for (let j = j0; j < j1; j++) ex.normRow(Wd.byteOffset + j * rowBytes);
      // encoder
      ex.adam(WeT.byteOffset + o, GWe.byteOffset + o, O.mWe.byteOffset + o, O.vWe.byteOffset + o, n4, b1, b2, step, rsb2, eps);
      for (let i = 0; i < d; i++) {
        const dof = i * m;
        for (let j = j0; j < j1; j++) We[dof + j] = WeT[j * d + i];
      }
      if (useGrad && !this.ort) {
        // (ONNX Runtime reads W_dec with transB: no W_decᵀ copy)
        for (let i = 0; i < d; i++) {
          const dof = i * m;
          for (let j = j0; j < j1; j++) WdT[dof + j] = Wd[j * d + i];
        }
      }
      // b_enc (float64 arithmetic, float32 state)
      for (let j = j0; j < j1; j++) {
        const g = O.gbe[j];
        const mm = b1 * O.mbe[j] + (1 - b1) * g;
        const vv = b2 * O.vbe[j] + (1 - b2) * g * g;
        O.mbe[j] = mm;
        O.vbe[j] = vv;
        B.b_enc[j] -= (step * mm) / (Math.sqrt(vv) / sqrtBc2 + eps);
      }
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
    const B = this.buf;
    B.gWeT[c].fill(0);
    B.gWd[c].fill(0);
    B.gbe[c].fill(0);
    B.gbd[c].fill(0);
    B.fired[c].fill(0);
    B.stats[c].fill(0);
    if (this.wasm) this.runChunkSimd(c, this.wasm);
    else this.runChunkTS(c);
  }

  private runChunkSimd(c: number, ex: SimdExports): void {
    const { d, m, k, batch, chunks, blockRows, useGrad } = this.spec;
    const B = this.buf;
    const F = this.F;
    const sc = this.sc;
    const gbe = B.gbe[c];
    const fired = B.fired[c];
    const stats = B.stats[c];
    const [r0, r1] = chunkRange(c, batch, chunks);
    const ctrl = B.ctrl;
    const nDead = ctrl[CTRL.nDead] | 0;
    const beta = ctrl[CTRL.beta];
    const alpha = ctrl[CTRL.auxCoef];
    const kAux = ctrl[CTRL.kAux] | 0;
    const auxG = ctrl[CTRL.auxUsesGrad] !== 0;
    const cc = 2 / batch;
    const x = B.x;
    const be = B.b_enc;
    const { idx, val, aidx, aval } = this;
    const rowBytes = d * 4;
    const pWd = B.W_dec.byteOffset;
    const pgWd = B.gWd[c].byteOffset;
    const pgWe = B.gWeT[c].byteOffset;
    const pgbd = B.gbd[c].byteOffset;
    const pbe = be.byteOffset;
    const px = x.byteOffset;
    const pxh = sc.xh.byteOffset;
    const pdx = sc.dx.byteOffset;
    const pq = sc.q.byteOffset;
    const pxc = sc.xc.byteOffset;
    const pU = sc.U.byteOffset;
    const pA = useGrad ? sc.A.byteOffset : 0;
    const xh = sc.xh;
    const bd = B.b_dec;
    const selector = this.selector!;
    const pg = useGrad ? B.g.byteOffset : 0;
    const mode = !useGrad || beta === 0 ? SCORE.plain : ctrl[CTRL.denseA] !== 0 ? SCORE.dense : SCORE.sparse;
    // float32 rounding margin on top of the row-norm bound and of ‖g‖ computed in float32
    const rowNormMax = (ctrl[CTRL.rowNormMax] || 1) * (1 + 1e-4);
    selector.scored = 0;
    let mseSum = 0;
    let auxSum = 0;
    let l0Sum = 0;
    let sumsq = 0;
    for (let b0 = r0; b0 < r1; b0 += blockRows) {
      const nb = Math.min(blockRows, r1 - b0);
      this.encodeBlock(b0, nb);
      for (let r = 0; r < nb; r++) {
        const row = b0 + r;
        const xo = row * d;
        const uo = r * m;
        let gB = 0;
        if (mode === SCORE.sparse) gB = 1 + beta * Math.sqrt(ex.dot(pg + xo * 4, pg + xo * 4)) * rowNormMax;
        l0Sum += selector.select(pU + uo * 4, pbe, mode, beta, pA + uo * 4, pWd, pg + xo * 4, gB, idx, val, 0);
        xh.set(bd);
        for (let t = 0; t < k; t++) {
          const v = val[t];
          if (v !== 0) ex.axpy(v, pWd + idx[t] * rowBytes, pxh);
        }
        mseSum += ex.resid(pxh, px + xo * 4, cc, pdx, pq, pgbd);
        for (let i = 0; i < d; i++) {
          const xi = x[xo + i];
          sumsq += xi * xi;
          stats[STATS.sumx + i] += xi;
        }
        const pxcRow = pxc + r * rowBytes;
        for (let t = 0; t < k; t++) {
          const v = val[t];
          if (!(v > 0)) continue;
          const j = idx[t];
          fired[j]++;
          const o = j * rowBytes;
          gbe[j] += ex.back(pWd + o, v, pdx, pgWd + o, pgWe + o, pxcRow);
        }
        if (kAux > 0) {
          const na = selectAmong(sc.U, uo, be, B.dead, nDead, kAux, auxG && mode === SCORE.dense ? sc.A : null, uo, beta, aidx, aval, 0, this.selAux);
          for (let t = 0; t < na; t++) ex.axpy(aval[t], pWd + aidx[t] * rowBytes, pq);
          auxSum += ex.scale(pq, alpha * cc, pdx);
          for (let t = 0; t < na; t++) {
            const j = aidx[t];
            const o = j * rowBytes;
            gbe[j] += ex.back(pWd + o, aval[t], pdx, pgWd + o, pgWe + o, pxcRow);
          }
        }
      }
    }
    stats[STATS.mse] = mseSum;
    stats[STATS.aux] = auxSum;
    stats[STATS.l0] = l0Sum;
    stats[STATS.sumsq] = sumsq;
    stats[STATS.scored] = selector.scored;
  }

  private runChunkTS(c: number): void {
    const { d, m, k, batch, chunks, blockRows, useGrad } = this.spec;
    const B = this.buf;
    const gWeT = B.gWeT[c];
    const gWd = B.gWd[c];
    const gbe = B.gbe[c];
    const gbd = B.gbd[c];
    const fired = B.fired[c];
    const stats = B.stats[c];
    const [r0, r1] = chunkRange(c, batch, chunks);
    const ctrl = B.ctrl;
    const nDead = ctrl[CTRL.nDead] | 0;
    const beta = ctrl[CTRL.beta];
    const alpha = ctrl[CTRL.auxCoef];
    const kAux = ctrl[CTRL.kAux] | 0;
    const auxG = ctrl[CTRL.auxUsesGrad] !== 0;
    const cc = 2 / batch;
    const x = B.x;
    const bd = B.b_dec;
    const be = B.b_enc;
    const Wd = B.W_dec;
    const { idx, val, aidx, aval, xh, dx, q, xcRow } = this;
    const U = this.sc.U;
    const A = useGrad ? this.sc.A : null;
    const xcBlock = this.sc.xc;
    let mseSum = 0;
    let auxSum = 0;
    let l0Sum = 0;
    let sumsq = 0;
    for (let b0 = r0; b0 < r1; b0 += blockRows) {
      const nb = Math.min(blockRows, r1 - b0);
      this.encodeBlock(b0, nb);
      for (let r = 0; r < nb; r++) {
        const row = b0 + r;
        const xo = row * d;
        const uo = r * m;
        l0Sum += selectTopK(U, uo, be, m, k, A, uo, beta, idx, val, 0, this.sel);
        // x_c (float32 values as used by the encoder) and the decode x̂ = Σ v W_dec[j] + b_dec
        const co = r * d;
        for (let i = 0; i < d; i++) {
          xcRow[i] = xcBlock[co + i];
          xh[i] = bd[i];
        }
        for (let t = 0; t < k; t++) {
          const v = val[t];
          if (v !== 0) axpy(v, Wd, idx[t] * d, xh, d);
        }
        let e2 = 0;
        for (let i = 0; i < d; i++) {
          const xi = x[xo + i];
          sumsq += xi * xi;
          stats[STATS.sumx + i] += xi;
          const ri = xh[i] - xi;
          e2 += ri * ri;
          q[i] = ri;
          const g = cc * ri;
          dx[i] = g;
          gbd[i] += g;
        }
        mseSum += e2;
        // backward through the k selected latents
        for (let t = 0; t < k; t++) {
          const v = val[t];
          if (!(v > 0)) continue;
          const j = idx[t];
          fired[j]++;
          gbe[j] += backLatent(j * d, v, dx, Wd, gWd, gWeT, xcRow, d);
        }
        // AuxK
        if (kAux > 0) {
          const na = selectAmong(U, uo, be, B.dead, nDead, kAux, auxG ? A : null, uo, beta, aidx, aval, 0, this.selAux);
          for (let t = 0; t < na; t++) axpy(aval[t], Wd, aidx[t] * d, q, d);
          let a2 = 0;
          const ca = alpha * cc;
          for (let i = 0; i < d; i++) {
            a2 += q[i] * q[i];
            dx[i] = ca * q[i];
          }
          auxSum += a2;
          for (let t = 0; t < na; t++) {
            const j = aidx[t];
            gbe[j] += backLatent(j * d, aval[t], dx, Wd, gWd, gWeT, xcRow, d);
          }
        }
      }
    }
    stats[STATS.mse] = mseSum;
    stats[STATS.aux] = auxSum;
    stats[STATS.l0] = l0Sum;
    stats[STATS.sumsq] = sumsq;
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
