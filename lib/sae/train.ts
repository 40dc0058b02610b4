/**
 * Training loop for TopK SAEs and g-SAEs (docs/METHOD.md), with a hand-written backward pass
 * (kernel.ts), Adam, decoder-norm constraint, AuxK, seeded data order, checkpoints and resume.
 *
 * Choices (ours, documented in the config fields below):
 * - Inputs are scaled internally by c = sqrt(d) / mean‖x‖ (`normalize: 'mean_norm'`), so the
 *   learning rate transfers across models; the returned weights are folded back to raw units
 *   (W_enc, W_dec unchanged; b_enc /= c; b_dec /= c), so they act on raw x with the exact same
 *   selection (the g-SAE score uses the raw gradient g; scaling z by 1/c does not change any order).
 * - AuxK (Gao et al.): dead latents = not fired during the last `deadTokens` training tokens;
 *   the top kAux dead latents by z_pre (`auxSelect: 'z_pre'`, default, for both archs, so the
 *   only difference between the archs is the main selection) or by the arch's own score
 *   (`auxSelect: 'score'`) reconstruct the residual e = x − x̂ (held constant).
 * - Adam (β1 0.9, β2 0.999, ε 1e-8, PyTorch form with bias correction), lr: linear warmup over
 *   `warmupFrac` of the steps, constant, then decay (`decay`: linear or cosine) from
 *   `decayStartFrac` of the steps to 0 at the end of the token budget.
 * - Decoder: the gradient component parallel to each row is removed before the Adam update and
 *   rows are renormalised to unit norm after it.
 * - Determinism: same seed, backend, batch size and `chunks` → the same numbers, whatever the
 *   number of threads (each chunk's gradient is summed in a fixed order).
 */
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import type { RowSource } from '../activations.ts';
import { activeBackend, ortEnabled, type BackendKind } from '../backend.ts';
import { deriveSeed } from '../util/random.ts';
import { readCheckpoint, writeCheckpoint } from './checkpoint.ts';
import { geometricMedian, meanRows, randomUnitRows } from './init.ts';
import {
  CTRL,
  STATS,
  SaeKernel,
  allocKernelBuffers,
  defaultBlockRows,
  simdAvailable,
  updateBlocks,
  type KernelBuffers,
  type KernelSpec,
} from './kernel.ts';
import { KernelPool } from './pool.ts';
import type { SaeArch, SaeWeights } from './types.ts';

export interface TrainSaeConfig {
  arch: SaeArch;
  k: number;
  /** Latents m = expansion × d (ignored when `m` is given). Default 16. */
  expansion?: number;
  m?: number;
  /** g-SAE selection weight (ignored for topk). Default 1. */
  beta?: number;
  /** Token budget: steps = ceil(tokens / batchSize). */
  tokens: number;
  /** Default 4096. */
  batchSize?: number;
  /** Peak learning rate. Default 1e-3 (for normalised inputs, see `normalize`). */
  lr?: number;
  adamBeta1?: number; // 0.9
  adamBeta2?: number; // 0.999
  adamEps?: number; // 1e-8
  /** Fraction of steps of linear warmup. Default 0.05. */
  warmupFrac?: number;
  /** Decay shape after decayStartFrac. Default 'linear'. */
  decay?: 'linear' | 'cosine' | 'none';
  /** Fraction of steps where the decay to 0 starts. Default 0.8. */
  decayStartFrac?: number;
  /** AuxK latents; 0 or undefined = d / 2. */
  kAux?: number;
  /** AuxK coefficient α_aux. Default 1/32. */
  auxCoef?: number;
  /** A latent is dead after this many training tokens without firing. Default 250,000. */
  deadTokens?: number;
  /** How AuxK ranks dead latents. Default 'z_pre' (both archs). */
  auxSelect?: 'z_pre' | 'score';
  /** b_dec init. Default 'geometric_median' (Weiszfeld, 30 iterations, on initSamples rows). */
  bDecInit?: 'geometric_median' | 'mean' | 'zero';
  /** Rows sampled for the b_dec init and the norm estimate. Default 16384. */
  initSamples?: number;
  /** Input scaling. Default 'mean_norm' (x · sqrt(d)/mean‖x‖ during training, folded back). */
  normalize?: 'mean_norm' | 'none';
  seed?: number;
  /** Threads (main + worker threads). Default 1. */
  threads?: number;
  /**
   * Fixed split of each batch into chunks whose gradients are summed in a fixed order (threads take
   * chunks dynamically; results depend on `chunks`, never on `threads`). Default: 8 when the
   * per-chunk gradient buffers (8·m·d bytes) fit 32 MB, else 2.
   */
  chunks?: number;
  /**
   * WebAssembly SIMD kernels for the sparse parts and the optimiser ('auto': when d and m are
   * multiples of 4). false: plain TypeScript loops (float64 scratch; slower, slightly different
   * rounding). Default 'auto'.
   */
  simd?: boolean | 'auto';
  /**
   * g-SAE scores |W_dec g| (SIMD kernels only): 'dense' = a matMul g W_decᵀ per batch; 'sparse' =
   * dot products for the candidates that can still reach the top k (z_j (1 + beta‖g‖) above the
   * threshold: exact, since decoder rows have unit norm); 'auto' = sparse, switching to dense for
   * 25 steps whenever more than m/10 candidates per token needed a dot product; on wasm+ort with
   * d >= 512, dense (its GEMM is then the faster one). Default 'auto'.
   */
  gradScores?: 'auto' | 'dense' | 'sparse';
  /** Resume from / save checkpoints to this directory (file checkpoint.bin). */
  checkpointDir?: string;
  /** Save every N steps (0 = off). Default 0. */
  checkpointEverySteps?: number;
  /** Save when this many seconds passed since the last save (0 = off). Default 60. */
  checkpointEverySeconds?: number;
  /** Metrics callback period in steps. Default 10 (and the last step). */
  logEverySteps?: number;
  /**
   * Start from these weights (raw units, same d and m) instead of the random init: W_dec rows are
   * renormalised; b_dec / b_enc are taken as given (bDecInit is then ignored). For fine-tuning and tests.
   */
  init?: SaeWeights;
}

