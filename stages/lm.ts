/** lm: train the small GPT-2 on the train split, or load and validate a pretrained HF GPT-2. */
import fs from 'node:fs';
import path from 'node:path';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { initStageBackend, throttled } from './common.ts';
import type { TrainProgress } from '../lib/util/progress.ts';

/** model_name of our own LM in the SAEs' cfg.json (a real GPT-2 keeps its own name, e.g. "gpt2"). */
export const OWN_MODEL_NAME = 'gsae-lm';

const stage = defineStage<Params>()({
  name: 'lm',
  description: 'Train the small GPT-2 on the train split (AdamW, warmup + cosine), or load lm.pretrained',
  params: ['lm'],
  inputs: { tokens: { stage: 'tokenize' } },
  env: ['backend', 'lm_pretrained'],
  // A Hugging Face folder: GPT2LMHeadModel.from_pretrained(dir) and AutoTokenizer.from_pretrained(dir).
  outputs: ['config.json', 'model.safetensors', 'summary.json', 'tokenizer.json', 'tokenizer_config.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { createGPT2, loadGPT2, saveGPT2, gpt2ModelName, train, evaluateLoss, unigramEntropy } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { parseTokenizerJson, tokenizerConfig } = await import('../lib/tokenizer/index.ts');
    const p = ctx.params.lm;
    const { manifest, train: trainTokens, val } = readTokenSplits(ctx.inputs.tokens);
    const writeTokenizer = (nCtx: number): void => {
      const text = fs.readFileSync(path.join(ctx.inputs.tokens, 'tokenizer.json'), 'utf8');
      fs.writeFileSync(path.join(ctx.outDir, 'tokenizer.json'), text);
      fs.writeFileSync(path.join(ctx.outDir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig(parseTokenizerJson(text), nCtx), null, 2) + '\n');
    };
    const hUnigram = unigramEntropy(val, manifest.vocab_size);
    ctx.metric('unigram_entropy_val', hUnigram);

    if (p.pretrained) {
      if (manifest.tokenizer_kind !== 'gpt2') {
        throw new Error(`lm.pretrained is set (${p.pretrained}), so tokenizer.kind must be gpt2 (GPT-2's own vocabulary); got ${manifest.tokenizer_kind}`);
      }
      const model = loadGPT2(path.resolve(p.pretrained));
      if (model.config.vocabSize < manifest.vocab_size) {
        throw new Error(`lm.pretrained: the checkpoint's vocabulary (${model.config.vocabSize}) is smaller than the tokenizer's (${manifest.vocab_size})`);
      }
      ctx.log(`loaded ${p.pretrained}: ${model.config.nLayer} layers, d=${model.config.dModel}, ctx ${model.config.nCtx}`);
      const seqLen = Math.min(p.n_ctx, model.config.nCtx);
      const valLoss = evaluateLoss(model, val, { seqLen, batchSize: Math.max(1, Math.min(p.batch_size, 8)), maxTokens: p.val_tokens });
      ctx.metrics({ final_val_loss: valLoss });
      ctx.log(`val loss ${valLoss.toFixed(4)} nats/token (unigram entropy ${hUnigram.toFixed(4)})`);
      const original = JSON.parse(fs.readFileSync(path.join(path.resolve(p.pretrained), 'config.json'), 'utf8'));
      const name = gpt2ModelName(model.config, original._name_or_path, path.basename(path.resolve(p.pretrained)));
      saveGPT2(model, ctx.outDir, { eotId: manifest.eot_id, extraConfig: { gsae_source: 'pretrained', gsae_model_name: name } });
      writeTokenizer(model.config.nCtx);
      fs.writeFileSync(path.join(ctx.outDir, 'summary.json'), JSON.stringify({ pretrained: p.pretrained, final_val_loss: valLoss, unigram_entropy_val: hUnigram }, null, 2));
      model.dispose();
      return;
    }

    const config = { vocabSize: manifest.vocab_size, nCtx: p.n_ctx, dModel: p.d_model, nLayer: p.n_layer, nHead: p.n_head, layerNormEps: 1e-5 };
    if (p.d_model % p.n_head !== 0) throw new Error(`lm.d_model (${p.d_model}) must be divisible by lm.n_head (${p.n_head})`);
    const model = createGPT2(config, p.seed);
    const progress = throttled((pr: TrainProgress<Record<string, number>>) =>
      ctx.progress(pr.tokensSeen, pr.totalTokens, { loss: pr.metrics.train_loss.toFixed(3), 'tok/s': Math.round(pr.tokensPerSecond) }),
    );
    const result = await train(model, trainTokens, {
      batchSize: p.batch_size,
      seqLen: p.n_ctx,
      trainTokens: p.train_tokens,
      lr: p.lr,
      warmupSteps: p.warmup_steps,
      weightDecay: p.weight_decay,
      gradClip: p.grad_clip,
      seed: p.seed,
      valStream: val,
      evalEverySteps: p.eval_every_steps,
      valTokens: p.val_tokens,
      threads: p.threads,
      checkpointDir: path.join(ctx.scratchDir, 'checkpoint'),
    }, {
      onProgress: progress,
      onMetrics: (values, step) => ctx.metrics(values, { step }),
    });
    if (result.resumedFromStep > 0) ctx.log(`resumed from checkpoint at step ${result.resumedFromStep}`);
    ctx.metrics({ final_val_loss: result.finalValLoss, final_train_loss: result.finalTrainLoss, tokens_per_second: result.tokensPerSecond });
    ctx.log(
      `val loss ${result.finalValLoss.toFixed(4)} nats/token (unigram entropy ${hUnigram.toFixed(4)}); ` +
        `${result.steps} steps, ${Math.round(result.tokensPerSecond)} tokens/s`,
    );
    saveGPT2(model, ctx.outDir, { eotId: manifest.eot_id, extraConfig: { gsae_source: 'trained', gsae_seed: p.seed, gsae_model_name: OWN_MODEL_NAME } });
    writeTokenizer(p.n_ctx);
    fs.writeFileSync(
      path.join(ctx.outDir, 'summary.json'),
      // Only deterministic fields: the outputs' content feeds the fingerprints downstream.
      JSON.stringify(
        { final_val_loss: result.finalValLoss, final_train_loss: result.finalTrainLoss, steps: result.steps, tokens_seen: result.tokensSeen, unigram_entropy_val: hUnigram, config },
        null,
        2,
      ),
    );
    model.dispose();
  },
});
export default stage;
