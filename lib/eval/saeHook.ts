/**
 * SAE inference as a model hook (tfjs), plus a pure TypeScript reference of the selection rule,
 * and the ablation hooks used by the downstream-loss evaluation.
 *
 * Selection rule (lib/sae/types.ts, docs/METHOD.md), per token with activation x and loss gradient g:
 *   z_pre = ReLU((x - b_dec) W_enc + b_enc)                      [m]
 *   s     = z_pre + beta * z_pre ∘ |W_dec g|   (gsae with a gradient; otherwise s = z_pre)
 *   idx   = the k largest s, ties broken by the lower index; values = z_pre[idx]
 *   x̂     = Σ_j values_j W_dec[idx_j] + b_dec
 * A latent "fires" on a token when it is selected with a value > 0 (a selected latent whose
 * z_pre is 0 contributes nothing and is not counted in L0 or as alive).
 *
 * Speed notes (measured on tfjs-wasm): no matMul transpose flags (W_decᵀ is materialised once with
 * tf.transpose); the decode is a dense matMul of the masked code [N, m] with W_dec, the mask
 * built by scatterND of the top-k indices (exact, tie-safe).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { HookFn } from '../model/types.ts';
import type { SaeWeights, SparseCode } from '../sae/types.ts';
import { checkWeights, usesGradient } from '../sae/infer.ts';
import { ortEnabled } from '../backend.ts';
import { ortOp } from '../native/tfort.ts';
import type { GraphSpec } from '../native/ort.ts';
import { gradScoreNodes, preActivationNodes, topKNodes } from '../sae/encodeOrt.ts';

/**
 * The whole hook as one ONNX Runtime graph (backend wasm+ort): inputs x [N,d], b_dec, W_enc, b_enc,
 * W_dec [, g [N,d], beta []] -> xhat [N,d] and the selection (indices as float32, values) [N,k].
 * Same formulas as SaeInference.forward; ONNX TopK returns the k largest with ties at the lower
 * index first, as the contract. The dense code [N,m] stays inside the graph.
 */
function saeForwardGraph(d: number, m: number, k: number, withG: boolean, both = false): GraphSpec {
  const nodes: GraphSpec['nodes'] = [
    ...preActivationNodes(),
    ...(withG ? gradScoreNodes() : []),
    { op: 'Shape', inputs: ['zpre'], outputs: ['zs'] },
    { op: 'ConstantOfShape', inputs: ['zs'], outputs: ['zeros'] },
  ];
  const outputs: GraphSpec['outputs'] = [];
  // one selection and its decode: the same nodes in every graph, so every graph gives the same x̂
  const variant = (score: string, tag: string, xhat: string) => {
    nodes.push(
      ...topKNodes(score, tag),
      { op: 'ScatterElements', inputs: ['zeros', `${tag}_ti`, `${tag}_val`], outputs: [`${tag}_z`], attrs: { axis: 1 } },
      { op: 'Gemm', inputs: [`${tag}_z`, 'W_dec', 'b_dec'], outputs: [xhat] },
    );
    outputs.push({ name: xhat, dims: ['N', d] }, { name: `${tag}_idx`, dims: ['N', k] }, { name: `${tag}_val`, dims: ['N', k] });
  };
  variant(withG ? 's' : 'zpre', 'sel', 'xhat');
  if (both) variant('zpre', 'plain', 'xhat_plain');
  const inputs: GraphSpec['inputs'] = [
    { name: 'x', dims: ['N', d] },
    { name: 'b_dec', dims: [d] },
    { name: 'W_enc', dims: [d, m] },
    { name: 'b_enc', dims: [m] },
    { name: 'W_dec', dims: [m, d] },
  ];
  if (withG) inputs.push({ name: 'g', dims: ['N', d] }, { name: 'beta', dims: [] });
  return { inputs, outputs, nodes, initializers: [{ name: 'K', dims: [1], int64: [k] }] };
}

/** 'topk': gradient-free selection (also used for a g-SAE at gradient-free inference).
 *  'gradient': g-SAE selection with the loss gradient g aligned with x. */
