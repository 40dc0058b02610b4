/**
 * Steering evaluation (docs/METHOD.md "Steering"; the protocol is this project's own — the paper's is
 * not known).
 *
 * For one SAE: sample S latents uniformly without replacement among the alive latents
 * (firingCounts[i] > 0), seeded. Steering latent i with strength α adds α · r · W_dec[i] to the
 * residual at the hook at every position (r = mean norm of x at the hook, given by the caller).
 * Contexts: nContexts random windows of contextLen tokens from the held-out stream (seeded start
 * positions; they depend only on the stream length, nContexts, contextLen and seed — never on the
 * SAE — so every SAE of a run is scored on the same contexts), the first half (floor(n/2)) for
 * calibration, the rest for evaluation. Every position of a context is scored (its next-token
 * distribution).
 *
 * Two target rules, scored on the SAME steered passes of the evaluation half:
 * - "calibration": rise_v = mean over calibration positions of [log p_steered(v) − log p_clean(v)];
 *   T(α, i) = the nTargets tokens with the largest rise_v (ties: lower token id). Per position
 *     Δ = log Σ_{v∈T} p_steered(v) − log Σ_{v∈T} p_clean(v)
 *   the rise of the log of the TOTAL probability of the target set (chosen over the mean of the
 *   log-probs, which is dominated by targets that were very unlikely to begin with).
 * - "logit_lens": T(i) = the nTargets tokens W_dec[i] promotes directly through the final
 *   LayerNorm's scale and the unembedding (logitLens.ts: score_v = Σ_j W_U[v,j] γ_j (W_dec[i,j] −
 *   mean_j W_dec[i]); ties: lower id); the same for every α. Per position
 *     Δ = Σ_{v∈T} p_steered(v) − Σ_{v∈T} p_clean(v)
 *   the ADDED probability of the target set.
 * Per (rule, α, latent): effect = mean Δ over evaluation positions; consistency = fraction of
 * positions with Δ > 0; kl = mean KL(p_steered ‖ p_clean) = Σ_v p_s (log p_s − log p_c) (the same
 * for both rules). Per (rule, α, latent, evaluation context): the same means over that context's
 * positions (`perContext`; every context has contextLen positions, so the row values are the plain
 * means of the per-context values) — for a bootstrap over latents AND contexts.
 * Summary per (rule, α): mean and percentile-bootstrap CI over the steered latents.
 * As α → 0, effect ∝ α and KL ∝ α², but consistency tends to the fraction of positions where the
 * FIRST-ORDER change is positive — not to ½ — so a small α de-saturates KL, not consistency.
 *
 * Cost: the clean pass of each context batch is shared by all α and latents, and so are the
 * layers below the hook (every steered pass starts at the hook from the clean activations); the steered passes
 * of L latents run as one forward call on the contexts tiled L times (row = latent * Bc + context),
 * L chosen so the logits stay under `maxLogitElements` floats. Forward tokens:
 * nContexts·contextLen·(1 + S·|α|); the logit-lens rule adds no pass.
 * The per-position scores are computed where the logits are (steeringScore.ts: one ONNX Runtime
 * graph per call on wasm+ort, the logits.ts loops elsewhere); the logits never come to JavaScript on
 * wasm+ort, and for a GPT2 the steered logits never leave ONNX Runtime: the scorer's graph takes the
 * final hidden states and computes them itself.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { HookedLM, HookName } from '../model/types.ts';
import type { SaeWeights } from '../sae/types.ts';
import type { TokenArray } from '../tokens.ts';
import { deriveSeed, mulberry32, shuffleInPlace } from '../util/random.ts';
import { type LogitLensWeights, logitLensTargets, logitLensWeightsOf, topIndices } from './logitLens.ts';
import { bootstrapMeanCI } from './stats.ts';
import { steeringScorer } from './steeringScore.ts';

export const STEERING_RULES = ['calibration', 'logit_lens'] as const;
export type SteeringRule = (typeof STEERING_RULES)[number];

export interface SteeringOptions {
  hook: HookName;
  /** Only the decoder is used: W_dec [m, d], rows unit norm. */
  sae: Pick<SaeWeights, 'W_dec' | 'm' | 'd'>;
  /** Firing counts per latent (training and/or held-out); alive = count > 0. */
  firingCounts: ArrayLike<number>;
  /** r: mean norm of x at the hook. */
  meanNorm: number;
  /** Unembedding and final LayerNorm scale for the logit-lens rule (default: read from a GPT2). */
  logitLens?: LogitLensWeights;
  /** Steering strengths α (in units of r). Default [0.25, 0.5, 1] (params.yaml steering.alphas). */
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
  /** After each context batch; done/total count batches (calibration and evaluation). */
  onProgress?: (message: string, done: number, total: number) => void;
}

