/**
 * Steering evaluation (SCIENCE.md "Steering"; the protocol is this project's own — the paper's is
 * not known).
 *
 * For one SAE: sample S latents uniformly without replacement among the alive latents
 * (firingCounts[i] > 0), seeded. Steering latent i with strength α adds α · r · W_dec[i] to the
 * residual at the hook at every position (r = mean norm of x at the hook, given by the caller).
 * Contexts: nContexts random windows of contextLen tokens from the held-out stream (seeded start
 * positions), the first half (floor(n/2)) for calibration, the rest for evaluation. Every
 * position of a context is scored (its next-token distribution).
 *
 * Per (α, latent):
 * - calibration: rise_v = mean over calibration positions of [log p_steered(v) − log p_clean(v)];
 *   targets T = the nTargets (5) tokens with the largest rise_v (ties: lower token id).
 * - evaluation, per evaluation position:
 *     Δ = log Σ_{v∈T} p_steered(v) − log Σ_{v∈T} p_clean(v)
 *   i.e. the rise of the log of the TOTAL probability of the target set (the probability that the
 *   next token is one of the targets; chosen over the mean of the 5 log-probs, which is dominated
 *   by targets that were very unlikely to begin with).
 *   effect = mean Δ; consistency = fraction of positions with Δ > 0;
 *   kl = mean KL(p_steered ‖ p_clean) = Σ_v p_s (log p_s − log p_c).
 * Summary per α: mean and percentile-bootstrap CI over the steered latents.
 *
 * Cost: the clean pass of each context batch is shared by all α and latents; the steered passes
 * of L latents run as one forward call on the contexts tiled L times (row = latent * Bc + context),
 * L chosen so the logits stay under `maxLogitElements` floats.
 */
import * as tf from '@tensorflow/tfjs';
import type { HookedLM, HookName } from '../model/types.ts';
import type { SaeWeights } from '../sae/types.ts';
import { deriveSeed, mulberry32, shuffleInPlace } from '../util/random.ts';
import { logSumExpRows, rowKlFrom, rowLogSumExp, setLogProb } from './logits.ts';
import { bootstrapMeanCI } from './stats.ts';

export interface SteeringOptions {
  hook: HookName;
  /** Only the decoder is used: W_dec [m, d], rows unit norm. */
  sae: Pick<SaeWeights, 'W_dec' | 'm' | 'd'>;
  /** Firing counts per latent (training and/or held-out); alive = count > 0. */
  firingCounts: ArrayLike<number>;
  /** r: mean norm of x at the hook. */
  meanNorm: number;
  /** Steering strengths α (in units of r). Default [2, 4] (params.yaml steering.alphas). */
  alphas?: number[];
  /** S, latents to steer (default 32; all alive latents if fewer). */
  nLatents?: number;
  /** Explicit latents to steer (overrides sampling; need not be alive). */
  latents?: number[];
  /** Number of random contexts, half calibration, half evaluation (default 32). */
  nContexts?: number;
  /** Tokens per context (default 64). */
  contextLen?: number;
  /** Target tokens per latent (default 5). */
  nTargets?: number;
  /** Contexts per forward call before tiling over latents (default 8). */
  contextBatch?: number;
  /** Cap on the floats of one steered logits tensor [L·Bc, T, V] (default 2^24). */
  maxLogitElements?: number;
  seed?: number; // default 0
  bootstrap?: { resamples?: number; level?: number; seed?: number };
  onProgress?: (message: string) => void;
}

export interface SteeringRow {
  alpha: number;
  latent: number;
  effect: number;
  consistency: number;
  kl: number;
  targets: number[];
}

/** One row of the `steering_summary` table (docs/CONTRACTS.md). */
export interface SteeringSummaryRow {
  alpha: number;
  n_latents: number;
  effect_mean: number;
  effect_lo: number;
  effect_hi: number;
  consistency_mean: number;
  consistency_lo: number;
  consistency_hi: number;
  kl_mean: number;
  kl_lo: number;
  kl_hi: number;
}

export interface SteeringResult {
  rows: SteeringRow[];
  summary: SteeringSummaryRow[];
  latents: number[];
  contextStarts: { calibration: number[]; evaluation: number[] };
  cost: {
    seconds: number;
    forwardTokens: number;
    forwardTokensPerSecond: number;
    /** seconds / (latents × alphas) */
    secondsPerLatentPerAlpha: number;
  };
}

/** S latents sampled uniformly without replacement among alive ones (sorted ascending). */
export function sampleAliveLatents(firingCounts: ArrayLike<number>, S: number, seed: number): number[] {
  const alive: number[] = [];
  for (let i = 0; i < firingCounts.length; i++) if (firingCounts[i] > 0) alive.push(i);
  shuffleInPlace(alive, mulberry32(deriveSeed(seed, 'steering-latents')));
  return alive.slice(0, Math.min(S, alive.length)).sort((a, b) => a - b);
}

