/**
 * Downstream loss by splicing (docs/METHOD.md "Downstream loss").
 *
 * Held-out sequences: the caller passes the windows (`windows`, nSeq × (seqLen + 1) tokens; the
 * pipeline uses the collect stage's windows, spread evenly over the whole split because the corpus
 * is chronological), or, without them, consecutive non-overlapping windows from the start of the
 * stream (window j = tokens[j(seqLen+1) .. (j+1)(seqLen+1)) ), nSeq = min(floor(nTokens / seqLen),
 * available windows). Inputs are the first seqLen tokens of a window, targets the last seqLen.
 *
 * Per position (row = seq * seqLen + t) we keep: CE_clean, CE_spliced (x → x̂ at every position),
 * CE_zero (x → 0), CE_mean (x → mean activation), KL(p_clean ‖ p_spliced), the squared
 * reconstruction error ‖x − x̂‖² and L0 (latents selected with a value > 0).
 * Aggregates: means over positions; ΔCE = CE_spliced − CE_clean;
 * loss recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean) (ratio of the means);
 * FVU = Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over the held-out positions; dead fraction = share of
 * latents never firing on the held-out positions (the caller may AND this with the training-time
 * dead mask: `mergeDead`).
 *
 * g-SAE: the primary variant selects with the gradient of the clean forward/backward pass on the
 * same tokens — given as `gradients` (the collect stage stored exactly that g for these windows)
 * or computed here (model.activationAndGrad); the "_gradfree" variant selects with plain TopK at
 * eval time (ours). A topk SAE has only the primary variant (no gradient pass).
 *
 * Ablations: CE_zero and CE_mean do not depend on the SAE, so the caller may pass them
 * (`baselines`, computed once per split by `ablationBaselines`). Otherwise they are computed here;
 * the mean activation is then the mean of x over the same held-out positions (a second sweep).
 */
import { splitWindows } from '../windows.ts';
import { ChangeCounter } from '../sae/infer.ts';
import * as tf from '@tensorflow/tfjs-core';
import { type NamedArrays, readArrays, writeArrays } from '../util/arrays.ts';
import type { FusedRefRows, HookFn, HookedLM, HookName, Hooks } from '../model/types.ts';
import type { SaeWeights } from '../sae/types.ts';
import type { TokenArray } from '../tokens.ts';
import { type EncodeObservation, type ReconstructionOf, SaeInference, meanAblationHook, zeroAblationHook } from './saeHook.ts';
import { logSumExpRows, rowKlFrom, rowKlTo, rowLogSumExp, softmaxRows } from './logits.ts';
import { bootstrapDiffCI, bootstrapMeanCI, bootstrapRatioCI, type BootstrapOptions, wilsonInterval } from './stats.ts';
import { type DeadFracMetric, type DownstreamMetric, type VariantSuffix, variantMetric } from './metricNames.ts';

export * from './metricNames.ts';

export type GradientMode = 'both' | 'gradient' | 'gradfree';

export interface DownstreamOptions {
  hook: HookName;
  sae: SaeWeights;
  /** About this many predicted positions (rounded down to whole sequences). */
  nTokens: number;
  seqLen: number;
  /** Sequences per forward call. */
  batch: number;
  /**
   * g-SAE only (ignored for topk): 'both' (default) = gradient selection as the primary metrics
   * plus the '_gradfree' variant; 'gradient' = primary only; 'gradfree' = primary computed
   * gradient-free (no gradient pass at all).
   */
  gradientMode?: GradientMode;
  /** Mean activation for mean ablation; default: estimated on the same held-out positions. */
  meanActivation?: Float32Array;
  /** The held-out windows, nSeq × (seqLen + 1) tokens (default: consecutive from the stream start). */
  windows?: Int32Array;
  /** g = dL/dx at the hook for every evaluated position [nSeq·seqLen, d] (default: a gradient pass here). */
  gradients?: Float32Array;
  /** Per-position CE under zero and mean ablation of these windows (default: computed here). */
  baselines?: AblationBaselines;
  /**
   * x at the hook for every evaluated position [nSeq·seqLen, d], as the collect stage stored it: with
   * the fused head (wasm+ort) and a resid_pre hook, every pass starts there instead of at the token
   * embedding (the layers below the hook are not recomputed). The first batch is also run in full
   * and must give the same clean CE (else: an error naming the mismatch).
   */
  activations?: Float32Array;
  /**
   * The clean pass of these windows, computed once for every SAE (`cleanReference`, the same
   * batches and the same passes): CE_clean and the KL reference per position. With the fused
   * head the clean pass is then not run here, except on the first batch, which must give the
   * stored values bit for bit (else: an error).
   */
  cleanRef?: CleanReference;
  onProgress?: (doneSeq: number, totalSeq: number) => void;
}

/** The clean pass of the held-out windows: CE per position and the fused head's KL reference (FusedRefRows). */
export interface CleanReference extends FusedRefRows {
  ce: Float32Array;
}

/** Per-position arrays (length nPositions, order seq * seqLen + t). */
export type PerToken = Record<string, Float32Array>;

