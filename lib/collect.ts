/**
 * Activation + gradient collection: run a hooked LM over windows of a token stream and store, for
 * every position, the activation x at the hook and g = dL/dx, where L is the per-sequence SUM of
 * next-token cross-entropies (so g does not shrink with the batch size); with `gradients: false`,
 * x alone (what TopK SAEs train on). Shards are written as
 * they go (lib/activations.ts) and an interrupted collection resumes after its last complete shard.
 */
import { windowsAt } from './windows.ts';
import fs from 'node:fs';
import type { HookedLM, HookName } from './model/types.ts';
import { ShardWriter, type ShardDtype, type ShardManifest } from './activations.ts';
import type { TokenArray } from './tokens.ts';


/**
 * Start offsets of nWin windows of T+1 tokens spread evenly over the whole stream (a corpus in
 * chronological order would otherwise give only its earliest documents). Windows never overlap.
 */
export function spreadWindows(streamLength: number, T: number, nWin: number): number[] {
  const last = streamLength - (T + 1);
  if (last < 0) throw new Error(`a token stream of ${streamLength} tokens is shorter than one window of ${T + 1}`);
  const max = Math.floor(streamLength / (T + 1));
  if (nWin > max) throw new Error(`asked for ${nWin * T} positions but the stream holds only ${max * T} in non-overlapping windows of ${T + 1}`);
  if (nWin === 1) return [0];
  return Array.from({ length: nWin }, (_, i) => Math.round((i * last) / (nWin - 1)));
}

export interface CollectOptions {
  hook: HookName;
  /** Positions to collect (rounded up to whole sequences). */
  nTokens: number;
  seqLen: number;
  /** Sequences per forward/backward pass. */
  batch: number;
  dtype?: ShardDtype;
  /** Rows per shard (rounded down to whole sequences). Default: about 65,536. */
  rowsPerShard?: number;
  /** Extra fields for the manifest. */
  extra?: Record<string, unknown>;
  /** Store g = dL/dx (default true). Without: x only, from a forward pass up to the hook. */
  gradients?: boolean;
  onProgress?: (rowsDone: number, rowsTotal: number) => void;
}

export interface CollectResult {
  manifest: ShardManifest;
  /** Rows found on disk from an earlier, interrupted call. */
  resumedRows: number;
  /** Mean next-token CE over the positions computed in this call (NaN if none). */
  meanLoss: number;
}

/** Collect into `dir` (created, or resumed when it holds an interrupted collection of the same shape). */
export async function collectActivations(model: HookedLM, tokens: TokenArray, dir: string, opts: CollectOptions): Promise<CollectResult> {
  const T = opts.seqLen;
  const nWin = Math.ceil(opts.nTokens / T);
  const starts = spreadWindows(tokens.length, T, nWin);
  const d = model.config.dModel;
  const dtype = opts.dtype ?? 'float32';
  const rowsPerShard = T * Math.max(1, Math.floor((opts.rowsPerShard ?? 65536) / T)); // whole sequences per shard
  let writer = ShardWriter.resume(dir);
  if (writer && (writer.d !== d || writer.rowsPerShard !== rowsPerShard || writer.dtype !== dtype)) {
    fs.rmSync(dir, { recursive: true, force: true });
    writer = null;
  }
  writer ??= new ShardWriter(dir, { d, rowsPerShard, dtype });
  const resumedRows = writer.rowsOnDisk;
  const total = nWin * T;
  let done = resumedRows;
  let lossSum = 0;
  let lossCount = 0;
  for (let w0 = resumedRows / T; w0 < nWin && !writer.finished; w0 += opts.batch) {
    const b = Math.min(opts.batch, nWin - w0);
    const buf = windowsAt(tokens, starts.slice(w0, w0 + b), T);
    if (opts.gradients === false) {
      writer.append(model.activations ? model.activations(buf, b, T, opts.hook) : model.activationAndGrad(buf, b, T, opts.hook).x, null);
    } else {
      const r = model.activationAndGrad(buf, b, T, opts.hook);
      writer.append(r.x, r.g);
      for (const l of r.lossPerToken) lossSum += l;
      lossCount += r.lossPerToken.length;
    }
    done += b * T;
    opts.onProgress?.(done, total);
    await new Promise((res) => setImmediate(res)); // let signals and I/O run
  }
  const manifest = writer.finish({ hook: opts.hook, seq_len: T, windows: nWin, window_starts: 'spread', ...opts.extra });
  return { manifest, resumedRows, meanLoss: lossCount > 0 ? lossSum / lossCount : NaN };
}
