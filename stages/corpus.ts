/** corpus: load the documents and split them by document into train / val / test. */
import fs from 'node:fs';
import path from 'node:path';
import { corpusStats, loadCorpus, splitCorpus, type CorpusSource, type Doc } from '../lib/corpus.ts';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';

export const SPLITS = ['train', 'val', 'test'] as const;

/** 'sotu' | 'dir:<path>' | 'jsonl:<path>' -> the library's source (paths relative to the project root). */
export function corpusSource(p: Params['corpus']): CorpusSource {
  if (p.source === 'sotu') return 'sotu';
  const [kind, ...rest] = p.source.split(':');
  const where = path.resolve(rest.join(':'));
  return kind === 'dir' ? { dir: where } : { jsonl: where, field: p.text_field ?? 'text' };
}

export function readSplitDocs(dir: string, split: (typeof SPLITS)[number]): Doc[] {
  return fs
    .readFileSync(path.join(dir, `${split}.jsonl`), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Doc);
}

const stage = defineStage<Params>()({
  name: 'corpus',
  description: 'Load the corpus (SOTU addresses by default) and split it by document into train/val/test',
  params: ['corpus'],
  env: ['corpus_source'],
  outputs: ['train.jsonl', 'val.jsonl', 'test.jsonl', 'manifest.json'],
  async run(ctx) {
    const p = ctx.params.corpus;
    const docs = loadCorpus({ source: corpusSource(p), maxDocs: p.max_docs || undefined });
    const splits = splitCorpus(docs, { val: p.val_fraction, test: p.test_fraction, seed: p.split_seed });
    const manifest: Record<string, unknown> = { source: p.source, documents: docs.length };
    for (const name of SPLITS) {
      const lines = splits[name].map((d) => JSON.stringify(d)).join('\n') + '\n';
      fs.writeFileSync(path.join(ctx.outDir, `${name}.jsonl`), lines);
      const s = corpusStats(splits[name]);
      manifest[name] = { ...s, ids: splits[name].map((d) => d.id) };
      ctx.metrics({ [`docs_${name}`]: s.docs, [`chars_${name}`]: s.chars });
      ctx.log(`${name}: ${s.docs} documents, ${s.chars.toLocaleString()} characters`);
    }
    fs.writeFileSync(path.join(ctx.outDir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  },
});
export default stage;