export type SaeMode = 'topk' | 'gradient';

/** A reconstruction and the selection behind it (see EncodeObservation). */
export interface ReconstructionOf {
  xhat: tf.Tensor2D;
  indices: tf.Tensor2D;
  values: tf.Tensor2D;
}

/** Tensors seen by an `onEncode` observer; valid only during the call (inside a tidy). */
export interface EncodeObservation {
  x: tf.Tensor2D; // [N, d]
  xhat: tf.Tensor2D; // [N, d]
  /** [N, k] the selected latents (int32, or float32 holding integers on wasm+ort), in score order. */
  indices: tf.Tensor2D;
  /** [N, k] z_pre at `indices` (0 for a selected latent that does not fire). */
  values: tf.Tensor2D;
}

export interface SaeHookOptions {
  mode: SaeMode;
  /** Gradient aligned with x, [B, T, d] (or [B*T, d]); required for mode 'gradient'. Not disposed. */
  g?: tf.Tensor;
  /** Optional observer of every encode the hook performs (e.g. FVU / L0 / firing statistics). */
  onEncode?: (obs: EncodeObservation) => void;
}

/**
 * tfjs SAE inference. Holds its weights as tensors (call dispose()). All methods that return
 * tensors are meant to be called inside the caller's tf.tidy.
 */
export class SaeInference {
  readonly weights: SaeWeights;
  readonly d: number;
  readonly m: number;
  readonly k: number;
  readonly beta: number;
  private readonly W_enc: tf.Tensor2D; // [d, m]
  private readonly W_dec: tf.Tensor2D; // [m, d]
  private readonly W_decT: tf.Tensor2D; // [d, m], materialised once
  private readonly b_enc: tf.Tensor1D;
  private readonly b_dec: tf.Tensor1D;

  constructor(weights: SaeWeights) {
    checkWeights(weights);
    this.weights = weights;
    this.d = weights.d;
    this.m = weights.m;
    this.k = weights.k;
    this.beta = weights.arch === 'gsae' ? weights.beta : 0;
    this.W_enc = tf.tensor2d(weights.W_enc, [weights.d, weights.m]);
    this.W_dec = tf.tensor2d(weights.W_dec, [weights.m, weights.d]);
    this.W_decT = tf.transpose(this.W_dec) as tf.Tensor2D;
    this.b_enc = tf.tensor1d(weights.b_enc);
    this.b_dec = tf.tensor1d(weights.b_dec);
  }

  /** z_pre = ReLU((x - b_dec) W_enc + b_enc), [N, m]. */
  preActivation(x: tf.Tensor2D): tf.Tensor2D {
    return tf.relu(tf.add(tf.matMul(tf.sub(x, this.b_dec), this.W_enc), this.b_enc)) as tf.Tensor2D;
  }

  /**
   * Selection scores. With g (and beta != 0 on a g-SAE): s = z_pre + beta * z_pre ∘ |g W_decᵀ|,
   * the same association order as the TS reference; otherwise s = z_pre.
   */
  scores(zPre: tf.Tensor2D, g?: tf.Tensor2D | null): tf.Tensor2D {
    if (!g || this.beta === 0) return zPre;
    const dirDeriv = tf.abs(tf.matMul(g, this.W_decT)); // [N, m]: W_dec g per token
    return tf.add(zPre, tf.mul(tf.mul(zPre, this.beta), dirDeriv)) as tf.Tensor2D;
  }

  /** Top-k indices [N, k] (int32; tf.topk breaks ties by the lower index, as the contract). */
  select(s: tf.Tensor2D): tf.Tensor2D {
    return tf.topk(s, this.k, true).indices as tf.Tensor2D;
  }

