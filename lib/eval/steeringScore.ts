/**
 * The per-position scores of steering (steering.ts), computed from logits tensors without bringing
 * them to JavaScript on the wasm+ort backend (one ONNX Runtime graph per call, over all of its
 * rows and threads), or by the plain loops of logits.ts on every other backend. Both compute the
 * same quantities; test/lib/eval/steering*.test.ts hold each to the float64 hand check.
 *
 * Logits of G groups of R rows: steered [G·R, V] (row g·R + p), clean [R, V] (row p; the clean
 * pass is shared by the groups). Per steered row (g, p), with ls = log-softmax:
 *   kl    = Σ_v p_s(v) (ls_s(v) − ls_c(v))            KL(p_steered ‖ p_clean)
 *   calS  = log Σ_{v∈C_g} p_s(v),  calC  = log Σ_{v∈C_g} p_c(v)   (C_g: the group's calibration set)
 *   lensS = log Σ_{v∈L_g} p_s(v),  lensC = log Σ_{v∈L_g} p_c(v)   (L_g: its logit-lens set)
 * Steered and clean go through the same operations, so at α = 0 every difference is exactly 0.
 *
 * Given the unembedding wte [V, d] (a model with finalHidden), the ORT scorer takes the steered
 * passes' final hidden states [G·R, d] instead of their logits and computes lS = h wteᵀ inside its
 * graph, with the same Gemm as the model's logits graph (the same bits): the [G·R, V] logits then
 * never leave ONNX Runtime (onnxruntime-node copies every graph output into a fresh buffer, ~0.2–0.3
 * ms/MB, and a steered call's logits are 64 MB at the defaults).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ortEnabled } from '../backend.ts';
import type { GraphSpec } from '../native/ort.ts';
import { ortOp } from '../native/tfort.ts';
import { rowKlFrom, rowLogSumExp, setLogProb } from './logits.ts';

export interface RowScores {
  kl: ArrayLike<number>;
  calS: ArrayLike<number>;
  calC: ArrayLike<number>;
  lensS: ArrayLike<number>;
  lensC: ArrayLike<number>;
}

export interface SteeringScorer {
  /** What `steered` is: logits [G·R, V], or the final hidden states [G·R, d] (logits = h wteᵀ). */
  readonly input: 'logits' | 'hidden';
  /**
   * Σ over the R rows of each of G groups of log p_s(v) − log p_c(v): [G·V] (steered [G·R, V], clean
   * [R, V]). Summed as differences: exactly 0 where the steered logits equal the clean ones.
   */
  riseSums(steered: tf.Tensor, clean: tf.Tensor, G: number, R: number): ArrayLike<number>;
  /** The scores above for steered logits [G·R, V] against clean logits [R, V]; row g·R + p. */
  rows(steered: tf.Tensor, clean: tf.Tensor, calSets: number[][], lensSets: number[][], G: number, R: number): RowScores;
}

/** The scorer of the active backend; with the unembedding wte [V, d] the ORT scorer takes hidden states. */
export function steeringScorer(V: number, wte?: tf.Tensor2D): SteeringScorer {
  return ortEnabled() ? new OrtScorer(V, wte) : new JsScorer(V);
}

/** The loops of logits.ts over logits read into JavaScript (float64 accumulation). */
export class JsScorer implements SteeringScorer {
  readonly input = 'logits';
  private clean: { t: tf.Tensor; l: Float32Array; lse: Float64Array } | null = null;
  constructor(private readonly V: number) {}

  riseSums(steered: tf.Tensor, clean: tf.Tensor, G: number, R: number): Float64Array {
    const V = this.V;
    const lS = steered.dataSync() as Float32Array;
    const { l: lC, lse: lseC } = this.cleanOf(clean, R);
    const acc = new Float64Array(G * V);
    for (let g = 0; g < G; g++) {
      for (let p = 0; p < R; p++) {
        const oS = (g * R + p) * V;
        const oC = p * V;
        const lse = rowLogSumExp(lS, oS, V);
        for (let v = 0; v < V; v++) acc[g * V + v] += lS[oS + v] - lse - (lC[oC + v] - lseC[p]);
      }
    }
    return acc;
  }

  /** The clean logits and their log-partitions, read once per clean tensor. */
  private cleanOf(t: tf.Tensor, R: number): { l: Float32Array; lse: Float64Array } {
    if (this.clean?.t !== t) {
      const l = t.dataSync() as Float32Array;
      const lse = new Float64Array(R);
      for (let p = 0; p < R; p++) lse[p] = rowLogSumExp(l, p * this.V, this.V);
      this.clean = { t, l, lse };
    }
    return this.clean;
  }

