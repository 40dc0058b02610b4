/**
 * The GPT-2 block's dense parts as ONNX graphs (run by ONNX Runtime on the `wasm+ort` backend,
 * see lib/native/): the attention sub-block (c_attn, causal softmax attention over all heads at
 * once, c_proj), the MLP (c_fc, gelu_new, c_proj) and the cross-entropy head (logits, softmax,
 * P·wte and Pᵀ·h), forward and hand-written backward, the same formulas as the tfjs path in
 * gpt2.ts. Shapes: N = B·T rows (symbolic), T, H and d_head fixed per graph.
 */
import type { GraphSpec } from '../native/ort.ts';
import type { NodeSpec, InitializerSpec } from '../native/onnx.ts';

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

class G {
  nodes: NodeSpec[] = [];
  inits: InitializerSpec[] = [];
  private n = 0;
  private consts = new Map<string, string>();

  op(op: string, inputs: string[], attrs?: NodeSpec['attrs'], nOut = 1): string[] {
    const outs = Array.from({ length: nOut }, () => `t${this.n++}`);
    this.nodes.push({ op, inputs, outputs: outs, attrs });
    return outs;
  }
  o(op: string, inputs: string[], attrs?: NodeSpec['attrs']): string {
    return this.op(op, inputs, attrs)[0];
  }
  /** Graph outputs: name <- value (resolved in spec()). */
  private outs: Array<[string, string]> = [];
  /** Expose value v as the graph output `name`. */
  out(name: string, v: string): void {
    this.outs.push([name, v]);
  }
  f(v: number): string {
    const key = `f${v}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `c${this.consts.size}`;
      this.inits.push({ name, dims: [], float: new Float32Array([v]) });
      this.consts.set(key, name);
    }
    return name;
  }
  ints(v: number[]): string {
    const key = `i${v.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `c${this.consts.size}`;
      this.inits.push({ name, dims: [v.length], int64: v });
      this.consts.set(key, name);
    }
    return name;
  }
  floats(name: string, dims: number[], data: Float32Array): string {
    this.inits.push({ name, dims, float: data });
    return name;
  }
  gemm(a: string, b: string, c: string | null, transA = 0, transB = 0): string {
    return this.o('Gemm', c ? [a, b, c] : [a, b], { transA, transB });
  }
  colSum(x: string): string {
    return this.o('ReduceSum', [x, this.ints([0])], { keepdims: 0 });
  }
  mul(a: string, b: string): string {
    return this.o('Mul', [a, b]);
  }
  add(a: string, b: string): string {
    return this.o('Add', [a, b]);
  }
  sub(a: string, b: string): string {
    return this.o('Sub', [a, b]);
  }
  /** [N, d] -> [B, H, T, dh] (perm [0,2,1,3]) or [B, H, dh, T] (perm [0,2,3,1]). */
  heads(x: string, T: number, H: number, dh: number, perm: number[]): string {
    return this.o('Transpose', [this.o('Reshape', [x, this.ints([-1, T, H, dh])])], { perm });
  }
  /** [B, H, T, dh] -> [N, d]. */
  merge(x: string, d: number): string {
    return this.o('Reshape', [this.o('Transpose', [x], { perm: [0, 2, 1, 3] }), this.ints([-1, d])]);
  }
  /** LayerNormalization over the last axis: [out, mean, rstd] (mean, rstd [N, 1]). */
  layerNorm(x: string, gamma: string, beta: string, eps: number): string[] {
    return this.op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: eps } }, 3);
  }
  /**
   * dx of LayerNorm from dout, with x̂ = (x − mean)·rstd recomputed: (dx̂ − mean(dx̂) − x̂ mean(dx̂ x̂))·rstd,
   * dx̂ = dout·γ (the formulas of layerNormBackward in gpt2.ts). Returns [dx, x̂].
   */
  layerNormBackward(dout: string, x: string, mean: string, rstd: string, gamma: string): string[] {
    const xhat = this.mul(this.sub(x, mean), rstd);
    const dxhat = this.mul(dout, gamma);
    const m1 = this.o('ReduceMean', [dxhat], { axes: [-1], keepdims: 1 });
    const m2 = this.o('ReduceMean', [this.mul(dxhat, xhat)], { axes: [-1], keepdims: 1 });
    return [this.mul(this.sub(this.sub(dxhat, m1), this.mul(xhat, m2)), rstd), xhat];
  }
  /** The causal mask [T, T] as an initializer (one per graph). */
  maskOnce(T: number): string {
    if (!this.consts.has('mask')) {
      this.inits.push({ name: 'mask', dims: [T, T], float: causalMask(T) });
      this.consts.set('mask', 'mask');
    }
    return 'mask';
  }
  /**
   * The graph. A graph output is the producing node's own output, renamed (so ORT writes it straight
   * into the caller's preallocated buffer); an Identity copy only where the value is a graph input,
   * an initializer or already exposed under another name. Profiled: the Identity copies were ~5%
   * of a training step.
   */
  spec(inputs: GraphSpec['inputs'], outputs: GraphSpec['outputs']): GraphSpec {
    const produced = new Set(this.nodes.flatMap((n) => n.outputs));
    const rename = new Map<string, string>();
    const copies: NodeSpec[] = [];
    for (const [name, v] of this.outs) {
      if (produced.has(v) && !rename.has(v)) rename.set(v, name);
      else copies.push({ op: 'Identity', inputs: [rename.get(v) ?? v], outputs: [name] });
    }
    const r = (x: string) => rename.get(x) ?? x;
    const nodes = this.nodes.map((n) => ({ ...n, inputs: n.inputs.map(r), outputs: n.outputs.map(r) }));
    return { inputs, outputs, nodes: [...nodes, ...copies], initializers: this.inits };
  }
}