  /** Dense code [N, m]: z_pre at the selected indices, 0 elsewhere (exact under ties). */
  denseCode(zPre: tf.Tensor2D, indices: tf.Tensor2D): tf.Tensor2D {
    const n = zPre.shape[0];
    const rows = tf.tile(tf.reshape(tf.range(0, n, 1, 'int32'), [n, 1]), [1, this.k]);
    const nd = tf.stack([tf.reshape(rows, [n * this.k]), tf.reshape(indices, [n * this.k])], 1) as tf.Tensor2D;
    const mask = tf.scatterND(nd, tf.ones([n * this.k], 'float32'), [n, this.m]);
    return tf.mul(zPre, mask) as tf.Tensor2D;
  }

  /** z_pre at the selected indices, [N, k] (a flat gather: tfjs-wasm's batched gather fails here). */
  selectedValues(zPre: tf.Tensor2D, indices: tf.Tensor2D): tf.Tensor2D {
    const [n, k] = indices.shape;
    const rowBase = tf.mul(tf.reshape(tf.range(0, n, 1, 'int32'), [n, 1]), tf.scalar(this.m, 'int32'));
    const flat = tf.reshape(tf.add(indices, rowBase), [n * k]);
    return tf.reshape(tf.gather(tf.reshape(zPre, [n * this.m]), flat), [n, k]) as tf.Tensor2D;
  }

  /** x̂ = z W_dec + b_dec. */
  decode(z: tf.Tensor2D): tf.Tensor2D {
    return tf.add(tf.matMul(z, this.W_dec), this.b_dec) as tf.Tensor2D;
  }

  /** Encode + decode rows x [N, d] (g [N, d] for gradient selection). Call inside a tidy. */
  forward(x: tf.Tensor2D, g?: tf.Tensor2D | null): { z: tf.Tensor2D; xhat: tf.Tensor2D; indices: tf.Tensor2D; values: tf.Tensor2D } {
    const zPre = this.preActivation(x);
    const indices = this.select(this.scores(zPre, g));
    const z = this.denseCode(zPre, indices);
    return { z, xhat: this.decode(z), indices, values: this.selectedValues(zPre, indices) };
  }

  /** forward() as one ONNX Runtime graph (wasm+ort): x̂ and the selection. Call inside a tidy. */
  forwardOrt(x: tf.Tensor2D, g?: tf.Tensor2D | null): { xhat: tf.Tensor2D; indices: tf.Tensor2D; values: tf.Tensor2D } {
    const { d, m, k } = this;
    const withG = !!g && this.beta !== 0;
    const n = x.shape[0];
    const ins: tf.Tensor[] = [x, this.b_dec, this.W_enc, this.b_enc, this.W_dec];
    if (withG) ins.push(g!, tf.scalar(this.beta));
    const [xhat, indices, values] = ortOp('SaeForward', `sae-fwd:${d}:${m}:${k}:${withG ? 1 : 0}`, () => saeForwardGraph(d, m, k, withG), ins, [[n, d], [n, k], [n, k]]);
    return { xhat: xhat as tf.Tensor2D, indices: indices as tf.Tensor2D, values: values as tf.Tensor2D };
  }

  /**
   * The gradient selection and the plain TopK selection of the same rows from ONE encoder GEMM
   * (wasm+ort, g-SAE with g): each variant's x̂, indices and values are those forwardOrt gives for
   * that mode (the same graph nodes). Call inside a tidy.
   */
  forwardBothOrt(x: tf.Tensor2D, g: tf.Tensor2D): { gradient: ReconstructionOf; plain: ReconstructionOf } {
    const { d, m, k } = this;
    if (this.beta === 0) throw new Error('forwardBothOrt: the SAE has no gradient term');
    const n = x.shape[0];
    const outs = ortOp('SaeForward', `sae-fwd-both:${d}:${m}:${k}`, () => saeForwardGraph(d, m, k, true, true), [x, this.b_dec, this.W_enc, this.b_enc, this.W_dec, g, tf.scalar(this.beta)], [[n, d], [n, k], [n, k], [n, d], [n, k], [n, k]]);
    const [xg, ig, vg, xp, ip, vp] = outs as tf.Tensor2D[];
    return { gradient: { xhat: xg, indices: ig, values: vg }, plain: { xhat: xp, indices: ip, values: vp } };
  }

