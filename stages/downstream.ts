/**
 * downstream: splice each SAE into the LM on held-out test tokens: CE clean / spliced / zero /
 * mean ablation, ΔCE, loss recovered, KL(clean ‖ spliced), FVU, L0, dead fraction; g-SAEs both
 * with the clean-pass gradient and gradient-free. Per-token values are kept for bootstrap CIs.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { StageDef } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { initStageBackend, throttled } from './common.ts';
import { readJson, trainingDead } from './shared.ts';

const stage: StageDef<Params> = {
  name: 'downstream',
  description: 'Spliced cross-entropy, loss recovered, KL, FVU, L0, dead fraction on held-out tokens',
  params: ['downstream', 'lm.n_ctx'],
  matrix: { arch: 'sae.arch', k: 'sae.k', seed: 'sae.seeds' },
  inputs: { sae: { stage: 'sae' }, lm: { stage: 'lm' }, tokens: { stage: 'tokenize' }, acts: { stage: 'collect' } },
  env: ['backend'],
  outputs: ['per_token.bin', 'per_token.json', 'summary.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2 } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { loadSae } = await import('../lib/sae/index.ts');
    const { evaluateDownstream, downstreamCIs, mergeDead, writeDownstream } = await import('../lib/eval/downstream.ts');
    const { wilsonInterval } = await import('../lib/eval/stats.ts');
    const p = ctx.params.downstream;
    const model = loadGPT2(ctx.inputs.lm);
    const { test } = readTokenSplits(ctx.inputs.tokens);
    const sae = loadSae(ctx.inputs.sae);
    const hook: string = readJson(path.join(ctx.inputs.acts, 'summary.json')).hook;
    const seqLen = Math.min(ctx.params.lm.n_ctx, model.config.nCtx);
    const progress = throttled((done: number, total: number) => ctx.progress(done, total));
    const res = evaluateDownstream(model, test, { hook, sae, nTokens: p.tokens, seqLen, batch: p.batch_size, gradientMode: 'both', onProgress: progress });
    const cis = downstreamCIs(res, { resamples: p.bootstrap_resamples, seed: 0 });
    // Dead = never fires on the held-out set AND dead over the last dead_tokens of training.
    const dead = trainingDead(ctx.inputs.sae);
    // Its 95% CI is a Wilson interval over the m latents (a proportion; informative at 0).
    const withCI = (name: string, fires: ArrayLike<number>): Record<string, number> => {
      const { deadFrac } = mergeDead(fires, dead);
      const { lo, hi } = wilsonInterval(Math.round(deadFrac * sae.m), sae.m);
      return { [name]: deadFrac, [`${name}_lo`]: lo, [`${name}_hi`]: hi };
    };
    const merged: Record<string, number> = { dead_frac_heldout: res.summary.dead_frac, ...withCI('dead_frac', res.firesPerLatent) };
    if (res.firesPerLatentGradfree) {
      merged.dead_frac_heldout_gradfree = res.summary.dead_frac_gradfree;
      Object.assign(merged, withCI('dead_frac_gradfree', res.firesPerLatentGradfree));
    }
    const summary = { ...res.summary, ...cis, ...merged };
    ctx.metrics(summary);
    ctx.metrics({ positions: res.nPositions, positions_per_second: res.cost.positionsPerSecond });
    ctx.log(
      `ΔCE ${summary.delta_ce.toFixed(4)} [${summary.delta_ce_lo?.toFixed(4)}, ${summary.delta_ce_hi?.toFixed(4)}], ` +
        `loss recovered ${summary.loss_recovered.toFixed(4)}, KL ${summary.kl.toFixed(4)}, FVU ${summary.fvu.toFixed(4)}, dead ${(summary.dead_frac * 100).toFixed(1)}%` +
        (summary.delta_ce_gradfree !== undefined ? `; gradient-free ΔCE ${summary.delta_ce_gradfree.toFixed(4)}` : ''),
    );
    writeDownstream(res, path.join(ctx.outDir, 'per_token'), { arch: sae.arch, k: sae.k, hook });
    fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify({ arch: sae.arch, k: sae.k, hook, n_positions: res.nPositions, ...summary }, null, 2));
    model.dispose();
  },
};
export default stage;