function causalMask(T: number): Float32Array {
  const a = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) a[i * T + j] = -1e9;
  return a;
}

/** The nodes of ln_1 + attention on x with parameters [g1, b1, Wa, ba, Wp, bp] (named values). */
function attentionNodes(g: G, x: string, w: string[], T: number, H: number, d: number, eps: number) {
  const dh = d / H;
  const [h1, mean, rstd] = g.layerNorm(x, w[0], w[1], eps);
  const qkv = g.gemm(h1, w[2], w[3]);
  const [q2, k2, v2] = g.op('Split', [qkv], { axis: 1 }, 3);
  const q = g.heads(q2, T, H, dh, [0, 2, 1, 3]);
  const kT = g.heads(k2, T, H, dh, [0, 2, 3, 1]);
  const v = g.heads(v2, T, H, dh, [0, 2, 1, 3]);
  const s = g.add(g.mul(g.o('MatMul', [q, kT]), g.f(1 / Math.sqrt(dh))), g.maskOnce(T));
  const P = g.o('Softmax', [s], { axis: -1 });
  const y = g.merge(g.o('MatMul', [P, v]), d);
  const out = g.gemm(y, w[4], w[5]);
  return { h1, mean, rstd, qkv, P, y, out };
}

/** The nodes of ln_2 + MLP on x with parameters [g2, b2, Wfc, bfc, Wpr, bpr]. */
function mlpNodes(g: G, x: string, w: string[], eps: number) {
  const [h2, mean, rstd] = g.layerNorm(x, w[0], w[1], eps);
  const u = g.gemm(h2, w[2], w[3]);
  const { s } = geluSigmoid(g, u);
  const a = g.mul(u, s);
  return { h2, mean, rstd, u, s, a, out: g.gemm(a, w[4], w[5]) };
}

/**
 * ln_1 + attention: inputs x [N,d] (resid_pre), g1, b1 [d], Wa [d,3d], ba [3d], Wp [d,d], bp [d] ->
 * mean, rstd [N,1], h1 [N,d], qkv [N,3d], P [B,H,T,T], y [N,d], out [N,d] (attn_out).
 */
export function attentionForwardGraph(T: number, H: number, d: number, eps: number): GraphSpec {
  const g = new G();
  const { h1, mean, rstd, qkv, P, y, out } = attentionNodes(g, 'x', ['g1', 'b1', 'Wa', 'ba', 'Wp', 'bp'], T, H, d, eps);
  g.out('mean', mean);
  g.out('rstd', rstd);
  g.out('h1', h1);
  g.out('qkv', qkv);
  g.out('P', P);
  g.out('y', y);
  g.out('out', out);
  return g.spec(
    [
      { name: 'x', dims: ['N', d] },
      { name: 'g1', dims: [d] },
      { name: 'b1', dims: [d] },
      { name: 'Wa', dims: [d, 3 * d] },
      { name: 'ba', dims: [3 * d] },
      { name: 'Wp', dims: [d, d] },
      { name: 'bp', dims: [d] },
    ],
    [
      { name: 'mean', dims: ['N', 1] },
      { name: 'rstd', dims: ['N', 1] },
      { name: 'h1', dims: ['N', d] },
      { name: 'qkv', dims: ['N', 3 * d] },
      { name: 'P', dims: ['B', H, T, T] },
      { name: 'y', dims: ['N', d] },
      { name: 'out', dims: ['N', d] },
    ],
  );
}

