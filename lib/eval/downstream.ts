/**
 * Downstream loss by splicing (SCIENCE.md "Downstream loss").
 *
 * Held-out sequences: consecutive non-overlapping windows of seqLen + 1 tokens from the start of
 * the test stream (window j = tokens[j(seqLen+1) .. (j+1)(seqLen+1)) ); inputs are the first
 * seqLen tokens, targets the last seqLen; nSeq = min(floor(nTokens / seqLen), available windows),
 * so about nTokens predicted positions are evaluated.
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
 * g-SAE: the primary variant selects with the gradient from the clean forward/backward pass on the
 * same tokens (model.activationAndGrad); the "_gradfree" variant selects with plain TopK at eval
 * time (SCIENCE.md, ours). A topk SAE has only the primary variant (no gradient pass).
 *
 * Mean activation: when not given, it is the mean of x over the same held-out positions, and
 * CE_mean is computed in a second sweep (one extra forward per batch; KL is not computed for the
 * ablations).
 */
import * as tf from '@tensorflow/tfjs';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { HookFn, HookedLM, HookName, Hooks } from '../model/types.ts';
import type { SaeWeights } from '../sae/types.ts';
import { type EncodeObservation, SaeInference, meanAblationHook, zeroAblationHook } from './saeHook.ts';
import { logSumExpRows, rowKlFrom, rowKlTo, rowLogSumExp, softmaxRows } from './logits.ts';
import { bootstrapDiffCI, bootstrapMeanCI, bootstrapRatioCI, type BootstrapOptions } from './stats.ts';

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
  onProgress?: (doneSeq: number, totalSeq: number) => void;
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
  /** Metric name → value, names as in docs/CONTRACTS.md (downstream stage). */
  summary: Record<string, number>;
  perToken: PerToken;
  /** Firing counts per latent on the held-out positions, primary variant. */
  firesPerLatent: Float64Array;
  firesPerLatentGradfree: Float64Array | null;
  meanActivation: Float32Array;
  cost: { seconds: number; positionsPerSecond: number; forwardTokens: number; forwardTokensPerSecond: number };
}

