/**
 * collect: run the LM over train and held-out test tokens and store, for every position, the
 * residual activation x at the hook and g = dL/dx, L = the per-sequence SUM of next-token
 * cross-entropies (so g does not shrink with the batch size). Shards are written as they go and
 * the stage resumes from its last complete shard if killed.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { StageContext, StageDef } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { initStageBackend, throttled } from './common.ts';
import { spreadWindows } from './shared.ts';
import type { HookedLM } from '../lib/model/types.ts';
import type { TokenArray } from '../lib/tokens.ts';

async function collectSplit(
  ctx: StageContext<Params>,
  model: HookedLM,
  tokens: TokenArray,
  split: 'train' | 'test',
  nTokens: number,
  hook: string,
  done: { rows: number; total: number },
): Promise<Record<string, number>> {
  const { ShardWriter } = await import('../lib/activations.ts');
  const p = ctx.params.collect;
  const T = Math.min(ctx.params.lm.n_ctx, model.config.nCtx);
  const nWin = Math.ceil(nTokens / T);
  const starts = spreadWindows(tokens.length, T, nWin);
  const d = model.config.dModel;
  const dir = path.join(ctx.scratchDir, split);
  const rowsPerShard = T * Math.max(1, Math.floor(65536 / T)); // whole sequences per shard
  let writer = ShardWriter.resume(dir);
  if (writer && (writer.d !== d || writer.rowsPerShard !== rowsPerShard || writer.dtype !== p.dtype)) {
    fs.rmSync(dir, { recursive: true, force: true });
    writer = null;
  }
  writer ??= new ShardWriter(dir, { d, rowsPerShard, dtype: p.dtype });
  const firstWin = writer.rowsOnDisk / T;
  if (firstWin > 0) ctx.log(`${split}: resuming after ${writer.rowsOnDisk} rows already on disk`);
  done.rows += writer.rowsOnDisk;
  let lossSum = 0;
  let lossCount = 0;
  const progress = throttled(() => ctx.progress(done.rows, done.total, { split }));
  for (let w0 = firstWin; w0 < nWin && !writer.finished; w0 += p.batch_size) {
    const b = Math.min(p.batch_size, nWin - w0);
    const buf = new Int32Array(b * (T + 1));
    for (let i = 0; i < b; i++) buf.set(tokens.subarray(starts[w0 + i], starts[w0 + i] + T + 1), i * (T + 1));
    const r = model.activationAndGrad(buf, b, T, hook);
    writer.append(r.x, r.g);
    for (const l of r.lossPerToken) lossSum += l;
    lossCount += r.lossPerToken.length;
    done.rows += b * T;
    progress();
    await new Promise((res) => setImmediate(res));
  }
  const man = writer.finish({ split, hook, seq_len: T, windows: nWin });
  fs.renameSync(dir, path.join(ctx.outDir, split));
  return {
    [`rows_${split}`]: man.rows,
    ...(split === 'train' ? { mean_norm_x: man.mean_norm_x, mean_norm_g: man.mean_norm_g } : {}),
    ...(lossCount > 0 ? { [`ce_${split}`]: lossSum / lossCount } : {}),
  };
}

const stage: StageDef<Params> = {
  name: 'collect',
  description: 'Residual activations x and loss gradients dL/dx at the hook, for train and test tokens',
  params: ['collect', 'lm.n_ctx'],
  inputs: { tokens: { stage: 'tokenize' }, lm: { stage: 'lm' } },
  env: ['backend'],
  outputs: ['train/manifest.json', 'test/manifest.json', 'summary.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2, residHookName } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const p = ctx.params.collect;
    const model = loadGPT2(ctx.inputs.lm);
    const L = model.config.nLayer;
    if (p.layer >= L) throw new Error(`collect.layer: ${p.layer} is out of range for a ${L}-layer model (allowed 0..${L - 1})`);
    const hook = residHookName(p.layer, p.site);
    const { train, test } = readTokenSplits(ctx.inputs.tokens);
    const T = Math.min(ctx.params.lm.n_ctx, model.config.nCtx);
    const done = { rows: 0, total: Math.ceil(p.train_tokens / T) * T + Math.ceil(p.test_tokens / T) * T };
    ctx.log(`hook ${hook}; ${p.train_tokens} train + ${p.test_tokens} test positions, sequences of ${T}`);
    const summary: Record<string, any> = {
      hook,
      layer: p.layer,
      site: p.site,
      d_model: model.config.dModel,
      ...(await collectSplit(ctx, model, train, 'train', p.train_tokens, hook, done)),
      ...(await collectSplit(ctx, model, test, 'test', p.test_tokens, hook, done)),
    };
    ctx.metrics(Object.fromEntries(Object.entries(summary).filter(([, v]) => typeof v === 'number')) as Record<string, number>);
    ctx.log(`mean |x| ${summary.mean_norm_x?.toFixed(3)}, mean |g| ${summary.mean_norm_g?.toExponential(3)}`);
    fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify(summary, null, 2));
    model.dispose();
  },
};
export default stage;
