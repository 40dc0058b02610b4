/**
 * Training loop for TopK SAEs and g-SAEs (docs/METHOD.md), with a hand-written backward pass
 * (kernel.ts), Adam and the decoder-norm constraint (update.ts), AuxK, seeded data order,
 * checkpoints and resume. A step: readBatch → trainStep (dead latents, chunks, update, firing) →
 * callbacks → maybe a checkpoint; at the end, foldScaleBack.
 *
 * Choices (ours, documented in the config fields below):
 * - Inputs are scaled internally by c = sqrt(d) / mean‖x‖ (`normalize: 'mean_norm'`), so the
 *   learning rate transfers across models; the returned weights are folded back to raw units
 *   (W_enc, W_dec unchanged; b_enc /= c; b_dec /= c), so they act on raw x with the exact same
 *   selection (the g-SAE score uses the raw gradient g; scaling z by 1/c does not change any order).
 * - AuxK (Gao et al.): dead latents = not fired during the last `deadTokens` training tokens;
 *   the top auxK dead latents by z_pre (`auxSelect: 'z_pre'`, default, for both archs, so the
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
import * as tf from '@tensorflow/tfjs-core';
import fs from 'node:fs';
import path from 'node:path';
import type { RowSource, RowStream } from '../activations.ts';
import { activeBackend, ortEnabled, type BackendKind } from '../backend.ts';
import { deriveSeed } from '../util/random.ts';
import { readCheckpoint, writeCheckpoint } from './checkpoint.ts';
import { geometricMedian, meanRows, randomUnitRows } from './init.ts';
import type { TrainCallbacks } from '../util/progress.ts';
import {
  CTRL,
  STATS,
  SaeKernel,
  allocKernelBuffers,
  defaultBlockRows,
  simdAvailable,
  writeAdamCtrl,
  type KernelBuffers,
  type KernelSpec,
} from './kernel.ts';
import { KernelPool } from './pool.ts';
import type { SaeArch, SaeWeights } from './types.ts';
import { adamStep, finishBDecBlocks, transposeInto, updateSerial, type AdamStep } from './update.ts';

export interface TrainSaeConfig {
  arch: SaeArch;
  k: number;
  /** Latents m = expansion × d (ignored when `m` is given). Default 16. */
  expansion?: number;
  m?: number;
  /** g-SAE selection weight (ignored for topk). Default 1. */
  beta?: number;
  /** Token budget (params sae.train_tokens): steps = ceil(trainTokens / batchSize). */
  trainTokens: number;
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
  auxK?: number;
  /** AuxK coefficient α_aux (params sae.aux_alpha). Default 1/32. */
  auxAlpha?: number;
  /** A latent is dead after this many training tokens without firing (params sae.dead_tokens). Default 400,000. */
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

/** Training-batch metrics (raw activation units), by the names they are recorded under. */
export type TrainMetrics = {
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
};

/** The SAE trainer's callbacks: progress after every step, metrics every logEverySteps steps and at the end. */
export type SaeTrainCallbacks = TrainCallbacks<TrainMetrics> & {
  /** After every step (after any checkpoint); throwing aborts training (tests simulate kills). */
  onStep?(step: number): void;
};

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
  tokensPerSecond: number;
  final: TrainMetrics;
}

const CKPT_FILE = 'checkpoint.bin';

/**
 * The defaults of the options that params.yaml sets too (sae.expansion, batch_size, lr, aux_k,
 * aux_alpha, dead_tokens, b_dec_init): the same values, checked by test/lib/sae/train.test.ts.
 */
export const SAE_DEFAULTS = {
  expansion: 16,
  batchSize: 4096,
  lr: 1e-3,
  /** 0 = d / 2. */
  auxK: 0,
  auxAlpha: 1 / 32,
  deadTokens: 400_000,
  bDecInit: 'geometric_median',
} as const;