/**
 * Backward of ln_1 + attention + the residual: inputs dOut [N,d] (dL/d resid_mid), Wp, qkv, P, Wa,
 * x, mean, rstd, g1 [, y, h1 when params] -> dx [N,d] (dL/d resid_pre = dOut + the block's part)
 * [, dWp, dbp, dWa, dba, dg1, db1]. dS = P ∘ (dP − rowsum(dP ∘ P)) / sqrt(dh), as in gpt2.ts.
 */
export function attentionBackwardGraph(T: number, H: number, d: number, params: boolean): GraphSpec {
  const g = new G();
  const r = attentionBackwardNodes(g, { dOut: 'dOut', Wp: 'Wp', qkv: 'qkv', P: 'P', Wa: 'Wa', x: 'x', mean: 'mean', rstd: 'rstd', g1: 'g1', y: 'y', h1: 'h1' }, T, H, d, params);
  g.out('dx', r.dx);
  const inputs: GraphSpec['inputs'] = [
    { name: 'dOut', dims: ['N', d] },
    { name: 'Wp', dims: [d, d] },
    { name: 'qkv', dims: ['N', 3 * d] },
    { name: 'P', dims: ['B', H, T, T] },
    { name: 'Wa', dims: [d, 3 * d] },
    { name: 'x', dims: ['N', d] },
    { name: 'mean', dims: ['N', 1] },
    { name: 'rstd', dims: ['N', 1] },
    { name: 'g1', dims: [d] },
  ];
  const outputs: GraphSpec['outputs'] = [{ name: 'dx', dims: ['N', d] }];
  if (params) {
    for (const [n, v] of Object.entries(r.grads!)) g.out(n, v);
    inputs.push({ name: 'y', dims: ['N', d] }, { name: 'h1', dims: ['N', d] });
    outputs.push(
      { name: 'dWp', dims: [d, d] },
      { name: 'dbp', dims: [d] },
      { name: 'dWa', dims: [d, 3 * d] },
      { name: 'dba', dims: [3 * d] },
      { name: 'dg1', dims: [d] },
      { name: 'db1', dims: [d] },
    );
  }
  return g.spec(inputs, outputs);
}

/** The values the attention backward reads (names of graph inputs or of values of a larger graph). */
interface AttnBackwardIn {
  dOut: string;
  Wp: string;
  qkv: string;
  P: string;
  Wa: string;
  x: string;
  mean: string;
  rstd: string;
  g1: string;
  y: string;
  h1: string;
}

/** The nodes of the attention backward (see attentionBackwardGraph); grads in the order dWp, dbp, dWa, dba, dg1, db1. */
function attentionBackwardNodes(g: G, v: AttnBackwardIn, T: number, H: number, d: number, params: boolean): { dx: string; grads?: Record<string, string> } {
  const dh = d / H;
  const dy = g.gemm(v.dOut, v.Wp, null, 0, 1);
  const [q2, k2, v2] = g.op('Split', [v.qkv], { axis: 1 }, 3);
  const q = g.heads(q2, T, H, dh, [0, 2, 1, 3]);
  const k = g.heads(k2, T, H, dh, [0, 2, 1, 3]);
  const vT = g.heads(v2, T, H, dh, [0, 2, 3, 1]);
  const dY = g.heads(dy, T, H, dh, [0, 2, 1, 3]);
  const dP = g.o('MatMul', [dY, vT]);
  const r = g.o('ReduceSum', [g.mul(dP, v.P), g.ints([-1])], { keepdims: 1 });
  const dS = g.mul(g.mul(v.P, g.sub(dP, r)), g.f(1 / Math.sqrt(dh)));
  const dq = g.o('MatMul', [dS, k]);
  const dk = g.o('MatMul', [g.o('Transpose', [dS], { perm: [0, 1, 3, 2] }), q]);
  const dv = g.o('MatMul', [g.o('Transpose', [v.P], { perm: [0, 1, 3, 2] }), dY]);
  const dqkv = g.o('Concat', [g.merge(dq, d), g.merge(dk, d), g.merge(dv, d)], { axis: 1 });
  const dh1 = g.gemm(dqkv, v.Wa, null, 0, 1);
  const [dxl, xhat] = g.layerNormBackward(dh1, v.x, v.mean, v.rstd, v.g1);
  const dx = g.add(v.dOut, dxl);
  if (!params) return { dx };
  return {
    dx,
    grads: {
      dWp: g.gemm(v.y, v.dOut, null, 1, 0),
      dbp: g.colSum(v.dOut),
      dWa: g.gemm(v.h1, dqkv, null, 1, 0),
      dba: g.colSum(dqkv),
      dg1: g.colSum(g.mul(dh1, xhat)),
      db1: g.colSum(dh1),
    },
  };
}

