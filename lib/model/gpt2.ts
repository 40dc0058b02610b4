/**
 * GPT-2 in tfjs with TransformerLens-style hooks and a hand-written backward pass.
 *
 * Computation = Hugging Face GPT2LMHeadModel (no dropout): token + learned position embeddings,
 * pre-LayerNorm blocks (biased variance, eps), causal multi-head attention with 1/sqrt(d_head)
 * scaling, MLP with gelu_new (tanh approximation), final LayerNorm, unembedding tied to wte.
 * Parameters are kept under their Hugging Face names and shapes (Conv1D layout [in, out]).
 *
 * Speed on the wasm backend (measured): everything runs on 2-D [B*T, d] matrices;
 * matMul is only ever called without transpose flags (operands are transposed explicitly);
 * attention runs per (head, batch) as plain 2-D matMuls (wasm's batched matMul is ~10x slower);
 * the backward pass is written out by hand, so no tf.grad, no gather gradient (the embedding
 * gradient is a scatter-add in TypeScript) and no parameter gradients when they are not wanted.
 */
import { splitWindows } from '../windows.ts';
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32, randn } from '../util/random.ts';
import type { TokenArray } from '../tokens.ts';
import type { ActivationAndGrad, FusedCeKlOptions, FusedCeKlResult, FusedRef, FusedRefRows, GPT2Config, HookFn, HookName, HookedLM, Hooks, PassStart } from './types.ts';
import { gatherRows, splitRows, sumRows, unstack0 } from './kernels.ts';
import { ortEnabled } from '../backend.ts';
import { ortOp } from '../native/tfort.ts';
import {
  attentionBackwardGraph,
  attentionForwardGraph,
  blockInferenceGraph,
  headLossGraph,
  headTrainGraph,
  logitsGraph,
  ceKlGraph,
  mlpBackwardGraph,
  mlpForwardGraph,
  actGradGraph,
  trainStepGraph,
} from './ortgraphs.ts';
import { cachedGraph, type GraphSpec } from '../native/ort.ts';
import { readF32 } from '../native/tfort.ts';

export type { GPT2Config } from './types.ts';

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;
/** Softmax probabilities of a target below this are recomputed exactly from the logits. */
const P_FLOOR = 1e-30;
/** Rows of the [N, V] logits handled at once by the cross-entropy head. */
const HEAD_CHUNK_ELEMS = 512 * 4096;
/**
 * The one-graph passes (wasm+ort) hold a few [N, V] head tensors at once, in ONNX Runtime's own
 * memory. activationAndGrad takes the one-graph path up to this many elements per tensor (64 MiB);
 * above it the per-block graphs and the chunked head are leaner (GPT-2 small width, batch 16 × 128,
 * measured: 2.3 GiB peak against 3.6 GiB).
 */
const FUSED_ACTGRAD_MAX_ELEMS = 16 * 2 ** 20;
/**
 * The training step takes the one-graph path up to 128M elements per [N, V] tensor: at GPT-2 small
 * width the per-block path does not fit tfjs-wasm's heap at all (its activations and gradients live
 * there), while the one graph keeps them in ORT's memory (batch 16 × 128: 9.5 GiB peak, measured).
 */
const FUSED_TRAIN_MAX_ELEMS = 128 * 2 ** 20;

/** Canonical parameter names (Hugging Face GPT2Model names, without the `transformer.` prefix). */
export function gpt2ParamShapes(c: GPT2Config): Map<string, number[]> {
  const d = c.dModel;
  const m = new Map<string, number[]>();
  m.set('wte.weight', [c.vocabSize, d]);
  m.set('wpe.weight', [c.nCtx, d]);
  for (let i = 0; i < c.nLayer; i++) {
    m.set(`h.${i}.ln_1.weight`, [d]);
    m.set(`h.${i}.ln_1.bias`, [d]);
    m.set(`h.${i}.attn.c_attn.weight`, [d, 3 * d]);
    m.set(`h.${i}.attn.c_attn.bias`, [3 * d]);
    m.set(`h.${i}.attn.c_proj.weight`, [d, d]);
    m.set(`h.${i}.attn.c_proj.bias`, [d]);
    m.set(`h.${i}.ln_2.weight`, [d]);
    m.set(`h.${i}.ln_2.bias`, [d]);
    m.set(`h.${i}.mlp.c_fc.weight`, [d, 4 * d]);
    m.set(`h.${i}.mlp.c_fc.bias`, [4 * d]);
    m.set(`h.${i}.mlp.c_proj.weight`, [4 * d, d]);
    m.set(`h.${i}.mlp.c_proj.bias`, [d]);
  }
  m.set('ln_f.weight', [d]);
  m.set('ln_f.bias', [d]);
  return m;
}

export function validateConfig(c: GPT2Config): void {
  const bad = (msg: string) => {
    throw new Error(`GPT-2 config: ${msg} (got ${JSON.stringify(c)})`);
  };
  for (const k of ['vocabSize', 'nCtx', 'dModel', 'nLayer', 'nHead'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) bad(`${k} must be a positive integer`);
  }
  if (c.dModel % c.nHead !== 0) bad(`dModel (${c.dModel}) must be divisible by nHead (${c.nHead})`);
  if (!(c.layerNormEps > 0)) bad('layerNormEps must be > 0');
}

/** The TransformerLens hook names this model understands. */
export function hookNames(c: GPT2Config): string[] {
  const names: string[] = [];
  for (let l = 0; l < c.nLayer; l++) {
    for (const s of ['resid_pre', 'attn_out', 'resid_mid', 'mlp_out', 'resid_post']) names.push(`blocks.${l}.hook_${s}`);
  }
  return names;
}

/**
 * Initial parameters as GPT-2 (HF `_init_weights`): weights and embeddings ~ N(0, 0.02), biases 0,
 * LayerNorm weight 1 / bias 0, and the residual projections (attn.c_proj, mlp.c_proj) ~
 * N(0, 0.02 / sqrt(2 nLayer)). Deterministic in `seed` (mulberry32 + Box–Muller, canonical order).
 */
export function initGPT2Params(c: GPT2Config, seed: number): Map<string, Float32Array> {
  validateConfig(c);
  const normal = randn(mulberry32(seed));
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of gpt2ParamShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (name.endsWith('ln_1.weight') || name.endsWith('ln_2.weight') || name === 'ln_f.weight') a.fill(1);
    else if (shape.length === 2) {
      const std = name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * c.nLayer) : 0.02;
      for (let i = 0; i < n; i++) a[i] = std * normal();
    }
    out.set(name, a);
  }
  return out;
}

/**
 * gelu_new (HF "gelu_new", the tanh approximation): 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))),
 * computed as u * sigmoid(2 sqrt(2/pi) (u + 0.044715 u^3)) (identical; sigmoid is ~8x faster than
 * tanh on wasm). Also returns the sigmoid for the backward pass.
 */
export function geluNewParts<R extends tf.Rank>(u: tf.Tensor<R>): { a: tf.Tensor<R>; s: tf.Tensor<R> } {
  const z = tf.mul(tf.mul(u, tf.add(tf.mul(tf.square(u), GELU_A), 1)), 2 * GELU_C);
  const s = tf.sigmoid(z) as tf.Tensor<R>;
  return { a: tf.mul(u, s) as tf.Tensor<R>, s };
}

export function geluNew<R extends tf.Rank>(u: tf.Tensor<R>): tf.Tensor<R> {
  return tf.tidy(() => geluNewParts(u).a);
}