export interface SteeringRow {
  rule: SteeringRule;
  alpha: number;
  latent: number;
  effect: number;
  consistency: number;
  kl: number;
  targets: number[];
}

/** One row of the `steering_summary` table (docs/CONTRACTS.md). */
export interface SteeringSummaryRow {
  rule: SteeringRule;
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

/** Per evaluation context values, indexed [alphaIndex][latentIndex][contextIndex]. */
export interface SteeringPerContext {
  /** Mean KL(steered ‖ clean) over the context's positions. */
  kl: number[][][];
  /** Mean Δ over the context's positions, per rule. */
  effect: Record<SteeringRule, number[][][]>;
  /** Fraction of the context's positions with Δ > 0, per rule. */
  consistency: Record<SteeringRule, number[][][]>;
}

export interface SteeringResult {
  /** Ordered by rule, then α, then latent index. */
  rows: SteeringRow[];
  /** Ordered by rule, then α. */
  summary: SteeringSummaryRow[];
  rules: SteeringRule[];
  alphas: number[];
  /** Latent ids; latentIndex in perContext refers to this order. */
  latents: number[];
  contextStarts: { calibration: number[]; evaluation: number[] };
  perContext: SteeringPerContext;
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

/** The validated settings of one steering evaluation. */
interface SteeringSetup {
  V: number;
  d: number;
  W_dec: Float32Array;
  lens: LogitLensWeights;
  alphas: number[];
  seed: number;
  /** Context length, targets per rule, contexts per forward call, latents per steered call. */
  T: number;
  nTargets: number;
  Bc: number;
  L: number;
  latents: number[];
  calStarts: number[];
  evalStarts: number[];
}

function steeringSetup(model: HookedLM, tokens: TokenArray, opts: SteeringOptions): SteeringSetup {
  const V = model.config.vocabSize;
  const { d, m, W_dec } = opts.sae;
  if (d !== model.config.dModel) throw new Error(`steering: SAE d=${d} but model d=${model.config.dModel}`);
  if (W_dec.length !== m * d) throw new Error('steering: W_dec is not [m, d]');
  if (opts.firingCounts.length !== m) throw new Error(`steering: firingCounts has ${opts.firingCounts.length} entries, m=${m}`);
  if (!(opts.meanNorm > 0)) throw new Error('steering: meanNorm must be > 0');
  const lens = opts.logitLens ?? logitLensWeightsOf(model);
  if (!lens) throw new Error('steering: pass logitLens (W_U, ln_f scale) for a model that is not a GPT2');
  if (lens.lnScale.length !== d || lens.W_U.length !== V * d) throw new Error(`steering: logitLens is not W_U [${V}, ${d}] and γ [${d}]`);
  const seed = opts.seed ?? 0;
  const T = opts.contextLen ?? 64;
  const nContexts = opts.nContexts ?? 32;
  const Bc = Math.max(1, opts.contextBatch ?? 8);
  const maxEl = opts.maxLogitElements ?? 2 ** 24;
  if (nContexts < 2) throw new Error('steering: need ≥ 2 contexts (calibration + evaluation)');
  if (T > model.config.nCtx) throw new Error(`steering: contextLen ${T} > model context ${model.config.nCtx}`);
  const latents = opts.latents ? [...opts.latents] : sampleAliveLatents(opts.firingCounts, opts.nLatents ?? 32, seed);
  for (const i of latents) if (!(Number.isInteger(i) && i >= 0 && i < m)) throw new Error(`steering: latent ${i} not in [0, ${m})`);
  if (latents.length === 0) throw new Error('steering: no alive latents to steer');
  const starts = sampleContexts(tokens.length, nContexts, T, seed);
  const nCal = Math.floor(nContexts / 2);
  return {
    V,
    d,
    W_dec: W_dec as Float32Array,
    lens,
    alphas: opts.alphas ?? [0.25, 0.5, 1],
    seed,
    T,
    nTargets: opts.nTargets ?? 5,
    Bc,
    // latents per steered call: L·Bc rows of T·V logits each under the cap
    L: Math.max(1, Math.min(latents.length, Math.floor(maxEl / (Bc * T * V)))),
    latents,
    calStarts: starts.slice(0, nCal),
    evalStarts: starts.slice(nCal),
  };
}

/** The forward passes of a steering evaluation: clean and steered logits of context batches. */
class SteeredPasses {
  forwardTokens = 0;
  /** Latent groups of at most L latents (one steered call each). */
  readonly groups: number[][] = [];