/** sigmoid(2c(u + a u³)) as in geluNewParts: ((u · (u² · a + 1)) · 2c). */
function geluSigmoid(g: G, u: string): { s: string } {
  const u2 = g.mul(u, u);
  return { s: g.o('Sigmoid', [g.mul(g.mul(u, g.add(g.mul(u2, g.f(GELU_A)), g.f(1))), g.f(2 * GELU_C))]) };
}

/**
 * ln_2 + MLP: inputs x [N,d] (resid_mid), g2, b2 [d], Wfc [d,4d], bfc [4d], Wpr [4d,d], bpr [d] ->
 * mean, rstd [N,1], h2 [N,d], u [N,4d], s [N,4d] (gelu_new's sigmoid, kept for the backward), a [N,4d],
 * out [N,d] (mlp_out).
 */
export function mlpForwardGraph(d: number, eps: number): GraphSpec {
  const g = new G();
  const { h2, mean, rstd, u, s, a, out } = mlpNodes(g, 'x', ['g2', 'b2', 'Wfc', 'bfc', 'Wpr', 'bpr'], eps);
  g.out('mean', mean);
  g.out('rstd', rstd);
  g.out('h2', h2);
  g.out('u', u);
  g.out('s', s);
  g.out('a', a);
  g.out('out', out);
  return g.spec(
    [
      { name: 'x', dims: ['N', d] },
      { name: 'g2', dims: [d] },
      { name: 'b2', dims: [d] },
      { name: 'Wfc', dims: [d, 4 * d] },
      { name: 'bfc', dims: [4 * d] },
      { name: 'Wpr', dims: [4 * d, d] },
      { name: 'bpr', dims: [d] },
    ],
    [
      { name: 'mean', dims: ['N', 1] },
      { name: 'rstd', dims: ['N', 1] },
      { name: 'h2', dims: ['N', d] },
      { name: 'u', dims: ['N', 4 * d] },
      { name: 's', dims: ['N', 4 * d] },
      { name: 'a', dims: ['N', 4 * d] },
      { name: 'out', dims: ['N', d] },
    ],
  );
}

/**
 * One whole block for inference (no activations kept for a backward pass): x [N,d] (resid_pre) ->
 * resid_post = resid_mid + mlp(ln_2(resid_mid)), resid_mid = x + attn(ln_1(x)). The same nodes as
 * the two forward graphs above, and the same float32 adds as the tfjs code between them.
 * Parameters in order: g1, b1, Wa, ba, Wp, bp, g2, b2, Wfc, bfc, Wpr, bpr.
 */
export function blockInferenceGraph(T: number, H: number, d: number, eps: number): GraphSpec {
  const g = new G();
  const mid = g.add('x', attentionNodes(g, 'x', ['g1', 'b1', 'Wa', 'ba', 'Wp', 'bp'], T, H, d, eps).out);
  g.out('resid_post', g.add(mid, mlpNodes(g, mid, ['g2', 'b2', 'Wfc', 'bfc', 'Wpr', 'bpr'], eps).out));
  const names: Array<[string, number[]]> = [
    ['g1', [d]], ['b1', [d]], ['Wa', [d, 3 * d]], ['ba', [3 * d]], ['Wp', [d, d]], ['bp', [d]],
    ['g2', [d]], ['b2', [d]], ['Wfc', [d, 4 * d]], ['bfc', [4 * d]], ['Wpr', [4 * d, d]], ['bpr', [d]],
  ];
  return g.spec([{ name: 'x', dims: ['N', d] }, ...names.map(([name, dims]) => ({ name, dims }))], [{ name: 'resid_post', dims: ['N', d] }]);
}

/**
 * Backward of ln_2 + MLP + the residual: inputs dOut [N,d] (dL/d resid_post), Wpr, u, s (the
 * forward's gelu sigmoid, bit for bit what recomputing it would give), Wfc, x, mean, rstd, g2
 * [, a, h2 when params] -> dx [N,d] (dL/d resid_mid) [, dWpr, dbpr, dWfc, dbfc, dg2, db2].
 */