export type ResolvedTrainConfig = Required<Omit<TrainSaeConfig, 'checkpointDir' | 'm' | 'expansion' | 'init'>> & {
  m: number;
  expansion: number;
  checkpointDir: string | null;
  /** Checksum of cfg.init (null without). */
  initHash: string | null;
};

/** FNV-1a over the bytes of the weights (identifies an init for checkpoint compatibility). */
function weightsHash(w: SaeWeights): string {
  let h = 0x811c9dc5;
  for (const a of [w.W_enc, w.W_dec, w.b_enc, w.b_dec]) {
    const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 0x01000193) >>> 0;
  }
  return `${w.d}x${w.m}:${h.toString(16)}`;
}

export interface TrainProgress {
  step: number;
  steps: number;
  tokens: number;
  totalTokens: number;
  tokensPerSec: number;
  mse: number;
  fvu: number;
  auxLoss: number;
  deadFrac: number;
  l0: number;
  lr: number;
}

/** Training-batch metrics (raw activation units). */
export interface TrainMetrics {
  /** Mean over the batch of ‖x − x̂‖² (summed over the d dimensions). */
  mse: number;
  /** Σ‖x − x̂‖² / Σ‖x − mean_batch(x)‖². */
  fvu: number;
  /** Mean over the batch of the AuxK term ‖e − ê‖² (before the α_aux factor; 0 with no dead latent). */
  aux_loss: number;
  /** Fraction of latents that did not fire during the last deadTokens training tokens (0 before deadTokens tokens). */
  dead_frac: number;
  /** Mean number of latents firing per token. */
  l0: number;
}

export interface TrainCallbacks {
  /** After every step. */
  onProgress?(p: TrainProgress): void;
  /** Every logEverySteps steps and at the end; step = tokens seen. */
  onMetrics?(step: number, values: TrainMetrics): void;
  onLog?(message: string): void;
  /** After every step (after any checkpoint); throwing aborts training (tests simulate kills). */
  onStep?(step: number): void;
}

export interface TrainSaeResult {
  weights: SaeWeights;
  cfg: ResolvedTrainConfig;
  steps: number;
  tokensSeen: number;
  /** Internal input scale c (x_internal = c · x). */
  scale: number;
  /** Tokens on which each latent fired during training. */
  firingCounts: Float64Array;
  /** Tokens seen when each latent last fired (0 = never). */
  lastFired: Float64Array;
  /** Fraction of latents dead at the end (not fired during the last deadTokens tokens). */
  deadFrac: number;
  /** Step the run resumed from (0 = fresh). */
  resumedFromStep: number;
  seconds: number;
  tokensPerSec: number;
  final: TrainMetrics;
}