  /**
   * A HookFn replacing x [B, T, d] by its reconstruction. mode 'gradient' on a g-SAE needs
   * opts.g aligned with x (same B, T); on a topk SAE the gradient is ignored (beta = 0).
   */
  hook(opts: SaeHookOptions): HookFn {
    const { mode, onEncode } = opts;
    const needG = usesGradient(this.weights, mode === 'gradient');
    if (mode === 'gradient' && this.weights.arch === 'gsae' && !opts.g) {
      throw new Error('sae hook: mode "gradient" needs the gradient tensor g');
    }
    return (x: tf.Tensor3D): tf.Tensor3D =>
      tf.tidy(() => {
        const [B, T, d] = x.shape;
        if (d !== this.d) throw new Error(`sae hook: activation has d=${d}, SAE has d=${this.d}`);
        const x2 = tf.reshape(x, [B * T, d]) as tf.Tensor2D;
        let g2: tf.Tensor2D | null = null;
        if (needG) {
          const g = opts.g as tf.Tensor;
          if (g.size !== B * T * d) {
            throw new Error(`sae hook: gradient has ${g.size} values, activation [${B},${T},${d}] needs ${B * T * d}`);
          }
          g2 = tf.reshape(g, [B * T, d]) as tf.Tensor2D;
        }
        const { xhat, indices, values } = ortEnabled() ? this.forwardOrt(x2, g2) : this.forward(x2, g2);
        if (onEncode) onEncode({ x: x2, xhat, indices, values });
        return tf.reshape(xhat, [B, T, d]) as tf.Tensor3D;
      });
  }

  /** Sparse code through the tfjs path (for tests and small uses): x, g are [n, d] row-major. */
  encodeSparse(x: Float32Array, g?: Float32Array | null): SparseCode {
    const n = x.length / this.d;
    return tf.tidy(() => {
      const xt = tf.tensor2d(x, [n, this.d]);
      const gt = g && this.beta !== 0 ? tf.tensor2d(g, [n, this.d]) : null;
      const zPre = this.preActivation(xt);
      const idx = tf.topk(this.scores(zPre, gt), this.k, true).indices.dataSync() as Int32Array;
      const zp = zPre.dataSync();
      const vals = new Float32Array(n * this.k);
      for (let r = 0; r < n; r++) for (let j = 0; j < this.k; j++) vals[r * this.k + j] = zp[r * this.m + idx[r * this.k + j]];
      return { n, k: this.k, indices: Int32Array.from(idx), values: vals };
    });
  }

  /** Reconstruction through the tfjs path: x, g [n, d] → x̂ [n, d]. */
  reconstruct(x: Float32Array, g?: Float32Array | null): Float32Array {
    const n = x.length / this.d;
    return tf.tidy(() => {
      const gt = g && this.beta !== 0 ? tf.tensor2d(g, [n, this.d]) : null;
      return this.forward(tf.tensor2d(x, [n, this.d]), gt).xhat.dataSync() as Float32Array;
    }).slice();
  }

  dispose(): void {
    for (const t of [this.W_enc, this.W_dec, this.W_decT, this.b_enc, this.b_dec]) t.dispose();
  }
}


/** Identity hook: returns x unchanged. */
export const identityHook: HookFn = (x) => x;

/** Zero-ablation hook: x → 0. */
export const zeroAblationHook: HookFn = (x) => tf.zerosLike(x);

/** Mean-ablation hook: x → the mean activation vector at every position. */
export function meanAblationHook(mean: Float32Array): HookFn {
  return (x) =>
    tf.tidy(() => {
      const [B, T, d] = x.shape;
      if (mean.length !== d) throw new Error(`mean ablation: mean has ${mean.length} values, activation d=${d}`);
      return tf.broadcastTo(tf.tensor3d(mean, [1, 1, d]), [B, T, d]) as tf.Tensor3D;
    });
}

/** Additive hook: x → x + v, with v broadcastable to x ([d], [1,1,d] or [B,1,d]). v is not disposed. */
export function addHook(v: tf.Tensor): HookFn {
  return (x) => tf.add(x, v) as tf.Tensor3D;
}