  constructor(
    private readonly model: HookedLM,
    private readonly tokens: TokenArray,
    private readonly hook: HookName,
    private readonly r: number,
    private readonly st: SteeringSetup,
    /** What steered() returns: logits [nl·nb, T, V], or the final hidden states [nl·nb·T, d] (model.finalHidden). */
    private readonly out: 'logits' | 'hidden' = 'logits',
  ) {
    for (let i = 0; i < st.latents.length; i += st.L) this.groups.push(st.latents.slice(i, i + st.L));
  }

  /** int32 tokens [nb, T] of the contexts starting at `starts`. */
  contexts(starts: number[]): tf.Tensor2D {
    const { T } = this.st;
    const out = new Int32Array(starts.length * T);
    starts.forEach((s, b) => {
      for (let t = 0; t < T; t++) out[b * T + t] = this.tokens[s + t];
    });
    return tf.tensor2d(out, [starts.length, T], 'int32');
  }

  /** Steering vectors [nl·nb, 1, d]: row l·nb + b = α r W_dec[latent l]. */
  private steerTensor(alpha: number, lats: number[], nb: number): tf.Tensor3D {
    const { d, W_dec } = this.st;
    const v = new Float32Array(lats.length * nb * d);
    lats.forEach((lat, l) => {
      for (let b = 0; b < nb; b++) {
        const o = (l * nb + b) * d;
        for (let i = 0; i < d; i++) v[o + i] = alpha * this.r * W_dec[lat * d + i];
      }
    });
    return tf.tensor3d(v, [lats.length * nb, 1, d]);
  }

  /** logits() or, for a scorer that takes hidden states, finalHidden(). */
  private pass(tokens: tf.Tensor2D, hooks?: Parameters<HookedLM['logits']>[1], opts?: Parameters<HookedLM['logits']>[2]): tf.Tensor {
    return this.out === 'hidden' ? this.model.finalHidden!(tokens, hooks, opts) : this.model.logits(tokens, hooks, opts);
  }

