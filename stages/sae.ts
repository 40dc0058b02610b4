/** sae: train one TopK SAE or g-SAE per arch × k × seed on the collected activations. */
import fs from 'node:fs';
import path from 'node:path';
import type { StageDef } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { initStageBackend, throttled } from './common.ts';
import type { SaeArch } from '../lib/sae/types.ts';

const stage: StageDef<Params> = {
  name: 'sae',
  description: 'Train a TopK SAE or g-SAE (hand-written backward, AuxK) for every arch × k × seed',
  params: ['sae'],
  matrix: { arch: 'sae.arch', k: 'sae.k', seed: 'sae.seeds' },
  inputs: { acts: { stage: 'collect' } },
  env: ['backend'],
  outputs: ['sae_weights.safetensors', 'cfg.json', 'firing_counts.json', 'eval.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { ShardReader } = await import('../lib/activations.ts');
    const { trainSae, saveTrainResult, evaluateSae } = await import('../lib/sae/index.ts');
    const p = ctx.params.sae;
    const arch = ctx.instance.arch as SaeArch;
    const k = Number(ctx.instance.k);
    const seed = Number(ctx.instance.seed);
    const summary = JSON.parse(fs.readFileSync(path.join(ctx.inputs.acts, 'summary.json'), 'utf8'));
    const source = new ShardReader(path.join(ctx.inputs.acts, 'train'));
    const m = p.expansion * source.d;
    if (k > m) throw new Error(`sae.k: ${k} is larger than the number of latents ${m} (expansion ${p.expansion} × d ${source.d})`);
    ctx.log(`${arch} k=${k} seed=${seed}: d=${source.d}, ${m} latents, ${source.rows} rows, ${p.train_tokens} training tokens`);
    const progress = throttled((pr: any) =>
      ctx.progress(pr.tokens, pr.totalTokens, { fvu: pr.fvu.toFixed(3), dead: pr.deadFrac.toFixed(3), 'tok/s': Math.round(pr.tokensPerSec) }),
    );
    const res = await trainSae(
      source,
      {
        arch,
        k,
        expansion: p.expansion,
        beta: arch === 'gsae' ? p.beta : 0,
        tokens: p.train_tokens,
        batchSize: p.batch_size,
        lr: p.lr,
        kAux: p.aux_k,
        auxCoef: p.aux_alpha,
        deadTokens: p.dead_tokens,
        bDecInit: p.b_dec_init,
        seed,
        checkpointDir: path.join(ctx.scratchDir, 'checkpoint'),
      },
      {
        onProgress: progress,
        onMetrics: (step, v) => ctx.metrics({ mse: v.mse, fvu: v.fvu, aux_loss: v.aux_loss, dead_frac: v.dead_frac, l0: v.l0 }, { step }),
        onLog: (msg) => ctx.log(msg),
      },
    );
    if (res.resumedFromStep > 0) ctx.log(`resumed from checkpoint at step ${res.resumedFromStep}`);
    saveTrainResult(ctx.outDir, res, { hook_name: summary.hook, model_name: 'lm', arch });
    // Held-out metrics on the test activations (g-SAE selects with the clean-pass gradient).
    const test = new ShardReader(path.join(ctx.inputs.acts, 'test')).readAll();
    const ev = evaluateSae(res.weights, test.x, arch === 'gsae' ? test.g : null);
    const final = { final_fvu: ev.fvu, final_mse: ev.mse, final_l0: ev.l0, final_dead_frac: ev.dead_frac, final_cosine: ev.cosine, train_dead_frac: res.deadFrac };
    ctx.metrics({ ...final, tokens_per_second: res.tokensPerSec });
    ctx.log(`held-out FVU ${ev.fvu.toFixed(4)}, L0 ${ev.l0.toFixed(1)}, dead ${(ev.dead_frac * 100).toFixed(1)}%; ${Math.round(res.tokensPerSec)} tokens/s`);
    fs.writeFileSync(path.join(ctx.outDir, 'eval.json'), JSON.stringify({ arch, k, seed, ...final, test_firing: Array.from(ev.firing) }, null, 1));
  },
};
export default stage;
