/** The latent browser on a hand-made sparse code: top contexts, the shown rule and α, the note. */
import { describe, expect, it } from 'vitest';
import { browserEntries, browserK, pickInstance, shownLatents, type SteeredLatent } from '../../../lib/report/latentBrowser.ts';

// 3 windows of T = 4 positions, k = 2 latents per row. Latent 7 fires at rows 1, 2, 5, 9.
const T = 4;
const n = 12;
const fire: Record<number, number> = { 1: 0.5, 2: 0.75, 5: 0.75, 9: 0.25 };
const indices = new Int32Array(n * 2);
const values = new Float32Array(n * 2);
for (let r = 0; r < n; r++) {
  indices[2 * r] = 3;
  values[2 * r] = 1;
  indices[2 * r + 1] = 7;
  values[2 * r + 1] = fire[r] ?? 0;
}
const sae = {
  code: { n, k: 2, indices, values },
  tokens: { rows: n, token: (r: number) => 100 + r, pos: (r: number) => r % T },
  decode: (id: number) => `t${id}`,
  arch: 'gsae',
  k: 8,
  seed: 0,
  beta: 3,
  betaStar: true,
};
const steered: SteeredLatent[] = [
  { rule: 'calibration', alpha: 1, latent: 3, target_tokens: ['x'], effect: 0.1 },
  { rule: 'logit_lens', alpha: 2, latent: 7, target_tokens: ['a', 'b'], effect: 0.5 },
  { rule: 'logit_lens', alpha: 4, latent: 7, target_tokens: ['c'], effect: 0.9 },
];

describe('latent browser', () => {
  it('shows the logit_lens rule at its first α', () => {
    const s = shownLatents(steered, 5);
    expect([s.rule, s.alpha, s.rows.length]).toEqual(['logit_lens', 2, 1]);
    expect(shownLatents(steered.slice(0, 1), 5).rule).toBe('calibration');
  });

  it('top contexts: highest activation first, one per window, 10 tokens before and 3 after within the window', () => {
    const [entry, ...rest] = browserEntries(sae, steered, 5, 2);
    expect(rest).toEqual([]);
    // Rows 2 and 5 tie at 0.75 (the earlier row first); row 1 shares row 2's window; row 9 is cut by n = 2.
    expect(entry.contexts).toEqual([
      { tokens: ['t100', 't101', 't102', 't103'], acts: [0, 0.5, 0.75, 0] },
      { tokens: ['t104', 't105', 't106', 't107'], acts: [0, 0.75, 0, 0] },
    ]);
    expect(entry).toMatchObject({ arch: 'gsae', k: 8, beta: 3, betaStar: true, latent: 7, seed: 0, promoted: ['a', 'b'] });
    expect(entry.note).toBe('fires on 33.33% of held-out tokens; steering effect 0.500 at α = 2 (logit_lens targets)');
    expect(browserEntries(sae, steered, 5, 5)[0].contexts.map((c) => c.tokens[0])).toEqual(['t100', 't104', 't108']);
  });

  it('TopK entries carry no β; the middle k and the lowest seed are picked', () => {
    const [entry] = browserEntries({ ...sae, arch: 'topk', beta: undefined, betaStar: undefined }, steered, 1, 1);
    expect('beta' in entry || 'betaStar' in entry).toBe(false);
    expect(browserK([64, 8, 16, 32])).toBe(16);
    const list = [
      { instance: { arch: 'gsae', k: 8, beta: 3, seed: 1 }, dir: 'a' },
      { instance: { arch: 'gsae', k: 8, beta: 0.3, seed: 0 }, dir: 'b' },
      { instance: { arch: 'gsae', k: 8, beta: 3, seed: 0 }, dir: 'c' },
    ];
    expect(pickInstance(list, 'gsae', 8, 3)?.dir).toBe('c');
    expect(pickInstance(list, 'gsae', 8)?.dir).toBe('b');
    expect(pickInstance(list, 'gsae', 8, 10)?.dir).toBe('b');
  });
});
