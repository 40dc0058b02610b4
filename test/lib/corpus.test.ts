import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusStats, loadCorpus, sotuDataDir, splitCorpus, type Doc } from '../../lib/corpus.ts';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'corpus-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function write(rel: string, content: string | Buffer): string {
  const p = path.join(tmp, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}

describe('SOTU corpus', () => {
  it('loads all 233 addresses in file-name (year) order with metadata', () => {
    const docs = loadCorpus({ source: 'sotu' });
    expect(docs.length).toBe(233);
    expect(docs[0].id).toBe('1790_george_washington_n.txt');
    expect(docs[0].text.startsWith('Fellow-Citizens of the Senate and House of Representatives')).toBe(true);
    expect(docs[0].meta).toEqual({ year: 1790, president: 'George Washington', party: 'none' });
    const ids = docs.map((d) => d.id);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(233);
    const years = docs.map((d) => d.meta!.year as number);
    for (let i = 1; i < years.length; i++) expect(years[i]).toBeGreaterThanOrEqual(years[i - 1]);
    const stats = corpusStats(docs);
    expect(stats.chars).toBeGreaterThan(10_000_000);
    expect(stats.chars).toBeLessThan(11_500_000);
    // The texts are the files' contents, unmodified.
    expect(docs[5].text).toBe(fs.readFileSync(path.join(sotuDataDir(), docs[5].id), 'utf8'));
  });

  it('is the default source and honours maxDocs', () => {
    const docs = loadCorpus({ maxDocs: 4 });
    expect(docs.map((d) => d.id)).toEqual([
      '1790_george_washington_n.txt',
      '1791_george_washington_n.txt',
      '1792_george_washington_n.txt',
      '1793_george_washington_n.txt',
    ]);
    expect(() => loadCorpus({ maxDocs: 0 })).toThrow(/maxDocs/);
  });
});

describe('splitCorpus', () => {
  const docs = loadCorpus({ source: 'sotu' });

  it('is deterministic, disjoint and covers every document', () => {
    const a = splitCorpus(docs, { val: 0.1, test: 0.1, seed: 1 });
    const b = splitCorpus(docs, { val: 0.1, test: 0.1, seed: 1 });
    const ids = (s: Doc[]) => s.map((d) => d.id);
    expect(ids(a.train)).toEqual(ids(b.train));
    expect(ids(a.val)).toEqual(ids(b.val));
    expect(ids(a.test)).toEqual(ids(b.test));
    expect(a.val.length).toBe(23);
    expect(a.test.length).toBe(23);
    expect(a.train.length).toBe(233 - 46);
    const all = [...ids(a.train), ...ids(a.val), ...ids(a.test)];
    expect(new Set(all).size).toBe(233);
    expect([...all].sort()).toEqual(docs.map((d) => d.id).sort());
    // corpus order kept inside a split
    expect(ids(a.val)).toEqual([...ids(a.val)].sort());
  });

  it('depends on the seed, not on the input order', () => {
    const a = splitCorpus(docs, { val: 0.1, test: 0.1, seed: 1 });
    const c = splitCorpus(docs, { val: 0.1, test: 0.1, seed: 2 });
    expect(c.val.map((d) => d.id)).not.toEqual(a.val.map((d) => d.id));
    const reversed = splitCorpus([...docs].reverse(), { val: 0.1, test: 0.1, seed: 1 });
    expect(new Set(reversed.val.map((d) => d.id))).toEqual(new Set(a.val.map((d) => d.id)));
    expect(new Set(reversed.test.map((d) => d.id))).toEqual(new Set(a.test.map((d) => d.id)));
  });

  it('keeps every split non-empty for 3+ docs and errors below', () => {
    const few = docs.slice(0, 3);
    for (const [val, test] of [
      [0.01, 0.01],
      [0.5, 0.45],
      [0.1, 0.8],
    ]) {
      const s = splitCorpus(few, { val, test, seed: 7 });
      expect(s.train.length).toBeGreaterThan(0);
      expect(s.val.length).toBeGreaterThan(0);
      expect(s.test.length).toBeGreaterThan(0);
    }
    expect(() => splitCorpus(docs.slice(0, 2), { val: 0.1, test: 0.1, seed: 1 })).toThrow(/at least 3/);
    expect(() => splitCorpus(docs, { val: 0, test: 0.1, seed: 1 })).toThrow(/val/);
    expect(() => splitCorpus(docs, { val: 0.6, test: 0.4, seed: 1 })).toThrow(/below 1/);
  });
});

