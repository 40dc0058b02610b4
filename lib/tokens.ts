/**
 * Binary token streams and their manifest.
 *
 * A stream file is the raw ids, little-endian, no header: uint16 when the vocabulary has at most
 * 65,536 ids, else uint32 (numpy: np.memmap(path, dtype='<u2' or '<u4')). The dtype is recorded in
 * the manifest.json beside the files. A split's stream is its documents' ids concatenated in split
 * order with the end-of-text id BETWEEN documents (d1 EOT d2 EOT … dn: no leading or trailing EOT),
 * so tokens = text tokens + (documents − 1).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type AtomicFileSync, openFileAtomicSync, writeFileAtomicSync } from '../base/atomic.ts';
import type { Doc } from './corpus.ts';
import type { Tokenizer, TokenizerKind } from './tokenizer/types.ts';

export type TokenDtype = 'uint16' | 'uint32';
/** Token ids in memory: a stream as read from disk (uint16 or uint32) or windows cut from one (int32). */
export type TokenArray = Uint16Array | Uint32Array | Int32Array;

/** uint16 when every id fits (vocabSize ≤ 65536), else uint32. */
export function dtypeForVocab(vocabSize: number): TokenDtype {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new Error(`vocabSize must be a positive integer, got ${vocabSize}`);
  if (vocabSize > 2 ** 32) throw new Error(`vocabSize ${vocabSize} does not fit uint32 ids`);
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

function bytesPer(dtype: TokenDtype): number {
  return dtype === 'uint16' ? 2 : 4;
}

const CHUNK_IDS = 1 << 16;

/**
 * Streams ids to a file through a fixed 256 KiB buffer. Checks every id against the vocabulary.
 * Writes to a temporary file renamed into place on close() (base/atomic.ts), so a crash never
 * leaves a partial stream.
 */
export class TokenStreamWriter {
  readonly path: string;
  readonly dtype: TokenDtype;
  readonly vocabSize: number;
  private readonly out: AtomicFileSync;
  private readonly buf: Buffer;
  private fill = 0; // ids in buf
  private written = 0;
  private closed = false;

  constructor(file: string, vocabSize: number) {
    this.path = file;
    this.vocabSize = vocabSize;
    this.dtype = dtypeForVocab(vocabSize);
    this.out = openFileAtomicSync(file);
    this.buf = Buffer.alloc(CHUNK_IDS * bytesPer(this.dtype));
  }

  /** Number of ids written so far. */
  get count(): number {
    return this.written + this.fill;
  }

  write(ids: ArrayLike<number>): void {
    if (this.closed) throw new Error(`token stream ${this.path} is already closed`);
    const wide = this.dtype === 'uint32';
    const v = this.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(Number.isInteger(id) && id >= 0 && id < v)) {
        this.abort();
        throw new RangeError(`token stream ${this.path}: id ${id} at position ${this.count} is outside [0, ${v})`);
      }
      if (wide) this.buf.writeUInt32LE(id, this.fill * 4);
      else this.buf.writeUInt16LE(id, this.fill * 2);
      if (++this.fill === CHUNK_IDS) this.flush();
    }
  }

  private flush(): void {
    if (this.fill === 0) return;
    const n = this.fill * bytesPer(this.dtype);
    let off = 0;
    while (off < n) off += fs.writeSync(this.out.fd, this.buf, off, n - off);
    this.written += this.fill;
    this.fill = 0;
  }

  /** Remove the temporary file (after an error). */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.out.abort();
  }

  /** Flush, close and move the file into place. Returns the id count and dtype. */
  close(): { path: string; count: number; dtype: TokenDtype } {
    if (this.closed) throw new Error(`token stream ${this.path} is already closed`);
    this.flush();
    this.closed = true;
    this.out.commit();
    return { path: this.path, count: this.written, dtype: this.dtype };
  }
}

