/**
 * Texts the page shows in more than one place (claims section, chart captions, methods): one
 * source each, plain Unicode (escaped when rendered).
 */

export const CLAIM_TEXT: Record<1 | 2 | 3 | 4, string> = {
  1: 'Downstream faithfulness: spliced-in reconstructions give lower downstream loss at equal k',
  2: 'Fewer dead latents at equal k',
  3: 'Latents are on average more effective at steering the model in arbitrary contexts',
  4: 'Interpretability comparable to TopK SAEs',
};

export const STATS_TEXT = {
  paired:
    'Every comparison is paired: g-SAE minus TopK at the same k, both evaluated on the same held-out data (and, with several seeds, seed s against seed s).',
  downstream:
    'ΔCE, KL and loss recovered: a paired bootstrap over held-out sequences (the two SAEs are scored on the same sequences, resampled together, so the noise the two arms share cancels).',
  seeds:
    'With ≥ 2 seeds: a Student-t interval over seeds of the per-seed paired differences, which measures seed-to-seed variation.',
  dead: 'Dead fraction: a Newcombe interval for the difference of two proportions (dead latents among each SAE’s latents), informative at 0.',
  steering:
    'Steering: a two-way bootstrap over latents (drawn independently for each SAE) and over the evaluation contexts the two SAEs share (drawn once per resample for both).',
  intervalColumn: 'The interval column of every row names the interval that row actually uses, and n its units.',
  verdict:
    'Verdict, from the 95% CI of the difference g-SAE − TopK: reproduced when the CI excludes 0 in the g-SAE’s favour, not reproduced when it excludes 0 in TopK’s favour, inconclusive when it contains 0.',
  holm: 'Holm: the p-values of the k values of one check (test split, at β*) are Holm-adjusted; the Holm verdict is the verdict after that adjustment, the one that allows for testing several k.',
  betaStar:
    'β*: for each k the g-SAE’s β is chosen on the validation split (table beta_selection, with its criterion); every verdict is on the test split, so the choice cannot flatter the test numbers.',
  mde: 'MDE: the half-width of the CI of the difference, the smallest difference these data could have told apart from 0.',
  changeRate:
    'Selection change rate: the fraction of the k latents the g-SAE selects on a test token that differ from plain TopK selection with the same weights, mean over tokens (and seeds). Near 0, the gradient term changes almost nothing.',
  steeringPrimary:
    'Claim 3 is decided by the steering effect at matched KL with the logit-lens target rule (check steer_effect_matched_kl, rule logit_lens): the effect at equal disruption of the model, because at equal α a direction that disrupts the model more can raise any target more. The equal-α rows (steer_effect) are shown beside, for both target rules.',
  oneSeed:
    'This run has one seed per SAE, so seed-to-seed variation is not measured: every interval below measures evaluation noise only (resampled held-out sequences, latents and contexts, or the binomial noise of the dead fraction). A verdict says the difference is beyond evaluation noise for these trained SAEs, not that it holds across training seeds; add seeds to sae.seeds for that.',
};

export const STEERING_RULE_TEXT: Record<string, string> = {
  calibration:
    'calibration: the targets are the tokens whose log-probability the steering raises most on a calibration half of the contexts; effect = rise of the log of the targets’ total probability',
  logit_lens:
    'logit_lens: the targets are the tokens the decoder direction promotes directly through the final LayerNorm scale and the unembedding; effect = added probability of the targets',
};

/** Display name of a steering target rule. */
export function ruleLabel(rule: unknown): string {
  const r = String(rule ?? '');
  return r === 'logit_lens' ? 'logit-lens targets' : r === 'calibration' ? 'calibration targets' : r;
}