  /**
   * Logits [nl·nb, T, V] (row (l·nb + b)·T + t) of the contexts tiled nl times, steered (or their
   * final hidden states, same row order, when `out` is 'hidden'); caller disposes. Given the clean activations at the hook (xC [nb, T, d]) the passes start there: the
   * layers below the hook run once per context batch (in the clean pass), not once per latent.
   */
  steered(ctx: tf.Tensor2D, alpha: number, lats: number[], xC: tf.Tensor | null): tf.Tensor {
    const nb = ctx.shape[0];
    const nl = lats.length;
    this.forwardTokens += nl * nb * this.st.T;
    if (xC) return this.steeredFrom(ctx, alpha, lats, xC);
    return tf.tidy(() => {
      const steer = this.steerTensor(alpha, lats, nb);
      const tiled = tf.tile(ctx, [nl, 1]) as tf.Tensor2D;
      return this.pass(tiled, { [this.hook]: (x) => tf.add(x, steer) as tf.Tensor3D });
    });
  }

  /**
   * steered() from the clean activations: the steered activations x + α r W_dec[latent] of every
   * (latent, context) are built here in one pass (float32 sums, bit for bit tf.add's), and the pass
   * starts at the hook with them. tfjs-wasm's Tile of xC took ~18% of a steering instance.
   */
  private steeredFrom(ctx: tf.Tensor2D, alpha: number, lats: number[], xC: tf.Tensor): tf.Tensor {
    const { d, T, W_dec } = this.st;
    const nb = ctx.shape[0];
    const nl = lats.length;
    const xs = xC.dataSync() as Float32Array;
    const tok = ctx.dataSync() as Int32Array;
    if (xs.length !== nb * T * d) throw new Error(`steering: clean activations hold ${xs.length} values, expected ${nb * T * d}`);
    const x = new Float32Array(nl * nb * T * d);
    const tokens = new Int32Array(nl * nb * T);
    const v = new Float32Array(d);
    lats.forEach((lat, l) => {
      for (let i = 0; i < d; i++) v[i] = alpha * this.r * W_dec[lat * d + i];
      tokens.set(tok, l * nb * T);
      const o = l * nb * T * d;
      for (let r = 0; r < nb * T; r++) {
        const a = r * d;
        for (let i = 0; i < d; i++) x[o + a + i] = xs[a + i] + v[i];
      }
    });
    return tf.tidy(() =>
      this.pass(tf.tensor2d(tokens, [nl * nb, T], 'int32'), undefined, { from: { hook: this.hook, x: tf.tensor3d(x, [nl * nb, T, d]) } }),
    );
  }

  /** Clean logits of the contexts and, when the model can start a pass at the hook, the activations there. */
  clean(ctx: tf.Tensor2D): { logits: tf.Tensor; x: tf.Tensor | null } {
    this.forwardTokens += ctx.shape[0] * this.st.T;
    if (!this.model.canStartAt?.(this.hook)) return { logits: this.model.logits(ctx), x: null };
    let x: tf.Tensor | null = null;
    const logits = this.model.logits(ctx, {
      [this.hook]: (h) => {
        x = tf.keep(h);
        return h;
      },
    });
    return { logits, x };
  }

