/** tokenize: train the BPE on the train split (or take GPT-2's), write token streams per split. */
import path from 'node:path';
import { makeTokenizer, saveTokenizer } from '../lib/tokenizer/index.ts';
import { tokenizeSplits } from '../lib/tokens.ts';
import { readSplitDocs } from './corpus.ts';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';

const stage = defineStage<Params>()({
  name: 'tokenize',
  description: 'Byte-level BPE trained on the train split (or GPT-2 r50k); token streams per split',
  params: ['tokenizer'],
  inputs: { corpus: { stage: 'corpus' } },
  outputs: ['tokenizer.json', 'train.bin', 'val.bin', 'test.bin', 'manifest.json'],
  async run(ctx) {
    const p = ctx.params.tokenizer;
    const splits = {
      train: readSplitDocs(ctx.inputs.corpus, 'train'),
      val: readSplitDocs(ctx.inputs.corpus, 'val'),
      test: readSplitDocs(ctx.inputs.corpus, 'test'),
    };
    ctx.log(p.kind === 'bpe' ? `training byte-level BPE, vocab ${p.vocab_size}, on ${splits.train.length} documents` : 'GPT-2 r50k_base');
    const tok = makeTokenizer(p.kind, { texts: splits.train.map((d) => d.text), vocabSize: p.vocab_size });
    saveTokenizer(tok, path.join(ctx.outDir, 'tokenizer.json'));
    const total = splits.train.length + splits.val.length + splits.test.length;
    let done = 0;
    const m = tokenizeSplits(splits, tok, ctx.outDir, {
      onProgress: () => ctx.progress(++done, total),
    });
    ctx.metrics({
      tokens_train: m.splits.train.tokens,
      tokens_val: m.splits.val.tokens,
      tokens_test: m.splits.test.tokens,
      vocab_size: m.vocab_size,
      bytes_per_token: m.bytes_per_token,
    });
    ctx.log(`tokens: train ${m.splits.train.tokens}, val ${m.splits.val.tokens}, test ${m.splits.test.tokens}; ${m.bytes_per_token.toFixed(3)} bytes/token`);
  },
});
export default stage;
