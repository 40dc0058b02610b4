/** What the evaluation stages share: loading the model, tokens and one SAE with its training state. */
import fs from 'node:fs';
import path from 'node:path';

export { spreadWindows } from '../lib/collect.ts';

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