  rows(steered: tf.Tensor, clean: tf.Tensor, calSets: number[][], lensSets: number[][], G: number, R: number): RowScores {
    const V = this.V;
    const lS = steered.dataSync() as Float32Array;
    const { l: lC, lse: lseC } = this.cleanOf(clean, R);
    const n = G * R;
    const out = { kl: new Float64Array(n), calS: new Float64Array(n), calC: new Float64Array(n), lensS: new Float64Array(n), lensC: new Float64Array(n) };
    for (let g = 0; g < G; g++) {
      for (let p = 0; p < R; p++) {
        const i = g * R + p;
        const oS = i * V;
        const oC = p * V;
        const { lse, kl } = rowKlFrom(lS, oS, lC, oC, lseC[p], V);
        out.kl[i] = kl;
        out.calS[i] = setLogProb(lS, oS, calSets[g], lse);
        out.calC[i] = setLogProb(lC, oC, calSets[g], lseC[p]);
        out.lensS[i] = setLogProb(lS, oS, lensSets[g], lse);
        out.lensC[i] = setLogProb(lC, oC, lensSets[g], lseC[p]);
      }
    }
    return out;
  }
}

/**
 * One ORT graph per call on the tensors where they are (the wasm heap): steered logits, or (with
 * wte) steered final hidden states whose logits the graph computes.
 */
export class OrtScorer implements SteeringScorer {
  readonly input: 'logits' | 'hidden';
  constructor(
    private readonly V: number,
    private readonly wte?: tf.Tensor2D,
  ) {
    this.input = wte ? 'hidden' : 'logits';
    if (wte && wte.shape[0] !== V) throw new Error(`steering: the unembedding has ${wte.shape[0]} rows, expected V = ${V}`);
  }

  /** The steered input(s) of a graph, its key suffix and its head (or null for logits). */
  private steeredIns(steered: tf.Tensor, G: number, R: number): { ins: tf.Tensor[]; key: string; head: HiddenHead | null } {
    const V = this.V;
    if (!this.wte) return { ins: [tf.reshape(steered, [G, R, V])], key: '', head: null };
    const d = this.wte.shape[1];
    if (steered.size !== G * R * d) throw new Error(`steering: the steered hidden states hold ${steered.size} values, expected ${G}·${R}·${d}`);
    return { ins: [tf.reshape(steered, [G * R, d]), this.wte], key: `:h${d}:${R}`, head: { d, R } };
  }

  riseSums(steered: tf.Tensor, clean: tf.Tensor, G: number, R: number): Float32Array {
    const V = this.V;
    return tf.tidy(() => {
      const s = this.steeredIns(steered, G, R);
      const ins = [...s.ins, tf.reshape(clean, [R, V])];
      return ortOp('SteerRiseSums', `steer-rise-sums:${V}${s.key}`, () => riseSumsGraph(V, s.head), ins, [[G, V]])[0];
    }).dataSync() as Float32Array;
  }

  rows(steered: tf.Tensor, clean: tf.Tensor, calSets: number[][], lensSets: number[][], G: number, R: number): RowScores {
    const V = this.V;
    const K = calSets[0].length;
    if (calSets.some((s) => s.length !== K) || lensSets.some((s) => s.length !== K)) throw new Error('steering: every target set must have the same size');
    const perRow = (sets: number[][]): Float32Array => {
      const a = new Float32Array(G * R * K);
      for (let g = 0; g < G; g++) for (let p = 0; p < R; p++) a.set(sets[g], (g * R + p) * K);
      return a;
    };
    const outs = tf.tidy(() => {
      const s = this.steeredIns(steered, G, R);
      const ins = [
        ...s.ins,
        tf.reshape(clean, [R, V]),
        tf.tensor3d(perRow(calSets), [G, R, K]),
        tf.tensor2d(Float32Array.from(calSets.flat()), [G, K]),
        tf.tensor3d(perRow(lensSets), [G, R, K]),
        tf.tensor2d(Float32Array.from(lensSets.flat()), [G, K]),
      ];
      return ortOp('SteerScores', `steer-scores:${V}:${K}${s.key}`, () => rowScoresGraph(V, K, s.head), ins, [[G, R], [G, R], [G, R], [G, R], [G, R]]);
    });
    const [kl, calS, calC, lensS, lensC] = outs.map((t) => t.dataSync() as Float32Array);
    tf.dispose(outs);
    return { kl, calS, calC, lensS, lensC };
  }
}

/** The steered rows as final hidden states [G·R, d] of R rows per group (the graph computes their logits). */
export interface HiddenHead {
  d: number;
  R: number;
}

/**
 * The graph's steered input(s) and, for hidden states, the nodes that turn them into lS [G, R, V]:
 * logits = Gemm(h, wte, transB) (the model's logitsGraph node), reshaped.
 */