const CKPT_FILE = 'checkpoint.bin';

export function resolveTrainConfig(cfg: TrainSaeConfig, d: number): ResolvedTrainConfig {
  const expansion = cfg.expansion ?? 16;
  const m = cfg.m ?? Math.round(expansion * d);
  const r: ResolvedTrainConfig = {
    arch: cfg.arch,
    k: cfg.k,
    m,
    expansion: m / d,
    beta: cfg.arch === 'gsae' ? (cfg.beta ?? 1) : 0,
    tokens: cfg.tokens,
    batchSize: cfg.batchSize ?? 4096,
    lr: cfg.lr ?? 1e-3,
    adamBeta1: cfg.adamBeta1 ?? 0.9,
    adamBeta2: cfg.adamBeta2 ?? 0.999,
    adamEps: cfg.adamEps ?? 1e-8,
    warmupFrac: cfg.warmupFrac ?? 0.05,
    decay: cfg.decay ?? 'linear',
    decayStartFrac: cfg.decayStartFrac ?? 0.8,
    kAux: cfg.kAux && cfg.kAux > 0 ? cfg.kAux : Math.max(1, Math.floor(d / 2)),
    auxCoef: cfg.auxCoef ?? 1 / 32,
    deadTokens: cfg.deadTokens ?? 250_000,
    auxSelect: cfg.auxSelect ?? 'z_pre',
    bDecInit: cfg.bDecInit ?? 'geometric_median',
    initSamples: cfg.initSamples ?? 16384,
    normalize: cfg.normalize ?? 'mean_norm',
    seed: cfg.seed ?? 0,
    threads: Math.max(1, cfg.threads ?? 1),
    chunks: Math.max(1, cfg.chunks ?? (8 * m * d <= 32 * 2 ** 20 ? 8 : 2)),
    simd: cfg.simd ?? 'auto',
    gradScores: cfg.gradScores ?? 'auto',
    checkpointDir: cfg.checkpointDir ?? null,
    initHash: cfg.init ? weightsHash(cfg.init) : null,
    checkpointEverySteps: cfg.checkpointEverySteps ?? 0,
    checkpointEverySeconds: cfg.checkpointEverySeconds ?? 60,
    logEverySteps: cfg.logEverySteps ?? 10,
  };
  if (r.arch !== 'topk' && r.arch !== 'gsae') throw new Error(`trainSae: arch must be topk or gsae, got ${r.arch}`);
  if (!(Number.isInteger(r.k) && r.k >= 1 && r.k <= m)) throw new Error(`trainSae: k=${r.k} must be an integer in [1, m=${m}]`);
  if (!(Number.isInteger(m) && m >= 1)) throw new Error(`trainSae: m=${m} must be a positive integer`);
  if (!(r.tokens > 0)) throw new Error('trainSae: tokens must be > 0');
  if (!(Number.isInteger(r.batchSize) && r.batchSize >= r.chunks)) throw new Error(`trainSae: bad batchSize ${r.batchSize}`);
  r.kAux = Math.min(r.kAux, m);
  return r;
}

/** The fields that must agree for a checkpoint to be resumed. */
function numericKey(c: ResolvedTrainConfig, d: number): string {
  const { threads, checkpointDir, checkpointEverySteps, checkpointEverySeconds, logEverySteps, ...rest } = c;
  void threads;
  void checkpointDir;
  void checkpointEverySteps;
  void checkpointEverySeconds;
  void logEverySteps;
  return JSON.stringify({ d, ...rest });
}

/** Learning rate at step t (0-based) of `steps`. */
export function learningRate(c: ResolvedTrainConfig, t: number, steps: number): number {
  const warm = Math.max(1, Math.round(c.warmupFrac * steps));
  let f = t < warm ? (t + 1) / warm : 1;
  const ds = Math.floor(c.decayStartFrac * steps);
  if (c.decay !== 'none' && t >= ds && steps > ds) {
    const p = (t - ds) / (steps - ds);
    f *= c.decay === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * p)) : 1 - p;
  }
  return c.lr * f;
}

interface State {
  step: number;
  /** g-SAE 'auto' scores: use the dense matMul until this step. */
  denseUntil: number;
  tokensSeen: number;
  scale: number;
  bDecInitUsed: string;
  W_encT: Float32Array; // [m, d] master copy of W_enc
  mWe: Float32Array;
  vWe: Float32Array;
  mWd: Float32Array;
  vWd: Float32Array;
  mbe: Float32Array;
  vbe: Float32Array;
  mbd: Float32Array;
  vbd: Float32Array;
  firing: Float64Array;
  lastFired: Float64Array;
}