export function mlpBackwardGraph(d: number, params: boolean): GraphSpec {
  const g = new G();
  const r = mlpBackwardNodes(g, { dOut: 'dOut', Wpr: 'Wpr', u: 'u', s: 's', Wfc: 'Wfc', x: 'x', mean: 'mean', rstd: 'rstd', g2: 'g2', a: 'a', h2: 'h2' }, params);
  g.out('dx', r.dx);
  const inputs: GraphSpec['inputs'] = [
    { name: 'dOut', dims: ['N', d] },
    { name: 'Wpr', dims: [4 * d, d] },
    { name: 'u', dims: ['N', 4 * d] },
    { name: 's', dims: ['N', 4 * d] },
    { name: 'Wfc', dims: [d, 4 * d] },
    { name: 'x', dims: ['N', d] },
    { name: 'mean', dims: ['N', 1] },
    { name: 'rstd', dims: ['N', 1] },
    { name: 'g2', dims: [d] },
  ];
  const outputs: GraphSpec['outputs'] = [{ name: 'dx', dims: ['N', d] }];
  if (params) {
    for (const [n, v] of Object.entries(r.grads!)) g.out(n, v);
    inputs.push({ name: 'a', dims: ['N', 4 * d] }, { name: 'h2', dims: ['N', d] });
    outputs.push(
      { name: 'dWpr', dims: [4 * d, d] },
      { name: 'dbpr', dims: [d] },
      { name: 'dWfc', dims: [d, 4 * d] },
      { name: 'dbfc', dims: [4 * d] },
      { name: 'dg2', dims: [d] },
      { name: 'db2', dims: [d] },
    );
  }
  return g.spec(inputs, outputs);
}

/** The values the MLP backward reads. */
interface MlpBackwardIn {
  dOut: string;
  Wpr: string;
  u: string;
  s: string;
  Wfc: string;
  x: string;
  mean: string;
  rstd: string;
  g2: string;
  a: string;
  h2: string;
}

/** The nodes of the MLP backward (see mlpBackwardGraph); grads in the order dWpr, dbpr, dWfc, dbfc, dg2, db2. */
function mlpBackwardNodes(g: G, v: MlpBackwardIn, params: boolean): { dx: string; grads?: Record<string, string> } {
  const da = g.gemm(v.dOut, v.Wpr, null, 0, 1);
  const s = v.s;
  const u2 = g.mul(v.u, v.u);
  const dz = g.mul(g.add(g.mul(u2, g.f(3 * GELU_A)), g.f(1)), g.f(2 * GELU_C));
  const sp = g.mul(s, g.sub(g.f(1), s));
  const du = g.mul(da, g.add(s, g.mul(g.mul(v.u, sp), dz)));
  const dh2 = g.gemm(du, v.Wfc, null, 0, 1);
  const [dxl, xhat] = g.layerNormBackward(dh2, v.x, v.mean, v.rstd, v.g2);
  const dx = g.add(v.dOut, dxl);
  if (!params) return { dx };
  return {
    dx,
    grads: {
      dWpr: g.gemm(v.a, v.dOut, null, 1, 0),
      dbpr: g.colSum(v.dOut),
      dWfc: g.gemm(v.h2, du, null, 1, 0),
      dbfc: g.colSum(du),
      dg2: g.colSum(g.mul(dh2, xhat)),
      db2: g.colSum(dh2),
    },
  };
}

/** inputs h [n,d], wte [V,d] -> logits = h wteᵀ [n,V]. */
export function logitsGraph(d: number, V: number): GraphSpec {
  const g = new G();
  g.out('logits', g.gemm('h', 'wte', null, 0, 1));
  return g.spec(
    [
      { name: 'h', dims: ['n', d] },
      { name: 'wte', dims: [V, d] },
    ],
    [{ name: 'logits', dims: ['n', V] }],
  );
}

/**
 * Evaluation head: inputs h [n,d], wte [V,d], targets [n,1] (token ids as float32, exact below
 * 2^24) -> loss [n,1] = −log_softmax(h wteᵀ)[target] (a log-softmax: exact, no underflow).
 */
export function headLossGraph(d: number, V: number): GraphSpec {
  const g = new G();
  const lsm = g.o('LogSoftmax', [g.gemm('h', 'wte', null, 0, 1)], { axis: -1 });
  const idx = g.o('Cast', ['targets'], { to: 7 });
  g.out('loss', g.o('Neg', [g.o('GatherElements', [lsm, idx], { axis: 1 })]));
  return g.spec(
    [
      { name: 'h', dims: ['n', d] },
      { name: 'wte', dims: [V, d] },
      { name: 'targets', dims: ['n', 1] },
    ],
    [{ name: 'loss', dims: ['n', 1] }],
  );
}

/**
 * CE and KL head: inputs h [n,d], wte [V,d], targets [n,1] (float32 ids) [, wbar [n,d], a [n,1]: the
 * reference kept by an earlier pass] -> ce [n,1] = −log_softmax(h wteᵀ)[target] [, kl [n,1]]
 * [, wbar [n,d], a [n,1]: this pass kept as a reference].
 *
 * The KL against a reference pass r (the clean one) never needs r's [n, V] distribution: with
 * ls = log-softmax and lse the log-partition, Σ_v p_r(v) ls(v) = h·w̄ − lse where w̄ = p_rᵀ wte
 * (Σ_v p_r = 1), so KL(p_r ‖ p) = a_r − (h·w̄ − lse) with a_r = h_r·w̄ − lse_r (= −H(p_r)). A
 * reference pass keeps w̄ and a_r ([n, d+1] instead of [n, V]); a later pass needs only its
 * logits GEMM and log-softmax. lse is read at the target: logits[t] − ls[t]. The same operations
 * give a_r and a, so a pass identical to the reference has KL exactly 0.
 */
