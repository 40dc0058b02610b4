/**
 * Language-model training without any pipeline engine: random contiguous windows of nCtx+1 tokens
 * from a token stream (seeded per step), AdamW (decoupled weight decay on matrices only), linear
 * warmup + cosine decay, global-norm gradient clipping, periodic validation, progress/metric
 * callbacks, and checkpoint/resume (model + optimizer moments + step; the batch sampler is
 * counter-based, so its PRNG state is (seed, step) and a resumed run sees the same batches).
 */
import { windowsAt } from '../windows.ts';
import { writeFileAtomicSync } from '../../base/atomic.ts';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { deriveSeed, mulberry32 } from '../util/random.ts';
import { GPT2 } from './gpt2.ts';
import { readSafetensors, writeSafetensors, type TensorF32 } from '../safetensors.ts';
import { DataParallel } from './parallel.ts';
import { AdamWKernel, adamwRange } from './adamw.ts';
import { ortEnabled } from '../backend.ts';
import { ortThreads, setOrtThreads } from '../native/ort.ts';
import { readF32 } from '../native/tfort.ts';
import type { TrainCallbacks } from '../util/progress.ts';
import type { TokenArray } from '../tokens.ts';


export interface TrainOptions {
  /** Sequences per step. Default 16. */
  batchSize?: number;
  /** Sequence length (tokens predicted per sequence). Default: model nCtx. */
  seqLen?: number;
  /** Token budget (params lm.train_tokens; batchSize * seqLen per step): steps = ceil(trainTokens / tokensPerStep). */
  trainTokens?: number;
  /** Or give the number of steps directly (overrides trainTokens). */
  steps?: number;
  /** Peak learning rate. Default 3e-3. */
  lr?: number;
  /** Final learning rate of the cosine decay as a fraction of lr. Default 0.1. */
  minLrRatio?: number;
  /** Linear warmup steps. Default: 5% of steps (at least 1). */
  warmupSteps?: number;
  /** AdamW. Defaults: beta1 0.9, beta2 0.95, eps 1e-8, weightDecay 0.1 (matrices only). */
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clip. Default 1.0 (0 = off). */
  gradClip?: number;
  /** Seed of the batch sampler. Default 0. */
  seed?: number;
  /**
   * Validation stream and schedule: every evalEverySteps steps on the first valTokens tokens
   * (default 32,768), and at the end on the first finalValTokens (default: the whole stream).
   */
  valStream?: TokenArray;
  evalEverySteps?: number;
  valTokens?: number;
  finalValTokens?: number;
  /** Progress and train_loss every logEverySteps steps (default 10). */
  logEverySteps?: number;
  /** Save a checkpoint here every checkpointEverySteps steps (default 100) and at the end; resume if present. */
  checkpointDir?: string;
  checkpointEverySteps?: number;
  /**
   * Threads computing gradients (data parallel): 1 = this thread only (default); n > 1 starts n-1
   * worker threads, each with its own wasm backend (wasm uses one core per thread). Results are
   * reproducible for a fixed number of threads (part of the checkpoint fingerprint). On the
   * wasm+ort backend every batch is split into ORT_GRAD_SHARDS fixed shards instead, dealt to
   * min(threads, shards) participants with the remaining threads as ONNX Runtime intra-op threads
   * (`gradientPlan`): the numbers then do not depend on `threads` at all.
   */
  threads?: number;
  /** Stop between steps (without saving) when aborted; train() then rejects with an AbortError. */
  signal?: AbortSignal;
}

/**
 * The LM trainer's callbacks (the same shapes as the SAE trainer's): onProgress every logEverySteps
 * steps with metrics { train_loss (mean over the last logEverySteps steps), grad_norm }; onMetrics with
 * { train_loss } every logEverySteps steps and { val_loss } at every evaluation, step = tokens seen.
 */
export type LmTrainCallbacks = TrainCallbacks<Record<string, number>>;

export interface TrainResult {
  /** Mean validation loss (nats/token) at the end (NaN without a validation stream). */
  finalValLoss: number;
  /** Mean training loss over the last logEverySteps steps. */
  finalTrainLoss: number;
  steps: number;
  tokensSeen: number;
  /** Training throughput of this call (excluding validation). */
  tokensPerSecond: number;
  seconds: number;
  /** Step this call started from (> 0 when resumed from a checkpoint). */
  resumedFromStep: number;
}