function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array): void {
  // dst[c * rows + r] = src[r * cols + c], in 64 × 64 tiles, writing dst rows contiguously
  // (measured: ~5× faster than reading src contiguously for 24576 × 768)
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

/**
 * Train a TopK SAE or g-SAE on rows from `source` (x [, g]). Async because worker threads may run
 * chunks of each batch; with threads = 1 everything runs on the calling thread.
 */
export async function trainSae(source: RowSource, cfgIn: TrainSaeConfig, cb: TrainCallbacks = {}): Promise<TrainSaeResult> {
  const t0 = performance.now();
  const d = source.d;
  const cfg = resolveTrainConfig(cfgIn, d);
  const { m, k, batchSize: N, chunks: C } = cfg;
  const useGrad = cfg.arch === 'gsae' && cfg.beta !== 0;
  if (useGrad && !source.hasGrad) throw new Error('trainSae: a g-SAE with beta != 0 needs gradients in the source');
  const steps = Math.ceil(cfg.tokens / N);
  const spec: KernelSpec = {
    d,
    m,
    k,
    kAux: cfg.kAux,
    batch: N,
    chunks: C,
    useGrad,
    blockRows: Math.min(defaultBlockRows(m), Math.ceil(N / C)),
    participants: Math.min(cfg.threads, C),
    simd: cfg.simd === 'auto' ? simdAvailable(d, m) : cfg.simd && simdAvailable(d, m),
  };
  if (cfg.simd === true && !spec.simd) throw new Error(`trainSae: simd kernels need d and m multiples of 4 (d=${d}, m=${m})`);
  const buf = allocKernelBuffers(spec);
  // With ONNX Runtime the dense score matMul costs about one encoder GEMM: measured faster than the
  // sparse candidate dot products at d 768 (by ~12%), slower at d 128 (by ~20%).
  const ortDenseAuto = ortEnabled() && d >= 512;
  const key = numericKey(cfg, d);
  const log = (s: string) => cb.onLog?.(s);

  // ---- state: resume or init
  const ckptFile = cfg.checkpointDir ? path.join(cfg.checkpointDir, CKPT_FILE) : null;
  let st: State | null = null;
  if (ckptFile) {
    const ck = readCheckpoint(ckptFile);
    if (ck && ck.meta.key === key) {
      const a = ck.arrays;
      buf.W_dec.set(a.W_dec as Float32Array);
      buf.b_enc.set(a.b_enc as Float32Array);
      buf.b_dec.set(a.b_dec as Float32Array);
      for (const name of ['W_encT', 'mWe', 'vWe', 'mWd', 'vWd', 'mbe', 'vbe'] as const) buf.opt[name].set(a[name] as Float32Array);
      st = {
        step: ck.meta.step,
        denseUntil: ck.meta.denseUntil ?? 0,
        tokensSeen: ck.meta.tokensSeen,
        scale: ck.meta.scale,
        bDecInitUsed: ck.meta.bDecInitUsed,
        ...buf.opt,
        mbd: a.mbd as Float32Array,
        vbd: a.vbd as Float32Array,
        firing: a.firing as Float64Array,
        lastFired: a.lastFired as Float64Array,
      };
      log(`sae: resuming from checkpoint at step ${st.step}/${steps} (${st.tokensSeen} tokens)`);
    } else if (ck) {
      log('sae: ignoring a checkpoint made with a different configuration');
    }
  }
  const resumedFromStep = st?.step ?? 0;
  if (!st) st = initState(source, cfg, buf, d, cfgIn.init ?? null);
  const S = st;
  transposeInto(S.W_encT, m, d, buf.W_enc);
  if (useGrad) transposeInto(buf.W_dec, m, d, buf.W_decT);

  // ---- participants
  const threads = spec.participants;
  const backend = (activeBackend() ?? tf.getBackend()) as BackendKind;
  const pool = threads > 1 ? await KernelPool.create(threads - 1, spec, buf, backend) : null;
  const mainKernel = new SaeKernel(spec, buf, 0);

  const stream = source.stream(deriveSeed(cfg.seed, 'data'), S.tokensSeen);
  const gBatch = useGrad ? buf.g : null;
  const dead = buf.dead;
  const gbeTot = new Float64Array(m);
  let lastSave = performance.now();
  let final: TrainMetrics = { mse: NaN, fvu: NaN, aux_loss: NaN, dead_frac: NaN, l0: NaN };
  const tRun = performance.now();
  const tokensAtStart = S.tokensSeen;
  try {
    while (S.step < steps) {
      // batch (internal units)
      stream.read(N, buf.x, gBatch);
      if (S.scale !== 1) {
        const x = buf.x;
        const c = S.scale;
        for (let i = 0; i < x.length; i++) x[i] *= c;
      }
      // dead latents
      let nDead = 0;
      for (let j = 0; j < m; j++) if (S.tokensSeen - S.lastFired[j] >= cfg.deadTokens) dead[nDead++] = j;
      buf.ctrl[CTRL.nDead] = nDead;
      buf.ctrl[CTRL.beta] = cfg.beta;
      buf.ctrl[CTRL.auxCoef] = cfg.auxCoef;
      buf.ctrl[CTRL.kAux] = cfg.auxCoef > 0 ? Math.min(cfg.kAux, nDead) : 0;
      buf.ctrl[CTRL.auxUsesGrad] = cfg.auxSelect === 'score' ? 1 : 0;
      const dense =
        cfg.gradScores === 'dense' || cfg.auxSelect === 'score' || (cfg.gradScores === 'auto' && (S.step < S.denseUntil || ortDenseAuto));
      buf.ctrl[CTRL.denseA] = dense ? 1 : 0;
      buf.ctrl[CTRL.rowNormMax] = 1; // decoder rows are renormalised after every update
      // forward/backward of all chunks
      Atomics.store(buf.sched, 0, 0);
      const others = pool ? pool.run() : Promise.resolve();
      mainKernel.beginStep();
      try {
        mainKernel.runAvailable();
      } finally {
        mainKernel.endStep();
      }
      await others;
      // reduce stats
      let mse = 0;
      let aux = 0;
      let l0 = 0;
      let sumsq = 0;
      const sumx = new Float64Array(d);
      for (let c = 0; c < C; c++) {
        const s = buf.stats[c];
        mse += s[STATS.mse];
        aux += s[STATS.aux];
        l0 += s[STATS.l0];
        sumsq += s[STATS.sumsq];
        for (let i = 0; i < d; i++) sumx[i] += s[STATS.sumx + i];
      }
      if (useGrad && spec.simd && !dense && cfg.gradScores === 'auto') {
        let scored = 0;
        for (let c = 0; c < C; c++) scored += buf.stats[c][STATS.scored];
        if (scored / N > m / 10) S.denseUntil = S.step + 1 + 25;
      }
      let mu2 = 0;
      for (let i = 0; i < d; i++) mu2 += sumx[i] * sumx[i];
      const variance = sumsq - mu2 / N;
      // update
      const lr = learningRate(cfg, S.step, steps);
      if (mainKernel.wasm) await applyUpdateParallel(S, buf, cfg, spec, lr, mainKernel, pool);
      else applyUpdate(S, buf, cfg, spec, lr, gbeTot);
      if (useGrad && !mainKernel.wasm && !mainKernel.ort) transposeInto(buf.W_dec, m, d, buf.W_decT);
      // firing statistics
      S.tokensSeen += N;
      S.step += 1;
      for (let c = 0; c < C; c++) {
        const f = buf.fired[c];
        for (let j = 0; j < m; j++) {
          if (f[j] > 0) {
            S.firing[j] += f[j];
            S.lastFired[j] = S.tokensSeen;
          }
        }
      }
      let nDeadAfter = 0;
      for (let j = 0; j < m; j++) if (S.tokensSeen - S.lastFired[j] >= cfg.deadTokens) nDeadAfter++;
      const c2 = S.scale * S.scale;
      final = {
        mse: mse / N / c2,
        fvu: variance > 0 ? mse / variance : NaN,
        aux_loss: aux / N / c2,
        dead_frac: nDeadAfter / m,
        l0: l0 / N,
      };
      const el = (performance.now() - tRun) / 1000;
      cb.onProgress?.({
        step: S.step,
        steps,
        tokens: S.tokensSeen,
        totalTokens: steps * N,
        tokensPerSec: (S.tokensSeen - tokensAtStart) / Math.max(el, 1e-9),
        mse: final.mse,
        fvu: final.fvu,
        auxLoss: final.aux_loss,
        deadFrac: final.dead_frac,
        l0: final.l0,
        lr,
      });
      if (cb.onMetrics && (S.step % cfg.logEverySteps === 0 || S.step === steps)) cb.onMetrics(S.tokensSeen, final);
      // checkpoint
      if (ckptFile && S.step < steps) {
        const bySteps = cfg.checkpointEverySteps > 0 && S.step % cfg.checkpointEverySteps === 0;
        const bySecs = cfg.checkpointEverySeconds > 0 && (performance.now() - lastSave) / 1000 >= cfg.checkpointEverySeconds;
        if (bySteps || bySecs) {
          saveCheckpoint(ckptFile, key, S, buf);
          lastSave = performance.now();
        }
      }
      cb.onStep?.(S.step);
    }
  } finally {
    await pool?.close();
  }

  // ---- fold the input scale back: weights act on raw x
  const inv = 1 / S.scale;
  const weights: SaeWeights = {
    arch: cfg.arch,
    d,
    m,
    k,
    beta: cfg.beta,
    W_enc: Float32Array.from(buf.W_enc),
    W_dec: Float32Array.from(buf.W_dec),
    b_enc: Float32Array.from(buf.b_enc, (v) => v * inv),
    b_dec: Float32Array.from(buf.b_dec, (v) => v * inv),
  };
  let nDead = 0;
  for (let j = 0; j < m; j++) if (S.tokensSeen - S.lastFired[j] >= cfg.deadTokens) nDead++;
  const seconds = (performance.now() - t0) / 1000;
  return {
    weights,
    cfg,
    steps,
    tokensSeen: S.tokensSeen,
    scale: S.scale,
    firingCounts: S.firing,
    lastFired: S.lastFired,
    deadFrac: nDead / m,
    resumedFromStep,
    seconds,
    tokensPerSec: (S.tokensSeen - tokensAtStart) / Math.max((performance.now() - tRun) / 1000, 1e-9),
    final,
  };
}

function initState(
  source: RowSource,
  cfg: ResolvedTrainConfig,
  buf: KernelBuffers,
  d: number,
  init: SaeWeights | null,
): State {
  const m = cfg.m;
  // sample for the norm estimate and b_dec
  const ns = Math.min(cfg.initSamples, source.rows);
  const xs = new Float32Array(ns * d);
  source.stream(deriveSeed(cfg.seed, 'init-sample'), 0).read(ns, xs, null);
  let scale = 1;
  if (cfg.normalize === 'mean_norm') {
    let meanNorm = source.meanNormX;
    if (!(meanNorm !== undefined && meanNorm > 0)) {
      let s = 0;
      for (let r = 0; r < ns; r++) {
        let q = 0;
        for (let i = 0; i < d; i++) q += xs[r * d + i] ** 2;
        s += Math.sqrt(q);
      }
      meanNorm = s / Math.max(1, ns);
    }
    if (meanNorm > 0) scale = Math.sqrt(d) / meanNorm;
  }
  for (let i = 0; i < xs.length; i++) xs[i] *= scale;
  if (init) {
    if (init.d !== d || init.m !== m) throw new Error(`trainSae: init has d=${init.d}, m=${init.m}; expected ${d}, ${m}`);
    for (let i = 0; i < d; i++) buf.b_dec[i] = init.b_dec[i] * scale;
    for (let j = 0; j < m; j++) buf.b_enc[j] = init.b_enc[j] * scale;
    buf.W_dec.set(init.W_dec);
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += buf.W_dec[j * d + i] ** 2;
      const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
      for (let i = 0; i < d; i++) buf.W_dec[j * d + i] *= inv;
    }
  }
  const W_encT = buf.opt.W_encT;
  for (const a of [buf.opt.mWe, buf.opt.vWe, buf.opt.mWd, buf.opt.vWd, buf.opt.mbe, buf.opt.vbe]) a.fill(0);
  if (init) transposeInto(init.W_enc, d, m, W_encT);
  if (!init) {
    const bd =
      cfg.bDecInit === 'geometric_median' ? geometricMedian(xs, d) : cfg.bDecInit === 'mean' ? meanRows(xs, d) : new Float64Array(d);
    for (let i = 0; i < d; i++) buf.b_dec[i] = bd[i];
    buf.b_enc.fill(0);
    buf.W_dec.set(randomUnitRows(m, d, deriveSeed(cfg.seed, 'W_dec')));
    W_encT.set(buf.W_dec); // W_enc = W_decᵀ
  }
  return {
    step: 0,
    denseUntil: 0,
    tokensSeen: 0,
    scale,
    bDecInitUsed: init ? 'init' : cfg.bDecInit,
    ...buf.opt,
    mbd: new Float32Array(d),
    vbd: new Float32Array(d),
    firing: new Float64Array(m),
    lastFired: new Float64Array(m),
  };
}