describe('user corpus: directory of .txt', () => {
  it('reads .txt files recursively in sorted order, ids relative to the folder', () => {
    write('d1/b.txt', 'bee');
    write('d1/a.txt', '\uFEFFay'); // BOM dropped
    write('d1/sub/c.txt', 'sea\n');
    write('d1/sub/ignored.md', 'not a txt');
    write('d1/A.txt', 'upper');
    const docs = loadCorpus({ source: { dir: path.join(tmp, 'd1') } });
    expect(docs).toEqual([
      { id: 'A.txt', text: 'upper' },
      { id: 'a.txt', text: 'ay' },
      { id: 'b.txt', text: 'bee' },
      { id: 'sub/c.txt', text: 'sea\n' },
    ]);
    // a plain path string works too
    expect(loadCorpus({ source: path.join(tmp, 'd1'), maxDocs: 2 }).map((d) => d.id)).toEqual(['A.txt', 'a.txt']);
  });

  it('errors name the path', () => {
    const missing = path.join(tmp, 'nope');
    expect(() => loadCorpus({ source: { dir: missing } })).toThrow(missing);
    fs.mkdirSync(path.join(tmp, 'empty'), { recursive: true });
    expect(() => loadCorpus({ source: { dir: path.join(tmp, 'empty') } })).toThrow(/no \.txt files/);
    const blank = write('d2/blank.txt', '  \n');
    write('d2/ok.txt', 'fine');
    expect(() => loadCorpus({ source: { dir: path.join(tmp, 'd2') } })).toThrow(`${blank}: empty text`);
    const bad = write('d3/bad.txt', Buffer.from([0x66, 0xff, 0xfe]));
    expect(() => loadCorpus({ source: { dir: path.join(tmp, 'd3') } })).toThrow(`${bad} is not valid UTF-8`);
    const file = write('d4/file.txt', 'x');
    expect(() => loadCorpus({ source: { dir: file } })).toThrow(/not a directory/);
  });
});

describe('user corpus: jsonl', () => {
  it('reads a text field per line, skipping blank lines', () => {
    const p = write('c.jsonl', '{"text":"one","k":1}\n\n{"text":"two","k":"b"}\r\n{"body":"x","text":"thr\\nee"}\n');
    const docs = loadCorpus({ source: { jsonl: p } });
    expect(docs).toEqual([
      { id: 'c.jsonl:1', text: 'one' },
      { id: 'c.jsonl:3', text: 'two' },
      { id: 'c.jsonl:4', text: 'thr\nee' },
    ]);
    expect(loadCorpus({ source: p, maxDocs: 1 })).toEqual([{ id: 'c.jsonl:1', text: 'one' }]);
    const q = write('d.jsonl', '{"body":"alpha","name":"x1"}\n{"body":"beta","name":7}\n');
    expect(loadCorpus({ source: { jsonl: q, field: 'body', idField: 'name' } })).toEqual([
      { id: 'x1', text: 'alpha' },
      { id: '7', text: 'beta' },
    ]);
  });

  it('errors name the file, the line and the key', () => {
    const missing = path.join(tmp, 'missing.jsonl');
    expect(() => loadCorpus({ source: { jsonl: missing } })).toThrow(`corpus file ${missing} does not exist`);
    const notJson = write('e1.jsonl', '{"text":"ok"}\n{"text": oops}\n');
    expect(() => loadCorpus({ source: { jsonl: notJson } })).toThrow(`${notJson} line 2: not valid JSON`);
    const noField = write('e2.jsonl', '{"text":"ok"}\n{"text":"ok"}\n{"body":"x"}\n');
    expect(() => loadCorpus({ source: { jsonl: noField } })).toThrow(`${noField} line 3: no field "text"`);
    expect(() => loadCorpus({ source: { jsonl: noField, field: 'body' } })).toThrow(`${noField} line 1: no field "body"`);
    const notString = write('e3.jsonl', '{"text":5}\n');
    expect(() => loadCorpus({ source: { jsonl: notString } })).toThrow(`${notString} line 1: field "text" is not a string`);
    const emptyText = write('e4.jsonl', '{"text":"a"}\n{"text":""}\n');
    expect(() => loadCorpus({ source: { jsonl: emptyText } })).toThrow(`${emptyText} line 2, field "text": empty text`);
    const array = write('e5.jsonl', '[1,2]\n');
    expect(() => loadCorpus({ source: { jsonl: array } })).toThrow(`${array} line 1: not a JSON object`);
    const empty = write('e6.jsonl', '\n\n');
    expect(() => loadCorpus({ source: { jsonl: empty } })).toThrow(`corpus ${empty} has no documents`);
    const dup = write('e7.jsonl', '{"text":"a","id":"x"}\n{"text":"b","id":"x"}\n');
    expect(() => loadCorpus({ source: { jsonl: dup, idField: 'id' } })).toThrow(/duplicate document id "x"/);
    const noId = write('e8.jsonl', '{"text":"a"}\n');
    expect(() => loadCorpus({ source: { jsonl: noId, idField: 'id' } })).toThrow(`${noId} line 1: no string or number id field "id"`);
  });
});