/** Number of held-out sequences and their windows (Int32, nSeq × (seqLen + 1)). */
export function heldOutWindows(
  tokens: Uint16Array | Uint32Array | Int32Array,
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

  observe = ({ x, xhat, z }: EncodeObservation): void => {
    const n = x.shape[0];
    const d = this.d;
    const [sq, l0, fires, xs] = tf.tidy(() => {
      const on = tf.cast(tf.greater(z, 0), 'float32');
      return [
        tf.sum(tf.square(tf.sub(x, xhat)), 1).dataSync(),
        tf.sum(on, 1).dataSync(),
        tf.sum(on, 0).dataSync(),
        x.dataSync(),
      ];
    });
    this.sqErr.set(sq, this.cursor);
    this.l0.set(l0, this.cursor);
    this.cursor += n;
    for (let j = 0; j < fires.length; j++) this.fires[j] += fires[j];
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

/**
 * Runs the downstream-loss evaluation of one SAE. Processes `batch` sequences per forward call;
 * every tensor is freed before the next batch.
 */
export function evaluateDownstream(
  model: HookedLM,
  tokens: Uint16Array | Uint32Array | Int32Array,
  opts: DownstreamOptions,
): DownstreamResult {
  const t0 = performance.now();
  const { hook, sae: w, seqLen, batch } = opts;
  if (!(batch >= 1) || !(seqLen >= 1)) throw new Error('downstream: batch and seqLen must be ≥ 1');
  if (w.d !== model.config.dModel) throw new Error(`downstream: SAE d=${w.d} but model d=${model.config.dModel}`);
  const V = model.config.vocabSize;
  const { nSeq, windows } = heldOutWindows(tokens, opts.nTokens, seqLen);
  const N = nSeq * seqLen;
  const isG = w.arch === 'gsae';
  const mode: GradientMode = isG ? (opts.gradientMode ?? 'both') : 'gradfree';
  const primaryG = isG && mode !== 'gradfree';
  const alsoGradfree = isG && mode === 'both';

  const sae = new SaeInference(w);
  const stats = new SaeStats(N, w.d, w.m);
  const statsGF = alsoGradfree ? new SaeStats(N, w.d, w.m) : null;
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
  let forwardTokens = 0;

  const batchInputs = (s0: number, nb: number) => {
    const win = windows.subarray(s0 * (seqLen + 1), (s0 + nb) * (seqLen + 1));
    const inputs = new Int32Array(nb * seqLen);
    const targets = new Int32Array(nb * seqLen);
    for (let b = 0; b < nb; b++) {
      for (let t = 0; t < seqLen; t++) {
        inputs[b * seqLen + t] = win[b * (seqLen + 1) + t];
        targets[b * seqLen + t] = win[b * (seqLen + 1) + t + 1];
      }
    }
    return { win, inputs, targets };
  };

  /** Logits [n·V] of a hooked forward, copied out (the tensor is freed). */
  const logitsOf = (inp: tf.Tensor2D, hooks?: Hooks): Float32Array => {
    forwardTokens += inp.shape[0] * inp.shape[1];
    const t = model.logits(inp, hooks);
    try {
      return t.dataSync() as Float32Array;
    } finally {
      t.dispose();
    }
  };

  /** CE per position of logits [n, V] against targets, written at `off` in `out`. */
  const ceInto = (l: Float32Array, targets: Int32Array, out: Float32Array, off: number) => {
    for (let r = 0; r < targets.length; r++) out[off + r] = rowLogSumExp(l, r * V, V) - l[r * V + targets[r]];
  };

  try {
    for (let s0 = 0; s0 < nSeq; s0 += batch) {
      const nb = Math.min(batch, nSeq - s0);
      const n = nb * seqLen;
      const off = s0 * seqLen;
      const { win, inputs, targets } = batchInputs(s0, nb);
      let g: tf.Tensor3D | null = null;
      if (primaryG) {
        const ag = model.activationAndGrad(win, nb, seqLen, hook);
        forwardTokens += n;
        g = tf.tensor3d(ag.g, [nb, seqLen, w.d]);
      }
      const inp = tf.tensor2d(inputs, [nb, seqLen], 'int32');
      try {
        const lC = logitsOf(inp);
        const lseC = logSumExpRows(lC, V);
        const pC = softmaxRows(lC, lseC, V);
        for (let r = 0; r < n; r++) pt.ce_clean[off + r] = lseC[r] - lC[r * V + targets[r]];
        const spliced = (hooks: Hooks, ceName: string, klName: string) => {
          const lS = logitsOf(inp, hooks);
          const ce = pt[ceName];
          const kl = pt[klName];
          for (let r = 0; r < n; r++) {
            const o = r * V;
            const res = rowKlTo(pC, lC, o, lseC[r], lS, o, V);
            ce[off + r] = res.lse - lS[o + targets[r]];
            kl[off + r] = res.kl;
          }
        };
        spliced({ [hook]: sae.hook({ mode: primaryG ? 'gradient' : 'topk', g: g ?? undefined, onEncode: stats.observe }) }, 'ce_spliced', 'kl');
        if (statsGF) spliced({ [hook]: sae.hook({ mode: 'topk', onEncode: statsGF.observe }) }, 'ce_spliced_gradfree', 'kl_gradfree');
        ceInto(logitsOf(inp, { [hook]: zeroAblationHook }), targets, pt.ce_zero, off);
        if (opts.meanActivation) ceInto(logitsOf(inp, { [hook]: meanAblationHook(opts.meanActivation) }), targets, pt.ce_mean, off);
      } finally {
        g?.dispose();
        inp.dispose();
      }
      opts.onProgress?.(s0 + nb, nSeq);
    }

    const meanAct = opts.meanActivation ?? stats.mean();
    if (!opts.meanActivation) {
      const hookFn = meanAblationHook(meanAct);
      for (let s0 = 0; s0 < nSeq; s0 += batch) {
        const nb = Math.min(batch, nSeq - s0);
        const { inputs, targets } = batchInputs(s0, nb);
        const inp = tf.tensor2d(inputs, [nb, seqLen], 'int32');
        try {
          ceInto(logitsOf(inp, { [hook]: hookFn }), targets, pt.ce_mean, s0 * seqLen);
        } finally {
          inp.dispose();
        }
      }
    }

    pt.sq_err = stats.sqErr;
    pt.l0 = stats.l0;
    if (statsGF) {
      pt.sq_err_gradfree = statsGF.sqErr;
      pt.l0_gradfree = statsGF.l0;
    }
    const totalDev = stats.totalSqDev();
    const summary: Record<string, number> = {};
    const ceClean = mean(pt.ce_clean);
    const ceZero = mean(pt.ce_zero);
    summary.ce_clean = ceClean;
    summary.ce_zero = ceZero;
    summary.ce_mean = mean(pt.ce_mean);
    const variant = (suffix: string, st: SaeStats) => {
      const ceS = mean(pt['ce_spliced' + suffix]);
      summary['ce_spliced' + suffix] = ceS;
      summary['delta_ce' + suffix] = ceS - ceClean;
      summary['loss_recovered' + suffix] = (ceZero - ceS) / (ceZero - ceClean);
      summary['kl' + suffix] = mean(pt['kl' + suffix]);
      let se = 0;
      for (let i = 0; i < N; i++) se += st.sqErr[i];
      summary['fvu' + suffix] = se / totalDev;
      summary['l0' + suffix] = mean(st.l0);
      let dead = 0;
      for (let j = 0; j < w.m; j++) if (st.fires[j] === 0) dead++;
      summary['dead_frac' + suffix] = dead / w.m;
    };
    variant('', stats);
    if (statsGF) variant('_gradfree', statsGF);

    const seconds = (performance.now() - t0) / 1000;
    return {
      arch: w.arch,
      k: w.k,
      hook,
      nSeq,
      seqLen,
      nPositions: N,
      primaryUsesGradient: primaryG,
      summary,
      perToken: pt,
      firesPerLatent: stats.fires,
      firesPerLatentGradfree: statsGF ? statsGF.fires : null,
      meanActivation: meanAct,
      cost: { seconds, positionsPerSecond: N / seconds, forwardTokens, forwardTokensPerSecond: forwardTokens / seconds },
    };
  } finally {
    sae.dispose();
  }
}

/**
 * The effect of an arbitrary hook on the same held-out windows: per-position CE_clean,
 * CE_hooked and KL(p_clean ‖ p_hooked). Used for sanity checks (identity / hand-made hooks).
 */
export function evaluateHook(
  model: HookedLM,
  tokens: Uint16Array | Uint32Array | Int32Array,
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
    const inputs = new Int32Array(nb * seqLen);
    const targets = new Int32Array(nb * seqLen);
    for (let b = 0; b < nb; b++) {
      for (let t = 0; t < seqLen; t++) {
        inputs[b * seqLen + t] = windows[(s0 + b) * (seqLen + 1) + t];
        targets[b * seqLen + t] = windows[(s0 + b) * (seqLen + 1) + t + 1];
      }
    }
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
  const put = (name: string, lo: number, hi: number) => {
    out[name + '_lo'] = lo;
    out[name + '_hi'] = hi;
  };
  const meanCI = (name: string, arr: Float32Array) => {
    const c = bootstrapMeanCI(arr, o);
    put(name, c.lo, c.hi);
  };
  meanCI('ce_clean', pt.ce_clean);
  meanCI('ce_zero', pt.ce_zero);
  meanCI('ce_mean', pt.ce_mean);
  for (const sfx of result.firesPerLatentGradfree ? ['', '_gradfree'] : ['']) {
    meanCI('ce_spliced' + sfx, pt['ce_spliced' + sfx]);
    meanCI('kl' + sfx, pt['kl' + sfx]);
    meanCI('l0' + sfx, pt['l0' + sfx]);
    const d = bootstrapDiffCI(pt['ce_spliced' + sfx], pt.ce_clean, { ...o, paired: true });
    put('delta_ce' + sfx, d.lo, d.hi);
    const N = result.nPositions;
    const num = new Float64Array(N);
    const den = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      num[i] = pt.ce_zero[i] - pt['ce_spliced' + sfx][i];
      den[i] = pt.ce_zero[i] - pt.ce_clean[i];
    }
    const r = bootstrapRatioCI(num, den, o);
    put('loss_recovered' + sfx, r.lo, r.hi);
    const fvu = result.summary['fvu' + sfx];
    const se = bootstrapMeanCI(pt['sq_err' + sfx], o);
    put('fvu' + sfx, (fvu * se.lo) / se.mean, (fvu * se.hi) / se.mean);
  }
  return out;
}

/**
 * Dead latents: never fired on the held-out set AND dead at the end of training (SCIENCE.md).
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
// Per-token results on disk: <base>.bin (little-endian arrays back to back) + <base>.json.

interface ArrayEntry {
  name: string;
  dtype: 'float32' | 'float64';
  byteOffset: number;
  length: number;
}

/** Writes the per-token arrays and firing counts to `<base>.bin` and the metadata to `<base>.json`. */
export function writeDownstream(result: DownstreamResult, base: string, extra: Record<string, unknown> = {}): { bin: string; json: string } {
  mkdirSync(path.dirname(base), { recursive: true });
  const arrays: [string, Float32Array | Float64Array][] = Object.entries(result.perToken);
  arrays.push(['fires_per_latent', result.firesPerLatent]);
  if (result.firesPerLatentGradfree) arrays.push(['fires_per_latent_gradfree', result.firesPerLatentGradfree]);
  arrays.push(['mean_activation', result.meanActivation]);
  const entries: ArrayEntry[] = [];
  let off = 0;
  for (const [name, a] of arrays) {
    entries.push({ name, dtype: a instanceof Float64Array ? 'float64' : 'float32', byteOffset: off, length: a.length });
    off += a.byteLength;
    off = Math.ceil(off / 8) * 8;
  }
  const buf = Buffer.alloc(off);
  for (let i = 0; i < arrays.length; i++) {
    const a = arrays[i][1];
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(buf, entries[i].byteOffset);
  }
  const bin = base + '.bin';
  const json = base + '.json';
  writeFileSync(bin, buf);
  const { perToken: _p, firesPerLatent: _f, firesPerLatentGradfree: _g, meanActivation: _m, ...meta } = result;
  writeFileSync(json, JSON.stringify({ ...meta, ...extra, binary: path.basename(bin), endianness: 'little', arrays: entries }, null, 2));
  return { bin, json };
}

/** Reads what writeDownstream wrote: metadata plus the arrays by name. */
export function readDownstream(base: string): { meta: Record<string, unknown>; arrays: Record<string, Float32Array | Float64Array> } {
  const meta = JSON.parse(readFileSync(base + '.json', 'utf8')) as Record<string, unknown> & { arrays: ArrayEntry[] };
  const buf = readFileSync(base + '.bin');
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const arrays: Record<string, Float32Array | Float64Array> = {};
  for (const e of meta.arrays) {
    arrays[e.name] = e.dtype === 'float64' ? new Float64Array(ab, e.byteOffset, e.length) : new Float32Array(ab, e.byteOffset, e.length);
  }
  return { meta, arrays };
}