export function ceKlGraph(d: number, V: number, withRef: boolean, keepRef = false): GraphSpec {
  const g = new G();
  const logits = g.gemm('h', 'wte', null, 0, 1);
  const ls = g.o('LogSoftmax', [logits], { axis: -1 });
  const idx = g.o('Cast', ['targets'], { to: 7 });
  const lsT = g.o('GatherElements', [ls, idx], { axis: 1 });
  g.out('ce', g.o('Neg', [lsT]));
  const inputs: GraphSpec['inputs'] = [
    { name: 'h', dims: ['n', d] },
    { name: 'wte', dims: [V, d] },
    { name: 'targets', dims: ['n', 1] },
  ];
  const outputs: GraphSpec['outputs'] = [{ name: 'ce', dims: ['n', 1] }];
  const lse = withRef || keepRef ? g.sub(g.o('GatherElements', [logits, idx], { axis: 1 }), lsT) : null;
  // h·w̄ − lse, the same nodes for the reference and for a later pass
  const negEntropyTerm = (wbar: string) => g.sub(g.o('ReduceSum', [g.mul('h', wbar), g.ints([-1])], { keepdims: 1 }), lse!);
  if (withRef) {
    g.out('kl', g.sub('a', negEntropyTerm('wbar')));
    inputs.push({ name: 'wbar', dims: ['n', d] }, { name: 'a', dims: ['n', 1] });
    outputs.push({ name: 'kl', dims: ['n', 1] });
  }
  if (keepRef) {
    const wbar = g.o('MatMul', [g.o('Exp', [ls]), 'wte']);
    g.out('wbar_out', wbar);
    g.out('a_out', negEntropyTerm(wbar));
    outputs.push({ name: 'wbar_out', dims: ['n', d] }, { name: 'a_out', dims: ['n', 1] });
  }
  return g.spec(inputs, outputs);
}

/**
 * Training head for L = Σ w·CE: inputs h [n,d], wte [V,d], targets [n,1] (float32 ids), w [] ->
 * loss [n,1] (CE from a log-softmax), dh [n,d] = w (P wte − wte[target]) [, PTh [V,d] =
 * w Pᵀ h, the softmax part of dL/dwte]. P = exp(log-softmax) never leaves the graph.
 */
export function headTrainGraph(d: number, V: number, dwte: boolean): GraphSpec {
  const g = new G();
  const ls = g.o('LogSoftmax', [g.gemm('h', 'wte', null, 0, 1)], { axis: -1 });
  const idx = g.o('Cast', ['targets'], { to: 7 });
  g.out('loss', g.o('Neg', [g.o('GatherElements', [ls, idx], { axis: 1 })]));
  const P = g.o('Exp', [ls]);
  const wrow = g.o('Gather', ['wte', g.o('Reshape', [idx, g.ints([-1])])], { axis: 0 });
  g.out('dh', g.mul(g.sub(g.o('MatMul', [P, 'wte']), wrow), 'w'));
  const inputs: GraphSpec['inputs'] = [
    { name: 'h', dims: ['n', d] },
    { name: 'wte', dims: [V, d] },
    { name: 'targets', dims: ['n', 1] },
    { name: 'w', dims: [] },
  ];
  const outputs: GraphSpec['outputs'] = [
    { name: 'loss', dims: ['n', 1] },
    { name: 'dh', dims: ['n', d] },
  ];
  if (dwte) {
    g.out('PTh', g.mul(g.gemm(P, 'h', null, 1, 0), 'w'));
    outputs.push({ name: 'PTh', dims: [V, d] });
  }
  return g.spec(inputs, outputs);
}

/** The shape facts of the LM a whole-step graph is built for. */
export interface StepGraphConfig {
  vocabSize: number;
  nCtx: number;
  dModel: number;
  nLayer: number;
  nHead: number;
  layerNormEps: number;
}