/** LayerNorm over the last axis as torch.nn.LayerNorm: biased variance, eps inside the sqrt. */
export function layerNorm(x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor, eps: number): { out: tf.Tensor2D; cache: LNCache } {
  const mu = tf.mean(x, -1, true);
  const xc = tf.sub(x, mu);
  const v = tf.mean(tf.square(xc), -1, true);
  const rstd = tf.rsqrt(tf.add(v, eps)) as tf.Tensor2D;
  const xhat = tf.mul(xc, rstd) as tf.Tensor2D;
  const out = tf.add(tf.mul(xhat, g), b) as tf.Tensor2D;
  return { out, cache: { xhat, rstd } };
}

interface LNCache {
  xhat: tf.Tensor2D;
  rstd: tf.Tensor2D;
}

interface LayerCache {
  ln1: LNCache;
  h1: tf.Tensor2D;
  q: tf.Tensor2D[]; // per (head, batch) [T, dh], index h*B + b
  k: tf.Tensor2D[];
  vT: tf.Tensor2D[]; // [dh, T]
  p: tf.Tensor3D; // [H*B, T, T] attention probabilities
  y: tf.Tensor2D; // [N, d] concatenated head outputs (input of attn.c_proj)
  ln2: LNCache;
  h2: tf.Tensor2D;
  u: tf.Tensor2D; // [N, 4d] mlp pre-activation
  s: tf.Tensor2D; // sigmoid(2c(u + a u^3)) (gelu_new = u * s)
  a: tf.Tensor2D; // gelu output (input of mlp.c_proj)
  /** ONNX Runtime path (backend wasm+ort, see ortgraphs.ts): the block inputs and LayerNorm statistics. */
  ort?: {
    x1: tf.Tensor2D; // resid_pre
    mean1: tf.Tensor2D;
    rstd1: tf.Tensor2D;
    qkv: tf.Tensor2D; // [N, 3d]
    P: tf.Tensor4D; // [B, H, T, T]
    x2: tf.Tensor2D; // resid_mid
    mean2: tf.Tensor2D;
    rstd2: tf.Tensor2D;
  };
}

type Site = 'resid_pre' | 'resid_mid' | 'resid_post';
interface StopPoint {
  layer: number;
  site: Site;
}

function parseResidHook(name: HookName, c: GPT2Config): StopPoint {
  const m = /^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post)$/.exec(name);
  if (!m || Number(m[1]) >= c.nLayer) {
    throw new Error(
      `activationAndGrad: hook '${name}' is not supported; use blocks.{l}.hook_resid_pre|resid_mid|resid_post with 0 <= l < ${c.nLayer}`,
    );
  }
  return { layer: Number(m[1]), site: m[2] as Site };
}

/** The layer whose resid_pre a hook name denotes (the only sites a pass can start from). */
function residPreLayer(name: HookName, c: GPT2Config): number {
  const m = /^blocks\.(\d+)\.hook_resid_pre$/.exec(name);
  if (!m || Number(m[1]) >= c.nLayer) throw new Error(`fusedCeKl: a pass can start at blocks.{l}.hook_resid_pre with 0 <= l < ${c.nLayer}, not at '${name}'`);
  return Number(m[1]);
}

export interface ForwardBackwardResult {
  /** Mean next-token cross-entropy over the batch (nats). */
  loss: number;
  /** Gradients of the mean loss, by parameter name (caller disposes). */
  grads: Map<string, tf.Tensor>;
}

export class GPT2 implements HookedLM {
  readonly config: GPT2Config;
  private params = new Map<string, tf.Tensor>();
  private wteT: tf.Tensor2D | null = null;
  private masks = new Map<number, tf.Tensor2D>();
  private disposed = false;
  /** Elements of the [rows, V] logits block the cross-entropy head handles at once. */
  headChunkElems = HEAD_CHUNK_ELEMS;

  /** Takes ownership of the given tensors (shapes are checked). */
  constructor(config: GPT2Config, params: Map<string, tf.Tensor>) {
    validateConfig(config);
    this.config = { ...config };
    this.setParams(params);
  }

