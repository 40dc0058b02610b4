/**
 * interp: the automatic interpretability score (lib/interp: lookup explainer + simulation) of
 * every SAE instance, and its control: a TopK SAE per k trained on the activations of a randomly
 * initialised LM of the same shape (lm_random → collect_control → sae_control → interp_control).
 * Explanations come from the train activation shards, the score from the test shards; a g-SAE
 * selects with the stored gradient (as downstream does). Per-latent rows go to DuckDB table
 * `interp_latents`, the per-SAE score to the stage's metrics and scores.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { StageContext } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { initStageBackend, readJson, SAE_MATRIX, throttled, trainingDead } from './common.ts';
import sae from './sae.ts';

async function score(ctx: StageContext<Params>, arch: string): Promise<void> {
  await initStageBackend(ctx);
  const { readTokenSplits } = await import('../lib/tokens.ts');
  const { loadTokenizer } = await import('../lib/tokenizer/index.ts');
  const { loadSae } = await import('../lib/sae/index.ts');
  const { scoreSae } = await import('../lib/interp/score.ts');
  const p = ctx.params.interp;
  const w = loadSae(ctx.inputs.sae);
  const { train, test } = readTokenSplits(ctx.inputs.tokens);
  const tok = loadTokenizer(path.join(ctx.inputs.tokens, 'tokenizer.json'));
  const alive = Array.from(trainingDead(ctx.inputs.sae), (d) => 1 - d);
  const t0 = Date.now();
  const res = scoreSae(
    w,
    arch === 'gsae',
    alive,
    { trainDir: path.join(ctx.inputs.acts, 'train'), train, testDir: path.join(ctx.inputs.acts, 'test'), test },
    { latents: p.latents, trainTokens: p.train_tokens, topContexts: p.top_contexts, contextTokens: p.context_tokens, seed: p.seed, resamples: p.bootstrap_resamples },
  );
  const seconds = (Date.now() - t0) / 1000;
  if (res.scores.length < p.latents) ctx.log(`only ${res.eligible} eligible latents (alive and firing on the explanation tokens), fewer than interp.latents = ${p.latents}`);
  // Tokens each latent promotes (logit lens of its decoder row), for the rating page.
  const { loadGPT2 } = await import('../lib/model/index.ts');
  const { gpt2LogitLens, logitLensTargets } = await import('../lib/eval/logitLens.ts');
  const model = loadGPT2(ctx.inputs.lm);
  const lens = gpt2LogitLens(model);
  const dec = (ids: number[]) => ids.map((i) => tok.decode([i]));
  const rows = res.scores.map(({ contexts, ...s }) => ({ ...s, top_token_text: s.top_token >= 0 ? tok.decode([s.top_token]) : '' }));
  const detail = res.scores.map((s, i) => ({
    ...rows[i],
    contexts: s.contexts.map((c) => ({ tokens: dec(c.tokens), acts: c.acts, at: c.at })),
    promoted: dec(logitLensTargets(lens, w.W_dec, 5, s.latent * w.d)),
  }));
  model.dispose();
  ctx.table('interp_latents', rows);
  ctx.metrics({ interp_score: res.mean, interp_score_lo: res.lo, interp_score_hi: res.hi, single_token_frac: res.single_token_frac, latents_scored: res.scores.length, eligible_latents: res.eligible });
  ctx.log(`simulation score ${res.mean.toFixed(3)} [${res.lo.toFixed(3)}, ${res.hi.toFixed(3)}] over ${res.scores.length} latents; single-token explanations ${(100 * res.single_token_frac).toFixed(0)}%; ${res.train_rows} explanation + ${res.test_rows} held-out tokens, ${seconds.toFixed(1)} s`);
  fs.writeFileSync(path.join(ctx.outDir, 'scores.json'), JSON.stringify({ ...res, scores: detail }, null, 1));
}

const INTERP_PARAMS = ['interp.latents', 'interp.train_tokens', 'interp.top_contexts', 'interp.context_tokens', 'interp.seed', 'interp.bootstrap_resamples'];

export const interp = defineStage<Params>()({
  name: 'interp',
  description: 'Automatic interpretability: lookup-explainer simulation score of sampled alive latents',
  params: INTERP_PARAMS,
  matrix: SAE_MATRIX,
  inputs: { sae: { stage: 'sae' }, acts: { stage: 'collect' }, tokens: { stage: 'tokenize' }, lm: { stage: 'lm' } },
  env: ['backend'],
  outputs: ['scores.json'],
  run: (ctx) => score(ctx, String(ctx.instance.arch)),
});

/** A GPT-2 of the trained LM's shape with freshly initialised weights (seed interp.seed + 1). */
export const lmRandom = defineStage<Params>()({
  name: 'lm_random',
  description: 'Control LM: the LM\'s shape with random initial weights (no training)',
  params: ['interp.seed'],
  inputs: { lm: { stage: 'lm' }, tokens: { stage: 'tokenize' } },
  env: ['backend'],
  outputs: ['config.json', 'model.safetensors'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { createGPT2, loadGPT2Config, saveGPT2 } = await import('../lib/model/index.ts');
    const config = loadGPT2Config(ctx.inputs.lm);
    const eot = Number(readJson(path.join(ctx.inputs.tokens, 'manifest.json')).eot_id);
    const model = createGPT2(config, ctx.params.interp.seed + 1);
    saveGPT2(model, ctx.outDir, { eotId: eot, extraConfig: { gsae_source: 'random_init', gsae_seed: ctx.params.interp.seed + 1, gsae_model_name: 'gsae-lm-random' } });
    ctx.log(`random-init LM: ${config.nLayer} layers, d=${config.dModel}, vocab ${config.vocabSize}`);
    model.dispose();
  },
});