/**
 * One whole training step of the LM in one graph: embeddings, every block, ln_f, the
 * cross-entropy head, and the backward of all of it (the same nodes as the per-block graphs
 * above and the same formulas as gpt2.ts), so no activation ever leaves ONNX Runtime (each graph
 * output costs a copy in the Node binding). Inputs: tokens [N], targets [N] (ids as float32, exact
 * below 2^24), w [] (the loss weight, 1/N for the mean), then the parameters `names` (shapes
 * `shapes`, the model's canonical order). Outputs: loss [N,1] (per-token CE, nats) and grad [total],
 * the gradient of L = Σ w·CE for every parameter, flattened and concatenated in that order.
 * The embedding gradient (rows of wte at the inputs, and −w·h at the targets for the tied
 * unembedding) is one ScatterND with reduction 'add' over the updates in order.
 */
export function trainStepGraph(c: StepGraphConfig, T: number, names: string[], shapes: number[][]): GraphSpec {
  return lmStepGraph(c, T, names, shapes, null);
}

/** A residual point of the LM: resid_pre | resid_mid | resid_post of a layer. */
export interface ResidPoint {
  layer: number;
  site: 'resid_pre' | 'resid_mid' | 'resid_post';
}

/**
 * activationAndGrad in one graph: inputs as trainStepGraph's (w = 1: L = the SUM of CE per
 * sequence) -> loss [N,1], x [N,d] (the residual at `at`) and g [N,d] = dL/dx there. The backward
 * stops at `at` and computes no parameter gradient.
 */
export function actGradGraph(c: StepGraphConfig, T: number, names: string[], shapes: number[][], at: ResidPoint): GraphSpec {
  if (!(at.layer >= 0 && at.layer < c.nLayer)) throw new Error(`actGradGraph: layer ${at.layer} outside 0..${c.nLayer - 1}`);
  return lmStepGraph(c, T, names, shapes, at);
}

