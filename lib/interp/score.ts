/**
 * The automatic interpretability score of one SAE (lib/interp/simulate.ts): `latents` alive
 * latents sampled (seeded) among those alive at the end of training that fire on the explanation
 * tokens; explanations from the TRAIN activation shards, simulation scored on the TEST shards.
 * A g-SAE selects with the stored gradient (as in downstream); TopK ignores it.
 */
import { ShardReader } from '../activations.ts';
import { spreadWindows } from '../collect.ts';
import type { TokenArray } from '../tokens.ts';
import { encodeSparse } from '../sae/infer.ts';
import type { SaeWeights } from '../sae/types.ts';
import { bootstrapMeanCI } from '../eval/stats.ts';
import { firingsOf, sampleLatents, scoreLatents, type Code, type LatentScore, type LookupOptions, type RowTokens } from './simulate.ts';

export interface SaeScoreOptions extends LookupOptions {
  latents: number;
  trainTokens: number;
  seed: number;
  resamples: number;
  /** Top-activating training contexts kept per latent for the rating page (default 5). */
  shownContexts?: number;
}

/** Per latent, its n top-activating training contexts (one per window): `left` tokens before, `right` after. */
export function topContexts(code: Code, tokens: RowTokens, latents: number[], n: number, left: number, right: number): TopContext[][] {
  const T = (r: number) => tokens.pos(r);
  return firingsOf(code, latents).map((f) => {
    const order = f.rows.map((_, i) => i).sort((a, b) => f.values[b] - f.values[a] || f.rows[a] - f.rows[b]);
    const acts = new Map(f.rows.map((r, i) => [r, f.values[i]]));
    const used = new Set<number>();
    const out: TopContext[] = [];
    for (const i of order) {
      const row = f.rows[i];
      const start = row - T(row);
      if (used.has(start)) continue;
      used.add(start);
      const lo = Math.max(start, row - left);
      let hi = row;
      while (hi < row + right && hi + 1 < tokens.rows && T(hi + 1) === T(hi) + 1) hi++;
      const ids: number[] = [];
      const a: number[] = [];
      for (let q = lo; q <= hi; q++) {
        ids.push(tokens.token(q));
        a.push(acts.get(q) ?? 0);
      }
      out.push({ tokens: ids, acts: a, at: row - lo });
      if (out.length >= n) break;
    }
    return out;
  });
}

/** A top-activating context of a latent for people: token ids around the activating one. */
export interface TopContext {
  tokens: number[];
  acts: number[];
  /** Index of the activating token in `tokens`. */
  at: number;
}

export interface SaeScore {
  scores: (LatentScore & { contexts: TopContext[] })[];
  mean: number;
  lo: number;
  hi: number;
  single_token_frac: number;
  /** Alive latents eligible for the sample (alive and firing on the explanation tokens). */
  eligible: number;
  train_rows: number;
  test_rows: number;
}

/**
 * Whole windows spread evenly over a shard directory, at most `maxRows` rows (only those windows'
 * bytes are read: ShardReader.readShardRows), with their token ids: row r of window w is token starts[w] + r of the split's stream
 * (collect's spreadWindows; shards hold whole windows).
 */
export function readRows(dir: string, stream: TokenArray, maxRows: number): { x: Float32Array; g: Float32Array | null; tokens: RowTokens } {
  const reader = new ShardReader(dir);
  const man = reader.manifest as unknown as { seq_len: number; windows: number };
  const T = Number(man.seq_len);
  const nWin = Number(man.windows);
  const starts = spreadWindows(stream.length, T, nWin);
  const want = Math.max(1, Math.min(nWin, Math.floor(maxRows / T)));
  const chosen = Array.from({ length: want }, (_, i) => Math.floor((i * nWin) / want));
  const d = reader.d;
  const x = new Float32Array(want * T * d);
  const g = reader.hasGrad ? new Float32Array(want * T * d) : null;
  let first = 0; // first global row of the shard
  let c = 0; // next chosen window to copy
  for (let s = 0; s < reader.numShards && c < want; s++) {
    const rows = reader.manifest.shards[s].rows;
    if (rows % T !== 0) throw new Error(`${dir}: shard ${s} holds ${rows} rows, not whole windows of ${T}`);
    const lastWin = (first + rows) / T;
    // only the chosen windows' bytes are read
    for (; c < want && chosen[c] < lastWin; c++) {
      const part = reader.readShardRows(s, chosen[c] * T - first, T);
      x.set(part.x, c * T * d);
      if (g && part.g) g.set(part.g, c * T * d);
    }
    first += rows;
  }
  if (c !== want) throw new Error(`${dir}: the shards hold fewer than ${nWin} windows`);
  const tokens: RowTokens = { rows: want * T, token: (i) => stream[starts[chosen[Math.floor(i / T)]] + (i % T)], pos: (i) => i % T };
  return { x, g, tokens };
}

export function scoreSae(
  w: SaeWeights,
  useGradient: boolean,
  alive: ArrayLike<number>,
  data: { trainDir: string; train: TokenArray; testDir: string; test: TokenArray },
  o: SaeScoreOptions,
): SaeScore {
  const tr = readRows(data.trainDir, data.train, o.trainTokens);
  const te = readRows(data.testDir, data.test, Infinity);
  const trainCode = encodeSparse(w, tr.x, useGradient ? tr.g : null);
  const testCode = encodeSparse(w, te.x, useGradient ? te.g : null);
  const fires = new Uint8Array(w.m);
  for (let i = 0; i < trainCode.indices.length; i++) if (trainCode.values[i] > 0) fires[trainCode.indices[i]] = 1;
  const eligible = Array.from({ length: w.m }, (_, i) => i).filter((i) => alive[i] && fires[i]);
  const latents = sampleLatents(eligible, o.latents, o.seed);
  const scored = scoreLatents(latents, trainCode, tr.tokens, testCode, te.tokens, o);
  const ctxs = topContexts(trainCode, tr.tokens, latents, o.shownContexts ?? 5, 10, 3);
  const scores = scored.map((s, i) => ({ ...s, contexts: ctxs[i] }));
  const ci = bootstrapMeanCI(scores.map((s) => s.score), { resamples: o.resamples, seed: o.seed });
  return {
    scores,
    mean: ci.mean,
    lo: ci.lo,
    hi: ci.hi,
    single_token_frac: scores.length ? scores.filter((s) => s.single_token).length / scores.length : NaN,
    eligible: eligible.length,
    train_rows: tr.tokens.rows,
    test_rows: te.tokens.rows,
  };
}
