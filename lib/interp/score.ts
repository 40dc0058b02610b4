/**
 * The automatic interpretability score of one SAE (lib/interp/simulate.ts): `latents` alive
 * latents sampled (seeded) among those alive at the end of training that fire on the explanation
 * tokens; explanations from the TRAIN activation shards, simulation scored on the TEST shards.
 * A g-SAE selects with the stored gradient (as in downstream); TopK ignores it.
 */
import { ShardReader } from '../activations.ts';
import { spreadWindows, type TokenStream } from '../collect.ts';
import { encodeSparse } from '../sae/infer.ts';
import type { SaeWeights } from '../sae/types.ts';
import { bootstrapMeanCI } from '../eval/stats.ts';
import { sampleLatents, scoreLatents, type LatentScore, type LookupOptions, type RowTokens } from './simulate.ts';

export interface SaeScoreOptions extends LookupOptions {
  latents: number;
  trainTokens: number;
  seed: number;
  resamples: number;
}

export interface SaeScore {
  scores: LatentScore[];
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
 * Whole windows spread evenly over a shard directory, at most `maxRows` rows (read one shard at a
 * time), with their token ids: row r of window w is token starts[w] + r of the split's stream
 * (collect's spreadWindows; shards hold whole windows).
 */
export function readRows(dir: string, stream: TokenStream, maxRows: number): { x: Float32Array; g: Float32Array | null; tokens: RowTokens } {
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
    if (chosen[c] < lastWin) {
      const sh = reader.readShard(s);
      for (; c < want && chosen[c] < lastWin; c++) {
        const off = (chosen[c] * T - first) * d;
        x.set(sh.x.subarray(off, off + T * d), c * T * d);
        if (g && sh.g) g.set(sh.g.subarray(off, off + T * d), c * T * d);
      }
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
  data: { trainDir: string; train: TokenStream; testDir: string; test: TokenStream },
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
  const scores = scoreLatents(latents, trainCode, tr.tokens, testCode, te.tokens, o);
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
