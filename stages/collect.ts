/**
 * collect: run the LM over train, val and held-out test tokens and store, for every position, the
 * residual activation x at the hook and g = dL/dx (L = per-sequence summed next-token CE).
 * The val and test windows are the ones downstream evaluates on (β* is chosen on val, verdicts
 * come from test), so their zero- and mean-ablation CE per position are computed here, once.
 * Also records the gradient scale c = E‖g‖ / √d (train split) used by sae.grad_scale: data.
 * Resumes from its last complete shard if killed (the shards live in the scratch dir until done).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { initStageBackend, throttled } from './common.ts';

const stage = defineStage<Params>()({
  name: 'collect',
  description: 'Residual activations x and loss gradients dL/dx at the hook, for train and test tokens',
  params: ['collect', 'lm.n_ctx'],
  inputs: { tokens: { stage: 'tokenize' }, lm: { stage: 'lm' } },
  env: ['backend'],
  outputs: ['train/manifest.json', 'val/manifest.json', 'test/manifest.json', 'val/baselines.json', 'test/baselines.json', 'summary.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2, residHookName } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { collectActivations, spreadWindows } = await import('../lib/collect.ts');
    const { ShardReader } = await import('../lib/activations.ts');
    const { ablationBaselines, windowsAt } = await import('../lib/eval/downstream.ts');
    const { writeArrays } = await import('../lib/util/arrays.ts');
    const p = ctx.params.collect;
    const model = loadGPT2(ctx.inputs.lm);
    const L = model.config.nLayer;
    if (p.layer >= L) throw new Error(`collect.layer: ${p.layer} is out of range for a ${L}-layer model (allowed 0..${L - 1})`);
    const hook = residHookName(p.layer, p.site);
    const splits = readTokenSplits(ctx.inputs.tokens);
    const seqLen = Math.min(ctx.params.lm.n_ctx, model.config.nCtx);
    const tokensOf = { train: p.train_tokens, val: p.val_tokens, test: p.test_tokens } as const;
    ctx.log(`hook ${hook}; ${p.train_tokens} train + ${p.val_tokens} val + ${p.test_tokens} test positions, sequences of ${seqLen}`);
    // The model's name (lm stage: "gpt2" for a real GPT-2 small, ours otherwise) for the SAEs' cfg.json.
    const lmConfig = JSON.parse(fs.readFileSync(path.join(ctx.inputs.lm, 'config.json'), 'utf8'));
    const summary: Record<string, string | number> = { hook, layer: p.layer, site: p.site, d_model: model.config.dModel, seq_len: seqLen, model_name: String(lmConfig.gsae_model_name ?? 'gsae-lm') };
    for (const split of ['train', 'val', 'test'] as const) {
      const dir = path.join(ctx.scratchDir, split);
      const progress = throttled((done: number, total: number) => ctx.progress(done, total, { split }));
      const res = await collectActivations(model, splits[split], dir, {
        hook,
        nTokens: tokensOf[split],
        seqLen,
        batch: p.batch_size,
        dtype: p.dtype,
        extra: { split },
        onProgress: progress,
      });
      if (res.resumedRows > 0) ctx.log(`${split}: resumed after ${res.resumedRows} rows already on disk`);
      if (split !== 'train') {
        // CE under zero / mean ablation per position of these windows (mean = mean x of the split)
        const all = new ShardReader(dir).readAll();
        const d = model.config.dModel;
        const mean = new Float64Array(d);
        for (let r = 0; r < all.rows; r++) for (let i = 0; i < d; i++) mean[i] += all.x[r * d + i];
        const meanActivation = Float32Array.from(mean, (v) => v / all.rows);
        const windows = windowsAt(splits[split], spreadWindows(splits[split].length, seqLen, Number(res.manifest.windows)), seqLen);
        const base = ablationBaselines(model, windows, { hook, seqLen, batch: p.batch_size, meanActivation, onProgress: progress });
        writeArrays(path.join(dir, 'baselines'), { ce_zero: base.ce_zero, ce_mean: base.ce_mean, mean_activation: meanActivation }, { split, hook, seq_len: seqLen, windows: res.manifest.windows });
      }
      fs.renameSync(dir, path.join(ctx.outDir, split));
      summary[`rows_${split}`] = res.manifest.rows;
      if (Number.isFinite(res.meanLoss)) summary[`ce_${split}`] = res.meanLoss;
      if (split === 'train') {
        // c = E‖g‖ / √d: with unit-norm decoder rows |W_dec[i]·g| is about ‖g‖/√d for a typical latent
        const c = res.manifest.mean_norm_g / Math.sqrt(model.config.dModel);
        Object.assign(summary, { mean_norm_x: res.manifest.mean_norm_x, mean_norm_g: res.manifest.mean_norm_g, grad_scale_c: c });
      }
    }
    ctx.metrics(Object.fromEntries(Object.entries(summary).filter(([, v]) => typeof v === 'number')) as Record<string, number>);
    ctx.log(`mean |x| ${Number(summary.mean_norm_x).toFixed(3)}, mean |g| ${Number(summary.mean_norm_g).toExponential(3)}`);
    fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify(summary, null, 2));
    model.dispose();
  },
});
export default stage;