export interface DownstreamResult {
  arch: SaeWeights['arch'];
  k: number;
  hook: HookName;
  nSeq: number;
  seqLen: number;
  nPositions: number;
  /** True when the primary variant selected with the gradient (g-SAE, mode 'both'/'gradient'). */
  primaryUsesGradient: boolean;
  /** Metric name → value: the baselines and every variant metric (metricNames.ts), no CIs. */
  summary: Record<string, number>;
  perToken: PerToken;
  /** Firing counts per latent on the held-out positions, primary variant. */
  firesPerLatent: Float64Array;
  firesPerLatentGradfree: Float64Array | null;
  meanActivation: Float32Array;
  /**
   * g-SAE with gradient selection, passes started from the stored activations: the selection change
   * rate on these positions (the definition of selectionChangeRate in lib/sae/infer.ts), from the same
   * encodes as the spliced passes. null otherwise (the caller computes it if it wants it).
   */
  changeRate: number | null;
  cost: { seconds: number; positionsPerSecond: number; forwardTokens: number; forwardTokensPerSecond: number };
}

export interface AblationBaselines {
  ce_zero: Float32Array;
  ce_mean: Float32Array;
}

/** Number of held-out sequences and their windows (Int32, nSeq × (seqLen + 1)). */
export function heldOutWindows(
  tokens: TokenArray,
  nTokens: number,
  seqLen: number,
): { nSeq: number; windows: Int32Array } {
  const w = seqLen + 1;
  const available = Math.floor(tokens.length / w);
  const nSeq = Math.min(Math.floor(nTokens / seqLen), available);
  if (nSeq < 1) {
    throw new Error(`downstream: need at least one window of ${w} tokens within nTokens=${nTokens} (stream has ${tokens.length})`);
  }
  const windows = new Int32Array(nSeq * w);
  for (let i = 0; i < nSeq * w; i++) windows[i] = tokens[i];
  return { nSeq, windows };
}

function givenWindows(windows: Int32Array, seqLen: number): { nSeq: number; windows: Int32Array } {
  const w = seqLen + 1;
  if (windows.length === 0 || windows.length % w !== 0) throw new Error(`downstream: windows hold ${windows.length} tokens, not a positive multiple of seqLen + 1 = ${w}`);
  return { nSeq: windows.length / w, windows };
}

export { splitWindows, windowsAt } from '../windows.ts';

/**
 * CE per position under zero ablation (x → 0) and mean ablation (x → meanActivation) at `hook`
 * on the given windows: what every SAE's loss recovered is measured against, computed once.
 */
export function ablationBaselines(
  model: HookedLM,
  windows: Int32Array,
  opts: { hook: HookName; seqLen: number; batch: number; meanActivation: Float32Array; onProgress?: (done: number, total: number) => void },
): AblationBaselines {
  const { seqLen, batch, hook } = opts;
  const { nSeq } = givenWindows(windows, seqLen);
  const V = model.config.vocabSize;
  const N = nSeq * seqLen;
  const out: AblationBaselines = { ce_zero: new Float32Array(N), ce_mean: new Float32Array(N) };
  const meanHook = meanAblationHook(opts.meanActivation);
  for (let s0 = 0; s0 < nSeq; s0 += batch) {
    const nb = Math.min(batch, nSeq - s0);
    const { inputs, targets } = splitWindows(windows, s0, nb, seqLen);
    const inp = tf.tensor2d(inputs, [nb, seqLen], 'int32');
    try {
      for (const [fn, arr] of [[zeroAblationHook, out.ce_zero], [meanHook, out.ce_mean]] as const) {
        // zero / mean ablation replace x at the hook: start there (the layers below do not matter)
        const xs = tf.zeros([nb, seqLen, model.config.dModel]);
        const fused = model.fusedCeKl?.(inp, targets, { hooks: { [hook]: fn }, from: startsAt(hook) ? { hook, x: xs } : undefined }) ?? null;
        xs.dispose();
        if (fused) {
          fused.ref.release();
          arr.set(fused.ce, s0 * seqLen);
          continue;
        }
        const lt = model.logits(inp, { [hook]: fn });
        const l = lt.dataSync() as Float32Array;
        lt.dispose();
        for (let r = 0; r < targets.length; r++) arr[s0 * seqLen + r] = rowLogSumExp(l, r * V, V) - l[r * V + targets[r]];
      }
    } finally {
      inp.dispose();
    }
    opts.onProgress?.(s0 + nb, nSeq);
  }
  return out;
}

/** Whether a pass can start at this hook (resid_pre sites: fusedCeKl's `from`). */
function startsAt(hook: HookName): boolean {
  return /^blocks\.\d+\.hook_resid_pre$/.test(hook);
}

/** Largest |a − b| over two equal-length arrays. */
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Tolerance (nats) between the clean CE of a full pass and of a pass started from stored activations. */
const START_CHECK_TOL = 1e-4;

/** Accumulates reconstruction statistics from the SAE hook's observations, in row order. */
class SaeStats {
  readonly sqErr: Float32Array;
  readonly l0: Float32Array;
  readonly fires: Float64Array;
  private cursor = 0;
  private shift: Float64Array | null = null;
  private readonly sumDev: Float64Array; // Σ (x − shift)
  private sumSqDev = 0; // Σ ‖x − shift‖²
  private count = 0;

  constructor(nPositions: number, readonly d: number, m: number) {
    this.sqErr = new Float32Array(nPositions);
    this.l0 = new Float32Array(nPositions);
    this.fires = new Float64Array(m);
    this.sumDev = new Float64Array(d);
  }

