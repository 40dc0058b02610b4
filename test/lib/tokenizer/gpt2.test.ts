import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getEncoding } from 'js-tiktoken';
import { describe, expect, it } from 'vitest';
import { loadCorpus } from '../../../lib/corpus.ts';
import { GPT2_EOT_ID, loadTokenizer, makeTokenizer, saveTokenizer } from '../../../lib/tokenizer/index.ts';

describe('gpt2 tokenizer', () => {
  const tok = makeTokenizer('gpt2');

  it('has GPT-2 ids', () => {
    expect(tok.kind).toBe('gpt2');
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eotId).toBe(50256);
    expect(GPT2_EOT_ID).toBe(50256);
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' the')).toEqual([262]);
    expect(tok.decode([15496, 995, 50256])).toBe('Hello world<|endoftext|>');
    expect(tok.fingerprint()).toMatch(/^[0-9a-f]{64}$/);
  });

  it('matches js-tiktoken on SOTU text and awkward strings', () => {
    const ref = getEncoding('gpt2');
    const texts = loadCorpus({ source: 'sotu' })
      .filter((_, i) => i % 12 === 0)
      .map((d) => d.text);
    texts.push('\u0000\t\r\n  x\u00a0y 日本語 🎉 naïve   spaces\n\n\nend  ', "I'm ’quoted’ — 1,234.5 %");
    for (const t of texts) {
      const ids = tok.encode(t);
      expect(ids).toEqual(ref.encode(t));
      expect(tok.decode(ids)).toBe(t);
    }
  });

  it('saves as tokenizer.json and loads back as gpt2', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt2-test-'));
    try {
      const p = path.join(dir, 'tokenizer.json');
      saveTokenizer(tok, p);
      const j = JSON.parse(fs.readFileSync(p, 'utf8'));
      expect(j.model.vocab['hello']).toBe(31373);
      expect(j.model.merges[0]).toBe('Ġ t');
      expect(j.model.merges.length).toBe(50000);
      const back = loadTokenizer(p);
      expect(back.kind).toBe('gpt2');
      expect(back.fingerprint()).toBe(tok.fingerprint());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects an unknown kind', () => {
    expect(() => makeTokenizer('word' as never)).toThrow(/unknown tokenizer kind/);
    expect(() => makeTokenizer('bpe')).toThrow(/needs training texts/);
  });
});