function steeredPart(V: number, head: HiddenHead | null): Pick<GraphSpec, 'inputs' | 'nodes'> & { initializers: NonNullable<GraphSpec['initializers']> } {
  if (!head) return { inputs: [{ name: 'lS', dims: ['G', 'R', V] }], nodes: [], initializers: [] };
  return {
    inputs: [{ name: 'hS', dims: ['GR', head.d] }, { name: 'wte', dims: [V, head.d] }],
    nodes: [
      { op: 'Gemm', inputs: ['hS', 'wte'], outputs: ['lS2'], attrs: { transA: 0, transB: 1 } },
      { op: 'Reshape', inputs: ['lS2', 'shapeGRV'], outputs: ['lS'] },
    ],
    initializers: [{ name: 'shapeGRV', dims: [3], int64: [-1, head.R, V] }],
  };
}

/** lS [G, R, V] (or hidden states, see steeredPart), lC [R, V] -> Σ_r (log-softmax(lS) − log-softmax(lC)): rise [G, V]. */
export function riseSumsGraph(V: number, head: HiddenHead | null = null): GraphSpec {
  const st = steeredPart(V, head);
  return {
    inputs: [...st.inputs, { name: 'lC', dims: ['R', V] }],
    outputs: [{ name: 'rise', dims: ['G', V] }],
    nodes: [
      ...st.nodes,
      { op: 'LogSoftmax', inputs: ['lS'], outputs: ['lsS'], attrs: { axis: -1 } },
      { op: 'LogSoftmax', inputs: ['lC'], outputs: ['lsC'], attrs: { axis: -1 } },
      { op: 'Sub', inputs: ['lsS', 'lsC'], outputs: ['dls'] },
      { op: 'ReduceSum', inputs: ['dls', 'ax1'], outputs: ['rise'], attrs: { keepdims: 0 } },
    ],
    initializers: [{ name: 'ax1', dims: [1], int64: [1] }, ...st.initializers],
  };
}

/**
 * lS [G, R, V] (or hidden states, see steeredPart), lC [R, V], calIdx / lensIdx [G, R, K] (the set
 * of group g on each of its rows) and calSet / lensSet [G, K] (token ids as floats, exact below
 * 2^24) -> kl, calS, calC, lensS, lensC [G, R].
 */
export function rowScoresGraph(V: number, K: number, head: HiddenHead | null = null): GraphSpec {
  const st = steeredPart(V, head);
  const nodes: GraphSpec['nodes'] = [
    ...st.nodes,
    { op: 'LogSoftmax', inputs: ['lS'], outputs: ['lsS'], attrs: { axis: -1 } },
    { op: 'LogSoftmax', inputs: ['lC'], outputs: ['lsC'], attrs: { axis: -1 } },
    { op: 'Exp', inputs: ['lsS'], outputs: ['pS'] },
    { op: 'Sub', inputs: ['lsS', 'lsC'], outputs: ['dls'] },
    { op: 'Mul', inputs: ['pS', 'dls'], outputs: ['w'] },
    { op: 'ReduceSum', inputs: ['w', 'axLast'], outputs: ['kl'], attrs: { keepdims: 0 } },
  ];
  for (const set of ['cal', 'lens']) {
    nodes.push(
      // steered: the set's entries of every row of group g
      { op: 'Cast', inputs: [`${set}Idx`], outputs: [`${set}IdxI`], attrs: { to: 7 } },
      { op: 'GatherElements', inputs: ['lsS', `${set}IdxI`], outputs: [`${set}GS`], attrs: { axis: 2 } },
      { op: 'ReduceLogSumExp', inputs: [`${set}GS`], outputs: [`${set}S`], attrs: { axes: [-1], keepdims: 0 } },
      // clean: the same entries of the shared clean rows, [R, G, K] -> [R, G] -> [G, R]
      { op: 'Cast', inputs: [`${set}Set`], outputs: [`${set}SetI`], attrs: { to: 7 } },
      { op: 'Gather', inputs: ['lsC', `${set}SetI`], outputs: [`${set}GC`], attrs: { axis: 1 } },
      { op: 'ReduceLogSumExp', inputs: [`${set}GC`], outputs: [`${set}CT`], attrs: { axes: [-1], keepdims: 0 } },
      { op: 'Transpose', inputs: [`${set}CT`], outputs: [`${set}C`], attrs: { perm: [1, 0] } },
    );
  }
  return {
    inputs: [
      ...st.inputs,
      { name: 'lC', dims: ['R', V] },
      { name: 'calIdx', dims: ['G', 'R', K] },
      { name: 'calSet', dims: ['G', K] },
      { name: 'lensIdx', dims: ['G', 'R', K] },
      { name: 'lensSet', dims: ['G', K] },
    ],
    outputs: ['kl', 'calS', 'calC', 'lensS', 'lensC'].map((name) => ({ name, dims: ['G', 'R'] })),
    nodes,
    initializers: [{ name: 'axLast', dims: [1], int64: [-1] }, ...st.initializers],
  };
}
