/**
 * SAE encoding as one ONNX Runtime graph per block of rows (backend wasm+ort): the encoder GEMM,
 * the g-SAE score and the top-k selection run in native code, and only the k selected indices and
 * values per row come back to JS. Same rule as select.ts (lib/sae/types.ts):
 *   z_pre = ReLU((x − b_dec) W_enc + b_enc);  s = z_pre, or z_pre + β z_pre ∘ |g W_decᵀ| (g-SAE);
 *   the k largest s (ONNX TopK: ties at the lower index), values z_pre.
 * The rows are then put in the canonical order of select.ts (positive values by ascending index,
 * then the zero-valued fillers, which TopK already returns by ascending index), so the results
 * equal selectTopK's except where two scores tie within float32 rounding (ORT scores in float32,
 * select.ts in float64 from the same float32 inputs).
 */
import { cachedGraph, type GraphSpec } from '../native/ort.ts';
import type { NodeSpec } from '../native/onnx.ts';
import { sortByIndex } from './select.ts';
import type { SaeWeights } from './types.ts';

/** 'plain': TopK on z_pre; 'gradient': the g-SAE score; 'both': both selections' indices. */
export type EncodeMode = 'plain' | 'gradient' | 'both';

/** Nodes: x, b_dec, W_enc, b_enc → zpre [N, m]. */
export function preActivationNodes(): NodeSpec[] {
  return [
    { op: 'Sub', inputs: ['x', 'b_dec'], outputs: ['xc'] },
    { op: 'Gemm', inputs: ['xc', 'W_enc', 'b_enc'], outputs: ['u'] },
    { op: 'Relu', inputs: ['u'], outputs: ['zpre'] },
  ];
}

/** Nodes: zpre, g, W_dec, beta → s = zpre + (zpre β) |g W_decᵀ| (the association of select.ts). */
export function gradScoreNodes(): NodeSpec[] {
  return [
    { op: 'Gemm', inputs: ['g', 'W_dec'], outputs: ['gd'], attrs: { transB: 1 } },
    { op: 'Abs', inputs: ['gd'], outputs: ['agd'] },
    { op: 'Mul', inputs: ['zpre', 'beta'], outputs: ['zb'] },
    { op: 'Mul', inputs: ['zb', 'agd'], outputs: ['zg'] },
    { op: 'Add', inputs: ['zpre', 'zg'], outputs: ['s'] },
  ];
}

/** Nodes: top k of `score` → `<tag>_idx` (float32 indices) and `<tag>_val` (z_pre there). */
export function topKNodes(score: string, tag: string): NodeSpec[] {
  return [
    { op: 'TopK', inputs: [score, 'K'], outputs: [`${tag}_tv`, `${tag}_ti`], attrs: { axis: -1, largest: 1, sorted: 1 } },
    { op: 'GatherElements', inputs: ['zpre', `${tag}_ti`], outputs: [`${tag}_val`], attrs: { axis: 1 } },
    { op: 'Cast', inputs: [`${tag}_ti`], outputs: [`${tag}_idx`], attrs: { to: 1 } },
  ];
}

function encodeGraph(d: number, m: number, k: number, mode: EncodeMode): GraphSpec {
  const withG = mode !== 'plain';
  const nodes = [...preActivationNodes(), ...(withG ? gradScoreNodes() : [])];
  const outputs: GraphSpec['outputs'] = [];
  const out = (score: string, tag: string) => {
    nodes.push(...topKNodes(score, tag));
    outputs.push({ name: `${tag}_idx`, dims: ['N', k] }, { name: `${tag}_val`, dims: ['N', k] });
  };
  if (mode !== 'gradient') out('zpre', 'p');
  if (withG) out('s', 'g');
  const inputs: GraphSpec['inputs'] = [
    { name: 'x', dims: ['N', d] },
    { name: 'b_dec', dims: [d] },
    { name: 'W_enc', dims: [d, m] },
    { name: 'b_enc', dims: [m] },
  ];
  if (withG) inputs.push({ name: 'g', dims: ['N', d] }, { name: 'W_dec', dims: [m, d] }, { name: 'beta', dims: [] });
  return { inputs, outputs, nodes, initializers: [{ name: 'K', dims: [1], int64: [k] }] };
}

/** Put one row's selection (TopK order) in the canonical order: positive values by ascending index first. */
function canonicalRow(idxF: Float32Array, valF: Float32Array, o: number, k: number, idx: Int32Array, val: Float32Array): number {
  let l0 = 0;
  while (l0 < k && valF[o + l0] > 0) l0++;
  for (let t = 0; t < k; t++) {
    idx[t] = idxF[o + t];
    val[t] = valF[o + t];
  }
  sortByIndex(val, idx, l0);
  return l0;
}

/**
 * Encode rows x [n, d] in blocks of `blockRows` on ONNX Runtime. mode 'plain' / 'gradient' calls
 * `onRow(r, idx, val, l0)` with that selection; 'both' calls `onBoth(r, idxPlain, idxGrad)`.
 * g [n, d] is required unless mode is 'plain'.
 */
export function encodeRowsOrt(
  w: SaeWeights,
  x: Float32Array,
  g: Float32Array | null,
  mode: EncodeMode,
  blockRows: number,
  onRow: (r: number, idx: Int32Array, val: Float32Array, l0: number) => void,
  onBoth?: (r: number, idxPlain: Int32Array, idxGrad: Int32Array) => void,
): void {
  const { d, m, k } = w;
  const n = x.length / d;
  const graph = cachedGraph(`sae-encode:${d}:${m}:${k}:${mode}`, () => encodeGraph(d, m, k, mode));
  const withG = mode !== 'plain';
  if (withG && (!g || g.length !== x.length)) throw new Error('sae: the gradient-aware encode needs g [n, d] aligned with x');
  const beta = new Float32Array([w.beta]);
  const B = Math.min(blockRows, n);
  const nOut = mode === 'both' ? 4 : 2;
  const outs = Array.from({ length: nOut }, () => new Float32Array(B * k));
  const idx = new Int32Array(k);
  const val = new Float32Array(k);
  const idx2 = new Int32Array(k);
  const val2 = new Float32Array(k);
  for (let b0 = 0; b0 < n; b0 += B) {
    const nb = Math.min(B, n - b0);
    const ins = [x.subarray(b0 * d, (b0 + nb) * d), w.b_dec, w.W_enc, w.b_enc];
    const shapes = [[nb, d], [d], [d, m], [m]];
    if (withG) {
      ins.push(g!.subarray(b0 * d, (b0 + nb) * d), w.W_dec, beta);
      shapes.push([nb, d], [m, d], []);
    }
    graph.run(ins, shapes, outs.map((a) => a.subarray(0, nb * k)), outs.map(() => [nb, k]));
    for (let r = 0; r < nb; r++) {
      if (mode === 'both') {
        // onRow sees the gradient selection, onBoth both
        canonicalRow(outs[0], outs[1], r * k, k, idx, val);
        const l0 = canonicalRow(outs[2], outs[3], r * k, k, idx2, val2);
        onBoth!(b0 + r, idx, idx2);
        onRow(b0 + r, idx2, val2, l0);
      } else {
        const l0 = canonicalRow(outs[0], outs[1], r * k, k, idx, val);
        onRow(b0 + r, idx, val, l0);
      }
    }
  }
}