  observe = ({ x, xhat, indices, values }: EncodeObservation): void => {
    const n = x.shape[0];
    const d = this.d;
    const k = indices.shape[1];
    // (typed arrays are assigned, not returned: tf.tidy would walk every element of a returned array)
    let sq!: ArrayLike<number>, xs!: ArrayLike<number>;
    tf.tidy(() => {
      sq = tf.sum(tf.square(tf.sub(x, xhat)), 1).dataSync();
      xs = x.dataSync();
    });
    const idx = indices.dataSync();
    const val = values.dataSync();
    this.sqErr.set(sq, this.cursor);
    // a latent fires on a token when it is selected with a value > 0 (L0 counts those)
    for (let r = 0; r < n; r++) {
      let l0 = 0;
      for (let t = r * k; t < (r + 1) * k; t++) {
        if (val[t] > 0) {
          l0++;
          this.fires[idx[t]]++;
        }
      }
      this.l0[this.cursor + r] = l0;
    }
    this.cursor += n;
    if (!this.shift) {
      // shift = the first batch's mean: keeps the variance accumulation numerically stable
      this.shift = new Float64Array(d);
      for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) this.shift[i] += xs[r * d + i] / n;
    }
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < d; i++) {
        const v = xs[r * d + i] - this.shift[i];
        this.sumDev[i] += v;
        this.sumSqDev += v * v;
      }
    }
    this.count += n;
  };

  mean(): Float32Array {
    const out = new Float32Array(this.d);
    for (let i = 0; i < this.d; i++) out[i] = (this.shift as Float64Array)[i] + this.sumDev[i] / this.count;
    return out;
  }

  /** Σ‖x − mean‖² over the observed rows. */
  totalSqDev(): number {
    let c = 0;
    for (let i = 0; i < this.d; i++) c += (this.sumDev[i] * this.sumDev[i]) / this.count;
    return this.sumSqDev - c;
  }

  rows(): number {
    return this.count;
  }
}

function mean(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s / a.length;
}

/** One evaluation's fixed inputs and the arrays it fills (shared by its steps below). */
interface DownstreamRun {
  model: HookedLM;
  opts: DownstreamOptions;
  w: SaeWeights;
  V: number;
  nSeq: number;
  windows: Int32Array;
  /** Stored activations the passes start from (null: every pass starts at the tokens). */
  xStored: Float32Array | null;
  primaryG: boolean;
  sae: SaeInference;
  stats: SaeStats;
  statsGF: SaeStats | null;
  pt: PerToken;
  forwardTokens: number;
  /** Selected latents of the gradient selection not in the plain TopK selection, and rows counted. */
  changed: number;
  rateRows: number;
}

/** One batch of held-out sequences. */
interface Batch {
  s0: number;
  nb: number;
  /** Positions in the batch, and the batch's first row. */
  n: number;
  off: number;
  inp: tf.Tensor2D;
  targets: Int32Array;
  /** The gradient for the g-SAE selection ([nb, seqLen, d]), when the primary variant uses it. */
  g: tf.Tensor3D | null;
}

/** Validate the options and set up the run: windows, variants, statistics and per-token arrays. */
function startRun(model: HookedLM, tokens: TokenArray, opts: DownstreamOptions): DownstreamRun {
  const { hook, sae: w, seqLen, batch } = opts;
  if (!(batch >= 1) || !(seqLen >= 1)) throw new Error('downstream: batch and seqLen must be ≥ 1');
  if (w.d !== model.config.dModel) throw new Error(`downstream: SAE d=${w.d} but model d=${model.config.dModel}`);
  const { nSeq, windows } = opts.windows ? givenWindows(opts.windows, seqLen) : heldOutWindows(tokens, opts.nTokens, seqLen);
  const N = nSeq * seqLen;
  if (opts.gradients && opts.gradients.length !== N * w.d) throw new Error(`downstream: gradients hold ${opts.gradients.length} values, expected ${N} positions × d ${w.d}`);
  if (opts.baselines && (opts.baselines.ce_zero.length !== N || opts.baselines.ce_mean.length !== N)) throw new Error(`downstream: baselines must hold ${N} positions`);
  if (opts.activations && opts.activations.length !== N * w.d) throw new Error(`downstream: activations hold ${opts.activations.length} values, expected ${N} positions × d ${w.d}`);
  const cr = opts.cleanRef;
  if (cr && (cr.ce.length !== N || cr.a.length !== N || cr.wbar.length !== N * w.d)) {
    throw new Error(`downstream: the clean reference holds ${cr.ce.length} positions (a ${cr.a.length}, w̄ ${cr.wbar.length} values), expected ${N} positions × d ${w.d}`);
  }
  const isG = w.arch === 'gsae';
  const mode: GradientMode = isG ? (opts.gradientMode ?? 'both') : 'gradfree';
  const alsoGradfree = isG && mode === 'both';
  const pt: PerToken = {
    ce_clean: new Float32Array(N),
    ce_spliced: new Float32Array(N),
    ce_zero: new Float32Array(N),
    ce_mean: new Float32Array(N),
    kl: new Float32Array(N),
  };
  if (alsoGradfree) {
    pt.ce_spliced_gradfree = new Float32Array(N);
    pt.kl_gradfree = new Float32Array(N);
  }
  return {
    model,
    opts,
    w,
    V: model.config.vocabSize,
    nSeq,
    windows,
    xStored: opts.activations && startsAt(hook) ? opts.activations : null,
    primaryG: isG && mode !== 'gradfree',
    sae: new SaeInference(w),
    stats: new SaeStats(N, w.d, w.m),
    statsGF: alsoGradfree ? new SaeStats(N, w.d, w.m) : null,
    pt,
    forwardTokens: 0,
    changed: 0,
    rateRows: 0,
  };
}