  static fromArrays(config: GPT2Config, arrays: Map<string, Float32Array> | Record<string, Float32Array>): GPT2 {
    validateConfig(config);
    const get = (n: string) => (arrays instanceof Map ? arrays.get(n) : arrays[n]);
    const params = new Map<string, tf.Tensor>();
    try {
      for (const [name, shape] of gpt2ParamShapes(config)) {
        const a = get(name);
        if (!a) throw new Error(`GPT-2: missing parameter '${name}'`);
        const n = shape.reduce((x, y) => x * y, 1);
        if (a.length !== n) {
          throw new Error(`GPT-2: parameter '${name}' has ${a.length} values, expected shape ${JSON.stringify(shape)}`);
        }
        params.set(name, tf.tensor(a, shape, 'float32'));
      }
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
    return new GPT2(config, params);
  }

  get paramNames(): string[] {
    return [...this.params.keys()];
  }

  get numParams(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size;
    return n;
  }

  param(name: string): tf.Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`GPT-2: no parameter '${name}'`);
    return t;
  }

  /** Copies of all parameters as Float32Arrays, canonical order. */
  paramArrays(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const [n, t] of this.params) out.set(n, t.dataSync() as Float32Array);
    return out;
  }

  /** Replace parameters (takes ownership; the old tensors are disposed unless reused). */
  setParams(params: Map<string, tf.Tensor>): void {
    const shapes = gpt2ParamShapes(this.config);
    for (const [name, shape] of shapes) {
      const t = params.get(name);
      if (!t) throw new Error(`GPT-2: missing parameter '${name}'`);
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        throw new Error(`GPT-2: parameter '${name}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
      }
    }
    for (const name of params.keys()) if (!shapes.has(name)) throw new Error(`GPT-2: unknown parameter '${name}'`);
    const keep = new Set(params.values());
    for (const t of this.params.values()) if (!keep.has(t)) t.dispose();
    this.params = new Map([...shapes.keys()].map((n) => [n, params.get(n)!]));
    this.wteT?.dispose();
    this.wteT = null;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
    this.wteT?.dispose();
    this.wteT = null;
    for (const m of this.masks.values()) m.dispose();
    this.masks.clear();
  }

  // ---------------------------------------------------------------- building blocks

  private p(name: string): tf.Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(this.disposed ? 'GPT-2: model was disposed' : `GPT-2: no parameter '${name}'`);
    return t;
  }

  private getWteT(): tf.Tensor2D {
    if (!this.wteT) this.wteT = tf.keep(tf.transpose(this.p('wte.weight') as tf.Tensor2D));
    return this.wteT;
  }

  private getMask(T: number): tf.Tensor2D {
    let m = this.masks.get(T);
    if (!m) {
      const a = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) a[i * T + j] = -1e9;
      m = tf.keep(tf.tensor2d(a, [T, T]));
      this.masks.set(T, m);
    }
    return m;
  }

  private layerNorm(x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor): { out: tf.Tensor2D; cache: LNCache } {
    return layerNorm(x, g, b, this.config.layerNormEps);
  }

  private layerNormBackward(
    dout: tf.Tensor2D,
    c: LNCache,
    g: tf.Tensor,
    wantParams: boolean,
  ): { dx: tf.Tensor2D; dg?: tf.Tensor; db?: tf.Tensor } {
    const dxhat = tf.mul(dout, g);
    const m1 = tf.mean(dxhat, -1, true);
    const m2 = tf.mean(tf.mul(dxhat, c.xhat), -1, true);
    const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(c.xhat, m2)), c.rstd) as tf.Tensor2D;
    if (!wantParams) return { dx };
    return { dx, dg: sumRows(tf.mul(dout, c.xhat) as tf.Tensor2D), db: sumRows(dout) };
  }

  private linear(x: tf.Tensor2D, w: string, b: string): tf.Tensor2D {
    return tf.fused.matMul({ a: x, b: this.p(w) as tf.Tensor2D, bias: this.p(b) }) as tf.Tensor2D;
  }

  /** y = x W + b. Returns dx, and dW, db when `grads` is given (stored under the names). */
  private linearBackward(
    dy: tf.Tensor2D,
    x: tf.Tensor2D,
    w: string,
    b: string,
    grads: Map<string, tf.Tensor> | null,
    needDx = true,
  ): tf.Tensor2D | null {
    const W = this.p(w) as tf.Tensor2D;
    if (grads) {
      const [nIn, nOut] = W.shape;
      // dW = x^T dy; transpose the narrower of x / dy.
      const dW = nIn <= nOut ? tf.matMul(tf.transpose(x), dy) : tf.transpose(tf.matMul(tf.transpose(dy), x));
      grads.set(w, dW);
      grads.set(b, sumRows(dy));
    }
    return needDx ? (tf.matMul(dy, tf.transpose(W)) as tf.Tensor2D) : null;
  }

  private attention(h1: tf.Tensor2D, l: number, B: number, T: number, cache: Partial<LayerCache> | null): tf.Tensor2D {
    const { nHead: H, dModel: d } = this.config;
    const dh = d / H;
    const HB = H * B;
    const qkv = this.linear(h1, `h.${l}.attn.c_attn.weight`, `h.${l}.attn.c_attn.bias`); // [N, 3d]
    const q4 = tf.reshape(qkv, [B, T, 3 * H, dh]);
    // [3H, B, T, dh]: per (q|k|v, head, batch) blocks of [T, dh]
    const partsA = unstack0(tf.reshape(tf.transpose(q4, [2, 0, 1, 3]), [3 * HB, T, dh])) as tf.Tensor2D[];
    // [3H, B, dh, T]: K^T (and V^T for the backward); the unused blocks are split off whole.
    const needVT = cache !== null;
    const bt = tf.reshape(tf.transpose(q4, [2, 0, 3, 1]), [3 * HB, dh, T]);
    const ones = new Array(HB).fill(1);
    const partsB = splitRows(bt, needVT ? [HB, ...ones, ...ones] : [HB, ...ones, HB]);
    const off = 1;
    const q = partsA.slice(0, HB);
    const k = partsA.slice(HB, 2 * HB);
    const v = partsA.slice(2 * HB, 3 * HB);
    const kT = partsB.slice(off, off + HB).map((t) => tf.reshape(t, [dh, T]) as tf.Tensor2D);
    const scores = tf.stack(q.map((qi, i) => tf.matMul(qi, kT[i]))) as tf.Tensor3D; // [HB, T, T]
    const pre = tf.add(tf.mul(scores, 1 / Math.sqrt(dh)), this.getMask(T));
    const P = tf.softmax(pre) as tf.Tensor3D;
    const Pl = unstack0(P) as tf.Tensor2D[];
    const Y = tf.stack(Pl.map((pi, i) => tf.matMul(pi, v[i]))); // [HB, T, dh] = [H, B, T, dh]
    const y = tf.reshape(tf.transpose(tf.reshape(Y, [H, B, T, dh]), [1, 2, 0, 3]), [B * T, d]) as tf.Tensor2D;
    if (cache) {
      cache.q = q;
      cache.k = k;
      cache.vT = partsB.slice(off + HB, off + 2 * HB).map((t) => tf.reshape(t, [dh, T]) as tf.Tensor2D);
      cache.p = P;
      cache.y = y;
    }
    return this.linear(y, `h.${l}.attn.c_proj.weight`, `h.${l}.attn.c_proj.bias`);
  }

  private attentionBackward(
    dOut: tf.Tensor2D,
    c: LayerCache,
    l: number,
    B: number,
    T: number,
    grads: Map<string, tf.Tensor> | null,
  ): tf.Tensor2D {
    const { nHead: H, dModel: d } = this.config;
    const dh = d / H;
    const HB = H * B;
    const dy = this.linearBackward(dOut, c.y, `h.${l}.attn.c_proj.weight`, `h.${l}.attn.c_proj.bias`, grads)!;
    const dYl = unstack0(tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, dh]), [2, 0, 1, 3]), [HB, T, dh])) as tf.Tensor2D[];
    const dP = tf.stack(dYl.map((g, i) => tf.matMul(g, c.vT[i]))) as tf.Tensor3D; // [HB, T, T]
    const dS = tf.mul(tf.mul(c.p, tf.sub(dP, tf.sum(tf.mul(dP, c.p), -1, true))), 1 / Math.sqrt(dh)) as tf.Tensor3D;
    const PT = unstack0(tf.transpose(c.p, [0, 2, 1])) as tf.Tensor2D[];
    const dSl = unstack0(dS) as tf.Tensor2D[];
    const dST = unstack0(tf.transpose(dS, [0, 2, 1])) as tf.Tensor2D[];
    const dq = dSl.map((g, i) => tf.matMul(g, c.k[i]));
    const dk = dST.map((g, i) => tf.matMul(g, c.q[i]));
    const dv = PT.map((pt, i) => tf.matMul(pt, dYl[i]));
    const dqkv3 = tf.stack([...dq, ...dk, ...dv]); // [3HB, T, dh] = [3H, B, T, dh]
    const dqkv = tf.reshape(tf.transpose(tf.reshape(dqkv3, [3 * H, B, T, dh]), [1, 2, 0, 3]), [B * T, 3 * d]) as tf.Tensor2D;
    return this.linearBackward(dqkv, c.h1, `h.${l}.attn.c_attn.weight`, `h.${l}.attn.c_attn.bias`, grads)!;
  }

  private mlp(h2: tf.Tensor2D, l: number, cache: Partial<LayerCache> | null): tf.Tensor2D {
    const u = this.linear(h2, `h.${l}.mlp.c_fc.weight`, `h.${l}.mlp.c_fc.bias`);
    const { a, s } = geluNewParts(u);
    if (cache) {
      cache.u = u;
      cache.s = s;
      cache.a = a;
    }
    return this.linear(a, `h.${l}.mlp.c_proj.weight`, `h.${l}.mlp.c_proj.bias`);
  }

  private mlpBackward(dOut: tf.Tensor2D, c: LayerCache, l: number, grads: Map<string, tf.Tensor> | null): tf.Tensor2D {
    const da = this.linearBackward(dOut, c.a, `h.${l}.mlp.c_proj.weight`, `h.${l}.mlp.c_proj.bias`, grads)!;
    // d/du [u s(z)] = s + u s (1 - s) 2c (1 + 3a u^2)
    const u2 = tf.square(c.u);
    const dz = tf.mul(tf.add(tf.mul(u2, 3 * GELU_A), 1), 2 * GELU_C);
    const sp = tf.mul(c.s, tf.sub(1, c.s));
    const du = tf.mul(da, tf.add(c.s, tf.mul(tf.mul(c.u, sp), dz))) as tf.Tensor2D;
    return this.linearBackward(du, c.h2, `h.${l}.mlp.c_fc.weight`, `h.${l}.mlp.c_fc.bias`, grads)!;
  }

  // ------------------------------------------------ ONNX Runtime path (backend wasm+ort)

  /** ln_1 + attention of layer l on resid_pre x (one ORT graph); returns attn_out. */
  private attnBlockOrt(x: tf.Tensor2D, l: number, B: number, T: number, cache: Partial<LayerCache> | null): tf.Tensor2D {
    const { nHead: H, dModel: d, layerNormEps: eps } = this.config;
    const N = B * T;
    const pre = `h.${l}.`;
    const [mean, rstd, h1, qkv, P, y, out] = ortOp(
      'Attention',
      `attn-fwd:${T}:${H}:${d}:${eps}`,
      () => attentionForwardGraph(T, H, d, eps),
      [x, this.p(pre + 'ln_1.weight'), this.p(pre + 'ln_1.bias'), this.p(pre + 'attn.c_attn.weight'), this.p(pre + 'attn.c_attn.bias'), this.p(pre + 'attn.c_proj.weight'), this.p(pre + 'attn.c_proj.bias')],
      [[N, 1], [N, 1], [N, d], [N, 3 * d], [B, H, T, T], [N, d], [N, d]],
    );
    if (cache) {
      cache.h1 = h1 as tf.Tensor2D;
      cache.y = y as tf.Tensor2D;
      cache.ort = { x1: x, mean1: mean as tf.Tensor2D, rstd1: rstd as tf.Tensor2D, qkv: qkv as tf.Tensor2D, P: P as tf.Tensor4D } as LayerCache['ort'];
    }
    return out as tf.Tensor2D;
  }

  /** Whether anything must see inside block l (a hook or capture at attn_out, resid_mid or mlp_out). */
  private needsBlockInside(hooks: Hooks | undefined, capture: StopPoint | undefined, l: number): boolean {
    if (capture && capture.layer === l && capture.site === 'resid_mid') return true;
    return !!hooks && (`blocks.${l}.hook_attn_out` in hooks || `blocks.${l}.hook_resid_mid` in hooks || `blocks.${l}.hook_mlp_out` in hooks);
  }

  /** Block l for inference, resid_pre -> resid_post, in one ORT graph that keeps no activations. */
  private blockInferenceOrt(x: tf.Tensor2D, l: number, B: number, T: number): tf.Tensor2D {
    const { nHead: H, dModel: d, layerNormEps: eps } = this.config;
    const pre = `h.${l}.`;
    const names = ['ln_1.weight', 'ln_1.bias', 'attn.c_attn.weight', 'attn.c_attn.bias', 'attn.c_proj.weight', 'attn.c_proj.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight', 'mlp.c_proj.bias'];
    return ortOp('Block', `block-inf:${T}:${H}:${d}:${eps}`, () => blockInferenceGraph(T, H, d, eps), [x, ...names.map((n) => this.p(pre + n))], [[B * T, d]])[0] as tf.Tensor2D;
  }

  /** ln_2 + MLP of layer l on resid_mid x (one ORT graph); returns mlp_out. */
  private mlpBlockOrt(x: tf.Tensor2D, l: number, cache: Partial<LayerCache> | null): tf.Tensor2D {
    const { dModel: d, layerNormEps: eps } = this.config;
    const N = x.shape[0];
    const pre = `h.${l}.`;
    const [mean, rstd, h2, u, s, a, out] = ortOp(
      'Mlp',
      `mlp-fwd:${d}:${eps}`,
      () => mlpForwardGraph(d, eps),
      [x, this.p(pre + 'ln_2.weight'), this.p(pre + 'ln_2.bias'), this.p(pre + 'mlp.c_fc.weight'), this.p(pre + 'mlp.c_fc.bias'), this.p(pre + 'mlp.c_proj.weight'), this.p(pre + 'mlp.c_proj.bias')],
      [[N, 1], [N, 1], [N, d], [N, 4 * d], [N, 4 * d], [N, 4 * d], [N, d]],
    );
    if (cache) {
      cache.h2 = h2 as tf.Tensor2D;
      cache.u = u as tf.Tensor2D;
      cache.a = a as tf.Tensor2D;
      cache.s = s as tf.Tensor2D;
      Object.assign(cache.ort!, { x2: x, mean2: mean, rstd2: rstd });
    }
    return out as tf.Tensor2D;
  }

  /** dL/d resid_post -> dL/d resid_mid through the MLP, ln_2 and the residual (parameter grads into `grads`). */
  private mlpBackwardOrt(dx: tf.Tensor2D, c: LayerCache, l: number, grads: Map<string, tf.Tensor> | null): tf.Tensor2D {
    const d = this.config.dModel;
    const N = dx.shape[0];
    const pre = `h.${l}.`;
    const o = c.ort!;
    const ins = [dx, this.p(pre + 'mlp.c_proj.weight'), c.u, c.s, this.p(pre + 'mlp.c_fc.weight'), o.x2, o.mean2, o.rstd2, this.p(pre + 'ln_2.weight')];
    if (!grads) return ortOp('MlpBackward', `mlp-bwd:${d}:0`, () => mlpBackwardGraph(d, false), ins, [[N, d]])[0] as tf.Tensor2D;
    const outs = ortOp('MlpBackward', `mlp-bwd:${d}:1`, () => mlpBackwardGraph(d, true), [...ins, c.a, c.h2], [[N, d], [4 * d, d], [d], [d, 4 * d], [4 * d], [d], [d]]);
    ['mlp.c_proj.weight', 'mlp.c_proj.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'ln_2.weight', 'ln_2.bias'].forEach((n, i) => grads.set(pre + n, outs[i + 1]));
    return outs[0] as tf.Tensor2D;
  }

  /** dL/d resid_mid -> dL/d resid_pre through attention, ln_1 and the residual. */
  private attnBackwardOrt(dx: tf.Tensor2D, c: LayerCache, l: number, B: number, T: number, grads: Map<string, tf.Tensor> | null): tf.Tensor2D {
    const { nHead: H, dModel: d } = this.config;
    const N = B * T;
    const pre = `h.${l}.`;
    const o = c.ort!;
    const ins = [dx, this.p(pre + 'attn.c_proj.weight'), o.qkv, o.P, this.p(pre + 'attn.c_attn.weight'), o.x1, o.mean1, o.rstd1, this.p(pre + 'ln_1.weight')];
    if (!grads) return ortOp('AttentionBackward', `attn-bwd:${T}:${H}:${d}:0`, () => attentionBackwardGraph(T, H, d, false), ins, [[N, d]])[0] as tf.Tensor2D;
    const outs = ortOp(
      'AttentionBackward',
      `attn-bwd:${T}:${H}:${d}:1`,
      () => attentionBackwardGraph(T, H, d, true),
      [...ins, c.y, c.h1],
      [[N, d], [d, d], [d], [d, 3 * d], [3 * d], [d], [d]],
    );
    ['attn.c_proj.weight', 'attn.c_proj.bias', 'attn.c_attn.weight', 'attn.c_attn.bias', 'ln_1.weight', 'ln_1.bias'].forEach((n, i) => grads.set(pre + n, outs[i + 1]));
    return outs[0] as tf.Tensor2D;
  }

  private applyHook(hooks: Hooks | undefined, name: string, x: tf.Tensor2D, B: number, T: number): tf.Tensor2D {
    const f: HookFn | undefined = hooks?.[name];
    if (!f) return x;
    const d = this.config.dModel;
    const out = f(tf.reshape(x, [B, T, d]) as tf.Tensor3D);
    if (!out || out.shape.length !== 3 || out.shape[0] !== B || out.shape[1] !== T || out.shape[2] !== d) {
      throw new Error(`hook '${name}' must return a [${B}, ${T}, ${d}] tensor, got ${JSON.stringify(out?.shape)}`);
    }
    return tf.reshape(out, [B * T, d]) as tf.Tensor2D;
  }

  private checkHooks(hooks: Hooks | undefined): void {
    if (!hooks) return;
    const valid = new Set(hookNames(this.config));
    for (const k of Object.keys(hooks)) {
      if (!valid.has(k)) {
        throw new Error(`unknown hook '${k}'; valid: blocks.{l}.hook_{resid_pre,attn_out,resid_mid,mlp_out,resid_post}, l < ${this.config.nLayer}`);
      }
    }
  }

  private checkTokens(tokens: TokenArray, what: string): void {
    const V = this.config.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!(t >= 0 && t < V)) throw new Error(`${what}: token ${t} at index ${i} is outside the vocabulary [0, ${V})`);
    }
  }

  /**
   * Forward pass on flat inputs [B*T]. Caches activations for layers >= cacheFrom (for the
   * backward pass); optionally captures the residual at `capture`. Returns the final hidden [N, d].
   */
  private forward(
    inputs: Int32Array,
    B: number,
    T: number,
    opts: { hooks?: Hooks; cacheFrom?: number; capture?: StopPoint; start?: { layer: number; x: tf.Tensor2D }; stopAtCapture?: boolean },
  ): { hF: tf.Tensor2D; lnf: LNCache; caches: (LayerCache | null)[]; captured: tf.Tensor2D | null } {
    const c = this.config;
    if (T > c.nCtx) throw new Error(`GPT-2: sequence length ${T} exceeds the context size nCtx=${c.nCtx}`);
    if (inputs.length !== B * T) throw new Error(`GPT-2: expected ${B * T} input tokens, got ${inputs.length}`);
    this.checkHooks(opts.hooks);
    const d = c.dModel;
    const hooks = opts.hooks;
    const cacheFrom = opts.cacheFrom ?? Infinity;
    let x: tf.Tensor2D;
    const from = opts.start?.layer ?? 0;
    if (opts.start) {
      // resumed at resid_pre of layer `from` with the given activations (the layers below are skipped)
      if (opts.start.x.size !== B * T * d) throw new Error(`GPT-2: start activations hold ${opts.start.x.size} values, expected ${B * T * d}`);
      x = tf.reshape(opts.start.x, [B * T, d]) as tf.Tensor2D;
    } else {
      const tok = tf.tensor1d(inputs, 'int32');
      const wpe = this.p('wpe.weight') as tf.Tensor2D;
      const pos = T === c.nCtx ? wpe : (splitRows(wpe, [T, c.nCtx - T])[0] as tf.Tensor2D);
      x = tf.reshape(tf.add(tf.reshape(gatherRows(this.p('wte.weight') as tf.Tensor2D, tok), [B, T, d]), pos), [B * T, d]) as tf.Tensor2D;
    }
    const caches: (LayerCache | null)[] = [];
    const ort = ortEnabled();
    let captured: tf.Tensor2D | null = null;
    // with stopAtCapture the pass ends at the capture point (nothing above it is computed)
    const cap = (l: number, site: Site): boolean => {
      if (opts.capture && opts.capture.layer === l && opts.capture.site === site) captured = x;
      return !!opts.stopAtCapture && captured !== null;
    };
    for (let l = 0; l < from; l++) caches.push(null);
    for (let l = from; l < c.nLayer; l++) {
      const cache: Partial<LayerCache> | null = l >= cacheFrom ? {} : null;
      x = this.applyHook(hooks, `blocks.${l}.hook_resid_pre`, x, B, T);
      if (cap(l, 'resid_pre')) break;
      if (ort && !cache && !this.needsBlockInside(hooks, opts.capture, l)) {
        x = this.blockInferenceOrt(x, l, B, T);
        x = this.applyHook(hooks, `blocks.${l}.hook_resid_post`, x, B, T);
        caches.push(null);
        if (cap(l, 'resid_post')) break;
        continue;
      }
      const ln1 = ort ? null : this.layerNorm(x, this.p(`h.${l}.ln_1.weight`), this.p(`h.${l}.ln_1.bias`));
      let attnOut = ln1 ? this.attention(ln1.out, l, B, T, cache) : this.attnBlockOrt(x, l, B, T, cache);
      attnOut = this.applyHook(hooks, `blocks.${l}.hook_attn_out`, attnOut, B, T);
      x = tf.add(x, attnOut) as tf.Tensor2D;
      x = this.applyHook(hooks, `blocks.${l}.hook_resid_mid`, x, B, T);
      if (cap(l, 'resid_mid')) break;
      const ln2 = ort ? null : this.layerNorm(x, this.p(`h.${l}.ln_2.weight`), this.p(`h.${l}.ln_2.bias`));
      let mlpOut = ln2 ? this.mlp(ln2.out, l, cache) : this.mlpBlockOrt(x, l, cache);
      mlpOut = this.applyHook(hooks, `blocks.${l}.hook_mlp_out`, mlpOut, B, T);
      x = tf.add(x, mlpOut) as tf.Tensor2D;
      x = this.applyHook(hooks, `blocks.${l}.hook_resid_post`, x, B, T);
      const stop = cap(l, 'resid_post');
      if (cache && ln1 && ln2) {
        cache.ln1 = ln1.cache;
        cache.h1 = ln1.out;
        cache.ln2 = ln2.cache;
        cache.h2 = ln2.out;
      }
      caches.push(cache as LayerCache | null);
      if (stop) break;
    }
    if (opts.stopAtCapture) {
      if (!captured) throw new Error('GPT-2: stopAtCapture without a capture point reached');
      return { hF: captured, lnf: null as unknown as LNCache, caches, captured };
    }
    const f = this.layerNorm(x, this.p('ln_f.weight'), this.p('ln_f.bias'));
    return { hF: f.out, lnf: f.cache, caches, captured };
  }

  /**
   * Cross-entropy head, in chunks of rows (so no [N, V] tensor is ever whole): per-token losses
   * (exact: rows whose target probability underflows are recomputed with a log-sum-exp of the
   * logits) and, for L = Σ_n w·CE_n, optionally dL/dhF and the unembedding part of dL/dwte.
   * dL/dlogits = w (P - onehot) is never materialised: the one-hot part becomes a row gather
   * (for dhF) and a scatter-add done by the caller (for dwte).
   */
  private head(
    hF: tf.Tensor2D,
    targets: Int32Array,
    want: { w: number; dh: boolean; dwte: boolean },
  ): { losses: Float32Array; dhF: tf.Tensor2D | null; dwteHead: tf.Tensor2D | null } {
    const V = this.config.vocabSize;
    const N = targets.length;
    const wte = this.p('wte.weight') as tf.Tensor2D;
    const rows = Math.max(1, Math.min(N, Math.floor(this.headChunkElems / V)));
    const sizes: number[] = [];
    for (let r = 0; r < N; r += rows) sizes.push(Math.min(rows, N - r));
    const hs = sizes.length === 1 ? [hF] : (splitRows(hF, sizes) as tf.Tensor2D[]);
    const losses = new Float32Array(N);
    const dhs: tf.Tensor2D[] = [];
    let acc: tf.Tensor2D | null = null; // [d, V]
    let accT: tf.Tensor2D | null = null; // [V, d] (ONNX Runtime path)
    let r0 = 0;
    const ort = ortEnabled();
    const d = this.config.dModel;
    for (let c = 0; c < sizes.length; c++) {
      const n = sizes[c];
      if (ort && !want.dh && !want.dwte) {
        // evaluation: the loss straight from a log-softmax in ORT (no [n, V] tensor leaves it)
        const tgt = tf.tensor2d(Float32Array.from(targets.subarray(r0, r0 + n)), [n, 1]);
        const l = ortOp('HeadLoss', `head-loss:${d}:${V}`, () => headLossGraph(d, V), [hs[c], wte, tgt], [[n, 1]])[0];
        losses.set(l.dataSync() as Float32Array, r0);
        r0 += n;
        continue;
      }
      if (ort) {
        // training / collect: loss, dh = w (P wte − wte[target]) and Pᵀ h from one graph (P stays in ORT)
        const tgt = tf.tensor2d(Float32Array.from(targets.subarray(r0, r0 + n)), [n, 1]);
        const outs = ortOp(
          'HeadTrain',
          `head-train:${d}:${V}:${want.dwte ? 1 : 0}`,
          () => headTrainGraph(d, V, want.dwte),
          [hs[c], wte, tgt, tf.scalar(want.w)],
          want.dwte ? [[n, 1], [n, d], [V, d]] : [[n, 1], [n, d]],
        );
        losses.set(outs[0].dataSync() as Float32Array, r0);
        if (want.dh) dhs.push(outs[1] as tf.Tensor2D);
        if (want.dwte) accT = accT ? (tf.add(accT, outs[2]) as tf.Tensor2D) : (outs[2] as tf.Tensor2D);
        r0 += n;
        continue;
      }
      const wteT = this.getWteT();
      let logits: tf.Tensor2D | null = null;
      const getLogits = () => (logits ??= tf.matMul(hs[c], wteT) as tf.Tensor2D);
      const P = tf.softmax(getLogits()) as tf.Tensor2D;
      const idx = new Int32Array(n);
      for (let i = 0; i < n; i++) idx[i] = i * V + targets[r0 + i];
      const idxT = tf.tensor1d(idx, 'int32');
      const pt = tf.gather(tf.reshape(P, [n * V]), idxT).dataSync();
      let underflow = false;
      for (let i = 0; i < n; i++) {
        if (pt[i] < P_FLOOR) underflow = true;
        losses[r0 + i] = -Math.log(pt[i]);
      }
      if (underflow) {
        const lg = getLogits();
        const lse = tf.logSumExp(lg, -1).dataSync();
        const lt = tf.gather(tf.reshape(lg, [n * V]), idxT).dataSync();
        for (let i = 0; i < n; i++) losses[r0 + i] = lse[i] - lt[i];
      }
      (logits as tf.Tensor2D | null)?.dispose();
      if (want.dh) {
        const tgt = tf.tensor1d(targets.subarray(r0, r0 + n), 'int32');
        dhs.push(tf.mul(tf.sub(tf.matMul(P, wte), gatherRows(wte, tgt)), want.w) as tf.Tensor2D);
      }
      if (want.dwte) {
        const part = tf.matMul(tf.transpose(hs[c]), P) as tf.Tensor2D; // [d, V]
        acc = acc ? (tf.add(acc, part) as tf.Tensor2D) : part;
      }
      P.dispose();
      r0 += n;
    }
    const dhF = want.dh ? (dhs.length === 1 ? dhs[0] : (tf.concat(dhs, 0) as tf.Tensor2D)) : null;
    const dwteHead = accT ? accT : acc ? (tf.transpose(tf.mul(acc, want.w)) as tf.Tensor2D) : null;
    return { losses, dhF, dwteHead };
  }

  /**
   * Backward from the loss L = Σ_n w·CE_n down to `stop` (or to the embeddings when null).
   * With `grads`, parameter gradients are stored there; returns dL/dx at the stop point.
   */
  private backward(
    fwd: { hF: tf.Tensor2D; lnf: LNCache; caches: (LayerCache | null)[] },
    inputs: Int32Array,
    targets: Int32Array,
    headGrads: { dhF: tf.Tensor2D; dwteHead: tf.Tensor2D | null },
    w: number,
    B: number,
    T: number,
    stop: StopPoint | null,
    grads: Map<string, tf.Tensor> | null,
  ): tf.Tensor2D {
    const c = this.config;
    const N = B * T;
    const V = c.vocabSize;
    const d = c.dModel;
    const dhF = headGrads.dhF;
    let extra: Float32Array | null = null; // [V, d] scatter-add part of dwte
    if (grads) {
      grads.set('wte.weight', headGrads.dwteHead!);
      extra = new Float32Array(V * d);
      const h = fwd.hF.dataSync();
      for (let n = 0; n < N; n++) {
        const o = targets[n] * d;
        const r = n * d;
        for (let j = 0; j < d; j++) extra[o + j] -= w * h[r + j];
      }
    }
    const f = this.layerNormBackward(dhF, fwd.lnf, this.p('ln_f.weight'), grads !== null);
    if (grads) {
      grads.set('ln_f.weight', f.dg!);
      grads.set('ln_f.bias', f.db!);
    }
    let dx = f.dx; // gradient w.r.t. the residual stream
    for (let l = c.nLayer - 1; l >= 0; l--) {
      if (stop && stop.layer === l && stop.site === 'resid_post') return dx;
      const cache = fwd.caches[l];
      if (!cache) throw new Error('GPT-2 internal: missing activation cache');
      if (cache.ort) {
        dx = this.mlpBackwardOrt(dx, cache, l, grads);
        if (stop && stop.layer === l && stop.site === 'resid_mid') return dx;
        dx = this.attnBackwardOrt(dx, cache, l, B, T, grads);
        if (stop && stop.layer === l && stop.site === 'resid_pre') return dx;
        continue;
      }
      const dh2 = this.mlpBackward(dx, cache, l, grads);
      const ln2 = this.layerNormBackward(dh2, cache.ln2, this.p(`h.${l}.ln_2.weight`), grads !== null);
      dx = tf.add(dx, ln2.dx) as tf.Tensor2D;
      if (grads) {
        grads.set(`h.${l}.ln_2.weight`, ln2.dg!);
        grads.set(`h.${l}.ln_2.bias`, ln2.db!);
      }
      if (stop && stop.layer === l && stop.site === 'resid_mid') return dx;
      const dh1 = this.attentionBackward(dx, cache, l, B, T, grads);
      const ln1 = this.layerNormBackward(dh1, cache.ln1, this.p(`h.${l}.ln_1.weight`), grads !== null);
      dx = tf.add(dx, ln1.dx) as tf.Tensor2D;
      if (grads) {
        grads.set(`h.${l}.ln_1.weight`, ln1.dg!);
        grads.set(`h.${l}.ln_1.bias`, ln1.db!);
      }
      if (stop && stop.layer === l && stop.site === 'resid_pre') return dx;
    }
    if (grads && extra) {
      // Embeddings: x0 = wte[inputs] + wpe[t]
      const g = dx.dataSync();
      for (let n = 0; n < N; n++) {
        const o = inputs[n] * d;
        const r = n * d;
        for (let j = 0; j < d; j++) extra[o + j] += g[r + j];
      }
      grads.set('wte.weight', tf.add(grads.get('wte.weight')!, tf.tensor2d(extra, [V, d])));
      // sum over the batch: [1, B] x [B, T*d]
      let dwpe = tf.reshape(tf.matMul(tf.ones([1, B]), tf.reshape(dx, [B, T * d])), [T, d]) as tf.Tensor2D;
      if (T < c.nCtx) dwpe = tf.concat([dwpe, tf.zeros([c.nCtx - T, d])], 0);
      grads.set('wpe.weight', dwpe);
    }
    return dx;
  }

  private static splitSequences(tokens: TokenArray, B: number, T: number) {
    if (tokens.length !== B * (T + 1)) {
      throw new Error(`expected batch*(seqLen+1) = ${B * (T + 1)} tokens, got ${tokens.length}`);
    }
    return splitWindows(tokens, 0, B, T);
  }

  // ---------------------------------------------------------------- public API

  logits(tokens: tf.Tensor2D, hooks?: Hooks, opts: { from?: PassStart } = {}): tf.Tensor3D {
    const [B, T] = tokens.shape;
    return tf.tidy(() => {
      const hF = this.finalHidden(tokens, hooks, opts);
      const { vocabSize: V, dModel: d } = this.config;
      const lg = ortEnabled()
        ? ortOp('Logits', `logits:${d}:${V}`, () => logitsGraph(d, V), [hF, this.p('wte.weight')], [[B * T, V]])[0]
        : tf.matMul(hF, this.getWteT());
      return tf.reshape(lg, [B, T, V]) as tf.Tensor3D;
    });
  }

  /** The final hidden state [B·T, d] (after ln_f) of logits()'s pass: logits = hF · unembedding()ᵀ. */
  finalHidden(tokens: tf.Tensor2D, hooks?: Hooks, opts: { from?: PassStart } = {}): tf.Tensor2D {
    const [B, T] = tokens.shape;
    const data = tokens.dataSync();
    const inputs = data instanceof Int32Array ? data : Int32Array.from(data);
    this.checkTokens(inputs, 'logits');
    const start = opts.from ? { layer: residPreLayer(opts.from.hook, this.config), x: opts.from.x as tf.Tensor2D } : undefined;
    return tf.tidy(() => this.forward(inputs, B, T, { hooks, start }).hF);
  }

  /** The unembedding [V, d] (tied to the token embedding; owned by the model, do not dispose). */
  unembedding(): tf.Tensor2D {
    return this.p('wte.weight') as tf.Tensor2D;
  }

  /** Whether a pass can start at this hook (resid_pre sites: `from` of logits() and fusedCeKl()). */
  canStartAt(hook: HookName): boolean {
    return /^blocks\.(\d+)\.hook_resid_pre$/.test(hook) && Number(hook.split('.')[1]) < this.config.nLayer;
  }

  /**
   * Fused CE / KL head on the wasm+ort backend (see HookedLM.fusedCeKl); null on other backends.
   * Works on row chunks of at most ~8M logits; with `keepRef` the returned ref holds, per chunk,
   * w̄ = pᵀ wte [n, d] and a = h·w̄ − lse [n, 1] (ceKlGraph: what a later pass's KL needs instead of
   * this pass's [n, V] log-softmax), otherwise nothing.
   */
  fusedCeKl(tokens: tf.Tensor2D, targets: Int32Array, opts: FusedCeKlOptions = {}): FusedCeKlResult | null {
    if (!ortEnabled()) return null;
    const [B, T] = tokens.shape;
    const data = tokens.dataSync();
    const inputs = data instanceof Int32Array ? data : Int32Array.from(data);
    this.checkTokens(inputs, 'fusedCeKl');
    if (targets.length !== B * T) throw new Error(`fusedCeKl: ${targets.length} targets for ${B * T} positions`);
    const { vocabSize: V, dModel: d } = this.config;
    const r0 = opts.ref as (FusedRef & { chunks: { wbar: tf.Tensor2D; a: tf.Tensor2D }[] }) | undefined;
    const rr = r0 ? null : opts.refRows;
    if (rr && (rr.wbar.length !== B * T * d || rr.a.length !== B * T)) {
      throw new Error(`fusedCeKl: the reference rows hold ${rr.a.length} positions (w̄ ${rr.wbar.length} values), expected ${B * T} (× d ${d})`);
    }
    const start = opts.from ? { layer: residPreLayer(opts.from.hook, this.config), x: opts.from.x as tf.Tensor2D } : undefined;
    const N = B * T;
    const ce = new Float32Array(N);
    const kl = r0 || rr ? new Float32Array(N) : null;
    const kept: { wbar: tf.Tensor2D; a: tf.Tensor2D }[] = [];
    const keep = !!opts.keepRef;
    tf.tidy(() => {
      const hF = this.forward(inputs, B, T, { hooks: opts.hooks, start }).hF;
      const rows = Math.max(1, Math.min(N, Math.floor((2 * this.headChunkElems) / V) || 1));
      const sizes: number[] = [];
      for (let o = 0; o < N; o += rows) sizes.push(Math.min(rows, N - o));
      const hs = sizes.length === 1 ? [hF] : (splitRows(hF, sizes) as tf.Tensor2D[]);
      const r = r0 ?? (rr ? { chunks: sizes.map((n, c) => {
        const o = sizes.slice(0, c).reduce((x, y) => x + y, 0);
        return { wbar: tf.tensor2d(rr.wbar.subarray(o * d, (o + n) * d), [n, d]), a: tf.tensor2d(rr.a.subarray(o, o + n), [n, 1]) };
      }) } : undefined);
      if (r && r.chunks.length !== sizes.length) throw new Error('fusedCeKl: the reference pass has a different shape');
      let o = 0;
      sizes.forEach((n, c) => {
        const tgt = tf.tensor2d(Float32Array.from(targets.subarray(o, o + n)), [n, 1]);
        const ins = r ? [hs[c], this.p('wte.weight'), tgt, r.chunks[c].wbar, r.chunks[c].a] : [hs[c], this.p('wte.weight'), tgt];
        const shapes = [[n, 1]];
        if (r) shapes.push([n, 1]);
        if (keep) shapes.push([n, d], [n, 1]);
        const outs = ortOp('HeadCeKl', `ce-kl:${d}:${V}:${r ? 1 : 0}:${keep ? 1 : 0}`, () => ceKlGraph(d, V, !!r, keep), ins, shapes);
        ce.set(outs[0].dataSync() as Float32Array, o);
        if (kl) kl.set(outs[1].dataSync() as Float32Array, o);
        if (keep) kept.push({ wbar: tf.keep(outs[outs.length - 2] as tf.Tensor2D), a: tf.keep(outs[outs.length - 1] as tf.Tensor2D) });
        o += n;
      });
    });
    const mine = {
      chunks: kept,
      release: () => tf.dispose(kept.flatMap((k) => [k.wbar, k.a])),
      rows: (): FusedRefRows => {
        const wbar = new Float32Array(N * d);
        const a = new Float32Array(N);
        let o = 0;
        for (const k of kept) {
          const n = k.a.shape[0];
          wbar.set(k.wbar.dataSync() as Float32Array, o * d);
          a.set(k.a.dataSync() as Float32Array, o);
          o += n;
        }
        return { wbar, a };
      },
    };
    return { ce, kl, ref: mine };
  }

  /**
   * Next-token cross-entropy per position [B*T] (nats) for sequences of T+1 tokens, with optional
   * hooks. Cheaper than logits() for evaluation: nothing [B, T, V] leaves the model.
   */
  lossPerToken(tokens: TokenArray, batch: number, seqLen: number, hooks?: Hooks): Float32Array {
    const { inputs, targets } = GPT2.splitSequences(tokens, batch, seqLen);
    this.checkTokens(tokens, 'lossPerToken');
    let losses!: Float32Array;
    tf.tidy(() => {
      const { hF } = this.forward(inputs, batch, seqLen, { hooks });
      losses = this.head(hF, targets, { w: 1, dh: false, dwte: false }).losses;
    });
    return losses;
  }

  activations(tokens: Int32Array, batch: number, seqLen: number, hook: HookName): Float32Array {
    const stop = parseResidHook(hook, this.config);
    const { inputs } = GPT2.splitSequences(tokens, batch, seqLen);
    this.checkTokens(tokens, 'activations');
    let x!: Float32Array;
    tf.tidy(() => {
      x = this.forward(inputs, batch, seqLen, { capture: stop, stopAtCapture: true }).captured!.dataSync() as Float32Array;
    });
    return x;
  }

  activationAndGrad(tokens: Int32Array, batch: number, seqLen: number, hook: HookName): ActivationAndGrad {
    const stop = parseResidHook(hook, this.config);
    const { inputs, targets } = GPT2.splitSequences(tokens, batch, seqLen);
    this.checkTokens(tokens, 'activationAndGrad');
    const c = this.config;
    const N = batch * seqLen;
    if (ortEnabled() && this.fusedTraining && N * c.vocabSize <= FUSED_ACTGRAD_MAX_ELEMS) {
      // one ORT run: forward, head and the backward down to the hook (actGradGraph)
      if (seqLen > c.nCtx) throw new Error(`GPT-2: sequence length ${seqLen} exceeds the context size nCtx=${c.nCtx}`);
      const lossPerToken = new Float32Array(N);
      const x = new Float32Array(N * c.dModel);
      const g = new Float32Array(N * c.dModel);
      this.runWholeGraph(`act-grad:${seqLen}:${stop.layer}:${stop.site}`, (names, shapes) => actGradGraph(c, seqLen, names, shapes, stop), inputs, targets, 1, [
        [lossPerToken, [N, 1]],
        [x, [N, c.dModel]],
        [g, [N, c.dModel]],
      ]);
      return { x, g, lossPerToken };
    }
    let out!: ActivationAndGrad;
    tf.tidy(() => {
      const fwd = this.forward(inputs, batch, seqLen, { cacheFrom: stop.layer, capture: stop });
      const { losses, dhF } = this.head(fwd.hF, targets, { w: 1, dh: true, dwte: false });
      const g = this.backward(fwd, inputs, targets, { dhF: dhF!, dwteHead: null }, 1, batch, seqLen, stop, null);
      out = { x: fwd.captured!.dataSync() as Float32Array, g: g.dataSync() as Float32Array, lossPerToken: losses };
    });
    return out;
  }

  /**
   * Forward + backward for training: the mean next-token cross-entropy over batch*seqLen positions
   * and its gradient for every parameter (the caller disposes the gradients).
   */
  forwardBackward(tokens: TokenArray, batch: number, seqLen: number): ForwardBackwardResult {
    const fused = this.fusedStep(tokens, batch, seqLen);
    if (fused) {
      const grads = new Map<string, tf.Tensor>();
      let off = 0;
      for (const [name, t] of this.params) {
        grads.set(name, tf.tensor(fused.grad.subarray(off, off + t.size), t.shape, 'float32'));
        off += t.size;
      }
      return { loss: fused.loss, grads };
    }
    return this.forwardBackwardTensors(tokens, batch, seqLen);
  }

  /**
   * The same as forwardBackward with the gradient as one flat array (parameter order of
   * paramNames), what the optimizer and the data-parallel workers use.
   */
  forwardBackwardFlat(tokens: TokenArray, batch: number, seqLen: number): { loss: number; grad: Float32Array<ArrayBuffer> } {
    const fused = this.fusedStep(tokens, batch, seqLen);
    if (fused) return fused;
    const r = this.forwardBackwardTensors(tokens, batch, seqLen);
    const grad = new Float32Array(this.numParams);
    let off = 0;
    for (const name of this.params.keys()) {
      const g = r.grads.get(name)!;
      grad.set(g.dataSync() as Float32Array, off);
      off += g.size;
      g.dispose();
    }
    return { loss: r.loss, grad };
  }

  /**
   * wasm+ort: a whole training step in one ONNX Runtime run (trainStepGraph: no activation leaves
   * ORT, no tfjs op runs); null on other backends or when the head's [N, V] tensors would exceed
   * FUSED_TRAIN_MAX_ELEMS (then the per-block graphs run). Tested against the per-block path and
   * float64 finite differences.
   */
  private fusedStep(tokens: TokenArray, batch: number, seqLen: number): { loss: number; grad: Float32Array<ArrayBuffer> } | null {
    const c = this.config;
    if (!ortEnabled() || !this.fusedTraining || batch * seqLen * c.vocabSize > FUSED_TRAIN_MAX_ELEMS) return null;
    if (seqLen > c.nCtx) throw new Error(`GPT-2: sequence length ${seqLen} exceeds the context size nCtx=${c.nCtx}`);
    const { inputs, targets } = GPT2.splitSequences(tokens, batch, seqLen);
    this.checkTokens(tokens, 'forwardBackward');
    const N = batch * seqLen;
    const loss = new Float32Array(N);
    const grad = new Float32Array(this.numParams);
    this.runWholeGraph(`train-step:${seqLen}`, (names, shapes) => trainStepGraph(c, seqLen, names, shapes), inputs, targets, 1 / N, [
      [loss, [N, 1]],
      [grad, [grad.length]],
    ]);
    let sum = 0;
    for (let i = 0; i < N; i++) sum += loss[i];
    return { loss: sum / N, grad };
  }

  /**
   * Run a whole-model graph (trainStepGraph, actGradGraph) cached under `key` for this model's
   * shape: inputs tokens, targets (as float32 ids), the loss weight w and every parameter, in the
   * canonical order, as views on the wasm heap; outputs into the given arrays.
   */
  private runWholeGraph(
    key: string,
    build: (names: string[], shapes: number[][]) => GraphSpec,
    inputs: Int32Array,
    targets: Int32Array,
    w: number,
    outs: Array<[Float32Array, number[]]>,
  ): void {
    const c = this.config;
    const N = inputs.length;
    const names = this.paramNames;
    const shapes = names.map((n) => this.params.get(n)!.shape);
    const graph = cachedGraph(`${key}:${c.nLayer}:${c.nHead}:${c.dModel}:${c.vocabSize}:${c.nCtx}:${c.layerNormEps}`, () => build(names, shapes));
    const ids = Float32Array.from(inputs);
    const tgt = Float32Array.from(targets);
    // views on the wasm heap: no tfjs allocation happens before the run reads them
    const views = names.map((n) => readF32(this.params.get(n)!));
    graph.run([ids, tgt, new Float32Array([w]), ...views], [[N], [N], [], ...shapes], outs.map((o) => o[0]), outs.map((o) => o[1]));
  }

  /** false: training runs the per-block graphs even on wasm+ort (the reference in tests). */
  fusedTraining = true;

  private forwardBackwardTensors(tokens: TokenArray, batch: number, seqLen: number): ForwardBackwardResult {
    const { inputs, targets } = GPT2.splitSequences(tokens, batch, seqLen);
    this.checkTokens(tokens, 'forwardBackward');
    let loss = 0;
    const grads = tf.tidy(() => {
      const fwd = this.forward(inputs, batch, seqLen, { cacheFrom: 0 });
      const w = 1 / targets.length;
      const { losses, dhF, dwteHead } = this.head(fwd.hF, targets, { w, dh: true, dwte: true });
      let s = 0;
      for (let i = 0; i < losses.length; i++) s += losses[i];
      loss = s / losses.length;
      const g = new Map<string, tf.Tensor>();
      this.backward(fwd, inputs, targets, { dhF: dhF!, dwteHead }, w, batch, seqLen, null, g);
      const ordered: Record<string, tf.Tensor> = {};
      for (const name of this.params.keys()) ordered[name] = g.get(name)!;
      return ordered;
    });
    return { loss, grads: new Map(Object.entries(grads)) };
  }
}

/** A GPT-2 with fresh GPT-2-style initial weights (deterministic in `seed`). */
export function createGPT2(config: GPT2Config, seed: number): GPT2 {
  return GPT2.fromArrays(config, initGPT2Params(config, seed));
}
