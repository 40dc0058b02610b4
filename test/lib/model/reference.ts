/**
 * A plain float64 GPT-2 forward pass (naive loops, written straight from the HF GPT2LMHeadModel
 * definition) used as an independent reference for the tfjs model: logits, losses and (by
 * central finite differences in float64) gradients. Only for tiny configs.
 */
import type { GPT2Config } from '../../../lib/model/types.ts';

export type RefParams = Map<string, Float64Array>;

export function toF64(params: Map<string, Float32Array>): RefParams {
  return new Map([...params].map(([k, v]) => [k, Float64Array.from(v)]));
}

export function geluNew(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

export function layerNormRow(x: Float64Array, g: Float64Array, b: Float64Array, eps: number): Float64Array {
  const d = x.length;
  let mu = 0;
  for (let i = 0; i < d; i++) mu += x[i];
  mu /= d;
  let v = 0;
  for (let i = 0; i < d; i++) v += (x[i] - mu) ** 2;
  v /= d;
  const out = new Float64Array(d);
  for (let i = 0; i < d; i++) out[i] = ((x[i] - mu) / Math.sqrt(v + eps)) * g[i] + b[i];
  return out;
}

/** y = x W + b for one row, W [nIn, nOut] row-major (HF Conv1D layout). */
function linearRow(x: Float64Array, W: Float64Array, b: Float64Array): Float64Array {
  const nIn = x.length;
  const nOut = b.length;
  const y = Float64Array.from(b);
  for (let i = 0; i < nIn; i++) {
    const xi = x[i];
    for (let j = 0; j < nOut; j++) y[j] += xi * W[i * nOut + j];
  }
  return y;
}

export interface RefOptions {
  /** Add `delta` [B*T*d] to the residual at this point (to differentiate w.r.t. the activation). */
  addAt?: { layer: number; site: 'resid_pre' | 'resid_mid' | 'resid_post'; delta: Float64Array };
  /** Record the residual [B*T*d] at this point (after any addAt) into `captured`. */
  captureAt?: { layer: number; site: 'resid_pre' | 'resid_mid' | 'resid_post' };
  captured?: Float64Array;
}

/** Logits [B*T, V] for inputs [B*T]. */
export function refLogits(c: GPT2Config, P: RefParams, inputs: Int32Array, B: number, T: number, opts: RefOptions = {}): Float64Array {
  const d = c.dModel;
  const H = c.nHead;
  const dh = d / H;
  const V = c.vocabSize;
  const get = (n: string) => {
    const a = P.get(n);
    if (!a) throw new Error(`ref: missing ${n}`);
    return a;
  };
  const wte = get('wte.weight');
  const wpe = get('wpe.weight');
  // residual stream per sequence: xs[b][t] = Float64Array(d)
  const xs: Float64Array[][] = [];
  for (let b = 0; b < B; b++) {
    const row: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const tok = inputs[b * T + t];
      const x = new Float64Array(d);
      for (let i = 0; i < d; i++) x[i] = wte[tok * d + i] + wpe[t * d + i];
      row.push(x);
    }
    xs.push(row);
  }
  const maybeAdd = (layer: number, site: string) => {
    const a = opts.addAt;
    if (a && a.layer === layer && a.site === site) {
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) xs[b][t][i] += a.delta[(b * T + t) * d + i];
    }
    const cp = opts.captureAt;
    if (cp && cp.layer === layer && cp.site === site) {
      const out = new Float64Array(B * T * d);
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) out.set(xs[b][t], (b * T + t) * d);
      opts.captured = out;
    }
  };
  for (let l = 0; l < c.nLayer; l++) {
    const pre = `h.${l}.`;
    maybeAdd(l, 'resid_pre');
    for (let b = 0; b < B; b++) {
      const h = xs[b].map((x) => layerNormRow(x, get(pre + 'ln_1.weight'), get(pre + 'ln_1.bias'), c.layerNormEps));
      const qkv = h.map((r) => linearRow(r, get(pre + 'attn.c_attn.weight'), get(pre + 'attn.c_attn.bias')));
      const y = Array.from({ length: T }, () => new Float64Array(d));
      for (let hd = 0; hd < H; hd++) {
        for (let t = 0; t < T; t++) {
          const scores: number[] = [];
          for (let s = 0; s <= t; s++) {
            let dot = 0;
            for (let i = 0; i < dh; i++) dot += qkv[t][hd * dh + i] * qkv[s][d + hd * dh + i];
            scores.push(dot / Math.sqrt(dh));
          }
          const m = Math.max(...scores);
          const e = scores.map((v) => Math.exp(v - m));
          const z = e.reduce((a2, b2) => a2 + b2, 0);
          for (let s = 0; s <= t; s++) {
            const p = e[s] / z;
            for (let i = 0; i < dh; i++) y[t][hd * dh + i] += p * qkv[s][2 * d + hd * dh + i];
          }
        }
      }
      for (let t = 0; t < T; t++) {
        const o = linearRow(y[t], get(pre + 'attn.c_proj.weight'), get(pre + 'attn.c_proj.bias'));
        for (let i = 0; i < d; i++) xs[b][t][i] += o[i];
      }
    }
    maybeAdd(l, 'resid_mid');
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const h = layerNormRow(xs[b][t], get(pre + 'ln_2.weight'), get(pre + 'ln_2.bias'), c.layerNormEps);
        const u = linearRow(h, get(pre + 'mlp.c_fc.weight'), get(pre + 'mlp.c_fc.bias')).map(geluNew);
        const o = linearRow(u, get(pre + 'mlp.c_proj.weight'), get(pre + 'mlp.c_proj.bias'));
        for (let i = 0; i < d; i++) xs[b][t][i] += o[i];
      }
    }
    maybeAdd(l, 'resid_post');
  }
  const logits = new Float64Array(B * T * V);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const h = layerNormRow(xs[b][t], get('ln_f.weight'), get('ln_f.bias'), c.layerNormEps);
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += h[i] * wte[v * d + i];
        logits[(b * T + t) * V + v] = s;
      }
    }
  }
  return logits;
}

/** Per-position next-token CE for sequences of T+1 tokens, and their sum. */
export function refLosses(
  c: GPT2Config,
  P: RefParams,
  tokens: Int32Array,
  B: number,
  T: number,
  opts: RefOptions = {},
): { perToken: Float64Array; sum: number } {
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = tokens[b * (T + 1) + t];
      targets[b * T + t] = tokens[b * (T + 1) + t + 1];
    }
  }
  const V = c.vocabSize;
  const logits = refLogits(c, P, inputs, B, T, opts);
  const perToken = new Float64Array(B * T);
  let sum = 0;
  for (let n = 0; n < B * T; n++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[n * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[n * V + v] - m);
    perToken[n] = m + Math.log(z) - logits[n * V + targets[n]];
    sum += perToken[n];
  }
  return { perToken, sum };
}
