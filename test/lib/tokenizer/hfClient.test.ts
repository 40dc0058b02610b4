/**
 * A real client reads our files: Hugging Face's tokenizers.js (@huggingface/tokenizers, pure JS)
 * loads the tokenizer.json + tokenizer_config.json we write and encodes corpus text to exactly the
 * ids our encoder gives, for our trained BPE and for GPT-2's tokenizer. And our reader accepts the
 * GPT-2 tokenizer.json as Hugging Face writes it ("" subword prefix/suffix, ignore_merges false),
 * while refusing ignore_merges: true (it would encode differently).
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { loadCorpus } from '../../../lib/corpus.ts';
import { gpt2Tokenizer, parseTokenizerJson, tokenizerConfig, trainBpe, type Tokenizer } from '../../../lib/tokenizer/index.ts';
import { BpeTokenizer } from '../../../lib/tokenizer/bpe.ts';

const docs = loadCorpus({ source: 'sotu', maxDocs: 60 });
// Held-out documents (not the BPE's training texts), cut to keep the test fast, plus awkward text.
const texts = [
  ...docs.slice(40, 60).map((d) => d.text.slice(0, 6000)),
  "  Leading spaces, tabs\t\tand\nnew lines\n\n\nend   ",
  "Numbers 1234567 3.14159, it's we're I'll they've DON'T",
  'Unicode: café naïve — “quotes” 日本語 🤖 emoji ﬁ ligature',
];

function client(tok: Tokenizer, nCtx: number): HfTokenizer {
  const json = JSON.parse(tok.toTokenizerJson());
  return new HfTokenizer(json, tokenizerConfig(parseTokenizerJson(tok.toTokenizerJson()), nCtx));
}

function compare(tok: Tokenizer, hf: HfTokenizer): number {
  let n = 0;
  for (const t of texts) {
    const ours = tok.encode(t);
    const theirs = hf.encode(t, { add_special_tokens: false }).ids;
    expect(theirs, t.slice(0, 60)).toEqual(ours);
    expect(hf.decode(ours)).toBe(t);
    n += ours.length;
  }
  return n;
}

describe('tokenizer.json in @huggingface/tokenizers', () => {
  it('our trained BPE: identical ids on held-out corpus text', () => {
    const tok = trainBpe(
      docs.slice(0, 20).map((d) => d.text),
      { vocabSize: 1024 },
    );
    expect(compare(tok, client(tok, 128))).toBeGreaterThan(10_000);
  });

  it("GPT-2's tokenizer: identical ids on corpus text", () => {
    const tok = gpt2Tokenizer();
    expect(compare(tok, client(tok, 1024))).toBeGreaterThan(10_000);
  });
});

describe('reading tokenizer.json as Hugging Face writes it for GPT-2', () => {
  const hfStyle = (): any => {
    const j = JSON.parse(gpt2Tokenizer().toTokenizerJson());
    j.model.continuing_subword_prefix = '';
    j.model.end_of_word_suffix = '';
    j.model.ignore_merges = false;
    j.model.merges = j.model.merges.map((m: string) => m.split(' '));
    return j;
  };

  it('"" subword prefix and suffix mean none: the same tokenizer', () => {
    const def = parseTokenizerJson(JSON.stringify(hfStyle()), 'gpt2/tokenizer.json');
    expect(new BpeTokenizer(def, 'gpt2').fingerprint()).toBe(gpt2Tokenizer().fingerprint());
  });

  it('ignore_merges: true is refused, saying why', () => {
    const j = hfStyle();
    j.model.ignore_merges = true;
    expect(() => parseTokenizerJson(JSON.stringify(j), 'x.json')).toThrow(/x\.json: model\.ignore_merges is true; only false is supported/);
    const k = hfStyle();
    k.model.continuing_subword_prefix = '##';
    expect(() => parseTokenizerJson(JSON.stringify(k), 'x.json')).toThrow(/continuing_subword_prefix is "##"/);
  });
});
