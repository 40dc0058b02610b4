/**
 * steering (our protocol; the paper's is not published): add α·r·W_dec[i] at the hook for S
 * latents sampled among alive ones; two target rules ("calibration": tokens whose log-prob rises
 * most on a calibration half of random held-out contexts; "logit_lens": tokens W_dec[i] promotes
 * through ln_f's scale and the unembedding), scored on the same steered passes of the evaluation
 * half: effect, consistency and KL per (rule, α, latent) and per evaluation context. Per-latent
 * rows and a per-(rule, α) summary with bootstrap 95% CIs go to DuckDB; the per-context values
 * (for a bootstrap over latents and contexts) to latents.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { initStageBackend, readJson, SAE_MATRIX, trainingDead } from './common.ts';

const stage = defineStage<Params>()({
  name: 'steering',
  description: 'Steer with sampled alive latents; effect, consistency, KL on held-out contexts',
  params: ['steering'],
  matrix: SAE_MATRIX,
  inputs: { sae: { stage: 'sae' }, lm: { stage: 'lm' }, tokens: { stage: 'tokenize' }, acts: { stage: 'collect' } },
  env: ['backend'],
  outputs: ['latents.json', 'summary.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2 } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { loadTokenizer } = await import('../lib/tokenizer/index.ts');
    const { loadSae } = await import('../lib/sae/index.ts');
    const { evaluateSteering } = await import('../lib/eval/steering.ts');
    const { gpt2LogitLens } = await import('../lib/eval/logitLens.ts');
    const p = ctx.params.steering;
    const model = loadGPT2(ctx.inputs.lm);
    const { test } = readTokenSplits(ctx.inputs.tokens);
    const tok = loadTokenizer(path.join(ctx.inputs.tokens, 'tokenizer.json'));
    const sae = loadSae(ctx.inputs.sae);
    const acts = readJson(path.join(ctx.inputs.acts, 'summary.json'));
    // Alive = fired during the last dead_tokens tokens of training.
    const alive = Array.from(trainingDead(ctx.inputs.sae), (d) => 1 - d);
    const res = evaluateSteering(model, test, {
      hook: acts.hook,
      sae,
      firingCounts: alive,
      meanNorm: acts.mean_norm_x,
      logitLens: gpt2LogitLens(model),
      alphas: p.alphas,
      nLatents: p.n_latents,
      nContexts: p.contexts,
      contextLen: p.context_len,
      nTargets: p.n_targets,
      seed: p.seed,
      bootstrap: { resamples: p.bootstrap_resamples, seed: p.seed },
      onProgress: (_message, done, total) => ctx.progress(done, total),
    });
    const rows = res.rows.map((r) => ({
      rule: r.rule,
      alpha: r.alpha,
      latent: r.latent,
      effect: r.effect,
      consistency: r.consistency,
      kl: r.kl,
      targets: r.targets.map((t) => JSON.stringify(tok.decode([t]))).join(' '),
    }));
    const detail = res.rows.map((r) => ({ ...r, target_tokens: r.targets.map((t) => tok.decode([t])) }));
    ctx.table('steering_latents', rows);
    ctx.table('steering_summary', res.summary.map((s) => ({ ...s })));
    for (const s of res.summary) {
      ctx.log(`${s.rule} α=${s.alpha}: effect ${s.effect_mean.toFixed(3)} [${s.effect_lo.toFixed(3)}, ${s.effect_hi.toFixed(3)}], consistency ${s.consistency_mean.toFixed(3)}, KL ${s.kl_mean.toFixed(3)} over ${s.n_latents} latents`);
    }
    ctx.metrics({ steering_seconds_per_latent_alpha: res.cost.secondsPerLatentPerAlpha });
    // per_context.*[alphaIndex][latentIndex][contextIndex]: latents, alphas, contexts.evaluation give the axes
    const latentsJson = {
      latents: res.latents,
      alphas: res.alphas,
      rules: res.rules,
      contexts: res.contextStarts,
      per_context: res.perContext,
      rows: detail,
    };
    fs.writeFileSync(path.join(ctx.outDir, 'latents.json'), JSON.stringify(latentsJson, null, 1));
    fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify(res.summary, null, 2));
    model.dispose();
  },
});
export default stage;
