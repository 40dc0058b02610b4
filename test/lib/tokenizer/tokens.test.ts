import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCorpus, splitCorpus } from '../../../lib/corpus.ts';
import { trainBpe } from '../../../lib/tokenizer/index.ts';
import {
  dtypeForVocab,
  readManifest,
  readTokenSplits,
  readTokenStream,
  tokenizeSplits,
  writeTokenStream,
  TokenStreamWriter,
} from '../../../lib/tokens.ts';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokens-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('token stream files', () => {
  it('picks the dtype from the vocabulary size', () => {
    expect(dtypeForVocab(4096)).toBe('uint16');
    expect(dtypeForVocab(65536)).toBe('uint16');
    expect(dtypeForVocab(65537)).toBe('uint32');
  });

  it('round-trips uint16 (little-endian, 2 bytes an id)', () => {
    const ids = Array.from({ length: 200_003 }, (_, i) => (i * 7919) % 65536);
    const p = path.join(tmp, 'a.bin');
    const r = writeTokenStream(p, ids, 65536);
    expect(r).toEqual({ path: p, count: ids.length, dtype: 'uint16' });
    const raw = fs.readFileSync(p);
    expect(raw.length).toBe(2 * ids.length);
    expect(raw.readUInt16LE(2 * 5)).toBe(ids[5]);
    const back = readTokenStream(p, 'uint16');
    expect(back).toBeInstanceOf(Uint16Array);
    expect(Array.from(back)).toEqual(ids);
  });

  it('round-trips uint32 and chunked input', () => {
    const chunks = [new Uint32Array([0, 1, 50256]), [70000, 99999], new Uint32Array(0), [3]];
    const p = path.join(tmp, 'b.bin');
    const r = writeTokenStream(p, chunks, 100000);
    expect(r.dtype).toBe('uint32');
    expect(r.count).toBe(6);
    expect(fs.statSync(p).size).toBe(24);
    const back = readTokenStream(p, 'uint32');
    expect(back).toBeInstanceOf(Uint32Array);
    expect(Array.from(back)).toEqual([0, 1, 50256, 70000, 99999, 3]);
  });

  it('rejects ids outside the vocabulary and leaves no file', () => {
    const p = path.join(tmp, 'c.bin');
    expect(() => writeTokenStream(p, [1, 2, 300], 300)).toThrow(/id 300 at position 2/);
    expect(fs.existsSync(p)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const w = new TokenStreamWriter(path.join(tmp, 'd.bin'), 10);
    w.write([1]);
    w.close();
    expect(() => w.write([2])).toThrow(/closed/);
    fs.writeFileSync(path.join(tmp, 'odd.bin'), Buffer.from([1, 2, 3]));
    expect(() => readTokenStream(path.join(tmp, 'odd.bin'), 'uint16')).toThrow(/not a multiple of 2/);
    expect(() => readTokenStream(path.join(tmp, 'odd.bin'))).toThrow(/no dtype given/);
  });
});

describe('tokenizeSplits', () => {
  it('writes three streams with EOT between documents and a manifest', () => {
    const docs = loadCorpus({ source: 'sotu', maxDocs: 12 });
    const splits = splitCorpus(docs, { val: 0.2, test: 0.2, seed: 3 });
    const tok = trainBpe(
      splits.train.map((d) => d.text),
      { vocabSize: 500 },
    );
    const out = path.join(tmp, 'streams');
    const m = tokenizeSplits(splits, tok, out);
    expect(readManifest(out)).toEqual(m);
    expect(m.vocab_size).toBe(500);
    expect(m.dtype).toBe('uint16');
    expect(m.eot_id).toBe(499);
    expect(m.tokenizer_fingerprint).toBe(tok.fingerprint());
    expect(m.tokenizer_kind).toBe('bpe');
    const { train, val, test } = readTokenSplits(out);
    for (const [name, arr] of [
      ['train', train],
      ['val', val],
      ['test', test],
    ] as const) {
      const s = m.splits[name];
      const ds = splits[name];
      expect(s.documents).toBe(ds.length);
      expect(s.doc_ids).toEqual(ds.map((d) => d.id));
      expect(s.tokens).toBe(arr.length);
      expect(arr).toEqual(readTokenStream(path.join(out, `${name}.bin`))); // dtype from the manifest
      // d1 EOT d2 EOT ... dn
      const expected: number[] = [];
      ds.forEach((d, i) => {
        if (i > 0) expected.push(tok.eotId);
        expected.push(...tok.encode(d.text));
      });
      expect(Array.from(arr)).toEqual(expected);
      expect(s.text_tokens).toBe(arr.length - (ds.length - 1));
      expect(s.bytes).toBe(ds.reduce((b, d) => b + Buffer.byteLength(d.text), 0));
      expect(s.bytes_per_token).toBeCloseTo(s.bytes / s.text_tokens, 10);
      // splitting the stream at EOT gives back every document
      const parts: number[][] = [[]];
      for (const id of arr) id === tok.eotId ? parts.push([]) : parts[parts.length - 1].push(id);
      expect(parts.map((p) => tok.decode(p))).toEqual(ds.map((d) => d.text));
    }
    const sumBytes = m.splits.train.bytes + m.splits.val.bytes + m.splits.test.bytes;
    const sumText = m.splits.train.text_tokens + m.splits.val.text_tokens + m.splits.test.text_tokens;
    expect(m.bytes_per_token).toBeCloseTo(sumBytes / sumText, 10);
  });
});