/** Inputs, targets and (for the primary g-SAE variant) the gradient of batch s0 .. s0 + nb − 1. */
function openBatch(run: DownstreamRun, s0: number, nb: number): Batch {
  const { opts, w, windows } = run;
  const { seqLen, hook } = opts;
  const n = nb * seqLen;
  const off = s0 * seqLen;
  const { inputs, targets } = splitWindows(windows, s0, nb, seqLen);
  let g: tf.Tensor3D | null = null;
  if (run.primaryG && opts.gradients) {
    g = tf.tensor3d(opts.gradients.subarray(off * w.d, (off + n) * w.d), [nb, seqLen, w.d]);
  } else if (run.primaryG) {
    const ag = run.model.activationAndGrad(windows.subarray(s0 * (seqLen + 1), (s0 + nb) * (seqLen + 1)), nb, seqLen, hook);
    run.forwardTokens += n;
    g = tf.tensor3d(ag.g, [nb, seqLen, w.d]);
  }
  return { s0, nb, n, off, inp: tf.tensor2d(inputs, [nb, seqLen], 'int32'), targets, g };
}

/**
 * The spliced hooks of a batch: primary (gradient or TopK selection) and, for 'both', gradient-free.
 * With `pre` (the batch's reconstructions, encoded once) the hooks put them in; otherwise each hook
 * encodes the x it sees.
 */
function splicedHooks(run: DownstreamRun, b: Batch, pre: SharedEncode | null): { hooks: Hooks; ce: string; kl: string }[] {
  const { hook } = run.opts;
  const put = (r: ReconstructionOf): HookFn => (x) => tf.reshape(r.xhat, x.shape) as tf.Tensor3D;
  const primary = pre ? put(pre.primary) : run.sae.hook({ mode: run.primaryG ? 'gradient' : 'topk', g: b.g ?? undefined, onEncode: run.stats.observe });
  const out = [{ hooks: { [hook]: primary }, ce: 'ce_spliced', kl: 'kl' }];
  if (run.statsGF) {
    const gradfree = pre ? put(pre.plain!) : run.sae.hook({ mode: 'topk', onEncode: run.statsGF.observe });
    out.push({ hooks: { [hook]: gradfree }, ce: 'ce_spliced_gradfree', kl: 'kl_gradfree' });
  }
  return out;
}

/** A batch's reconstructions, encoded once from the stored activations (kept until dispose). */
interface SharedEncode {
  primary: ReconstructionOf;
  /** The plain TopK selection of a g-SAE (gradient-free variant and change rate). */
  plain: ReconstructionOf | null;
  dispose(): void;
}

/**
 * Encode the batch's stored activations once (wasm+ort): the primary selection and, for a g-SAE
 * with the gradient, the plain TopK one from the same encoder GEMM (SaeInference.forwardBothOrt).
 * Feeds the statistics in row order, as the hooks would, and counts the change rate.
 */
function sharedEncode(run: DownstreamRun, b: Batch, xt: tf.Tensor3D): SharedEncode {
  const { w, sae } = run;
  const x2 = tf.reshape(xt, [b.n, w.d]) as tf.Tensor2D;
  const flat = (r: ReconstructionOf) => [r.xhat, r.indices, r.values];
  const outs = tf.tidy(() => {
    if (!run.primaryG) return flat(sae.forwardOrt(x2, null));
    const both = sae.forwardBothOrt(x2, tf.reshape(b.g!, [b.n, w.d]) as tf.Tensor2D);
    return [...flat(both.gradient), ...flat(both.plain)];
  });
  const rec = (i: number): ReconstructionOf => ({ xhat: outs[i], indices: outs[i + 1], values: outs[i + 2] });
  const enc = { primary: rec(0), plain: outs.length > 3 ? rec(3) : null };
  const tensors = [x2, ...outs];
  try {
    run.stats.observe({ x: x2, ...enc.primary });
    if (run.statsGF) run.statsGF.observe({ x: x2, ...enc.plain! });
    if (enc.plain) {
      const plainIdx = enc.plain.indices.dataSync();
      const gradIdx = enc.primary.indices.dataSync();
      const counter = new ChangeCounter(w.m, w.k);
      for (let r = 0; r < b.n; r++) counter.count(plainIdx, r * w.k, gradIdx.subarray(r * w.k, (r + 1) * w.k));
      run.changed += counter.changed;
      run.rateRows += b.n;
    }
  } catch (e) {
    tf.dispose(tensors);
    throw e;
  }
  return { ...enc, dispose: () => tf.dispose(tensors) };
}