/** Entropy (nats) of the unigram distribution of a token stream: the loss of the best context-free model. */
export function unigramEntropy(tokens: TokenArray, vocabSize: number): number {
  const counts = new Float64Array(vocabSize);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(t >= 0 && t < vocabSize)) throw new Error(`unigramEntropy: token ${t} at ${i} outside [0, ${vocabSize})`);
    counts[t]++;
  }
  const n = tokens.length;
  let h = 0;
  for (let v = 0; v < vocabSize; v++) if (counts[v] > 0) h -= (counts[v] / n) * Math.log(counts[v] / n);
  return h;
}

/**
 * Mean next-token cross-entropy (nats/token) on non-overlapping windows of seqLen+1 tokens taken
 * from the start of the stream (consecutive windows share one boundary token), up to maxTokens
 * predicted tokens. Deterministic.
 */
export function evaluateLoss(
  model: GPT2,
  tokens: TokenArray,
  opts: { seqLen?: number; batchSize?: number; maxTokens?: number } = {},
): number {
  const T = opts.seqLen ?? model.config.nCtx;
  const B = opts.batchSize ?? 16;
  const nWin = Math.floor((tokens.length - 1) / T);
  const maxWin = opts.maxTokens !== undefined ? Math.max(1, Math.floor(opts.maxTokens / T)) : nWin;
  const W = Math.min(nWin, maxWin);
  if (W < 1) throw new Error(`evaluateLoss: need at least ${T + 1} tokens, got ${tokens.length}`);
  let sum = 0;
  let count = 0;
  for (let w0 = 0; w0 < W; w0 += B) {
    const b = Math.min(B, W - w0);
    const buf = windowsAt(tokens, Array.from({ length: b }, (_, i) => (w0 + i) * T), T);
    const l = model.lossPerToken(buf, b, T);
    for (let i = 0; i < l.length; i++) sum += l[i];
    count += l.length;
  }
  return sum / count;
}

/** The batch of step `step`: batchSize random windows of seqLen+1 tokens (seeded by seed and step). */
export function sampleBatch(tokens: TokenArray, batchSize: number, seqLen: number, seed: number, step: number): Int32Array {
  const span = tokens.length - (seqLen + 1);
  if (span < 0) throw new Error(`train: the token stream (${tokens.length}) is shorter than one window (${seqLen + 1})`);
  const u = mulberry32(deriveSeed(seed, `batch:${step}`));
  return windowsAt(tokens, Array.from({ length: batchSize }, () => Math.floor(u() * (span + 1))), seqLen);
}

/** Learning rate at `step` (0-based): linear warmup to lr, then cosine decay to lr * minLrRatio. */
export function learningRate(step: number, totalSteps: number, lr: number, warmup: number, minLrRatio: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const denom = Math.max(1, totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / denom);
  const minLr = lr * minLrRatio;
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
}

/**
 * AdamW over all parameters as ONE flat vector (float64 arithmetic, float32 state; adamw.ts): a
 * WebAssembly f64x2 kernel, bit for bit the TypeScript reference loop (which was measured ~10x faster
 * than the same update as a dozen tfjs ops over the vector, and the kernel ~2x faster than it).
 * Decoupled weight decay applies to matrices (rank >= 2: embeddings and weights) only.
 */
export class AdamW {
  readonly names: string[];
  readonly shapes: number[][];
  readonly sizes: number[];
  private readonly total: number;
  /** m, v and the flat gradient: in the WebAssembly kernel's memory, or plain arrays without it. */
  private readonly kernel: AdamWKernel | null;
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private readonly g: Float32Array;
  private readonly decay: boolean[];
  /** One reused output buffer per parameter for the TypeScript path (tf.tensor copies it). */
  private readonly outs: Float32Array[] = [];
  /** Number of updates applied so far (for bias correction). */
  t = 0;

  constructor(
    model: GPT2,
    readonly opts: { beta1: number; beta2: number; eps: number; weightDecay: number },
    /** false: the TypeScript loop (the reference), never the WebAssembly kernel. */
    simd = true,
  ) {
    this.names = model.paramNames;
    this.shapes = this.names.map((n) => model.param(n).shape);
    this.sizes = this.shapes.map((s) => s.reduce((a, b) => a * b, 1));
    this.total = this.sizes.reduce((a, b) => a + b, 0);
    this.kernel = simd ? AdamWKernel.create(this.total, Math.max(...this.sizes)) : null;
    this.m = this.kernel?.m ?? new Float32Array(this.total);
    this.v = this.kernel?.v ?? new Float32Array(this.total);
    this.g = this.kernel?.g ?? new Float32Array(this.total);
    this.decay = this.shapes.map((s) => s.length >= 2);
  }