function saveCheckpoint(file: string, key: string, S: State, buf: KernelBuffers): void {
  writeCheckpoint(
    file,
    { key, step: S.step, denseUntil: S.denseUntil, tokensSeen: S.tokensSeen, scale: S.scale, bDecInitUsed: S.bDecInitUsed },
    {
      W_encT: S.W_encT,
      W_dec: buf.W_dec,
      b_enc: buf.b_enc,
      b_dec: buf.b_dec,
      mWe: S.mWe,
      vWe: S.vWe,
      mWd: S.mWd,
      vWd: S.vWd,
      mbe: S.mbe,
      vbe: S.vbe,
      mbd: S.mbd,
      vbd: S.vbd,
      firing: S.firing,
      lastFired: S.lastFired,
    },
  );
}

/**
 * Sum the chunk gradients in a fixed order into chunk 0's buffers (gWeT[0] = dL/dW_encᵀ [m, d],
 * gWd[0] = dL/dW_dec [m, d], before any projection), and write the bias gradients: gbe = dL/db_enc,
 * gbd = dL/db_dec = Σ_c gbd_c − W_enc · dL/db_enc (W_encT: the encoder weights, transposed).
 */
export function sumChunkGradients(
  buf: KernelBuffers,
  spec: KernelSpec,
  W_encT: Float32Array,
  gbe: Float64Array,
  gbd: Float64Array,
): void {
  const { d, m, chunks: C } = spec;
  const GWe = buf.gWeT[0];
  const GWd = buf.gWd[0];
  for (let c = 1; c < C; c++) {
    const a = buf.gWeT[c];
    const b = buf.gWd[c];
    for (let i = 0; i < GWe.length; i++) GWe[i] += a[i];
    for (let i = 0; i < GWd.length; i++) GWd[i] += b[i];
  }
  biasGradients(buf, spec, W_encT, gbe, gbd);
}