/** The ablation hooks a batch still needs (none when the caller gave the baselines). */
function ablationHooks(run: DownstreamRun): { hooks: Hooks; ce: string }[] {
  const { hook, baselines, meanActivation } = run.opts;
  if (baselines) return [];
  const out = [{ hooks: { [hook]: zeroAblationHook }, ce: 'ce_zero' }];
  if (meanActivation) out.push({ hooks: { [hook]: meanAblationHook(meanActivation) }, ce: 'ce_mean' });
  return out;
}

/**
 * A batch through the fused CE/KL head (GPT2 on wasm+ort): no [n, V] logits leave the model; with
 * the stored activations every pass starts at the hook (the first batch is also run from the
 * tokens, and must agree). False when the model has no fused head.
 */
function fusedBatch(run: DownstreamRun, b: Batch): boolean {
  const { model, opts, w, pt } = run;
  const { hook, seqLen } = opts;
  if (!model.fusedCeKl) return false;
  const xt = run.xStored ? tf.tensor3d(run.xStored.subarray(b.off * w.d, (b.off + b.n) * w.d), [b.nb, seqLen, w.d]) : null;
  const from = xt ? { hook, x: xt } : undefined;
  const given = run.opts.cleanRef ? refSlice(run.opts.cleanRef, b, w.d) : null;
  // the clean pass: stored by cleanReference (run here only on the first batch, as a check), or run now
  const clean = !given || b.s0 === 0 ? model.fusedCeKl(b.inp, b.targets, { from, keepRef: true }) : null;
  let pre: SharedEncode | null = null;
  try {
    if (!clean && given && b.s0 === 0) throw new Error('downstream: a clean reference was given, but this model has no fused head to use it');
    if (!clean && !given) return false;
    if (xt) pre = sharedEncode(run, b, xt);
    if (clean) run.forwardTokens += b.n;
    if (given && clean) checkReference(given, clean.ce, clean.ref.rows?.() ?? null);
    pt.ce_clean.set(given ? given.ce : clean!.ce, b.off);
    // (with a stored reference, cleanReference made this check, and checkReference ties the two)
    if (from && b.s0 === 0 && !given) checkStart(run, b, clean!.ce);
    const kept = given ? { refRows: given.rows } : { ref: clean!.ref };
    const pass = (hooks: Hooks, ceName: string, klName: string | null) => {
      const r = model.fusedCeKl!(b.inp, b.targets, { hooks, ...(klName ? kept : {}), from })!;
      run.forwardTokens += b.n;
      r.ref.release();
      pt[ceName].set(r.ce, b.off);
      if (klName) pt[klName].set(r.kl!, b.off);
    };
    for (const v of splicedHooks(run, b, pre)) pass(v.hooks, v.ce, v.kl);
    for (const a of ablationHooks(run)) pass(a.hooks, a.ce, null);
    return true;
  } finally {
    pre?.dispose();
    clean?.ref.release();
    xt?.dispose();
  }
}

/** Batch b's slice of a stored clean reference. */
function refSlice(ref: CleanReference, b: Batch, d: number): { ce: Float32Array; rows: FusedRefRows } {
  return { ce: ref.ce.subarray(b.off, b.off + b.n), rows: { wbar: ref.wbar.subarray(b.off * d, (b.off + b.n) * d), a: ref.a.subarray(b.off, b.off + b.n) } };
}

/** A stored clean reference must be, bit for bit, what the clean pass gives now (same LM, windows, backend). */
function checkReference(given: { ce: Float32Array; rows: FusedRefRows }, ce: Float32Array, rows: FusedRefRows | null): void {
  const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
  if (!same(given.ce, ce) || (rows && (!same(given.rows.wbar, rows.wbar) || !same(given.rows.a, rows.a)))) {
    throw new Error(
      `downstream: the stored clean reference does not match the clean pass on the first batch (max |ΔCE| ${maxAbsDiff(given.ce, ce)} nats): ` +
        'it was computed for another LM, other windows or another backend (rerun clean_ref)',
    );
  }
}

/**
 * The clean pass of the held-out windows with the fused head, batch by batch exactly as
 * evaluateDownstream runs it (the same windows, batch size and starting point): CE and the KL
 * reference per position, for `cleanRef`. null when the model has no fused head (then every
 * evaluateDownstream runs its own clean pass). The first batch started from the stored
 * activations is checked against a pass from the tokens, as in evaluateDownstream.
 */