  /** Whether the update runs in the WebAssembly kernel (bit-identical to the TypeScript loop). */
  get simd(): boolean {
    return this.kernel !== null;
  }

  /**
   * One update with learning rate lr; grads are consumed (disposed). Clips the global gradient
   * norm to `clip` (0 = off). Returns the pre-clip global norm.
   */
  step(model: GPT2, grads: Map<string, tf.Tensor>, lr: number, clip: number): number {
    let off = 0;
    this.names.forEach((n, i) => {
      this.g.set(readF32(grads.get(n)!), off);
      off += this.sizes[i];
    });
    for (const x of grads.values()) x.dispose();
    return this.update(model, lr, clip);
  }

  /** The same with the gradient given as one flat array (parameter order of model.paramNames). */
  stepFlat(model: GPT2, grad: Float32Array, lr: number, clip: number): number {
    if (grad.length !== this.total) throw new Error(`AdamW: gradient has ${grad.length} values, the model has ${this.total} parameters`);
    this.g.set(grad);
    return this.update(model, lr, clip);
  }

  private update(model: GPT2, lr: number, clip: number): number {
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const g = this.g;
    this.t++;
    const t = this.t;
    let sq = 0;
    for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
    const norm = Math.sqrt(sq);
    const scale = clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1;
    const bc1 = 1 - beta1 ** t;
    const bc2 = 1 - beta2 ** t;
    const next = new Map<string, tf.Tensor>();
    let off = 0;
    for (let k = 0; k < this.names.length; k++) {
      const n = this.names[k];
      // a view on the wasm heap: read before this parameter's new tensor is allocated
      const p = readF32(model.param(n));
      const s = { scale, beta1, beta2, bc1, bc2, eps, lr, wd: this.decay[k] ? weightDecay : 0 };
      let out: Float32Array;
      if (this.kernel) {
        out = this.kernel.update(p, off, s);
      } else {
        out = this.outs[k] ??= new Float32Array(this.sizes[k]);
        adamwRange(p, out, g, this.m, this.v, off, s);
      }
      next.set(n, tf.tensor(out, this.shapes[k], 'float32'));
      off += this.sizes[k];
    }
    model.setParams(next);
    return norm;
  }

  state(): { m: Float32Array; v: Float32Array; t: number } {
    return { m: this.m.slice(), v: this.v.slice(), t: this.t };
  }

  setState(s: { m: Float32Array; v: Float32Array; t: number }): void {
    if (s.m.length !== this.total || s.v.length !== this.total) {
      throw new Error(`AdamW: optimizer state has ${s.m.length} values, the model has ${this.total} parameters`);
    }
    this.m.set(s.m);
    this.v.set(s.v);
    this.t = s.t;
  }

  dispose(): void {
    /* plain arrays and a WebAssembly memory: garbage-collected */
  }
}

// ------------------------------------------------------------------ checkpoints

interface CheckpointState {
  format: 'gsae-lm-checkpoint-v1';
  step: number;
  tokensSeen: number;
  adamT: number;
  /** The batch sampler is counter-based: its state is (seed, step). */
  rng: { seed: number; step: number };
  /** Fingerprint of everything that must match to resume. */
  fingerprint: string;
  trainLossWindow: number[];
  lastValLoss: number | null;
}

const LATEST = 'latest.json';

function loadCheckpoint(dir: string): { state: CheckpointState; params: Map<string, TensorF32>; m: Float32Array; v: Float32Array } | null {
  const latest = path.join(dir, LATEST);
  if (!fs.existsSync(latest)) return null;
  const { dir: sub } = JSON.parse(fs.readFileSync(latest, 'utf8')) as { dir: string };
  const d = path.join(dir, sub);
  const state = JSON.parse(fs.readFileSync(path.join(d, 'state.json'), 'utf8')) as CheckpointState;
  if (state.format !== 'gsae-lm-checkpoint-v1') throw new Error(`checkpoint ${d}: unknown format ${state.format}`);
  const params = readSafetensors(path.join(d, 'model.safetensors')).tensors;
  const opt = readSafetensors(path.join(d, 'optimizer.safetensors')).tensors;
  const m = opt.get('adam.m');
  const v = opt.get('adam.v');
  if (!m || !v) throw new Error(`checkpoint ${d}: optimizer.safetensors lacks adam.m / adam.v`);
  return { state, params, m: m.data, v: v.data };
}