  /**
   * Every batch of at most Bc contexts of `starts`, and in it every α and latent group: `fn` sees
   * the steered logits lS and the clean ones lC (both freed after it). `progress` after each batch.
   */
  sweep(
    starts: number[],
    what: string,
    progress: (label: string) => void,
    fn: (c0: number, nb: number, a: number, gi: number, lats: number[], lS: tf.Tensor, lC: tf.Tensor) => void,
  ): void {
    const { Bc, alphas } = this.st;
    for (let c0 = 0; c0 < starts.length; c0 += Bc) {
      const batchStarts = starts.slice(c0, c0 + Bc);
      const ctx = this.contexts(batchStarts);
      const { logits: lC, x: xC } = this.clean(ctx);
      try {
        alphas.forEach((alpha, a) => {
          for (const [gi, lats] of this.groups.entries()) {
            const lS = this.steered(ctx, alpha, lats, xC);
            try {
              fn(c0, batchStarts.length, a, gi, lats, lS, lC);
            } finally {
              lS.dispose();
            }
          }
        });
      } finally {
        tf.dispose([ctx, lC, ...(xC ? [xC] : [])]);
      }
      progress(`${what} ${Math.min(c0 + Bc, starts.length)}/${starts.length} contexts`);
    }
  }
}

/** Calibration: per (α, latent) the sum over calibration positions of log p_steered(v) − log p_clean(v). */
function calibrationRise(st: SteeringSetup, passes: SteeredPasses, scorer: ReturnType<typeof steeringScorer>, progress: (label: string) => void): Float64Array[] {
  const { V, T, L, alphas, calStarts } = st;
  const S = st.latents.length;
  const calRise = Array.from({ length: alphas.length * S }, () => new Float64Array(V));
  passes.sweep(calStarts, 'calibration', progress, (_c0, nb, a, gi, lats, lS, lC) => {
    const sums = scorer.riseSums(lS, lC, lats.length, nb * T);
    lats.forEach((_, l) => {
      const acc = calRise[a * S + gi * L + l];
      for (let v = 0; v < V; v++) acc[v] += sums[l * V + v];
    });
  });
  return calRise;
}

/** Sums over each evaluation context's positions, per cell (a·S + s)·nEval + context. */
interface EvaluationSums {
  effect: Record<SteeringRule, Float64Array>;
  rise: Record<SteeringRule, Float64Array>;
  kl: Float64Array;
}

function evaluationSums(
  st: SteeringSetup,
  passes: SteeredPasses,
  scorer: ReturnType<typeof steeringScorer>,
  targets: Record<SteeringRule, number[][]>,
  progress: (label: string) => void,
): EvaluationSums {
  const { T, L, alphas, evalStarts } = st;
  const S = st.latents.length;
  const nEval = evalStarts.length;
  const cells = alphas.length * S * nEval;
  const out: EvaluationSums = {
    effect: { calibration: new Float64Array(cells), logit_lens: new Float64Array(cells) },
    rise: { calibration: new Float64Array(cells), logit_lens: new Float64Array(cells) },
    kl: new Float64Array(cells),
  };
  passes.sweep(evalStarts, 'evaluation', progress, (c0, nb, a, gi, lats, lS, lC) => {
    const per = nb * T;
    const idx = lats.map((_, l) => gi * L + l);
    const sc = scorer.rows(lS, lC, idx.map((s) => targets.calibration[a * S + s]), idx.map((s) => targets.logit_lens[s]), lats.length, per);
    idx.forEach((s, l) => {
      const j = a * S + s;
      for (let p = 0; p < per; p++) {
        const cell = j * nEval + c0 + Math.floor(p / T);
        const i = l * per + p;
        out.kl[cell] += sc.kl[i]; // KL(p_steered ‖ p_clean)
        const dCal = sc.calS[i] - sc.calC[i];
        out.effect.calibration[cell] += dCal;
        if (dCal > 0) out.rise.calibration[cell] += 1;
        const dLens = Math.exp(sc.lensS[i]) - Math.exp(sc.lensC[i]);
        out.effect.logit_lens[cell] += dLens;
        if (dLens > 0) out.rise.logit_lens[cell] += 1;
      }
    });
  });
  return out;
}

/** Per-context means [a][s][c] = sums / T. */
function perContextMeans(st: SteeringSetup, sums: EvaluationSums): SteeringPerContext {
  const S = st.latents.length;
  const nEval = st.evalStarts.length;
  const of = (x: Float64Array): number[][][] =>
    st.alphas.map((_, a) => st.latents.map((_, s) => Array.from(x.subarray((a * S + s) * nEval, (a * S + s + 1) * nEval), (v) => v / st.T)));
  return {
    kl: of(sums.kl),
    effect: { calibration: of(sums.effect.calibration), logit_lens: of(sums.effect.logit_lens) },
    consistency: { calibration: of(sums.rise.calibration), logit_lens: of(sums.rise.logit_lens) },
  };
}

/** One row per (rule, α, latent): means over the evaluation contexts. */
function steeringRows(st: SteeringSetup, perContext: SteeringPerContext, targets: Record<SteeringRule, number[][]>): SteeringRow[] {
  const S = st.latents.length;
  const mean = (x: number[]) => x.reduce((acc, v) => acc + v, 0) / x.length;
  const rows: SteeringRow[] = [];
  for (const rule of STEERING_RULES) {
    st.alphas.forEach((alpha, a) => {
      st.latents.forEach((latent, s) => {
        rows.push({
          rule,
          alpha,
          latent,
          effect: mean(perContext.effect[rule][a][s]),
          consistency: mean(perContext.consistency[rule][a][s]),
          kl: mean(perContext.kl[a][s]),
          targets: targets[rule][a * S + s],
        });
      });
    });
  }
  return rows;
}

/** Per (rule, α): mean and percentile-bootstrap CI over the steered latents. */
function steeringSummary(st: SteeringSetup, rows: SteeringRow[], bootstrap: SteeringOptions['bootstrap']): SteeringSummaryRow[] {
  const bo = { resamples: bootstrap?.resamples ?? 1000, level: bootstrap?.level ?? 0.95, seed: bootstrap?.seed ?? st.seed };
  return STEERING_RULES.flatMap((rule) =>
    st.alphas.map((alpha) => {
      const sel = rows.filter((row) => row.rule === rule && row.alpha === alpha);
      const e = bootstrapMeanCI(sel.map((x) => x.effect), bo);
      const c = bootstrapMeanCI(sel.map((x) => x.consistency), bo);
      const k = bootstrapMeanCI(sel.map((x) => x.kl), bo);
      return {
        rule,
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
    }),
  );
}

export function evaluateSteering(model: HookedLM, tokens: TokenArray, opts: SteeringOptions): SteeringResult {
  const t0 = performance.now();
  const st = steeringSetup(model, tokens, opts);
  const { alphas, latents, nTargets, d } = st;
  const S = latents.length;
  // on wasm+ort a model with finalHidden hands the scorer its steered hidden states: the logits stay in ORT
  const scorer = steeringScorer(st.V, model.finalHidden && model.unembedding ? model.unembedding() : undefined);
  const passes = new SteeredPasses(model, tokens, opts.hook, opts.meanNorm, st, scorer.input);
  const nBatches = Math.ceil(st.calStarts.length / st.Bc) + Math.ceil(st.evalStarts.length / st.Bc);
  let batchesDone = 0;
  const progress = (label: string) => opts.onProgress?.(label, ++batchesDone, nBatches);

  const calRise = calibrationRise(st, passes, scorer, progress);
  // targets[rule][a·S + s] (logit_lens: [s], the same for every α)
  const lensTargets = latents.map((lat) => logitLensTargets(st.lens, st.W_dec, nTargets, lat * d));
  const targets: Record<SteeringRule, number[][]> = {
    calibration: calRise.map((rise) => topIndices(rise, nTargets)), // rise = nCalPositions × mean rise
    logit_lens: alphas.flatMap(() => lensTargets),
  };
  const perContext = perContextMeans(st, evaluationSums(st, passes, scorer, targets, progress));
  const rows = steeringRows(st, perContext, targets);
  const summary = steeringSummary(st, rows, opts.bootstrap);
  const seconds = (performance.now() - t0) / 1000;
  return {
    rows,
    summary,
    rules: [...STEERING_RULES],
    alphas: [...alphas],
    latents,
    contextStarts: { calibration: st.calStarts, evaluation: st.evalStarts },
    perContext,
    cost: { seconds, forwardTokens: passes.forwardTokens, forwardTokensPerSecond: passes.forwardTokens / seconds, secondsPerLatentPerAlpha: seconds / (S * alphas.length) },
  };
}