export function cleanReference(
  model: HookedLM,
  tokens: TokenArray,
  opts: { hook: HookName; seqLen: number; batch: number; nTokens: number; windows?: Int32Array; activations?: Float32Array; onProgress?: (doneSeq: number, totalSeq: number) => void },
): CleanReference | null {
  if (!model.fusedCeKl) return null;
  const d = model.config.dModel;
  const { seqLen, batch, hook } = opts;
  if (!(batch >= 1) || !(seqLen >= 1)) throw new Error('cleanReference: batch and seqLen must be ≥ 1');
  const { nSeq, windows } = opts.windows ? givenWindows(opts.windows, seqLen) : heldOutWindows(tokens, opts.nTokens, seqLen);
  const N = nSeq * seqLen;
  if (opts.activations && opts.activations.length !== N * d) throw new Error(`cleanReference: activations hold ${opts.activations.length} values, expected ${N} positions × d ${d}`);
  const xStored = opts.activations && startsAt(hook) ? opts.activations : null;
  const out: CleanReference = { ce: new Float32Array(N), wbar: new Float32Array(N * d), a: new Float32Array(N) };
  for (let s0 = 0; s0 < nSeq; s0 += batch) {
    const nb = Math.min(batch, nSeq - s0);
    const n = nb * seqLen;
    const off = s0 * seqLen;
    const { inputs, targets } = splitWindows(windows, s0, nb, seqLen);
    const inp = tf.tensor2d(inputs, [nb, seqLen], 'int32');
    const xt = xStored ? tf.tensor3d(xStored.subarray(off * d, (off + n) * d), [nb, seqLen, d]) : null;
    try {
      const r = model.fusedCeKl(inp, targets, { from: xt ? { hook, x: xt } : undefined, keepRef: true });
      if (!r) return null;
      try {
        const rows = r.ref.rows?.();
        if (!rows) throw new Error('cleanReference: the fused head keeps no per-position reference');
        if (xt && s0 === 0) {
          const full = model.fusedCeKl(inp, targets)!;
          full.ref.release();
          const diff = maxAbsDiff(full.ce, r.ce);
          if (!(diff <= START_CHECK_TOL)) throw new Error(`cleanReference: the stored activations at ${hook} do not reproduce the LM's clean loss (max |ΔCE| ${diff} nats on the first batch > ${START_CHECK_TOL})`);
        }
        out.ce.set(r.ce, off);
        out.wbar.set(rows.wbar, off * d);
        out.a.set(rows.a, off);
      } finally {
        r.ref.release();
      }
    } finally {
      inp.dispose();
      xt?.dispose();
    }
    opts.onProgress?.(s0 + nb, nSeq);
  }
  return out;
}

/** The clean CE of a pass started from the stored activations must be the full pass's. */
function checkStart(run: DownstreamRun, b: Batch, ceStarted: Float32Array): void {
  const full = run.model.fusedCeKl!(b.inp, b.targets)!;
  full.ref.release();
  run.forwardTokens += b.n;
  const diff = maxAbsDiff(full.ce, ceStarted);
  if (!(diff <= START_CHECK_TOL)) {
    throw new Error(`downstream: the stored activations at ${run.opts.hook} do not reproduce the LM's clean loss (max |ΔCE| ${diff} nats on the first batch > ${START_CHECK_TOL}): they come from another model or backend`);
  }
}

