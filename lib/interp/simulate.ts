/**
 * Simulation scoring of SAE latents with a LOOKUP explainer (ours; in the spirit of Bills et al.
 * 2023, "Language models can explain neurons in language models", with a table instead of an LM):
 *
 * - Explanation: the latent's `topContexts` highest activations on TRAINING tokens (one per
 *   position, ties by position). For each, the activating token and its left contexts of 1..C
 *   tokens (within the window) are patterns; a pattern's value is the mean activation of the top
 *   contexts that contain it (activation-weighted lookup table).
 * - Simulation: on every HELD-OUT token the prediction is the value of the longest pattern that
 *   ends at that token (back-off from C left tokens to the token alone), 0 when none matches.
 * - Score: Pearson correlation between prediction and the latent's actual activation over the
 *   held-out tokens (0 when either is constant: an explanation that predicts nothing, or a latent
 *   that never fires on the held-out tokens).
 * - Single-token explanation: ≥ `singleTokenShare` (default 0.9) of the top contexts' activation
 *   mass sits on one activating token.
 */
import { mulberry32 } from '../util/random.ts';

export interface LookupOptions {
  /** Top-activating training positions the explanation is built from. */
  topContexts: number;
  /** Left context tokens C (patterns of 1..C+1 tokens). */
  contextTokens: number;
  singleTokenShare?: number;
}

/** Token ids of a split's activation rows: token(row) and the row's position in its window. */
export interface RowTokens {
  rows: number;
  token(row: number): number;
  /** Position of the row inside its window (left context never crosses a window start). */
  pos(row: number): number;
}

export interface Explanation {
  /** tables[c]: key of the pattern of c left tokens + the token → mean activation. */
  tables: Map<string, number>[];
  /** Activating tokens by share of the top contexts' activation mass, descending. */
  tokens: { token: number; share: number }[];
  singleToken: boolean;
  /** Top contexts actually used (fewer when the latent fires on fewer training positions). */
  n: number;
}

const keyAt = (t: RowTokens, row: number, c: number): string | null => {
  if (t.pos(row) < c) return null;
  let s = '';
  for (let q = row - c; q <= row; q++) s += `${t.token(q)},`;
  return s;
};

/** The lookup explanation of one latent from its (row, activation) firings on training tokens. */
export function explainLatent(firings: { rows: ArrayLike<number>; values: ArrayLike<number> }, train: RowTokens, o: LookupOptions): Explanation {
  const idx = Array.from({ length: firings.rows.length }, (_, i) => i)
    .filter((i) => firings.values[i] > 0)
    .sort((a, b) => firings.values[b] - firings.values[a] || firings.rows[a] - firings.rows[b])
    .slice(0, o.topContexts);
  const tables: Map<string, number>[] = [];
  for (let c = 0; c <= o.contextTokens; c++) {
    const sum = new Map<string, { s: number; n: number }>();
    for (const i of idx) {
      const key = keyAt(train, firings.rows[i], c);
      if (key === null) continue;
      const e = sum.get(key) ?? { s: 0, n: 0 };
      e.s += firings.values[i];
      e.n++;
      sum.set(key, e);
    }
    tables.push(new Map([...sum].map(([k, e]) => [k, e.s / e.n])));
  }
  const mass = new Map<number, number>();
  let total = 0;
  for (const i of idx) {
    const t = train.token(firings.rows[i]);
    mass.set(t, (mass.get(t) ?? 0) + firings.values[i]);
    total += firings.values[i];
  }
  const tokens = [...mass].map(([token, m]) => ({ token, share: total > 0 ? m / total : 0 })).sort((a, b) => b.share - a.share || a.token - b.token);
  return { tables, tokens, singleToken: tokens.length > 0 && tokens[0].share >= (o.singleTokenShare ?? 0.9), n: idx.length };
}

/** Predicted activation on every held-out row (longest matching pattern, else 0). */
export function simulate(e: Explanation, heldOut: RowTokens): Float64Array {
  const out = new Float64Array(heldOut.rows);
  for (let r = 0; r < heldOut.rows; r++) {
    for (let c = e.tables.length - 1; c >= 0; c--) {
      const key = keyAt(heldOut, r, c);
      const v = key === null ? undefined : e.tables[c].get(key);
      if (v !== undefined) {
        out[r] = v;
        break;
      }
    }
  }
  return out;
}

/** Pearson correlation; 0 when either side is constant. */
export function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  if (n !== b.length) throw new Error(`correlation: lengths ${n} and ${b.length} differ`);
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i] - ma;
    const y = b[i] - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/** Sparse codes of rows: per row k (index, value) pairs (lib/sae encodeSparse's SparseCode). */
export interface Code {
  n: number;
  k: number;
  indices: Int32Array;
  values: Float32Array;
}

/** Per sampled latent, the rows where it fires with their activation. */
export function firingsOf(code: Code, latents: number[]): { rows: number[]; values: number[] }[] {
  const slot = new Map(latents.map((l, i) => [l, i]));
  const out = latents.map(() => ({ rows: [] as number[], values: [] as number[] }));
  for (let r = 0; r < code.n; r++) {
    for (let j = 0; j < code.k; j++) {
      const s = slot.get(code.indices[r * code.k + j]);
      const v = code.values[r * code.k + j];
      if (s !== undefined && v > 0) {
        out[s].rows.push(r);
        out[s].values.push(v);
      }
    }
  }
  return out;
}

/** Dense activation columns of the sampled latents over all rows of a code. */
export function columnsOf(code: Code, latents: number[]): Float32Array[] {
  const slot = new Map(latents.map((l, i) => [l, i]));
  const cols = latents.map(() => new Float32Array(code.n));
  for (let r = 0; r < code.n; r++) {
    for (let j = 0; j < code.k; j++) {
      const s = slot.get(code.indices[r * code.k + j]);
      if (s !== undefined) cols[s][r] = Math.max(0, code.values[r * code.k + j]);
    }
  }
  return cols;
}

/** `n` latents drawn without replacement (seeded) among the candidates, sorted ascending. */
export function sampleLatents(candidates: number[], n: number, seed: number): number[] {
  const a = [...candidates].sort((x, y) => x - y);
  const u = mulberry32(seed);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n).sort((x, y) => x - y);
}

export interface LatentScore {
  latent: number;
  score: number;
  single_token: boolean;
  top_contexts: number;
  /** The activating token with the largest share of the explanation's mass (id) and its share. */
  top_token: number;
  top_share: number;
  test_fires: number;
}

/**
 * Scores of the sampled latents: explanations from their training firings (`trainCode` over the
 * `train` rows), simulated and correlated on the held-out rows (`testCode` over `test`).
 */
export function scoreLatents(latents: number[], trainCode: Code, train: RowTokens, testCode: Code, test: RowTokens, o: LookupOptions): LatentScore[] {
  const fir = firingsOf(trainCode, latents);
  const cols = columnsOf(testCode, latents);
  return latents.map((latent, i) => {
    const e = explainLatent(fir[i], train, o);
    const pred = simulate(e, test);
    let fires = 0;
    for (const v of cols[i]) if (v > 0) fires++;
    return {
      latent,
      score: correlation(pred, cols[i]),
      single_token: e.singleToken,
      top_contexts: e.n,
      top_token: e.tokens[0]?.token ?? -1,
      top_share: e.tokens[0]?.share ?? 0,
      test_fires: fires,
    };
  });
}