/** gbe = Σ_c gbe_c; gbd = Σ_c gbd_c − W_enc · gbe (W_encT [m, d]). */
function biasGradients(buf: KernelBuffers, spec: KernelSpec, W_encT: Float32Array, gbe: Float64Array, gbd: Float64Array): void {
  const { d, m, chunks: C } = spec;
  for (let j = 0; j < m; j++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += buf.gbe[c][j];
    gbe[j] = s;
  }
  gbd.fill(0);
  for (let c = 0; c < C; c++) for (let i = 0; i < d; i++) gbd[i] += buf.gbd[c][i];
  for (let j = 0; j < m; j++) {
    const gj = gbe[j];
    if (gj === 0) continue;
    const o = j * d;
    for (let i = 0; i < d; i++) gbd[i] -= W_encT[o + i] * gj;
  }
}

/**
 * Sum the chunk gradients (fixed order), finish db_dec, project the decoder gradient, Adam-update
 * every parameter, renormalise decoder rows and refresh W_enc = W_encTᵀ.
 */
function applyUpdate(
  S: State,
  buf: KernelBuffers,
  cfg: ResolvedTrainConfig,
  spec: KernelSpec,
  lr: number,
  gbe: Float64Array,
): void {
  const { d, m } = spec;
  const b1 = cfg.adamBeta1;
  const b2 = cfg.adamBeta2;
  const eps = cfg.adamEps;
  const t = S.step + 1;
  const bc1 = 1 - b1 ** t;
  const bc2 = 1 - b2 ** t;
  const stepSize = lr / bc1;
  const sqrtBc2 = Math.sqrt(bc2);
  const ob1 = 1 - b1;
  const ob2 = 1 - b2;

  const gbd = new Float64Array(d);
  sumChunkGradients(buf, spec, S.W_encT, gbe, gbd);
  const GWe = buf.gWeT[0];
  const GWd = buf.gWd[0];
  const WeT = S.W_encT;

  // decoder rows: remove the parallel component, Adam, renormalise
  const Wd = buf.W_dec;
  const mWd = S.mWd;
  const vWd = S.vWd;
  for (let j = 0; j < m; j++) {
    const o = j * d;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += GWd[o + i] * Wd[o + i];
    let nrm = 0;
    for (let i = 0; i < d; i++) {
      const g = GWd[o + i] - dot * Wd[o + i];
      const mm = b1 * mWd[o + i] + ob1 * g;
      const vv = b2 * vWd[o + i] + ob2 * g * g;
      mWd[o + i] = mm;
      vWd[o + i] = vv;
      const w = Wd[o + i] - (stepSize * mm) / (Math.sqrt(vv) / sqrtBc2 + eps);
      Wd[o + i] = w;
      nrm += Wd[o + i] * Wd[o + i];
    }
    const inv = nrm > 0 ? 1 / Math.sqrt(nrm) : 0;
    if (inv > 0) for (let i = 0; i < d; i++) Wd[o + i] *= inv;
  }
  // encoder (transposed master copy), then W_enc
  const mWe = S.mWe;
  const vWe = S.vWe;
  for (let o = 0; o < WeT.length; o++) {
    const g = GWe[o];
    const mm = b1 * mWe[o] + ob1 * g;
    const vv = b2 * vWe[o] + ob2 * g * g;
    mWe[o] = mm;
    vWe[o] = vv;
    WeT[o] -= (stepSize * mm) / (Math.sqrt(vv) / sqrtBc2 + eps);
  }
  transposeInto(WeT, m, d, buf.W_enc);
  // biases
  adamVec(buf.b_enc, gbe, S.mbe, S.vbe, b1, b2, stepSize, sqrtBc2, eps);
  adamVec(buf.b_dec, gbd, S.mbd, S.vbd, b1, b2, stepSize, sqrtBc2, eps);
}