/** Logits [n·V] of a hooked forward, copied out (the tensor is freed). */
function logitsOf(run: DownstreamRun, inp: tf.Tensor2D, hooks?: Hooks): Float32Array {
  run.forwardTokens += inp.shape[0] * inp.shape[1];
  const t = run.model.logits(inp, hooks);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

/** CE per position of logits [n, V] against targets, written at `off` in `out`. */
function ceInto(l: Float32Array, V: number, targets: Int32Array, out: Float32Array, off: number): void {
  for (let r = 0; r < targets.length; r++) out[off + r] = rowLogSumExp(l, r * V, V) - l[r * V + targets[r]];
}

/** A batch through full logits and the float64 loops of logits.ts (any backend). */
function logitsBatch(run: DownstreamRun, b: Batch): void {
  const { V, pt } = run;
  const lC = logitsOf(run, b.inp);
  const lseC = logSumExpRows(lC, V);
  const pC = softmaxRows(lC, lseC, V);
  for (let r = 0; r < b.n; r++) pt.ce_clean[b.off + r] = lseC[r] - lC[r * V + b.targets[r]];
  for (const v of splicedHooks(run, b, null)) {
    const lS = logitsOf(run, b.inp, v.hooks);
    const ce = pt[v.ce];
    const kl = pt[v.kl];
    for (let r = 0; r < b.n; r++) {
      const o = r * V;
      const res = rowKlTo(pC, lC, o, lseC[r], lS, o, V);
      ce[b.off + r] = res.lse - lS[o + b.targets[r]];
      kl[b.off + r] = res.kl;
    }
  }
  for (const a of ablationHooks(run)) ceInto(logitsOf(run, b.inp, a.hooks), V, b.targets, pt[a.ce], b.off);
}

/** Without baselines or a given mean: CE under mean ablation with the mean of the observed x (a second sweep). */
function meanAblationSweep(run: DownstreamRun, meanAct: Float32Array): void {
  const { opts, nSeq, windows } = run;
  const { batch, seqLen, hook } = opts;
  const hookFn = meanAblationHook(meanAct);
  for (let s0 = 0; s0 < nSeq; s0 += batch) {
    const nb = Math.min(batch, nSeq - s0);
    const { inputs, targets } = splitWindows(windows, s0, nb, seqLen);
    const inp = tf.tensor2d(inputs, [nb, seqLen], 'int32');
    try {
      ceInto(logitsOf(run, inp, { [hook]: hookFn }), run.V, targets, run.pt.ce_mean, s0 * seqLen);
    } finally {
      inp.dispose();
    }
  }
}

/** Means over positions and the reconstruction metrics of each variant (names: metricNames.ts). */
function summarize(run: DownstreamRun): Record<string, number> {
  const { pt, stats, statsGF, w } = run;
  const N = pt.ce_clean.length;
  const totalDev = stats.totalSqDev();
  const summary: Record<string, number> = {};
  const put = (name: DownstreamMetric, value: number) => {
    summary[name] = value;
  };
  const ceClean = mean(pt.ce_clean);
  const ceZero = mean(pt.ce_zero);
  put('ce_clean', ceClean);
  put('ce_zero', ceZero);
  put('ce_mean', mean(pt.ce_mean));
  const variant = (suffix: VariantSuffix, st: SaeStats) => {
    const ceS = mean(pt['ce_spliced' + suffix]);
    put(variantMetric('ce_spliced', suffix), ceS);
    put(variantMetric('delta_ce', suffix), ceS - ceClean);
    put(variantMetric('loss_recovered', suffix), (ceZero - ceS) / (ceZero - ceClean));
    put(variantMetric('kl', suffix), mean(pt['kl' + suffix]));
    let se = 0;
    for (let i = 0; i < N; i++) se += st.sqErr[i];
    put(variantMetric('fvu', suffix), se / totalDev);
    put(variantMetric('l0', suffix), mean(st.l0));
    let dead = 0;
    for (let j = 0; j < w.m; j++) if (st.fires[j] === 0) dead++;
    put(variantMetric('dead_frac', suffix), dead / w.m);
  };
  variant('', stats);
  if (statsGF) variant('_gradfree', statsGF);
  return summary;
}

/**
 * Runs the downstream-loss evaluation of one SAE. Processes `batch` sequences per forward call;
 * every tensor is freed before the next batch.
 */
export function evaluateDownstream(model: HookedLM, tokens: TokenArray, opts: DownstreamOptions): DownstreamResult {
  const t0 = performance.now();
  const run = startRun(model, tokens, opts);
  const { pt, stats, statsGF, nSeq } = run;
  try {
    for (let s0 = 0; s0 < nSeq; s0 += opts.batch) {
      const b = openBatch(run, s0, Math.min(opts.batch, nSeq - s0));
      try {
        if (!fusedBatch(run, b)) logitsBatch(run, b);
      } finally {
        b.g?.dispose();
        b.inp.dispose();
        opts.onProgress?.(s0 + b.nb, nSeq);
      }
    }
    const meanAct = opts.meanActivation ?? stats.mean();
    if (opts.baselines) {
      pt.ce_zero.set(opts.baselines.ce_zero);
      pt.ce_mean.set(opts.baselines.ce_mean);
    } else if (!opts.meanActivation) {
      meanAblationSweep(run, meanAct);
    }
    pt.sq_err = stats.sqErr;
    pt.l0 = stats.l0;
    if (statsGF) {
      pt.sq_err_gradfree = statsGF.sqErr;
      pt.l0_gradfree = statsGF.l0;
    }
    const summary = summarize(run);
    const seconds = (performance.now() - t0) / 1000;
    const N = pt.ce_clean.length;
    return {
      arch: opts.sae.arch,
      k: opts.sae.k,
      hook: opts.hook,
      nSeq,
      seqLen: opts.seqLen,
      nPositions: N,
      primaryUsesGradient: run.primaryG,
      summary,
      perToken: pt,
      firesPerLatent: stats.fires,
      firesPerLatentGradfree: statsGF ? statsGF.fires : null,
      meanActivation: meanAct,
      changeRate: run.rateRows > 0 ? run.changed / (run.rateRows * opts.sae.k) : null,
      cost: { seconds, positionsPerSecond: N / seconds, forwardTokens: run.forwardTokens, forwardTokensPerSecond: run.forwardTokens / seconds },
    };
  } finally {
    run.sae.dispose();
  }
}

/**
 * The effect of an arbitrary hook on the same held-out windows: per-position CE_clean,
 * CE_hooked and KL(p_clean ‖ p_hooked). Used for sanity checks (identity / hand-made hooks).
 */
export function evaluateHook(
  model: HookedLM,
  tokens: TokenArray,
  opts: { hook: HookName; hookFn: HookFn; nTokens: number; seqLen: number; batch: number },
): { ceClean: Float32Array; ceHooked: Float32Array; kl: Float32Array } {
  const { seqLen, batch } = opts;
  const V = model.config.vocabSize;
  const { nSeq, windows } = heldOutWindows(tokens, opts.nTokens, seqLen);
  const N = nSeq * seqLen;
  const ceClean = new Float32Array(N);
  const ceHooked = new Float32Array(N);
  const kl = new Float32Array(N);
  for (let s0 = 0; s0 < nSeq; s0 += batch) {
    const nb = Math.min(batch, nSeq - s0);
    const { inputs, targets } = splitWindows(windows, s0, nb, seqLen);
    const inp = tf.tensor2d(inputs, [nb, seqLen], 'int32');
    const lcT = model.logits(inp);
    const lhT = model.logits(inp, { [opts.hook]: opts.hookFn });
    const lC = lcT.dataSync() as Float32Array;
    const lH = lhT.dataSync() as Float32Array;
    tf.dispose([inp, lcT, lhT]);
    for (let r = 0; r < nb * seqLen; r++) {
      const o = r * V;
      const lseC = rowLogSumExp(lC, o, V);
      const res = rowKlFrom(lC, o, lH, o, rowLogSumExp(lH, o, V), V); // KL(p_clean ‖ p_hooked)
      ceClean[s0 * seqLen + r] = lseC - lC[o + targets[r]];
      ceHooked[s0 * seqLen + r] = rowLogSumExp(lH, o, V) - lH[o + targets[r]];
      kl[s0 * seqLen + r] = res.kl;
    }
  }
  return { ceClean, ceHooked, kl };
}

/**
 * Bootstrap CIs of the downstream metrics over held-out sequences (cluster bootstrap,
 * clusterSize = seqLen): returns `<name>_lo` / `<name>_hi` for ce_*, delta_ce (paired per
 * position), loss_recovered (ratio of sums), kl, l0 and fvu (the denominator Σ‖x − mean‖² held
 * fixed: only the numerator is resampled), with the '_gradfree' variants when present.
 */
export function downstreamCIs(result: DownstreamResult, opts: BootstrapOptions = {}): Record<string, number> {
  const o: BootstrapOptions = { resamples: 1000, level: 0.95, seed: 0, ...opts, clusterSize: result.seqLen };
  const pt = result.perToken;
  const out: Record<string, number> = {};
  const put = (name: DownstreamMetric, lo: number, hi: number) => {
    out[name + '_lo'] = lo;
    out[name + '_hi'] = hi;
  };
  const meanCI = (name: DownstreamMetric, arr: Float32Array) => {
    const c = bootstrapMeanCI(arr, o);
    put(name, c.lo, c.hi);
  };
  meanCI('ce_clean', pt.ce_clean);
  meanCI('ce_zero', pt.ce_zero);
  meanCI('ce_mean', pt.ce_mean);
  for (const sfx of result.firesPerLatentGradfree ? (['', '_gradfree'] as const) : ([''] as const)) {
    meanCI(variantMetric('ce_spliced', sfx), pt['ce_spliced' + sfx]);
    meanCI(variantMetric('kl', sfx), pt['kl' + sfx]);
    meanCI(variantMetric('l0', sfx), pt['l0' + sfx]);
    const d = bootstrapDiffCI(pt['ce_spliced' + sfx], pt.ce_clean, { ...o, paired: true });
    put(variantMetric('delta_ce', sfx), d.lo, d.hi);
    const N = result.nPositions;
    const num = new Float64Array(N);
    const den = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      num[i] = pt.ce_zero[i] - pt['ce_spliced' + sfx][i];
      den[i] = pt.ce_zero[i] - pt.ce_clean[i];
    }
    const r = bootstrapRatioCI(num, den, o);
    put(variantMetric('loss_recovered', sfx), r.lo, r.hi);
    const fvu = result.summary[variantMetric('fvu', sfx)];
    const se = bootstrapMeanCI(pt['sq_err' + sfx], o);
    put(variantMetric('fvu', sfx), (fvu * se.lo) / se.mean, (fvu * se.hi) / se.mean);
  }
  return out;
}

