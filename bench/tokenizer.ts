/**
 * Tokenizer benchmark on the SOTU corpus: BPE training time (vocab 4096, train split), encode and
 * decode time for all documents, tokens and bytes/token, tokenizeSplits time; GPT-2 (our cached
 * encoder over the r50k ranks vs js-tiktoken). Run: `npx tsx bench/tokenizer.ts [vocabSize]`, or via
 * the bench dispatcher, which calls the default export.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { getEncoding } from 'js-tiktoken';
import { corpusStats, loadCorpus, splitCorpus } from '../lib/corpus.ts';
import { makeTokenizer, type Tokenizer } from '../lib/tokenizer/index.ts';
import { tokenizeSplits } from '../lib/tokens.ts';

function secs(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(2);
}

export default async function run(args: string[] = []): Promise<void> {
  const vocabSize = Number(args[0] ?? 4096);
  let t0 = performance.now();
  const docs = loadCorpus({ source: 'sotu' });
  const all = corpusStats(docs);
  console.log(`load: ${docs.length} docs, ${all.chars} chars, ${all.bytes} bytes in ${secs(t0)} s`);
  const splits = splitCorpus(docs, { val: 0.1, test: 0.1, seed: 0 });
  const train = corpusStats(splits.train);
  console.log(`train split: ${train.docs} docs, ${train.chars} chars`);

  t0 = performance.now();
  const bpe = makeTokenizer('bpe', { texts: splits.train.map((d) => d.text), vocabSize });
  console.log(`bpe train (vocab ${vocabSize}): ${secs(t0)} s`);

  const encodeAll = (name: string, tok: Tokenizer): void => {
    let t = performance.now();
    const enc = docs.map((d) => tok.encode(d.text));
    const encS = secs(t);
    const n = enc.reduce((s, e) => s + e.length, 0);
    t = performance.now();
    let bad = 0;
    enc.forEach((ids, i) => {
      if (tok.decode(ids) !== docs[i].text) bad++;
    });
    console.log(`${name}: encode all ${docs.length} docs ${encS} s, decode ${secs(t)} s; ${n} tokens, ${(all.bytes / n).toFixed(3)} bytes/token, round-trip failures ${bad}`);
  };
  encodeAll(`bpe-${vocabSize}`, bpe);

  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tokens-'));
  try {
    t0 = performance.now();
    const m = tokenizeSplits(splits, bpe, out);
    console.log(`tokenizeSplits (verify on): ${secs(t0)} s; tokens train/val/test ${m.splits.train.tokens}/${m.splits.val.tokens}/${m.splits.test.tokens}`);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }

  t0 = performance.now();
  const gpt2 = makeTokenizer('gpt2');
  console.log(`gpt2 build from js-tiktoken ranks: ${secs(t0)} s`);
  encodeAll('gpt2', gpt2);
  const ref = getEncoding('gpt2');
  t0 = performance.now();
  let n = 0;
  for (const d of docs) n += ref.encode(d.text).length;
  console.log(`js-tiktoken gpt2 (reference): encode all ${secs(t0)} s, ${n} tokens`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await run(process.argv.slice(2));
}