export function resolveTrainConfig(cfg: TrainSaeConfig, d: number): ResolvedTrainConfig {
  const expansion = cfg.expansion ?? SAE_DEFAULTS.expansion;
  const m = cfg.m ?? Math.round(expansion * d);
  const r: ResolvedTrainConfig = {
    arch: cfg.arch,
    k: cfg.k,
    m,
    expansion: m / d,
    beta: cfg.arch === 'gsae' ? (cfg.beta ?? 1) : 0,
    trainTokens: cfg.trainTokens,
    batchSize: cfg.batchSize ?? SAE_DEFAULTS.batchSize,
    lr: cfg.lr ?? SAE_DEFAULTS.lr,
    adamBeta1: cfg.adamBeta1 ?? 0.9,
    adamBeta2: cfg.adamBeta2 ?? 0.999,
    adamEps: cfg.adamEps ?? 1e-8,
    warmupFrac: cfg.warmupFrac ?? 0.05,
    decay: cfg.decay ?? 'linear',
    decayStartFrac: cfg.decayStartFrac ?? 0.8,
    auxK: cfg.auxK && cfg.auxK > 0 ? cfg.auxK : Math.max(1, Math.floor(d / 2)),
    auxAlpha: cfg.auxAlpha ?? SAE_DEFAULTS.auxAlpha,
    deadTokens: cfg.deadTokens ?? SAE_DEFAULTS.deadTokens,
    auxSelect: cfg.auxSelect ?? 'z_pre',
    bDecInit: cfg.bDecInit ?? SAE_DEFAULTS.bDecInit,
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
  if (!(r.trainTokens > 0)) throw new Error('trainSae: trainTokens must be > 0');
  if (!(Number.isInteger(r.batchSize) && r.batchSize >= r.chunks)) throw new Error(`trainSae: bad batchSize ${r.batchSize}`);
  r.auxK = Math.min(r.auxK, m);
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
  /** Adam moments of b_dec (the other parameters' are in KernelBuffers.opt). */
  mbd: Float32Array;
  vbd: Float32Array;
  firing: Float64Array;
  lastFired: Float64Array;
}

/** Everything one training run works on. */
interface Run {
  cfg: ResolvedTrainConfig;
  spec: KernelSpec;
  buf: KernelBuffers;
  S: State;
  /** Steps of the whole run: ceil(trainTokens / batchSize). */
  steps: number;
  /** With ONNX Runtime at d >= 512, 'auto' g-SAE scores are dense (see gradScores). */
  ortDenseAuto: boolean;
}

/** The per-step sums of all chunks (internal units). */
interface StepSums {
  mse: number;
  aux: number;
  l0: number;
  /** Σ‖x − mean_batch(x)‖². */
  variance: number;
  /** Candidates whose |W_dec g| was computed (sparse g-SAE scores). */
  scored: number;
}

/**
 * Train a TopK SAE or g-SAE on rows from `source` (x [, g]). Async because worker threads may run
 * chunks of each batch; with threads = 1 everything runs on the calling thread.
 */
export async function trainSae(source: RowSource, cfgIn: TrainSaeConfig, cb: SaeTrainCallbacks = {}): Promise<TrainSaeResult> {
  const t0 = performance.now();
  const run = prepareRun(source, cfgIn, cb);
  const { cfg, spec, buf, S, steps } = run;
  const resumedFromStep = S.step;
  const pool = spec.participants > 1 ? await KernelPool.create(spec.participants - 1, spec, buf, (activeBackend() ?? tf.getBackend()) as BackendKind) : null;
  const kernel = new SaeKernel(spec, buf, 0);
  const stream = source.stream(deriveSeed(cfg.seed, 'data'), S.tokensSeen, spec.useGrad);
  const ckptFile = cfg.checkpointDir ? path.join(cfg.checkpointDir, CKPT_FILE) : null;
  let lastSave = performance.now();
  let final: TrainMetrics = { mse: NaN, fvu: NaN, aux_loss: NaN, dead_frac: NaN, l0: NaN };
  const tRun = performance.now();
  const tokensAtStart = S.tokensSeen;
  const tokensPerSecond = () => (S.tokensSeen - tokensAtStart) / Math.max((performance.now() - tRun) / 1000, 1e-9);
  try {
    while (S.step < steps) {
      readBatch(stream, buf, spec, S.scale);
      const lr = learningRate(cfg, S.step, steps);
      const sums = await trainStep(run, kernel, pool, lr);
      final = stepMetrics(run, sums);
      cb.onProgress?.({
        step: S.step,
        totalSteps: steps,
        tokensSeen: S.tokensSeen,
        totalTokens: steps * cfg.batchSize,
        tokensPerSecond: tokensPerSecond(),
        elapsedSeconds: (performance.now() - t0) / 1000,
        lr,
        metrics: final,
      });
      if (cb.onMetrics && (S.step % cfg.logEverySteps === 0 || S.step === steps)) cb.onMetrics(final, S.tokensSeen);
      if (ckptFile && checkpointDue(cfg, S.step, steps, lastSave)) {
        saveCheckpoint(ckptFile, numericKey(cfg, spec.d), S, buf);
        lastSave = performance.now();
      }
      cb.onStep?.(S.step);
    }
  } finally {
    await pool?.close();
  }
  return {
    weights: foldScaleBack(run),
    cfg,
    steps,
    tokensSeen: S.tokensSeen,
    scale: S.scale,
    firingCounts: S.firing,
    lastFired: S.lastFired,
    deadFrac: deadLatents(S, cfg) / cfg.m,
    resumedFromStep,
    seconds: (performance.now() - t0) / 1000,
    tokensPerSecond: tokensPerSecond(),
    final,
  };
}

/** Resolve the config, allocate the kernel buffers, and resume from a checkpoint or initialise. */
function prepareRun(source: RowSource, cfgIn: TrainSaeConfig, cb: SaeTrainCallbacks): Run {
  const d = source.d;
  const cfg = resolveTrainConfig(cfgIn, d);
  const { m, k, batchSize: N, chunks: C } = cfg;
  const useGrad = usesGrad(cfg);
  if (useGrad && !source.hasGrad) throw new Error('trainSae: a g-SAE with beta != 0 needs gradients in the source');
  const steps = Math.ceil(cfg.trainTokens / N);
  const spec: KernelSpec = {
    d,
    m,
    k,
    auxK: cfg.auxK,
    batch: N,
    chunks: C,
    useGrad,
    blockRows: Math.min(defaultBlockRows(m), Math.ceil(N / C)),
    participants: Math.min(cfg.threads, C),
    simd: cfg.simd === 'auto' ? simdAvailable(d, m) : cfg.simd && simdAvailable(d, m),
  };
  if (cfg.simd === true && !spec.simd) throw new Error(`trainSae: simd kernels need d and m multiples of 4 (d=${d}, m=${m})`);
  const buf = allocKernelBuffers(spec);
  const S = resumeState(cfg, buf, d, steps, cb) ?? initState(source, cfg, buf, d, cfgIn.init ?? null);
  transposeInto(buf.opt.W_encT, m, d, buf.W_enc);
  if (useGrad) transposeInto(buf.W_dec, m, d, buf.W_decT);
  // With ONNX Runtime the dense score matMul costs about one encoder GEMM: measured faster than the
  // sparse candidate dot products at d 768 (by ~12%), slower at d 128 (by ~20%).
  return { cfg, spec, buf, S, steps, ortDenseAuto: ortEnabled() && d >= 512 };
}

/** The next batch into buf.x (and buf.g), in internal units (x · scale). */
function readBatch(stream: RowStream, buf: KernelBuffers, spec: KernelSpec, scale: number): void {
  stream.read(spec.batch, buf.x, spec.useGrad ? buf.g : null);
  if (scale !== 1) {
    const x = buf.x;
    for (let i = 0; i < x.length; i++) x[i] *= scale;
  }
}

/**
 * Latents that did not fire during the last deadTokens training tokens: returns how many, and
 * writes their ids (ascending) to `ids` when given.
 */
function deadLatents(S: State, cfg: ResolvedTrainConfig, ids?: Int32Array): number {
  let n = 0;
  for (let j = 0; j < cfg.m; j++) {
    if (S.tokensSeen - S.lastFired[j] >= cfg.deadTokens) {
      if (ids) ids[n] = j;
      n++;
    }
  }
  return n;
}

/** One step on the batch in buf: forward/backward of every chunk, the update, the firing statistics. */
async function trainStep(run: Run, kernel: SaeKernel, pool: KernelPool | null, lr: number): Promise<StepSums> {
  const { cfg, buf, S } = run;
  const dense = writeStepCtrl(run, deadLatents(S, cfg, buf.dead));
  Atomics.store(buf.sched, 0, 0);
  const others = pool ? pool.run() : Promise.resolve();
  kernel.beginStep();
  try {
    kernel.runAvailable();
  } finally {
    kernel.endStep();
  }
  await others;
  const sums = sumStats(run);
  if (run.spec.useGrad && run.spec.simd && !dense && cfg.gradScores === 'auto' && sums.scored / cfg.batchSize > cfg.m / 10) {
    S.denseUntil = S.step + 1 + 25;
  }
  await applyUpdate(run, kernel, pool, adamStep(cfg, lr, S.step + 1));
  S.tokensSeen += cfg.batchSize;
  S.step += 1;
  recordFiring(run);
  return sums;
}

/** The control words of this step (the first nDead of buf.dead are the dead latents). Returns whether the g-SAE scores are dense. */
function writeStepCtrl(run: Run, nDead: number): boolean {
  const { cfg, buf, S } = run;
  const ctrl = buf.ctrl;
  ctrl[CTRL.nDead] = nDead;
  ctrl[CTRL.beta] = cfg.beta;
  ctrl[CTRL.auxAlpha] = cfg.auxAlpha;
  ctrl[CTRL.auxK] = cfg.auxAlpha > 0 ? Math.min(cfg.auxK, nDead) : 0;
  ctrl[CTRL.auxUsesGrad] = cfg.auxSelect === 'score' ? 1 : 0;
  const dense = cfg.gradScores === 'dense' || cfg.auxSelect === 'score' || (cfg.gradScores === 'auto' && (S.step < S.denseUntil || run.ortDenseAuto));
  ctrl[CTRL.denseA] = dense ? 1 : 0;
  ctrl[CTRL.rowNormMax] = 1; // decoder rows are renormalised after every update
  return dense;
}

/** Sum the chunks' statistics in chunk order. */
function sumStats(run: Run): StepSums {
  const { d, chunks: C, batch: N } = run.spec;
  const out: StepSums = { mse: 0, aux: 0, l0: 0, variance: 0, scored: 0 };
  let sumsq = 0;
  const sumx = new Float64Array(d);
  for (let c = 0; c < C; c++) {
    const s = run.buf.stats[c];
    out.mse += s[STATS.mse];
    out.aux += s[STATS.aux];
    out.l0 += s[STATS.l0];
    sumsq += s[STATS.sumsq];
    out.scored += s[STATS.scored];
    for (let i = 0; i < d; i++) sumx[i] += s[STATS.sumx + i];
  }
  let mu2 = 0;
  for (let i = 0; i < d; i++) mu2 += sumx[i] * sumx[i];
  out.variance = sumsq - mu2 / N;
  return out;
}

/**
 * The parameter update (update.ts): with the SIMD kernels in blocks of latents over all threads,
 * then b_dec on this thread; else in TypeScript on this thread.
 */
async function applyUpdate(run: Run, kernel: SaeKernel, pool: KernelPool | null, h: AdamStep): Promise<void> {
  const { spec, buf, S } = run;
  if (!kernel.wasm) {
    updateSerial(buf, spec, h, S.mbd, S.vbd, spec.useGrad && !kernel.ort);
    return;
  }
  writeAdamCtrl(buf.ctrl, h);
  Atomics.store(buf.sched, 1, 0);
  const others = pool ? pool.run('update') : Promise.resolve();
  kernel.runUpdateBlocks();
  await others;
  finishBDecBlocks(buf, spec, h, S.mbd, S.vbd);
}

/** Add the step's firing counts (chunk order) and stamp the latents that fired with tokensSeen. */
function recordFiring(run: Run): void {
  const { buf, S } = run;
  const m = run.cfg.m;
  for (let c = 0; c < run.spec.chunks; c++) {
    const f = buf.fired[c];
    for (let j = 0; j < m; j++) {
      if (f[j] > 0) {
        S.firing[j] += f[j];
        S.lastFired[j] = S.tokensSeen;
      }
    }
  }
}

/** The step's training metrics in raw units. */
function stepMetrics(run: Run, sums: StepSums): TrainMetrics {
  const { S, cfg } = run;
  const N = cfg.batchSize;
  const c2 = S.scale * S.scale;
  return {
    mse: sums.mse / N / c2,
    fvu: sums.variance > 0 ? sums.mse / sums.variance : NaN,
    aux_loss: sums.aux / N / c2,
    dead_frac: deadLatents(S, cfg) / cfg.m,
    l0: sums.l0 / N,
  };
}

/** Whether to save a checkpoint after `step` (never after the last). */
function checkpointDue(cfg: ResolvedTrainConfig, step: number, steps: number, lastSave: number): boolean {
  if (step >= steps) return false;
  const bySteps = cfg.checkpointEverySteps > 0 && step % cfg.checkpointEverySteps === 0;
  const bySecs = cfg.checkpointEverySeconds > 0 && (performance.now() - lastSave) / 1000 >= cfg.checkpointEverySeconds;
  return bySteps || bySecs;
}

/** The trained weights in raw units: W_enc, W_dec as trained; b_enc, b_dec divided by the input scale. */
function foldScaleBack(run: Run): SaeWeights {
  const { cfg, buf, spec } = run;
  const inv = 1 / run.S.scale;
  return {
    arch: cfg.arch,
    d: spec.d,
    m: cfg.m,
    k: cfg.k,
    beta: cfg.beta,
    W_enc: Float32Array.from(buf.W_enc),
    W_dec: Float32Array.from(buf.W_dec),
    b_enc: Float32Array.from(buf.b_enc, (v) => v * inv),
    b_dec: Float32Array.from(buf.b_dec, (v) => v * inv),
  };
}

/** The state of a matching checkpoint in cfg.checkpointDir (its arrays copied into buf), or null. */
function resumeState(cfg: ResolvedTrainConfig, buf: KernelBuffers, d: number, steps: number, cb: SaeTrainCallbacks): State | null {
  if (!cfg.checkpointDir) return null;
  const ck = readCheckpoint(path.join(cfg.checkpointDir, CKPT_FILE));
  if (!ck) return null;
  if (ck.meta.key !== numericKey(cfg, d)) {
    cb.onLog?.('sae: ignoring a checkpoint made with a different configuration');
    return null;
  }
  const a = ck.arrays;
  buf.W_dec.set(a.W_dec as Float32Array);
  buf.b_enc.set(a.b_enc as Float32Array);
  buf.b_dec.set(a.b_dec as Float32Array);
  for (const name of OPT_ARRAYS) buf.opt[name].set(a[name] as Float32Array);
  const S: State = {
    step: ck.meta.step,
    denseUntil: ck.meta.denseUntil ?? 0,
    tokensSeen: ck.meta.tokensSeen,
    scale: ck.meta.scale,
    bDecInitUsed: ck.meta.bDecInitUsed,
    mbd: a.mbd as Float32Array,
    vbd: a.vbd as Float32Array,
    firing: a.firing as Float64Array,
    lastFired: a.lastFired as Float64Array,
  };
  cb.onLog?.(`sae: resuming from checkpoint at step ${S.step}/${steps} (${S.tokensSeen} tokens)`);
  return S;
}

/** The optimiser arrays of KernelBuffers.opt saved in a checkpoint. */
const OPT_ARRAYS = ['W_encT', 'mWe', 'vWe', 'mWd', 'vWd', 'mbe', 'vbe'] as const;

/** Whether training reads the gradients (a g-SAE with beta != 0). */
function usesGrad(cfg: { arch: string; beta: number }): boolean {
  return cfg.arch === 'gsae' && cfg.beta !== 0;
}

/** The initial state: input scale, b_dec, W_dec (random unit rows or cfg.init), W_enc = W_decᵀ, zero moments. */
function initState(source: RowSource, cfg: ResolvedTrainConfig, buf: KernelBuffers, d: number, init: SaeWeights | null): State {
  const m = cfg.m;
  // sample for the norm estimate and b_dec
  const ns = Math.min(cfg.initSamples, source.rows);
  const xs = new Float32Array(ns * d);
  // withGrad as the training stream's, so a source that keeps what it loaded loads the rows once
  source.stream(deriveSeed(cfg.seed, 'init-sample'), 0, usesGrad(cfg)).read(ns, xs, null);
  const scale = cfg.normalize === 'mean_norm' ? inputScale(source.meanNormX, xs, ns, d) : 1;
  for (let i = 0; i < xs.length; i++) xs[i] *= scale;
  const W_encT = buf.opt.W_encT;
  for (const a of [buf.opt.mWe, buf.opt.vWe, buf.opt.mWd, buf.opt.vWd, buf.opt.mbe, buf.opt.vbe]) a.fill(0);
  if (init) {
    if (init.d !== d || init.m !== m) throw new Error(`trainSae: init has d=${init.d}, m=${init.m}; expected ${d}, ${m}`);
    for (let i = 0; i < d; i++) buf.b_dec[i] = init.b_dec[i] * scale;
    for (let j = 0; j < m; j++) buf.b_enc[j] = init.b_enc[j] * scale;
    buf.W_dec.set(init.W_dec);
    normaliseRows(buf.W_dec, m, d);
    transposeInto(init.W_enc, d, m, W_encT);
  } else {
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
    mbd: new Float32Array(d),
    vbd: new Float32Array(d),
    firing: new Float64Array(m),
    lastFired: new Float64Array(m),
  };
}

/** c = √d / mean‖x‖ (the source's mean norm, else the sample's); 1 when the mean norm is 0. */
function inputScale(sourceMeanNorm: number | undefined, xs: Float32Array, ns: number, d: number): number {
  let meanNorm = sourceMeanNorm;
  if (!(meanNorm !== undefined && meanNorm > 0)) {
    let s = 0;
    for (let r = 0; r < ns; r++) {
      let q = 0;
      for (let i = 0; i < d; i++) q += xs[r * d + i] ** 2;
      s += Math.sqrt(q);
    }
    meanNorm = s / Math.max(1, ns);
  }
  return meanNorm > 0 ? Math.sqrt(d) / meanNorm : 1;
}

/** Scale each of the `rows` rows of W [rows, d] to unit norm (zero rows stay zero). */
function normaliseRows(W: Float32Array, rows: number, d: number): void {
  for (let j = 0; j < rows; j++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += W[j * d + i] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let i = 0; i < d; i++) W[j * d + i] *= inv;
  }
}

function saveCheckpoint(file: string, key: string, S: State, buf: KernelBuffers): void {
  const { step, denseUntil, tokensSeen, scale, bDecInitUsed } = S;
  const { W_encT, mWe, vWe, mWd, vWd, mbe, vbe } = buf.opt;
  writeCheckpoint(
    file,
    { key, step, denseUntil, tokensSeen, scale, bDecInitUsed },
    { W_encT, W_dec: buf.W_dec, b_enc: buf.b_enc, b_dec: buf.b_dec, mWe, vWe, mWd, vWd, mbe, vbe, mbd: S.mbd, vbd: S.vbd, firing: S.firing, lastFired: S.lastFired },
  );
}

/** Whether `dir` holds a checkpoint of a run (any configuration). */
export function hasCheckpoint(dir: string): boolean {
  return fs.existsSync(path.join(dir, CKPT_FILE));
}
