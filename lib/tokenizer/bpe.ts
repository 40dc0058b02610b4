/**
 * Byte-level BPE encoder/decoder (GPT-2 style) over a BpeDefinition.
 *
 * encode: GPT-2 pre-tokenization (pretokenize.ts), each piece as UTF-8 bytes → byte-token ids, then
 * merges by rank: repeatedly take the adjacent pair with the lowest merge rank and merge all its
 * occurrences left to right (as openai/gpt-2 and Hugging Face's BPE model do). The result for each
 * distinct piece is cached, so encoding a large corpus costs one regex pass plus map look-ups.
 */
import { createHash } from 'node:crypto';
import { BYTE_TO_CHAR, tokenStringToBytes } from './bytes.ts';
import { forEachPretoken, gpt2Regex } from './pretokenize.ts';
import { toTokenizerJson } from './hf.ts';
import { EOT_TOKEN, type BpeDefinition, type Tokenizer, type TokenizerKind } from './types.ts';

/** Ids must be below 2^21 so a pair packs into one double exactly. */
export const MAX_VOCAB = 1 << 21;
const PAIR_SHIFT = 2097152; // 2^21

/** Pack two ids into one number key. */
export function pairKey(a: number, b: number): number {
  return a * PAIR_SHIFT + b;
}

/** Pieces longer than this (in bytes) use the O(n log n) heap BPE. */
const LONG_PIECE = 48;

/** Most distinct pieces cached before the cache is cleared (bounds memory on huge corpora). */
const CACHE_LIMIT = 1_000_000;

export class BpeTokenizer implements Tokenizer {
  readonly kind: TokenizerKind;
  readonly vocabSize: number;
  readonly eotId: number;
  readonly definition: BpeDefinition;

  private readonly byteIds = new Int32Array(256);
  private readonly mergeRank = new Map<number, number>();
  private readonly mergeLeft: Int32Array;
  private readonly mergeRight: Int32Array;
  private readonly mergeResult: Int32Array;
  private readonly tokenBytes: Uint8Array[];
  private readonly cache = new Map<string, number[]>();
  private readonly re = gpt2Regex();
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder('utf-8');
  private jsonText: string | null = null;
  private fp: string | null = null;

  constructor(def: BpeDefinition, kind: TokenizerKind = 'bpe') {
    this.kind = kind;
    this.definition = def;
    const n = def.tokens.length;
    if (n > MAX_VOCAB) throw new Error(`vocabulary of ${n} tokens exceeds the maximum ${MAX_VOCAB}`);
    this.vocabSize = n;

    const specialIds = new Set<number>();
    let eot = -1;
    for (const s of def.special) {
      if (!Number.isInteger(s.id) || s.id < 0 || s.id >= n) throw new Error(`special token ${JSON.stringify(s.content)} has id ${s.id} outside [0, ${n})`);
      if (def.tokens[s.id] !== s.content) throw new Error(`special token ${JSON.stringify(s.content)} does not match tokens[${s.id}] = ${JSON.stringify(def.tokens[s.id])}`);
      specialIds.add(s.id);
      if (s.content === EOT_TOKEN) eot = s.id;
    }
    if (eot < 0) throw new Error(`tokenizer has no ${EOT_TOKEN} special token (needed to separate documents)`);
    this.eotId = eot;

    const tokenToId = new Map<string, number>();
    this.tokenBytes = new Array(n);
    for (let id = 0; id < n; id++) {
      const t = def.tokens[id];
      if (typeof t !== 'string' || t.length === 0) throw new Error(`token id ${id} is missing or empty`);
      if (specialIds.has(id)) {
        this.tokenBytes[id] = this.encoder.encode(t);
        continue;
      }
      if (tokenToId.has(t)) throw new Error(`token ${JSON.stringify(t)} appears twice (ids ${tokenToId.get(t)} and ${id})`);
      tokenToId.set(t, id);
      this.tokenBytes[id] = tokenStringToBytes(t);
    }
    for (let b = 0; b < 256; b++) {
      const id = tokenToId.get(BYTE_TO_CHAR[b]);
      if (id === undefined) throw new Error(`byte-level vocabulary lacks the token for byte 0x${b.toString(16).padStart(2, '0')} (${JSON.stringify(BYTE_TO_CHAR[b])})`);
      this.byteIds[b] = id;
    }

    const m = def.merges.length;
    this.mergeLeft = new Int32Array(m);
    this.mergeRight = new Int32Array(m);
    this.mergeResult = new Int32Array(m);
    for (let r = 0; r < m; r++) {
      const [l, rt] = def.merges[r];
      const a = tokenToId.get(l);
      const b = tokenToId.get(rt);
      const z = tokenToId.get(l + rt);
      if (a === undefined || b === undefined || z === undefined) {
        const missing = a === undefined ? l : b === undefined ? rt : l + rt;
        throw new Error(`merge #${r} "${l} ${rt}": token ${JSON.stringify(missing)} is not in the vocabulary`);
      }
      const key = pairKey(a, b);
      if (this.mergeRank.has(key)) continue; // a duplicate merge never applies: the first rank wins
      this.mergeRank.set(key, r);
      this.mergeLeft[r] = a;
      this.mergeRight[r] = b;
      this.mergeResult[r] = z;
    }
  }