function saveCheckpoint(dir: string, model: GPT2, opt: AdamW, state: CheckpointState): void {
  fs.mkdirSync(dir, { recursive: true });
  const sub = `step-${String(state.step).padStart(8, '0')}`;
  const tmp = path.join(dir, `${sub}.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  const tensors = new Map<string, TensorF32>();
  for (const [n, a] of model.paramArrays()) tensors.set(n, { shape: model.param(n).shape, data: a });
  writeSafetensors(path.join(tmp, 'model.safetensors'), tensors, { step: String(state.step) });
  const s = opt.state();
  writeSafetensors(
    path.join(tmp, 'optimizer.safetensors'),
    { 'adam.m': { shape: [s.m.length], data: s.m }, 'adam.v': { shape: [s.v.length], data: s.v } },
    { step: String(state.step) },
  );
  fs.writeFileSync(path.join(tmp, 'state.json'), JSON.stringify(state, null, 1));
  const final = path.join(dir, sub);
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  // Switch the pointer atomically, then remove older checkpoints.
  writeFileAtomicSync(path.join(dir, LATEST), JSON.stringify({ dir: sub }));
  for (const e of fs.readdirSync(dir)) {
    if (e !== sub && /^step-\d+$/.test(e)) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
  }
}

function abortError(): Error {
  const e = new Error('training aborted');
  e.name = 'AbortError';
  return e;
}

/** The settings of a run with the defaults applied, and their fingerprint (what must match to resume). */
interface LmSettings {
  B: number;
  T: number;
  perStep: number;
  totalSteps: number;
  lr: number;
  minLrRatio: number;
  warmup: number;
  clip: number;
  seed: number;
  logEverySteps: number;
  evalEverySteps: number;
  ckptEvery: number;
  valMax: number;
  finalValMax: number | undefined;
  threads: number;
  adamOpts: { beta1: number; beta2: number; eps: number; weightDecay: number };
  fingerprint: string;
}

function resolveSettings(model: GPT2, trainTokens: TokenArray, options: TrainOptions): LmSettings {
  const c = model.config;
  const B = options.batchSize ?? LM_DEFAULTS.batchSize;
  const T = options.seqLen ?? c.nCtx;
  if (T > c.nCtx) throw new Error(`train: seqLen ${T} exceeds the model context ${c.nCtx}`);
  const perStep = B * T;
  const totalSteps = options.steps ?? Math.ceil((options.trainTokens ?? 1_000_000) / perStep);
  if (!(totalSteps >= 1)) throw new Error(`train: need at least one step (got ${totalSteps})`);
  const lr = options.lr ?? LM_DEFAULTS.lr;
  const minLrRatio = options.minLrRatio ?? 0.1;
  const warmup = Math.max(1, options.warmupSteps ?? Math.round(0.05 * totalSteps));
  const clip = options.gradClip ?? LM_DEFAULTS.gradClip;
  const seed = options.seed ?? LM_DEFAULTS.seed;
  const threads = Math.max(1, Math.floor(options.threads ?? 1));
  const adamOpts = {
    beta1: options.beta1 ?? 0.9,
    beta2: options.beta2 ?? 0.95,
    eps: options.eps ?? 1e-8,
    weightDecay: options.weightDecay ?? LM_DEFAULTS.weightDecay,
  };
  for (let i = 0; i < trainTokens.length; i++) {
    if (!(trainTokens[i] >= 0 && trainTokens[i] < c.vocabSize)) throw new Error(`train: token ${trainTokens[i]} at ${i} is outside the vocabulary ${c.vocabSize}`);
  }
  const numeric = { B, T, totalSteps, lr, minLrRatio, warmup, clip, seed, adamOpts };
  const fingerprint = JSON.stringify({ config: c, ...numeric, nTrain: trainTokens.length, threads: ortEnabled() ? `ort, ${ORT_GRAD_SHARDS} shards` : threads });
  return {
    ...numeric,
    perStep,
    logEverySteps: Math.max(1, options.logEverySteps ?? 10),
    evalEverySteps: options.evalEverySteps ?? 0,
    ckptEvery: options.checkpointEverySteps ?? 100,
    valMax: options.valTokens ?? LM_DEFAULTS.valTokens,
    finalValMax: options.finalValTokens,
    threads,
    fingerprint,
  };
}

/** Where a run continues: step 0, or a matching checkpoint's step (its weights and moments loaded into model and opt). */
interface LmProgressState {
  step: number;
  lossWindow: number[];
  lastVal: number | null;
}

function resumeFrom(dir: string | undefined, fingerprint: string, model: GPT2, opt: AdamW): LmProgressState {
  const ck = dir ? loadCheckpoint(dir) : null;
  if (!ck) return { step: 0, lossWindow: [], lastVal: null };
  if (ck.state.fingerprint !== fingerprint) {
    throw new Error(
      `train: checkpoint in ${dir} was made with different settings; delete it to start over.\n` +
        `  checkpoint: ${ck.state.fingerprint}\n  now:        ${fingerprint}`,
    );
  }
  const params = new Map<string, tf.Tensor>();
  for (const n of model.paramNames) {
    const t = ck.params.get(n);
    if (!t) throw new Error(`train: checkpoint lacks parameter '${n}'`);
    params.set(n, tf.tensor(t.data, t.shape));
  }
  model.setParams(params);
  opt.setState({ m: ck.m, v: ck.v, t: ck.state.adamT });
  return { step: ck.state.step, lossWindow: ck.state.trainLossWindow, lastVal: ck.state.lastValLoss };
}

/**
 * On wasm+ort the batch of every step is split into this many fixed shards (contiguous sequences),
 * whose mean gradients are summed in shard order. Measured on a 2-core machine (bench/lm.ts): two
 * participants with one ONNX Runtime thread each train ~18% faster than one participant with two
 * intra-op threads (the pool splits every small elementwise node; whole shards split perfectly).
 */
export const ORT_GRAD_SHARDS = 2;

/**
 * How the LM trainer uses `threads` on the active backend: wasm+ort, ORT_GRAD_SHARDS shards over
 * min(threads, shards) participants (this thread + workers), each with floor(threads / participants)
 * ONNX Runtime threads; wasm (no fixed shards), one participant per thread.
 */
export function gradientPlan(threads: number): { shards: number; workers: number; ortThreads: number } {
  const t = Math.max(1, Math.floor(threads));
  if (!ortEnabled()) return { shards: 0, workers: t - 1, ortThreads: 1 };
  const participants = Math.min(t, ORT_GRAD_SHARDS);
  return { shards: ORT_GRAD_SHARDS, workers: participants - 1, ortThreads: Math.max(1, Math.floor(t / participants)) };
}

/** One optimiser step on a batch (on this thread, or data parallel over `dp`): the loss and the gradient norm. */
async function optimizerStep(model: GPT2, opt: AdamW, dp: DataParallel | null, batch: Int32Array, s: LmSettings, rate: number, step: number): Promise<{ loss: number; gradNorm: number }> {
  let loss: number;
  let gradNorm: number;
  if (dp) {
    const r = await dp.forwardBackward(model, batch, s.B, s.T);
    loss = r.loss;
    gradNorm = opt.stepFlat(model, r.grad, rate, s.clip);
  } else {
    const r = model.forwardBackward(batch, s.B, s.T);
    loss = r.loss;
    gradNorm = opt.step(model, r.grads, rate, s.clip);
  }
  if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
    throw new Error(`train: diverged at step ${step + 1} (loss ${loss}, gradient norm ${gradNorm}); lower the learning rate`);
  }
  return { loss, gradNorm };
}

const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;

/**
 * Train `model` in place on a token stream. Resumes from `checkpointDir` when it holds a
 * checkpoint of the same configuration. Returns the final validation loss and run statistics.
 */
export async function train(model: GPT2, trainTokens: TokenArray, options: TrainOptions = {}, cb: LmTrainCallbacks = {}): Promise<TrainResult> {
  const s = resolveSettings(model, trainTokens, options);
  const { perStep, totalSteps } = s;
  const opt = new AdamW(model, s.adamOpts);
  let dp: DataParallel | null = null;
  let restoreOrt = () => {};
  try {
    const state = resumeFrom(options.checkpointDir, s.fingerprint, model, opt);
    const { lossWindow } = state;
    const resumedFrom = state.step;
    const ortThreadsBefore = ortThreads();
    const plan = gradientPlan(s.threads);
    if (ortEnabled()) setOrtThreads(plan.ortThreads);
    restoreOrt = () => setOrtThreads(ortThreadsBefore);
    if (plan.shards > 0 || plan.workers > 0) dp = await DataParallel.create(model, plan.workers, { shards: plan.shards, ortThreads: plan.ortThreads });
    const valLoss = (maxTokens: number | undefined): number => {
      if (!options.valStream) return NaN;
      // evaluation runs on this thread alone: all `threads` as ORT intra-op threads (the numbers do not depend on it)
      if (ortEnabled()) setOrtThreads(s.threads);
      try {
        return evaluateLoss(model, options.valStream, { seqLen: s.T, batchSize: s.B, maxTokens });
      } finally {
        if (ortEnabled()) setOrtThreads(plan.ortThreads);
      }
    };
    const t0 = performance.now();
    let trainMs = 0;
    const checkpoint = () => {
      if (!options.checkpointDir) return;
      const { step, lastVal } = state;
      saveCheckpoint(options.checkpointDir, model, opt, {
        format: 'gsae-lm-checkpoint-v1',
        step,
        tokensSeen: step * perStep,
        adamT: opt.t,
        rng: { seed: s.seed, step },
        fingerprint: s.fingerprint,
        trainLossWindow: lossWindow,
        lastValLoss: lastVal,
      });
    };
    while (state.step < totalSteps) {
      if (options.signal?.aborted) throw abortError();
      const s0 = performance.now();
      const batch = sampleBatch(trainTokens, s.B, s.T, s.seed, state.step);
      const rate = learningRate(state.step, totalSteps, s.lr, s.warmup, s.minLrRatio);
      const { loss, gradNorm } = await optimizerStep(model, opt, dp, batch, s, rate, state.step);
      const step = ++state.step;
      trainMs += performance.now() - s0;
      lossWindow.push(loss);
      if (lossWindow.length > s.logEverySteps) lossWindow.shift();
      const tokensSeen = step * perStep;
      if (step % s.logEverySteps === 0 || step === totalSteps) {
        const trainLoss = mean(lossWindow);
        cb.onMetrics?.({ train_loss: trainLoss }, tokensSeen);
        cb.onProgress?.({
          step,
          totalSteps,
          tokensSeen,
          totalTokens: totalSteps * perStep,
          tokensPerSecond: ((step - resumedFrom) * perStep) / (trainMs / 1000),
          elapsedSeconds: (performance.now() - t0) / 1000,
          lr: rate,
          metrics: { train_loss: trainLoss, grad_norm: gradNorm },
        });
      }
      if (options.valStream && s.evalEverySteps > 0 && step % s.evalEverySteps === 0 && step < totalSteps) {
        state.lastVal = valLoss(s.valMax);
        cb.onMetrics?.({ val_loss: state.lastVal }, tokensSeen);
      }
      if (options.checkpointDir && step % s.ckptEvery === 0 && step < totalSteps) checkpoint();
      // Let timers, signals and I/O run between steps.
      await new Promise((r) => setImmediate(r));
    }
    const finalVal = valLoss(s.finalValMax);
    if (options.valStream) {
      state.lastVal = finalVal;
      cb.onMetrics?.({ val_loss: finalVal }, totalSteps * perStep);
    }
    checkpoint();
    return {
      finalValLoss: finalVal,
      finalTrainLoss: lossWindow.length ? mean(lossWindow) : NaN,
      steps: state.step,
      tokensSeen: state.step * perStep,
      tokensPerSecond: trainMs > 0 ? ((state.step - resumedFrom) * perStep) / (trainMs / 1000) : 0,
      seconds: (performance.now() - t0) / 1000,
      resumedFromStep: resumedFrom,
    };
  } finally {
    opt.dispose();
    restoreOrt();
    await dp?.close();
  }
}

/** The default LM of the pipeline (see bench/lm.ts for its speed on wasm). */
export const DEFAULT_LM_CONFIG = {
  vocabSize: 4096,
  nCtx: 128,
  dModel: 128,
  nLayer: 4,
  nHead: 4,
  layerNormEps: 1e-5,
} as const;

/**
 * The defaults of the options that params.yaml sets too (lm.batch_size, lr, weight_decay,
 * grad_clip, val_tokens, seed): the same values, checked by test/lib/model/train.test.ts. The
 * token budget, warmup, evaluation period and threads are the run's choice (params.yaml sets
 * them per preset); their library defaults are 1,000,000 tokens, 5% of the steps, no periodic
 * evaluation, 1 thread.
 */
export const LM_DEFAULTS = {
  batchSize: 16,
  lr: 3e-3,
  weightDecay: 0.1,
  gradClip: 1.0,
  valTokens: 32_768,
  seed: 0,
} as const;
