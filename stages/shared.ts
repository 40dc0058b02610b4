/** What the evaluation stages share: loading the model, tokens and one SAE with its training state. */
import fs from 'node:fs';
import path from 'node:path';

/** Training-dead latents: not fired during the last dead_tokens tokens of training (or never). */
export function trainingDead(saeDir: string): Uint8Array {
  const j = JSON.parse(fs.readFileSync(path.join(saeDir, 'firing_counts.json'), 'utf8'));
  const counts: number[] = j.counts;
  const last: number[] | null = j.last_fired;
  const seen: number = j.tokens_seen ?? 0;
  const window: number = j.dead_tokens ?? Infinity;
  return Uint8Array.from(counts, (c, i) => {
    if (c === 0) return 1;
    if (!last) return 0;
    return last[i] === 0 || seen - last[i] >= window ? 1 : 0;
  });
}

export function readJson(file: string): any {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/**
 * Start offsets of nWin windows of T+1 tokens spread evenly over the whole stream (the corpus is in
 * chronological order, so consecutive windows from the start would see only the earliest documents).
 */
export function spreadWindows(streamLength: number, T: number, nWin: number): number[] {
  const last = streamLength - (T + 1);
  if (last < 0) throw new Error(`a token stream of ${streamLength} tokens is shorter than one window of ${T + 1}`);
  const max = Math.floor(streamLength / (T + 1));
  if (nWin > max) throw new Error(`asked for ${nWin * T} tokens but the stream holds only ${max * T} in non-overlapping windows of ${T + 1}`);
  if (nWin === 1) return [0];
  return Array.from({ length: nWin }, (_, i) => Math.round((i * last) / (nWin - 1)));
}
