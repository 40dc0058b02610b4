/**
 * Windows of a token stream: seqLen + 1 consecutive tokens, the model's inputs being the first
 * seqLen and the next-token targets the last seqLen. Every stage and trainer cuts and splits its
 * windows here.
 */
import type { TokenArray } from './tokens.ts';

/** Windows of seqLen + 1 tokens starting at `starts`, back to back (Int32). */
export function windowsAt(tokens: TokenArray, starts: ArrayLike<number>, seqLen: number): Int32Array {
  const w = seqLen + 1;
  const out = new Int32Array(starts.length * w);
  for (let j = 0; j < starts.length; j++) {
    const s = starts[j];
    if (s < 0 || s + w > tokens.length) throw new Error(`window at ${s} runs past the stream (${tokens.length} tokens)`);
    for (let t = 0; t < w; t++) out[j * w + t] = tokens[s + t];
  }
  return out;
}

/** Windows s0 .. s0 + nb − 1 (back to back) split into model inputs (first seqLen tokens) and next-token targets (last seqLen). */
export function splitWindows(windows: TokenArray, s0: number, nb: number, seqLen: number): { inputs: Int32Array; targets: Int32Array } {
  const inputs = new Int32Array(nb * seqLen);
  const targets = new Int32Array(nb * seqLen);
  for (let b = 0; b < nb; b++) {
    const o = (s0 + b) * (seqLen + 1);
    inputs.set(windows.subarray(o, o + seqLen), b * seqLen);
    targets.set(windows.subarray(o + 1, o + seqLen + 1), b * seqLen);
  }
  return { inputs, targets };
}