  /** BPE of one byte sequence given as byte-token ids (mutated and returned). */
  bpeIds(syms: number[]): number[] {
    return syms.length > LONG_PIECE ? this.bpeIdsHeap(syms) : this.bpeIdsSimple(syms);
  }

  /** Quadratic BPE: fastest for the short pieces that make up nearly all text. */
  bpeIdsSimple(syms: number[]): number[] {
    const ranks = this.mergeRank;
    while (syms.length > 1) {
      let best = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = ranks.get(syms[i] * PAIR_SHIFT + syms[i + 1]);
        if (r !== undefined && r < best) best = r;
      }
      if (best === Infinity) break;
      const a = this.mergeLeft[best];
      const b = this.mergeRight[best];
      const z = this.mergeResult[best];
      let w = 0;
      for (let i = 0; i < syms.length; ) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          syms[w++] = z;
          i += 2;
        } else {
          syms[w++] = syms[i++];
        }
      }
      syms.length = w;
    }
    return syms;
  }

  /**
   * O(n log n) BPE for long pieces (a long run of letters or symbols would make the simple loop
   * quadratic): a linked list of symbols and a min-heap of candidate merges keyed by (rank,
   * position), as in Hugging Face's Word::merge_all. Gives the same result as bpeIdsSimple.
   */
  bpeIdsHeap(syms: number[]): number[] {
    const n = syms.length;
    const ranks = this.mergeRank;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap: number[] = [];
    const POS = 2147483648; // 2^31: key = rank * 2^31 + position
    const push = (key: number): void => {
      heap.push(key);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= key) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = key;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap.pop()!;
      const m = heap.length;
      if (m > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= m) break;
          const c = l + 1 < m && heap[l + 1] < heap[l] ? l + 1 : l;
          if (heap[c] >= last) break;
          heap[i] = heap[c];
          i = c;
        }
        heap[i] = last;
      }
      return top;
    };
    const consider = (i: number): void => {
      const j = next[i];
      if (j < 0) return;
      const r = ranks.get(syms[i] * PAIR_SHIFT + syms[j]);
      if (r !== undefined) push(r * POS + i);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length > 0) {
      const key = pop();
      const r = Math.floor(key / POS);
      const i = key - r * POS;
      if (!alive[i]) continue;
      const j = next[i];
      if (j < 0 || syms[i] !== this.mergeLeft[r] || syms[j] !== this.mergeRight[r]) continue; // stale
      syms[i] = this.mergeResult[r];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      if (prev[i] >= 0) consider(prev[i]);
      consider(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(syms[i]);
    return out;
  }

  /** The byte-token ids of a piece's UTF-8 bytes (BPE's starting point). */
  pieceByteIds(piece: string): number[] {
    const bytes = this.encoder.encode(piece);
    const syms = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = this.byteIds[bytes[i]];
    return syms;
  }

  /** The ids of one pre-token piece (cached). */
  encodePiece(piece: string): number[] {
    let ids = this.cache.get(piece);
    if (ids === undefined) {
      ids = this.bpeIds(this.pieceByteIds(piece));
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(piece, ids);
    }
    return ids;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    forEachPretoken(
      text,
      (piece) => {
        const ids = this.encodePiece(piece);
        for (let i = 0; i < ids.length; i++) out.push(ids[i]);
      },
      this.re,
    );
    return out;
  }

  /** The raw bytes of a sequence of ids. */
  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    let len = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const bytes = this.tokenBytes[id];
      if (bytes === undefined) throw new RangeError(`token id ${id} (position ${i}) is outside the vocabulary [0, ${this.vocabSize})`);
      len += bytes.length;
    }
    const out = new Uint8Array(len);
    let off = 0;
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.tokenBytes[ids[i]];
      out.set(bytes, off);
      off += bytes.length;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return this.decoder.decode(this.decodeBytes(ids));
  }

  /** The token string of one id (byte-level characters; specials as their content). */
  tokenString(id: number): string {
    const t = this.definition.tokens[id];
    if (t === undefined) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    return t;
  }

  /** The bytes of one id, decoded as UTF-8 for display (partial characters show as U+FFFD). */
  tokenText(id: number): string {
    return this.decoder.decode(this.decodeBytes([id]));
  }

  toTokenizerJson(): string {
    if (this.jsonText === null) this.jsonText = toTokenizerJson(this.definition);
    return this.jsonText;
  }

  fingerprint(): string {
    if (this.fp === null) this.fp = createHash('sha256').update(this.toTokenizerJson()).digest('hex');
    return this.fp;
  }
}
