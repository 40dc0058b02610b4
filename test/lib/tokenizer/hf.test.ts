import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCorpus } from '../../../lib/corpus.ts';
import { EOT_TOKEN, loadTokenizer, makeTokenizer, parseTokenizerJson, saveTokenizer, trainBpe, type BpeTokenizer } from '../../../lib/tokenizer/index.ts';

let tmp: string;
let tok: BpeTokenizer;
const docs = loadCorpus({ source: 'sotu', maxDocs: 40 });

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokjson-test-'));
  tok = trainBpe(
    docs.slice(0, 10).map((d) => d.text),
    { vocabSize: 600 },
  );
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('tokenizer.json', () => {
  it('has the Hugging Face structure', () => {
    const p = path.join(tmp, 'tokenizer.json');
    saveTokenizer(tok, p);
    const text = fs.readFileSync(p, 'utf8');
    expect(text).toBe(tok.toTokenizerJson());
    const j = JSON.parse(text);
    expect(Object.keys(j)).toEqual(['version', 'truncation', 'padding', 'added_tokens', 'normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'model']);
    expect(j.version).toBe('1.0');
    expect(j.truncation).toBeNull();
    expect(j.padding).toBeNull();
    expect(j.normalizer).toBeNull();
    expect(j.post_processor).toBeNull();
    expect(j.added_tokens).toEqual([
      { id: 599, content: EOT_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ]);
    expect(j.pre_tokenizer).toEqual({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    expect(j.decoder).toEqual({ type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true });
    const { vocab, merges, ...rest } = j.model;
    expect(rest).toEqual({
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
    });
    expect(Object.keys(vocab).length).toBe(600);
    // written in id order (JSON.parse would reorder integer-like keys such as "0", so read the text)
    const idsInText = [...text.slice(text.indexOf(`"vocab"`)).matchAll(/^ {6}".*": (\d+),?$/gm)].map((m) => Number(m[1]));
    expect(idsInText).toEqual([...Array(600).keys()]);
    expect(vocab['!']).toBe(0);
    expect(vocab['Ġ']).toBe(220);
    expect(vocab[EOT_TOKEN]).toBe(599);
    expect(merges.length).toBe(600 - 257);
    for (const m of merges) {
      expect(typeof m).toBe('string');
      const [a, b] = m.split(' ');
      expect(vocab[a]).toBeTypeOf('number');
      expect(vocab[b]).toBeTypeOf('number');
      expect(vocab[a + b]).toBeTypeOf('number');
    }
  });

  it('loads back to identical encodings and fingerprint', () => {
    const p = path.join(tmp, 'rt.json');
    saveTokenizer(tok, p);
    const back = loadTokenizer(p);
    expect(back.kind).toBe('bpe');
    expect(back.vocabSize).toBe(tok.vocabSize);
    expect(back.eotId).toBe(tok.eotId);
    expect(back.fingerprint()).toBe(tok.fingerprint());
    expect(back.toTokenizerJson()).toBe(tok.toTokenizerJson());
    for (const d of docs.slice(10, 40)) expect(back.encode(d.text)).toEqual(tok.encode(d.text));
    expect(makeTokenizer('bpe', { path: p }).fingerprint()).toBe(tok.fingerprint());
  });

  it('reads the [left, right] merge form that tokenizers >= 0.20 writes', () => {
    const j = JSON.parse(tok.toTokenizerJson());
    j.model.merges = j.model.merges.map((m: string) => m.split(' '));
    j.model.ignore_merges = false;
    const p = path.join(tmp, 'pairs.json');
    fs.writeFileSync(p, JSON.stringify(j));
    const back = loadTokenizer(p);
    expect(back.fingerprint()).toBe(tok.fingerprint());
    expect(back.encode(docs[20].text)).toEqual(tok.encode(docs[20].text));
  });

  it('rejects what it cannot encode the same way, saying why', () => {
    const base = () => JSON.parse(tok.toTokenizerJson());
    const bad = (mutate: (j: any) => void) => {
      const j = base();
      mutate(j);
      return JSON.stringify(j);
    };
    expect(() => parseTokenizerJson('{', 'x.json')).toThrow(/x\.json: not valid JSON/);
    expect(() => parseTokenizerJson(bad((j) => (j.model.type = 'WordPiece')))).toThrow(/only "BPE"/);
    expect(() => parseTokenizerJson(bad((j) => (j.normalizer = { type: 'NFC' })))).toThrow(/normalizer/);
    expect(() => parseTokenizerJson(bad((j) => (j.pre_tokenizer = { type: 'Whitespace' })))).toThrow(/ByteLevel/);
    expect(() => parseTokenizerJson(bad((j) => (j.model.unk_token = '<unk>')))).toThrow(/unk_token/);
    expect(() => parseTokenizerJson(bad((j) => (j.model.merges[3] = 'nospace')))).toThrow(/merges\[3\]/);
    expect(() => parseTokenizerJson(bad((j) => delete j.model.vocab['Ġ']))).toThrow(/no token has id 220/);
    const p = path.join(tmp, 'noeot.json');
    fs.writeFileSync(p, bad((j) => (j.added_tokens = [])));
    expect(() => loadTokenizer(p)).toThrow(/<\|endoftext\|>/);
    expect(() => loadTokenizer(path.join(tmp, 'missing.json'))).toThrow(/cannot read tokenizer file/);
  });
});
