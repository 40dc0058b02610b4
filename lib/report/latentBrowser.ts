/**
 * The latent browser of the report: for the SAEs at the middle k (TopK and the g-SAE at β*), the
 * steered latents of the rule that decides claim 3, each with its top-activating held-out contexts
 * (lib/interp topContexts: one per window, 10 tokens before, 3 after) and its steering targets.
 */
import { topContexts } from '../interp/score.ts';
import { type Code, firingsOf, type RowTokens } from '../interp/simulate.ts';
import type { LatentBrowserData } from './types.ts';

/** An upstream SAE or steering instance: its matrix values and outputs folder. */
export interface SaeInstanceRef {
  instance: Record<string, string | number | boolean>;
  dir: string;
}

/** One row of the steering stage's latents.json. */
export interface SteeredLatent {
  rule?: string;
  alpha: number;
  latent: number;
  target_tokens: string[];
  effect: number;
}

/** Tokens before and after the activating one in a shown context (as on the rating page). */
const CONTEXT_LEFT = 10;
const CONTEXT_RIGHT = 3;

/** The k shown in the latent browser: the middle of the k list. */
export function browserK(ks: number[]): number {
  const sorted = [...ks].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The instance of arch at k with the lowest seed; for the g-SAE at β = `beta` when there is one. */
export function pickInstance<T extends SaeInstanceRef>(list: T[], arch: string, k: number, beta?: number): T | undefined {
  const mine = list.filter((u) => u.instance.arch === arch && Number(u.instance.k) === k);
  const atBeta = beta === undefined ? [] : mine.filter((u) => Number(u.instance.beta) === beta);
  return (atBeta.length ? atBeta : mine).sort(
    (a, b) => Number(a.instance.beta ?? 0) - Number(b.instance.beta ?? 0) || Number(a.instance.seed) - Number(b.instance.seed),
  )[0];
}

/**
 * The steered latents shown: those of the rule that decides claim 3 (logit_lens) when the steering
 * stage recorded rules, at its first α, the first `n`.
 */
export function shownLatents(all: SteeredLatent[], n: number): { rule: string | undefined; alpha: number | undefined; rows: SteeredLatent[] } {
  const rule = all.some((r) => r.rule === 'logit_lens') ? 'logit_lens' : all[0]?.rule;
  const alpha = all.find((r) => r.rule === rule)?.alpha;
  return { rule, alpha, rows: all.filter((r) => r.rule === rule && r.alpha === alpha).slice(0, n) };
}

export interface BrowserSae {
  /** The SAE's sparse code of the held-out positions (rows = window × seqLen + position). */
  code: Code;
  /** Token id and window position of each row. */
  tokens: RowTokens;
  decode(id: number): string;
  arch: string;
  k: number;
  seed: number;
  /** g-SAE: its β, and whether that is the β* the claims use at this k. */
  beta?: number;
  betaStar?: boolean;
}

/** The browser entries of one SAE: per shown latent, its top contexts, targets and a note. */
export function browserEntries(sae: BrowserSae, steered: SteeredLatent[], nLatents: number, nContexts: number): LatentBrowserData {
  const { rule, alpha, rows } = shownLatents(steered, nLatents);
  return rows.map((r) => {
    const fires = firingsOf(sae.code, [r.latent])[0].rows.length;
    const contexts = topContexts(sae.code, sae.tokens, [r.latent], nContexts, CONTEXT_LEFT, CONTEXT_RIGHT)[0].map((c) => ({
      tokens: c.tokens.map((id) => sae.decode(id)),
      acts: c.acts,
    }));
    return {
      arch: sae.arch,
      k: sae.k,
      ...(sae.beta !== undefined ? { beta: sae.beta, betaStar: sae.betaStar } : {}),
      latent: r.latent,
      seed: sae.seed,
      contexts,
      promoted: r.target_tokens,
      note: `fires on ${((100 * fires) / sae.code.n).toFixed(2)}% of held-out tokens; steering effect ${r.effect.toFixed(3)} at α = ${alpha}${rule ? ` (${rule} targets)` : ''}`,
    };
  });
}
