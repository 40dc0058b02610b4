import { describe, expect, it } from 'vitest';
import { loadCorpus } from '../../../lib/corpus.ts';
import {
  BYTE_TO_CHAR,
  CHAR_TO_BYTE,
  EOT_TOKEN,
  GPT2_PATTERN,
  countWords,
  pretokenize,
  trainBpe,
  trainBpeFromCounts,
} from '../../../lib/tokenizer/index.ts';

const mergeStrings = (tok: { definition: { merges: Array<[string, string]> } }) => tok.definition.merges.map(([a, b]) => `${a} ${b}`);

describe('byte table and pre-tokenizer', () => {
  it('maps bytes like GPT-2 bytes_to_unicode', () => {
    expect(BYTE_TO_CHAR[0x20]).toBe('Ġ');
    expect(BYTE_TO_CHAR[0x0a]).toBe('Ċ');
    expect(BYTE_TO_CHAR[0x00]).toBe('Ā');
    expect(BYTE_TO_CHAR[0x41]).toBe('A');
    expect(BYTE_TO_CHAR[0xad]).toBe('Ń') // the 68th unprintable byte → U+0100 + 67;
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
    for (let b = 0; b < 256; b++) expect(CHAR_TO_BYTE.get(BYTE_TO_CHAR[b])).toBe(b);
  });

  it('splits text like GPT-2', () => {
    expect(GPT2_PATTERN).toBe(String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`);
    expect(pretokenize("Hello world, it's 2024!  Ok\n\n")).toEqual(['Hello', ' world', ',', ' it', "'s", ' 2024', '!', ' ', ' Ok', '\n\n']);
  });
});

describe('BPE training: merge rule on a hand-made corpus', () => {
  it('counts pairs over words, breaks ties by the smallest pair', () => {
    // words: "aaab", " aab", " ab" (once each). Pairs: (a,a) 2+1 = 3, (a,b) 3, (Ġ,a) 2.
    // 1. tie at 3: ("a","a") < ("a","b") → "a a"; words: aa a b | Ġ aa b | Ġ a b
    // 2. (a,b) = 2 → "a b"; words: aa ab | Ġ aa b | Ġ ab; every pair now has count 1
    // 3. smallest pair: ("aa","ab") (since "aa" < "Ġ" and "ab" < "b") → "aa ab"
    // 4. ("aa","b") → words: Ġ aab | Ġ ab; 5. ("Ġ","aab") < ("Ġ","ab"); 6. ("Ġ","ab"); then none left.
    const tok = trainBpe(['aaab aab ab'], { vocabSize: 300 });
    expect(mergeStrings(tok)).toEqual(['a a', 'a b', 'aa ab', 'aa b', 'Ġ aab', 'Ġ ab']);
    expect(tok.vocabSize).toBe(256 + 6 + 1); // ran out of pairs before 300
    expect(tok.eotId).toBe(262);
    expect(tok.tokenString(262)).toBe(EOT_TOKEN);
    expect(tok.tokenString(256)).toBe('aa');
    expect(tok.encode('aaab aab ab')).toEqual([258, 260, 261]);
  });

  it('weights pairs by word counts across texts', () => {
    // words: "ab" 1, " ab" 2, " cd" 1, "cd" 1. (a,b) = 3 first; then (c,d) = 2 ties (Ġ,ab) = 2 and
    // "c" < "Ġ"; then "Ġ ab" (2), "Ġ cd" (1).
    const tok = trainBpe(['ab ab ab cd', 'cd'], { vocabSize: 1000 });
    expect(mergeStrings(tok)).toEqual(['a b', 'c d', 'Ġ ab', 'Ġ cd']);
    expect(tok.encode('ab ab cd')).toEqual([256, 258, 259]);
    expect(tok.encode('abc')).toEqual([256, tok.encode('c')[0]]);
  });

  it('stops at vocabSize (special token included) and checks the size', () => {
    const tok = trainBpe(['the cat sat on the mat with the hat'], { vocabSize: 260 });
    expect(tok.vocabSize).toBe(260);
    expect(tok.definition.merges.length).toBe(3);
    expect(mergeStrings(tok)[0]).toBe('a t');
    expect(tok.eotId).toBe(259);
    expect(() => trainBpe(['x'], { vocabSize: 256 })).toThrow(/≥ 257/);
    expect(() => trainBpeFromCounts(new Map(), { vocabSize: 300 }).tokens.length).not.toThrow();
  });

  it('byte ids follow GPT-2 order', () => {
    const tok = trainBpe(['x'], { vocabSize: 257 });
    expect(tok.encode('!')).toEqual([0]);
    expect(tok.encode(' ')).toEqual([220]);
    expect(tok.encode('\n')).toEqual([198]);
    expect(tok.encode('A')).toEqual([32]);
  });
});

describe('BPE on SOTU', () => {
  const docs = loadCorpus({ source: 'sotu' });

  it('the fast trainer equals a naive recount-everything trainer', () => {
    const texts = docs.slice(100, 103).map((d) => d.text);
    const fast = trainBpe(texts, { vocabSize: 600 });
    // naive: words as arrays of token strings; recount every pair before every merge
    const words = [...countWords(texts)].map(([w, c]) => ({
      syms: [...new TextEncoder().encode(w)].map((b) => BYTE_TO_CHAR[b]),
      c,
    }));
    const merges: string[] = [];
    const vocab = new Set<string>(BYTE_TO_CHAR);
    while (vocab.size < 599) {
      const counts = new Map<string, number>();
      for (const { syms, c } of words) {
        for (let i = 0; i + 1 < syms.length; i++) {
          const k = `${syms[i]} ${syms[i + 1]}`;
          counts.set(k, (counts.get(k) ?? 0) + c);
        }
      }
      let best: string | null = null;
      let bestC = 0;
      for (const [k, c] of counts) {
        if (c > bestC || (c === bestC && best !== null && k < best)) {
          best = k;
          bestC = c;
        }
      }
      if (best === null) break;
      merges.push(best);
      const [a, b] = best.split(' ');
      vocab.add(a + b);
      for (const w of words) {
        const out: string[] = [];
        for (let i = 0; i < w.syms.length; ) {
          if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
            out.push(a + b);
            i += 2;
          } else out.push(w.syms[i++]);
        }
        w.syms = out;
      }
    }
    expect(mergeStrings(fast)).toEqual(merges);
  });

  it('round-trips every SOTU document (vocab 1024 trained on 20 docs)', () => {
    const tok = trainBpe(
      docs.slice(0, 20).map((d) => d.text),
      { vocabSize: 1024 },
    );
    expect(tok.vocabSize).toBe(1024);
    expect(tok.eotId).toBe(1023);
    let tokens = 0;
    let bytes = 0;
    for (const d of docs) {
      const ids = tok.encode(d.text);
      expect(tok.decode(ids)).toBe(d.text);
      tokens += ids.length;
      bytes += Buffer.byteLength(d.text);
      for (const id of ids) if (id === tok.eotId) throw new Error('encode produced eot');
    }
    expect(bytes / tokens).toBeGreaterThan(2.5);
  });

  it('round-trips awkward strings', () => {
    const tok = trainBpe(
      docs.slice(0, 5).map((d) => d.text),
      { vocabSize: 512 },
    );
    for (const s of ['', ' ', '\n', 'a', '  leading and trailing  ', '\u0000\t\r\n\u00a0', '日本語 🎉 naïve café', `${EOT_TOKEN} as text`, "don't 'll 're"]) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
    // A literal "<|endoftext|>" in text is plain text, never the special id.
    expect(tok.encode(EOT_TOKEN)).not.toContain(tok.eotId);
    expect(tok.decode([tok.eotId])).toBe(EOT_TOKEN);
    expect(() => tok.decode([512])).toThrow(/outside the vocabulary/);
  });

  it('the heap BPE for long pieces equals the simple one', () => {
    const tok = trainBpe(
      docs.slice(0, 8).map((d) => d.text),
      { vocabSize: 700 },
    );
    const squashed = docs[50].text.replace(/[^A-Za-z]/g, ''); // one huge \p{L}+ piece
    const samples = [...pretokenize(docs[60].text).slice(0, 2000), squashed.slice(0, 3000), 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'];
    for (const s of samples) {
      const ids = tok.pieceByteIds(s);
      expect(tok.bpeIdsHeap([...ids])).toEqual(tok.bpeIdsSimple([...ids]));
    }
    const t0 = performance.now();
    const ids = tok.encode(squashed);
    expect(tok.decode(ids)).toBe(squashed);
    expect(performance.now() - t0).toBeLessThan(5000); // one piece of tens of thousands of letters
  });

  it('is deterministic: same input, identical tokenizer.json bytes', () => {
    const texts = docs.slice(30, 45).map((d) => d.text);
    const a = trainBpe(texts, { vocabSize: 800 });
    const b = trainBpe(texts, { vocabSize: 800 });
    expect(a.toTokenizerJson()).toBe(b.toTokenizerJson());
    expect(a.fingerprint()).toBe(b.fingerprint());
    expect(a.fingerprint()).toMatch(/^[0-9a-f]{64}$/);
    // word counts are all that training sees: counting text by text or at once is the same
    const c = trainBpeFromCounts(countWords([texts.join('')]), { vocabSize: 800 });
    expect(c.merges.length).toBeGreaterThan(0);
    const d = trainBpe(texts.slice(0, 14), { vocabSize: 800 });
    expect(d.fingerprint()).not.toBe(a.fingerprint());
  });
});