/**
 * The parameter update with the SIMD kernels, split in blocks of latents over all threads
 * (SaeKernel.runUpdateBlocks), then b_dec on this thread: db_dec = Σ_c db_dec_c − Σ_blocks
 * (W_enc db_enc)_block, in block order (deterministic whatever the thread count).
 */
async function applyUpdateParallel(
  S: State,
  buf: KernelBuffers,
  cfg: ResolvedTrainConfig,
  spec: KernelSpec,
  lr: number,
  kernel: SaeKernel,
  pool: KernelPool | null,
): Promise<void> {
  const { d, m, chunks: C } = spec;
  const b1 = cfg.adamBeta1;
  const b2 = cfg.adamBeta2;
  const t = S.step + 1;
  const stepSize = lr / (1 - b1 ** t);
  const sqrtBc2 = Math.sqrt(1 - b2 ** t);
  const ctrl = buf.ctrl;
  ctrl[CTRL.adamB1] = b1;
  ctrl[CTRL.adamB2] = b2;
  ctrl[CTRL.adamStep] = stepSize;
  ctrl[CTRL.adamRsb2] = 1 / sqrtBc2;
  ctrl[CTRL.adamEps] = cfg.adamEps;
  ctrl[CTRL.adamSqrtBc2] = sqrtBc2;
  Atomics.store(buf.sched, 1, 0);
  const others = pool ? pool.run('update') : Promise.resolve();
  kernel.runUpdateBlocks();
  await others;
  const gbd = new Float64Array(d);
  for (let c = 0; c < C; c++) for (let i = 0; i < d; i++) gbd[i] += buf.gbd[c][i];
  const part = buf.opt.gbdPart;
  const nb = updateBlocks(m);
  for (let b = 0; b < nb; b++) for (let i = 0; i < d; i++) gbd[i] -= part[b * d + i];
  adamVec(buf.b_dec, gbd, S.mbd, S.vbd, b1, b2, stepSize, sqrtBc2, cfg.adamEps);
}

function adamVec(
  p: Float32Array,
  g: Float64Array,
  mv: Float32Array,
  vv: Float32Array,
  b1: number,
  b2: number,
  stepSize: number,
  sqrtBc2: number,
  eps: number,
): void {
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mm = b1 * mv[i] + (1 - b1) * gi;
    const v = b2 * vv[i] + (1 - b2) * gi * gi;
    mv[i] = mm;
    vv[i] = v;
    p[i] -= (stepSize * mm) / (Math.sqrt(v) / sqrtBc2 + eps);
  }
}

/** Whether `dir` holds a checkpoint of a run (any configuration). */
export function hasCheckpoint(dir: string): boolean {
  return fs.existsSync(path.join(dir, CKPT_FILE));
}
