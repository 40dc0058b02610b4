/**
 * downstream: splice each SAE into the LM on the held-out windows of the collect stage: CE clean /
 * spliced / zero / mean ablation, ΔCE, loss recovered, KL(clean ‖ spliced), FVU, L0, dead fraction
 * and the selection change rate, on the test split (verdicts) and the val split (β* selection).
 * g-SAEs select with the stored clean-pass gradient and, on test, also gradient-free. Per-token
 * values are kept for the paired statistics of the compare stage.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DeadFracMetric, DownstreamMetric, DownstreamValues } from '../lib/eval/metricNames.ts';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { heldOutOf, initStageBackend, readJson, SAE_MATRIX, throttled, trainingDead } from './common.ts';

const stage = defineStage<Params>()({
  name: 'downstream',
  description: 'Spliced cross-entropy, loss recovered, KL, FVU, L0, dead fraction, change rate on held-out val and test windows',
  params: ['downstream'],
  matrix: SAE_MATRIX,
  inputs: { sae: { stage: 'sae' }, lm: { stage: 'lm' }, tokens: { stage: 'tokenize' }, acts: { stage: 'collect' }, ref: { stage: 'clean_ref' } },
  env: ['backend'],
  outputs: ['per_token.bin', 'per_token.json', 'per_token_val.bin', 'per_token_val.json', 'summary.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2 } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { loadSae, selectionChangeRate } = await import('../lib/sae/index.ts');
    const { readArrays } = await import('../lib/util/arrays.ts');
    const { evaluateDownstream, deadFracWithCI, downstreamCIs, valMetric, writeDownstream } = await import('../lib/eval/downstream.ts');
    const p = ctx.params.downstream;
    const model = loadGPT2(ctx.inputs.lm);
    const splits = readTokenSplits(ctx.inputs.tokens);
    const sae = loadSae(ctx.inputs.sae);
    const acts = readJson(path.join(ctx.inputs.acts, 'summary.json'));
    const hook: string = acts.hook;
    const seqLen: number = acts.seq_len;
    const isG = sae.arch === 'gsae';

    /** A split's clean reference (stage clean_ref), when the backend has the fused head. */
    const cleanRefOf = (split: 'val' | 'test') => {
      const { meta, arrays } = readArrays(path.join(ctx.inputs.ref, split));
      return meta.available ? { ce: arrays.ce as Float32Array, wbar: arrays.wbar as Float32Array, a: arrays.a as Float32Array } : undefined;
    };

    const progress = throttled((done: number, total: number) => ctx.progress(done, total));
    const evaluate = async (split: 'val' | 'test') => {
      const h = await heldOutOf(ctx.inputs.acts, splits[split], split, seqLen, sae.d, p.tokens);
      if (isG && !h.g) throw new Error(`downstream: the ${split} activations have no gradients, which a g-SAE needs`);
      const res = evaluateDownstream(model, splits[split], {
        hook,
        sae,
        nTokens: h.windows.length,
        seqLen,
        batch: p.batch_size,
        windows: h.windows,
        gradients: isG ? h.g! : undefined,
        activations: h.exact ? h.x : undefined,
        baselines: h.baselines,
        cleanRef: cleanRefOf(split),
        gradientMode: split === 'test' ? 'both' : 'gradient',
        onProgress: progress,
      });
      // the change rate comes with the passes when they start from the stored activations
      return { res, changeRate: res.changeRate ?? selectionChangeRate(sae, h.x, h.g) };
    };

    // ---- test split: every metric, with bootstrap CIs over held-out sequences
    const test = await evaluate('test');
    const res = test.res;
    const cis = downstreamCIs(res, { resamples: p.bootstrap_resamples, seed: 0 });
    // Dead = never fires on the held-out set AND dead over the last dead_tokens of training;
    // its 95% CI is a Wilson interval over the m latents (a proportion; informative at 0).
    const dead = trainingDead(ctx.inputs.sae);
    const withCI = (name: DeadFracMetric, fires: ArrayLike<number>) => deadFracWithCI(name, fires, dead);
    const merged: Record<string, number> = { dead_frac_heldout: res.summary.dead_frac, ...withCI('dead_frac', res.firesPerLatent) } satisfies DownstreamValues;
    if (res.firesPerLatentGradfree) {
      merged.dead_frac_heldout_gradfree = res.summary.dead_frac_gradfree;
      Object.assign(merged, withCI('dead_frac_gradfree', res.firesPerLatentGradfree));
    }
    const summary: Record<string, number> = { ...res.summary, ...cis, ...merged };
    if (isG) summary['change_rate' satisfies DownstreamMetric] = test.changeRate;

    // ---- val split: the numbers β* is chosen on (never used for a verdict)
    const val = await evaluate('val');
    const valSummary: Record<string, number> = {};
    for (const name of ['delta_ce', 'kl', 'loss_recovered'] as const) valSummary[valMetric(name)] = val.res.summary[name];
    if (isG) valSummary[valMetric('change_rate')] = val.changeRate;

    ctx.metrics({ ...summary, ...valSummary });
    ctx.metrics({ positions: res.nPositions, positions_val: val.res.nPositions, positions_per_second: res.cost.positionsPerSecond } satisfies DownstreamValues);
    ctx.log(
      `test: ΔCE ${summary.delta_ce.toFixed(4)} [${summary.delta_ce_lo?.toFixed(4)}, ${summary.delta_ce_hi?.toFixed(4)}], ` +
        `loss recovered ${summary.loss_recovered.toFixed(4)}, KL ${summary.kl.toFixed(4)}, FVU ${summary.fvu.toFixed(4)}, dead ${(summary.dead_frac * 100).toFixed(1)}%` +
        (isG ? `; change rate ${(100 * test.changeRate).toFixed(1)}%; gradient-free ΔCE ${summary.delta_ce_gradfree.toFixed(4)}` : '') +
        ` | val: ΔCE ${valSummary.delta_ce_val.toFixed(4)} over ${val.res.nPositions} positions`,
    );
    const meta = { arch: sae.arch, k: sae.k, beta: sae.beta, m: sae.m, hook };
    writeDownstream(res, path.join(ctx.outDir, 'per_token'), { ...meta, split: 'test' });
    writeDownstream(val.res, path.join(ctx.outDir, 'per_token_val'), { ...meta, split: 'val' });
    fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify({ ...meta, n_positions: res.nPositions, n_positions_val: val.res.nPositions, ...summary, ...valSummary }, null, 2));
    model.dispose();
  },
});
export default stage;