function lmStepGraph(c: StepGraphConfig, T: number, names: string[], shapes: number[][], stop: ResidPoint | null): GraphSpec {
  const { vocabSize: V, nCtx, dModel: d, nLayer, nHead: H, layerNormEps: eps } = c;
  const g = new G();
  const p = (n: string) => {
    if (!names.includes(n)) throw new Error(`trainStepGraph: no parameter ${n}`);
    return n;
  };
  // embeddings: x0 = wte[tokens] + wpe[:T]
  const tok = g.o('Cast', ['tokens'], { to: 7 });
  const pos = T === nCtx ? p('wpe.weight') : g.o('Slice', [p('wpe.weight'), g.ints([0]), g.ints([T]), g.ints([0])]);
  let x = g.o('Reshape', [g.add(g.o('Reshape', [g.o('Gather', [p('wte.weight'), tok], { axis: 0 }), g.ints([-1, T, d])]), pos), g.ints([-1, d])]);
  const fwd: Array<{ x: string; attn: ReturnType<typeof attentionNodes>; mid: string; mlp: ReturnType<typeof mlpNodes> }> = [];
  for (let l = 0; l < nLayer; l++) {
    const pre = `h.${l}.`;
    const attn = attentionNodes(g, x, ['ln_1.weight', 'ln_1.bias', 'attn.c_attn.weight', 'attn.c_attn.bias', 'attn.c_proj.weight', 'attn.c_proj.bias'].map((n) => p(pre + n)), T, H, d, eps);
    const mid = g.add(x, attn.out);
    const mlp = mlpNodes(g, mid, ['ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight', 'mlp.c_proj.bias'].map((n) => p(pre + n)), eps);
    fwd.push({ x, attn, mid, mlp });
    x = g.add(mid, mlp.out);
  }
  const [hF, meanF, rstdF] = g.layerNorm(x, p('ln_f.weight'), p('ln_f.bias'), eps);
  // head (as headTrainGraph, all rows at once)
  const wte = p('wte.weight');
  const ls = g.o('LogSoftmax', [g.gemm(hF, wte, null, 0, 1)], { axis: -1 });
  const idx = g.o('Reshape', [g.o('Cast', ['targets'], { to: 7 }), g.ints([-1, 1])]);
  g.out('loss', g.o('Neg', [g.o('GatherElements', [ls, idx], { axis: 1 })]));
  const P = g.o('Exp', [ls]);
  const dhF = g.mul(g.sub(g.o('MatMul', [P, wte]), g.o('Gather', [wte, g.o('Reshape', [idx, g.ints([-1])])], { axis: 0 })), 'w');
  // backward
  const grads = new Map<string, string>();
  const [dxF, xhatF] = g.layerNormBackward(dhF, x, meanF, rstdF, p('ln_f.weight'));
  const train = stop === null;
  if (train) {
    grads.set('ln_f.weight', g.colSum(g.mul(dhF, xhatF)));
    grads.set('ln_f.bias', g.colSum(dhF));
  }
  let dx = dxF;
  // activationAndGrad: the residual at the stop point and dL/d(it)
  const finish = (xv: string, gv: string): GraphSpec => {
    g.out('x', xv);
    g.out('g', gv);
    return g.spec(
      [{ name: 'tokens', dims: ['N'] }, { name: 'targets', dims: ['N'] }, { name: 'w', dims: [] }, ...names.map((name, i) => ({ name, dims: shapes[i] }))],
      [{ name: 'loss', dims: ['N', 1] }, { name: 'x', dims: ['N', d] }, { name: 'g', dims: ['N', d] }],
    );
  };
  for (let l = nLayer - 1; l >= 0; l--) {
    const pre = `h.${l}.`;
    const f = fwd[l];
    if (stop && stop.layer === l && stop.site === 'resid_post') return finish(l + 1 < nLayer ? fwd[l + 1].x : x, dx);
    const m = mlpBackwardNodes(
      g,
      { dOut: dx, Wpr: p(pre + 'mlp.c_proj.weight'), u: f.mlp.u, s: f.mlp.s, Wfc: p(pre + 'mlp.c_fc.weight'), x: f.mid, mean: f.mlp.mean, rstd: f.mlp.rstd, g2: p(pre + 'ln_2.weight'), a: f.mlp.a, h2: f.mlp.h2 },
      train,
    );
    if (stop && stop.layer === l && stop.site === 'resid_mid') return finish(f.mid, m.dx);
    const a = attentionBackwardNodes(
      g,
      { dOut: m.dx, Wp: p(pre + 'attn.c_proj.weight'), qkv: f.attn.qkv, P: f.attn.P, Wa: p(pre + 'attn.c_attn.weight'), x: f.x, mean: f.attn.mean, rstd: f.attn.rstd, g1: p(pre + 'ln_1.weight'), y: f.attn.y, h1: f.attn.h1 },
      T,
      H,
      d,
      train,
    );
    if (stop && stop.layer === l && stop.site === 'resid_pre') return finish(f.x, a.dx);
    dx = a.dx;
    if (!train) continue;
    const mg = m.grads!;
    grads.set(pre + 'mlp.c_proj.weight', mg.dWpr).set(pre + 'mlp.c_proj.bias', mg.dbpr).set(pre + 'mlp.c_fc.weight', mg.dWfc);
    grads.set(pre + 'mlp.c_fc.bias', mg.dbfc).set(pre + 'ln_2.weight', mg.dg2).set(pre + 'ln_2.bias', mg.db2);
    const ag = a.grads!;
    grads.set(pre + 'attn.c_proj.weight', ag.dWp).set(pre + 'attn.c_proj.bias', ag.dbp).set(pre + 'attn.c_attn.weight', ag.dWa);
    grads.set(pre + 'attn.c_attn.bias', ag.dba).set(pre + 'ln_1.weight', ag.dg1).set(pre + 'ln_1.bias', ag.db1);
  }
  if (!train) throw new Error(`lmStepGraph: stop point ${JSON.stringify(stop)} not reached`);
  const PTh = g.mul(g.gemm(P, hF, null, 1, 0), 'w');
  // embeddings: dwpe = Σ over the batch; dwte = w Pᵀh + scatter-add of (−w·h at targets, dx at inputs)
  let dwpe = g.o('ReduceSum', [g.o('Reshape', [dx, g.ints([-1, T, d])]), g.ints([0])], { keepdims: 0 });
  if (T < nCtx) dwpe = g.o('Pad', [dwpe, g.ints([0, 0, nCtx - T, 0])]);
  grads.set('wpe.weight', dwpe);
  const scatterIdx = g.o('Concat', [idx, g.o('Reshape', [tok, g.ints([-1, 1])])], { axis: 0 });
  const updates = g.o('Concat', [g.o('Neg', [g.mul(hF, 'w')]), dx], { axis: 0 });
  const zeros = g.o('ConstantOfShape', [g.ints([V, d])]); // float32 zeros (the default value)
  grads.set('wte.weight', g.add(PTh, g.o('ScatterND', [zeros, scatterIdx, updates], { reduction: 'add' })));
  g.out('grad', g.o('Concat', names.map((n) => {
    const v = grads.get(n);
    if (!v) throw new Error(`trainStepGraph: no gradient for ${n}`);
    return g.o('Reshape', [v, g.ints([-1])]);
  }), { axis: 0 }));
  const total = shapes.reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
  return g.spec(
    [
      { name: 'tokens', dims: ['N'] },
      { name: 'targets', dims: ['N'] },
      { name: 'w', dims: [] },
      ...names.map((name, i) => ({ name, dims: shapes[i] })),
    ],
    [
      { name: 'loss', dims: ['N', 1] },
      { name: 'grad', dims: [total] },
    ],
  );
}