/**
 * Dead latents: never fired on the held-out set AND dead at the end of training (docs/METHOD.md).
 * `trainingDead[j]` true when latent j had not fired over the last dead_tokens of training.
 */
export function mergeDead(firesHeldOut: ArrayLike<number>, trainingDead: ArrayLike<boolean | number>): { dead: Uint8Array; deadFrac: number } {
  if (firesHeldOut.length !== trainingDead.length) throw new Error('mergeDead: length mismatch');
  const dead = new Uint8Array(firesHeldOut.length);
  let c = 0;
  for (let j = 0; j < dead.length; j++) {
    if (firesHeldOut[j] === 0 && trainingDead[j]) {
      dead[j] = 1;
      c++;
    }
  }
  return { dead, deadFrac: c / dead.length };
}

// ---------------------------------------------------------------------------------------------
// Per-token results on disk: <base>.bin + <base>.json (lib/util/arrays.ts).

/** Writes the per-token arrays and firing counts to `<base>.bin` and the metadata to `<base>.json`. */
export function writeDownstream(result: DownstreamResult, base: string, extra: Record<string, unknown> = {}): { bin: string; json: string } {
  const arrays: NamedArrays = { ...result.perToken, fires_per_latent: result.firesPerLatent };
  if (result.firesPerLatentGradfree) arrays.fires_per_latent_gradfree = result.firesPerLatentGradfree;
  arrays.mean_activation = result.meanActivation;
  const { perToken: _p, firesPerLatent: _f, firesPerLatentGradfree: _g, meanActivation: _m, ...meta } = result;
  return writeArrays(base, arrays, { ...meta, ...extra });
}

/** Reads what writeDownstream wrote: metadata plus the arrays by name. */
export function readDownstream(base: string): { meta: Record<string, unknown>; arrays: NamedArrays } {
  return readArrays(base);
}

/**
 * The dead fraction (mergeDead of held-out firing and training-dead latents) as `name`, with its
 * 95% Wilson interval over the m latents as `${name}_lo` / `${name}_hi` (a proportion; informative at 0).
 */
export function deadFracWithCI(name: DeadFracMetric, firesHeldOut: ArrayLike<number>, trainingDead: ArrayLike<boolean | number>): Record<string, number> {
  const m = firesHeldOut.length;
  const { deadFrac } = mergeDead(firesHeldOut, trainingDead);
  const { lo, hi } = wilsonInterval(Math.round(deadFrac * m), m);
  return { [name]: deadFrac, [`${name}_lo`]: lo, [`${name}_hi`]: hi };
}
