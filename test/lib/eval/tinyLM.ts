/**
 * A tiny HookedLM for the eval tests (no dependency on lib/model):
 *   x = E[token] + P[pos]          hook point 'blocks.0.hook_resid_post'
 *   h = x + tanh(x W1)
 *   logits = h U
 * activationAndGrad differentiates the summed next-token cross-entropy w.r.t. x (by hand; checked
 * against finite differences in downstream.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ActivationAndGrad, GPT2Config, HookedLM, HookName, Hooks } from '../../../lib/model/types.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

export const TINY_HOOK = 'blocks.0.hook_resid_post';

export interface TinyLMOptions {
  vocabSize?: number;
  dModel?: number;
  nCtx?: number;
  seed?: number;
  /** Make the residual strictly positive (E, P ≥ 0), so an identity ReLU SAE reconstructs exactly. */
  positive?: boolean;
  /** Scale of the unembedding entries. */
  unembedScale?: number;
}

export class TinyLM implements HookedLM {
  readonly config: GPT2Config;
  readonly E: tf.Tensor2D;
  readonly P: tf.Tensor2D;
  readonly W1: tf.Tensor2D;
  readonly U: tf.Tensor2D; // [d, V]
  readonly Uvalues: Float32Array;

  constructor(opts: TinyLMOptions = {}) {
    const V = opts.vocabSize ?? 64;
    const d = opts.dModel ?? 16;
    const nCtx = opts.nCtx ?? 64;
    const rng = randn(mulberry32(opts.seed ?? 1));
    const mk = (n: number, scale: number, pos = false) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const v = rng() * scale;
        a[i] = pos ? Math.abs(v) + 0.01 : v;
      }
      return a;
    };
    this.config = { vocabSize: V, nCtx, dModel: d, nLayer: 1, nHead: 1, layerNormEps: 1e-5 };
    this.E = tf.tensor2d(mk(V * d, 1, !!opts.positive), [V, d]);
    this.P = tf.tensor2d(mk(nCtx * d, 0.3, !!opts.positive), [nCtx, d]);
    this.W1 = tf.tensor2d(mk(d * d, 1 / Math.sqrt(d)), [d, d]);
    this.Uvalues = mk(d * V, opts.unembedScale ?? 1 / Math.sqrt(d));
    this.U = tf.tensor2d(this.Uvalues, [d, V]);
  }

  private embed(tokens: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = tokens.shape;
    const x = tf.reshape(tf.gather(this.E, tf.reshape(tokens, [B * T])), [B, T, this.config.dModel]);
    return tf.add(x, tf.slice(this.P, [0, 0], [T, this.config.dModel])) as tf.Tensor3D;
  }

  private head(x: tf.Tensor3D): tf.Tensor3D {
    const [B, T, d] = x.shape;
    const x2 = tf.reshape(x, [B * T, d]);
    const h = tf.add(x2, tf.tanh(tf.matMul(x2, this.W1)));
    return tf.reshape(tf.matMul(h, this.U), [B, T, this.config.vocabSize]) as tf.Tensor3D;
  }

  logits(tokens: tf.Tensor2D, hooks?: Hooks): tf.Tensor3D {
    return tf.tidy(() => {
      let x = this.embed(tokens);
      const h = hooks?.[TINY_HOOK];
      if (h) x = h(x);
      return this.head(x);
    });
  }

  activationAndGrad(tokens: Int32Array, batch: number, seqLen: number, hook: HookName): ActivationAndGrad {
    if (hook !== TINY_HOOK) throw new Error(`TinyLM has no hook ${hook}`);
    const V = this.config.vocabSize;
    const d = this.config.dModel;
    return tf.tidy(() => {
      const all = tf.tensor2d(tokens, [batch, seqLen + 1], 'int32');
      const inputs = tf.slice(all, [0, 0], [batch, seqLen]) as tf.Tensor2D;
      const targets = tf.reshape(tf.slice(all, [0, 1], [batch, seqLen]), [batch * seqLen]);
      const onehot = tf.cast(tf.oneHot(targets, V), 'float32');
      const x = this.embed(inputs);
      const perTok = (xx: tf.Tensor3D) => {
        const lp = tf.logSoftmax(tf.reshape(this.head(xx), [batch * seqLen, V]));
        return tf.neg(tf.sum(tf.mul(lp, onehot), 1));
      };
      // d/dx of the summed CE by hand (tfjs-core registers no gradients; tf.grad comes with the
      // @tensorflow/tfjs bundle): dlogits = softmax − onehot, dh = dlogits Uᵀ, dx = dh + (dh ∘ (1 − tanh²)) W1ᵀ.
      const x2 = tf.reshape(x, [batch * seqLen, d]);
      const th = tf.tanh(tf.matMul(x2, this.W1));
      const hh = tf.add(x2, th);
      const dlogits = tf.sub(tf.softmax(tf.matMul(hh, this.U)), onehot);
      const dh = tf.matMul(dlogits, this.U, false, true);
      const g = tf.add(dh, tf.matMul(tf.mul(dh, tf.sub(1, tf.square(th))), this.W1, false, true));
      return {
        x: x.dataSync().slice() as Float32Array,
        g: g.dataSync().slice() as Float32Array,
        lossPerToken: perTok(x).dataSync().slice() as Float32Array,
      };
    });
  }

  /** Column t of the unembedding (the direction that raises token t's logit most), [d]. */
  unembedColumn(t: number): Float32Array {
    const d = this.config.dModel;
    const V = this.config.vocabSize;
    const out = new Float32Array(d);
    for (let i = 0; i < d; i++) out[i] = this.Uvalues[i * V + t];
    return out;
  }

  dispose(): void {
    for (const t of [this.E, this.P, this.W1, this.U]) t.dispose();
  }
}

/** A token stream from a seeded PRNG with some structure (a noisy bigram walk). */
export function syntheticTokens(n: number, vocab: number, seed = 7): Uint16Array {
  const u = mulberry32(seed);
  const out = new Uint16Array(n);
  let t = 0;
  for (let i = 0; i < n; i++) {
    t = u() < 0.7 ? (t * 5 + 3) % vocab : Math.floor(u() * vocab);
    out[i] = t;
  }
  return out;
}