function isIdArray(x: unknown): x is ArrayLike<number> {
  if (ArrayBuffer.isView(x)) return true;
  if (!Array.isArray(x)) return false;
  return x.length === 0 || typeof x[0] === 'number';
}

/**
 * Write ids (one array, or an iterable of arrays written one after another) to file as a stream
 * of the dtype that vocabSize calls for.
 */
export function writeTokenStream(
  file: string,
  ids: ArrayLike<number> | Iterable<ArrayLike<number>>,
  vocabSize: number,
): { path: string; count: number; dtype: TokenDtype } {
  const w = new TokenStreamWriter(file, vocabSize);
  if (isIdArray(ids)) {
    w.write(ids);
  } else {
    for (const chunk of ids as Iterable<ArrayLike<number>>) w.write(chunk);
  }
  return w.close();
}

/**
 * Read a stream file. dtype defaults to what manifest.json in the same folder records for this
 * file; without one, pass it.
 */
export function readTokenStream(file: string, dtype?: TokenDtype): TokenArray {
  let dt = dtype;
  if (dt === undefined) {
    const manifestPath = path.join(path.dirname(file), MANIFEST_FILE);
    if (!fs.existsSync(manifestPath)) throw new Error(`readTokenStream(${file}): no dtype given and no ${MANIFEST_FILE} beside it`);
    const m = readManifest(path.dirname(file));
    const base = path.basename(file);
    if (!Object.values(m.splits).some((s) => s.file === base)) throw new Error(`${manifestPath} does not list ${base}`);
    dt = m.dtype;
  }
  if (dt !== 'uint16' && dt !== 'uint32') throw new Error(`unknown token dtype ${JSON.stringify(dt)}`);
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read token stream ${file}: ${(e as Error).message}`);
  }
  const bp = bytesPer(dt);
  if (buf.length % bp !== 0) throw new Error(`token stream ${file}: ${buf.length} bytes is not a multiple of ${bp} (${dt})`);
  const n = buf.length / bp;
  const out = dt === 'uint16' ? new Uint16Array(n) : new Uint32Array(n);
  if (os.endianness() === 'LE') {
    new Uint8Array(out.buffer).set(buf);
  } else {
    for (let i = 0; i < n; i++) out[i] = dt === 'uint16' ? buf.readUInt16LE(2 * i) : buf.readUInt32LE(4 * i);
  }
  return out;
}

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'gsae-token-streams/1';

export interface SplitManifest {
  /** File name, relative to the manifest's folder. */
  file: string;
  /** Ids in the file, EOT separators included. */
  tokens: number;
  /** Ids that came from text (tokens − EOT separators). */
  text_tokens: number;
  documents: number;
  /** UTF-8 bytes of the documents' text (separators excluded). */
  bytes: number;
  /** bytes / text_tokens. */
  bytes_per_token: number;
  /** Document ids in stream order. */
  doc_ids: string[];
}

export interface TokenManifest {
  format: typeof MANIFEST_FORMAT;
  tokenizer_kind: TokenizerKind;
  tokenizer_fingerprint: string;
  vocab_size: number;
  dtype: TokenDtype;
  eot_id: number;
  /** How documents are joined: "eot-between" = d1 EOT d2 EOT … dn. */
  separator: 'eot-between';
  splits: Record<'train' | 'val' | 'test', SplitManifest>;
  /** All splits: bytes / text_tokens. */
  bytes_per_token: number;
}

export interface TokenizeSplitsOptions {
  /** Check decode(encode(text)) === text for every document (default true; costs ~10% time). */
  verify?: boolean;
  /** Called after each document. */
  onProgress?: (split: string, done: number, total: number) => void;
}

/**
 * Encode each split and write `<outDir>/{train,val,test}.bin` + `<outDir>/manifest.json`.
 * Documents are encoded one at a time and streamed to disk.
 */
export function tokenizeSplits(
  splits: { train: readonly Doc[]; val: readonly Doc[]; test: readonly Doc[] },
  tokenizer: Tokenizer,
  outDir: string,
  opts: TokenizeSplitsOptions = {},
): TokenManifest {
  const verify = opts.verify ?? true;
  const eot = tokenizer.eotId;
  if (!(Number.isInteger(eot) && eot >= 0 && eot < tokenizer.vocabSize)) throw new Error(`tokenizer eot id ${eot} is outside [0, ${tokenizer.vocabSize})`);
  fs.mkdirSync(outDir, { recursive: true });
  const eotArr = [eot];
  const result = {} as Record<'train' | 'val' | 'test', SplitManifest>;
  let allBytes = 0;
  let allText = 0;
  for (const name of ['train', 'val', 'test'] as const) {
    const docs = splits[name];
    if (docs.length === 0) throw new Error(`split ${name} has no documents`);
    const file = `${name}.bin`;
    const w = new TokenStreamWriter(path.join(outDir, file), tokenizer.vocabSize);
    let bytes = 0;
    try {
      docs.forEach((d, i) => {
        const ids = tokenizer.encode(d.text);
        if (verify && tokenizer.decode(ids) !== d.text) throw new Error(`tokenizer round trip failed for document ${d.id} (${name} split)`);
        if (i > 0) w.write(eotArr);
        w.write(ids);
        bytes += Buffer.byteLength(d.text, 'utf8');
        opts.onProgress?.(name, i + 1, docs.length);
      });
    } catch (e) {
      w.abort();
      throw e;
    }
    const { count } = w.close();
    const textTokens = count - (docs.length - 1);
    result[name] = {
      file,
      tokens: count,
      text_tokens: textTokens,
      documents: docs.length,
      bytes,
      bytes_per_token: textTokens > 0 ? bytes / textTokens : 0,
      doc_ids: docs.map((d) => d.id),
    };
    allBytes += bytes;
    allText += textTokens;
  }
  const manifest: TokenManifest = {
    format: MANIFEST_FORMAT,
    tokenizer_kind: tokenizer.kind,
    tokenizer_fingerprint: tokenizer.fingerprint(),
    vocab_size: tokenizer.vocabSize,
    dtype: dtypeForVocab(tokenizer.vocabSize),
    eot_id: eot,
    separator: 'eot-between',
    splits: result,
    bytes_per_token: allText > 0 ? allBytes / allText : 0,
  };
  const mp = path.join(outDir, MANIFEST_FILE);
  writeFileAtomicSync(mp, JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

/** Read and check `<dir>/manifest.json`. */
export function readManifest(dir: string): TokenManifest {
  const file = path.join(dir, MANIFEST_FILE);
  let m: TokenManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as TokenManifest;
  } catch (e) {
    throw new Error(`cannot read token manifest ${file}: ${(e as Error).message}`);
  }
  if (m.format !== MANIFEST_FORMAT) throw new Error(`${file}: format ${JSON.stringify(m.format)} is not ${MANIFEST_FORMAT}`);
  if (m.dtype !== 'uint16' && m.dtype !== 'uint32') throw new Error(`${file}: unknown dtype ${JSON.stringify(m.dtype)}`);
  for (const s of ['train', 'val', 'test'] as const) {
    if (!m.splits?.[s]?.file) throw new Error(`${file}: split ${s} is missing`);
  }
  return m;
}

/** Read the three streams listed in `<dir>/manifest.json`, checking their lengths. */
export function readTokenSplits(dir: string): { manifest: TokenManifest; train: TokenArray; val: TokenArray; test: TokenArray } {
  const manifest = readManifest(dir);
  const get = (s: 'train' | 'val' | 'test'): TokenArray => {
    const arr = readTokenStream(path.join(dir, manifest.splits[s].file), manifest.dtype);
    if (arr.length !== manifest.splits[s].tokens) throw new Error(`${path.join(dir, manifest.splits[s].file)}: ${arr.length} ids, manifest says ${manifest.splits[s].tokens}`);
    return arr;
  };
  return { manifest, train: get('train'), val: get('val'), test: get('test') };
}