/** Random context start positions in [0, len − contextLen], seeded. */
export function sampleContexts(streamLength: number, nContexts: number, contextLen: number, seed: number): number[] {
  const span = streamLength - contextLen + 1;
  if (span < 1) throw new Error(`steering: stream of ${streamLength} tokens is shorter than a context (${contextLen})`);
  const u = mulberry32(deriveSeed(seed, 'steering-contexts'));
  return Array.from({ length: nContexts }, () => Math.floor(u() * span));
}

/** Indices of the n largest values (ties: lower index first). */
function topIndices(v: Float64Array, n: number): number[] {
  const idx = Array.from(v.keys());
  idx.sort((a, b) => v[b] - v[a] || a - b);
  return idx.slice(0, n);
}

export function evaluateSteering(
  model: HookedLM,
  tokens: Uint16Array | Uint32Array | Int32Array,
  opts: SteeringOptions,
): SteeringResult {
  const t0 = performance.now();
  const V = model.config.vocabSize;
  const { d, m, W_dec } = opts.sae;
  if (d !== model.config.dModel) throw new Error(`steering: SAE d=${d} but model d=${model.config.dModel}`);
  if (W_dec.length !== m * d) throw new Error('steering: W_dec is not [m, d]');
  if (opts.firingCounts.length !== m) throw new Error(`steering: firingCounts has ${opts.firingCounts.length} entries, m=${m}`);
  if (!(opts.meanNorm > 0)) throw new Error('steering: meanNorm must be > 0');
  const alphas = opts.alphas ?? [2, 4];
  const seed = opts.seed ?? 0;
  const T = opts.contextLen ?? 64;
  const nTargets = opts.nTargets ?? 5;
  const nContexts = opts.nContexts ?? 32;
  const Bc = Math.max(1, opts.contextBatch ?? 8);
  const maxEl = opts.maxLogitElements ?? 2 ** 24;
  if (nContexts < 2) throw new Error('steering: need ≥ 2 contexts (calibration + evaluation)');
  if (T > model.config.nCtx) throw new Error(`steering: contextLen ${T} > model context ${model.config.nCtx}`);
  const latents = opts.latents ? [...opts.latents] : sampleAliveLatents(opts.firingCounts, opts.nLatents ?? 32, seed);
  const S = latents.length;
  for (const i of latents) if (!(Number.isInteger(i) && i >= 0 && i < m)) throw new Error(`steering: latent ${i} not in [0, ${m})`);
  if (S === 0) throw new Error('steering: no alive latents to steer');
  const starts = sampleContexts(tokens.length, nContexts, T, seed);
  const nCal = Math.floor(nContexts / 2);
  const calStarts = starts.slice(0, nCal);
  const evalStarts = starts.slice(nCal);
  const r = opts.meanNorm;
  const nA = alphas.length;
  let forwardTokens = 0;

  // latents per steered call: L·Bc rows of T·V logits each under the cap
  const L = Math.max(1, Math.min(S, Math.floor(maxEl / (Bc * T * V))));

  const contextTokens = (st: number[]): Int32Array => {
    const out = new Int32Array(st.length * T);
    st.forEach((s, b) => {
      for (let t = 0; t < T; t++) out[b * T + t] = tokens[s + t];
    });
    return out;
  };

  /** Steering vectors [nl·nb, 1, d]: row l·nb + b = α r W_dec[latent l]. */
  const steerTensor = (alpha: number, lats: number[], nb: number): tf.Tensor3D => {
    const v = new Float32Array(lats.length * nb * d);
    lats.forEach((lat, l) => {
      for (let b = 0; b < nb; b++) {
        const o = (l * nb + b) * d;
        for (let i = 0; i < d; i++) v[o + i] = alpha * r * W_dec[lat * d + i];
      }
    });
    return tf.tensor3d(v, [lats.length * nb, 1, d]);
  };

  /** Logits [nl·nb·T·V] (row (l·nb + b)·T + t) of the contexts tiled nl times, steered. */
  const steeredLogits = (ctx: tf.Tensor2D, alpha: number, lats: number[]): Float32Array => {
    const nb = ctx.shape[0];
    const nl = lats.length;
    const steer = steerTensor(alpha, lats, nb);
    const tiled = tf.tile(ctx, [nl, 1]) as tf.Tensor2D;
    forwardTokens += nl * nb * T;
    const logits = model.logits(tiled, { [opts.hook]: (x) => tf.add(x, steer) as tf.Tensor3D });
    try {
      return logits.dataSync() as Float32Array;
    } finally {
      tf.dispose([steer, tiled, logits]);
    }
  };
  const cleanLogits = (ctx: tf.Tensor2D): Float32Array => {
    forwardTokens += ctx.shape[0] * T;
    const logits = model.logits(ctx);
    try {
      return logits.dataSync() as Float32Array;
    } finally {
      logits.dispose();
    }
  };

  const groups: number[][] = [];
  for (let i = 0; i < S; i += L) groups.push(latents.slice(i, i + L));

  // ---- calibration: Σ over calibration positions of log p(v) = Σ l(v) − Σ lse, per (α, latent)
  const calSteered = Array.from({ length: nA * S }, () => new Float64Array(V));
  const calClean = new Float64Array(V);
  /** Adds Σ_rows (l[row] − lse[row]) of logits rows [r0, r1) into acc. */
  const accumulateLogProbs = (l: Float32Array, r0: number, r1: number, acc: Float64Array) => {
    for (let r = r0; r < r1; r++) {
      const o = r * V;
      const lse = rowLogSumExp(l, o, V);
      for (let v = 0; v < V; v++) acc[v] += l[o + v] - lse;
    }
  };
  for (let c0 = 0; c0 < nCal; c0 += Bc) {
    const batchStarts = calStarts.slice(c0, c0 + Bc);
    const nb = batchStarts.length;
    const ctx = tf.tensor2d(contextTokens(batchStarts), [nb, T], 'int32');
    try {
      accumulateLogProbs(cleanLogits(ctx), 0, nb * T, calClean);
      alphas.forEach((alpha, a) => {
        for (const [gi, lats] of groups.entries()) {
          const lS = steeredLogits(ctx, alpha, lats);
          lats.forEach((_, l) => accumulateLogProbs(lS, l * nb * T, (l + 1) * nb * T, calSteered[a * S + gi * L + l]));
        }
      });
    } finally {
      ctx.dispose();
    }
    opts.onProgress?.(`calibration ${Math.min(c0 + Bc, nCal)}/${nCal} contexts`);
  }
  const targets: number[][] = calSteered.map((acc) => {
    const rise = new Float64Array(V);
    for (let v = 0; v < V; v++) rise[v] = acc[v] - calClean[v]; // = nCalPositions × mean rise
    return topIndices(rise, nTargets);
  });

  // ---- evaluation
  const sumRise = new Float64Array(nA * S);
  const nRise = new Float64Array(nA * S);
  const sumKl = new Float64Array(nA * S);
  let nPos = 0;
  for (let c0 = 0; c0 < evalStarts.length; c0 += Bc) {
    const batchStarts = evalStarts.slice(c0, c0 + Bc);
    const nb = batchStarts.length;
    const per = nb * T;
    nPos += per;
    const ctx = tf.tensor2d(contextTokens(batchStarts), [nb, T], 'int32');
    try {
      const lC = cleanLogits(ctx);
      const lseC = logSumExpRows(lC, V);
      alphas.forEach((alpha, a) => {
        for (const [gi, lats] of groups.entries()) {
          const lS = steeredLogits(ctx, alpha, lats);
          lats.forEach((_, l) => {
            const j = a * S + gi * L + l;
            const set = targets[j];
            // clean log p(T) per position (targets differ per latent)
            for (let p = 0; p < per; p++) {
              const oS = (l * per + p) * V;
              const oC = p * V;
              const { lse, kl } = rowKlFrom(lS, oS, lC, oC, lseC[p], V); // KL(p_steered ‖ p_clean)
              const dlt = setLogProb(lS, oS, set, lse) - setLogProb(lC, oC, set, lseC[p]);
              sumRise[j] += dlt;
              if (dlt > 0) nRise[j] += 1;
              sumKl[j] += kl;
            }
          });
        }
      });
    } finally {
      ctx.dispose();
    }
    opts.onProgress?.(`evaluation ${Math.min(c0 + Bc, evalStarts.length)}/${evalStarts.length} contexts`);
  }

  const rows: SteeringRow[] = [];
  alphas.forEach((alpha, a) => {
    latents.forEach((latent, s) => {
      const j = a * S + s;
      rows.push({ alpha, latent, effect: sumRise[j] / nPos, consistency: nRise[j] / nPos, kl: sumKl[j] / nPos, targets: targets[j] });
    });
  });
  const bo = { resamples: opts.bootstrap?.resamples ?? 1000, level: opts.bootstrap?.level ?? 0.95, seed: opts.bootstrap?.seed ?? seed };
  const summary: SteeringSummaryRow[] = alphas.map((alpha) => {
    const sel = rows.filter((row) => row.alpha === alpha);
    const e = bootstrapMeanCI(sel.map((x) => x.effect), bo);
    const c = bootstrapMeanCI(sel.map((x) => x.consistency), bo);
    const k = bootstrapMeanCI(sel.map((x) => x.kl), bo);
    return {
      alpha,
      n_latents: sel.length,
      effect_mean: e.mean,
      effect_lo: e.lo,
      effect_hi: e.hi,
      consistency_mean: c.mean,
      consistency_lo: c.lo,
      consistency_hi: c.hi,
      kl_mean: k.mean,
      kl_lo: k.lo,
      kl_hi: k.hi,
    };
  });
  const seconds = (performance.now() - t0) / 1000;
  return {
    rows,
    summary,
    latents,
    contextStarts: { calibration: calStarts, evaluation: evalStarts },
    cost: { seconds, forwardTokens, forwardTokensPerSecond: forwardTokens / seconds, secondsPerLatentPerAlpha: seconds / (S * nA) },
  };
}