/**
 * Train and test activations x of the random LM at collect's hook, with collect's budgets (no val,
 * no baselines, no gradients: the control SAEs are TopK, which never read g; a forward pass up to
 * the hook is all it takes).
 */
export const collectControl = defineStage<Params>()({
  name: 'collect_control',
  description: 'Control activations: the random-init LM at the same hook (train and test splits, x only)',
  params: ['collect', 'lm.n_ctx'],
  inputs: { tokens: { stage: 'tokenize' }, lm: { stage: 'lm_random' } },
  env: ['backend'],
  outputs: ['train/manifest.json', 'test/manifest.json', 'summary.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2, residHookName } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { collectActivations } = await import('../lib/collect.ts');
    const p = ctx.params.collect;
    const model = loadGPT2(ctx.inputs.lm);
    const hook = residHookName(p.layer, p.site);
    const splits = readTokenSplits(ctx.inputs.tokens);
    const seqLen = Math.min(ctx.params.lm.n_ctx, model.config.nCtx);
    const summary: Record<string, string | number> = { hook, layer: p.layer, site: p.site, d_model: model.config.dModel, seq_len: seqLen, model_name: 'gsae-lm-random' };
    for (const split of ['train', 'test'] as const) {
      const dir = path.join(ctx.scratchDir, split);
      const progress = throttled((done: number, total: number) => ctx.progress(done, total, { split }));
      const res = await collectActivations(model, splits[split], dir, { hook, nTokens: split === 'train' ? p.train_tokens : p.test_tokens, seqLen, batch: p.batch_size, dtype: p.dtype, extra: { split }, gradients: false, onProgress: progress });
      fs.renameSync(dir, path.join(ctx.outDir, split));
      summary[`rows_${split}`] = res.manifest.rows;
      if (split === 'train') summary.mean_norm_x = res.manifest.mean_norm_x;
    }
    fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify(summary, null, 2));
    model.dispose();
  },
});

/** The control SAE: a TopK SAE per k, seed 0, trained exactly like the sae stage's on the random LM's activations. */
export const saeControl = defineStage<Params>()({
  ...sae,
  name: 'sae_control',
  description: 'Control SAE: TopK per k (seed 0) on the random-init LM\'s activations',
  params: (sae.params ?? []).filter((k) => typeof k === 'string'),
  matrix: { k: 'sae.k' },
  inputs: { acts: { stage: 'collect_control' } },
  run: (ctx) => sae.run({ ...ctx, instance: Object.freeze({ arch: 'topk', k: ctx.instance.k, seed: 0 }) }),
});

export const interpControl = defineStage<Params>()({
  name: 'interp_control',
  description: 'The automatic interpretability score of the control SAE (random-init LM)',
  params: INTERP_PARAMS,
  matrix: { k: 'sae.k' },
  inputs: { sae: { stage: 'sae_control' }, acts: { stage: 'collect_control' }, tokens: { stage: 'tokenize' }, lm: { stage: 'lm_random' } },
  env: ['backend'],
  outputs: ['scores.json'],
  run: (ctx) => score(ctx, 'topk'),
});
