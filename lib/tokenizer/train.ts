/**
 * Byte-level BPE training (GPT-2 style).
 *
 * 1. Pre-tokenize every training text with GPT-2's regex and count each distinct piece once
 *    (word → count). Merges never cross pieces.
 * 2. Start from the 256 byte tokens (ids 0..255, GPT-2 order) and repeatedly merge the most frequent
 *    adjacent pair, counting a pair once per occurrence per word times the word's count.
 *    Ties: highest count first, then the lexicographically smallest pair, comparing the left
 *    token strings and then the right ones (byte-level strings, by UTF-16 code unit = code point
 *    here). Occurrences in a word are merged left to right without overlap ("a a a" → "aa a").
 * 3. Stop when the vocabulary holds vocabSize - 1 tokens or no pair is left (or the best count is
 *    below minFrequency); then append <|endoftext|> as the last id. So vocabSize counts the special
 *    token: the LM's embedding table has exactly vocabSize rows.
 *
 * Speed: merges run over the distinct words only, with pair counts updated incrementally from the
 * words that contain the merged pair (an index pair → words), and a binary max-heap with lazy
 * deletion (an entry whose count is out of date is re-queued with the current count when it
 * surfaces). A merge whose result string already exists (e.g. "ab"+"c" after "a"+"bc") is recorded
 * in the merge list but reuses the existing id, as Hugging Face's trainer does.
 */
import { BYTE_ORDER, BYTE_TO_CHAR } from './bytes.ts';
import { BpeTokenizer, MAX_VOCAB, pairKey } from './bpe.ts';
import { forEachPretoken, gpt2Regex } from './pretokenize.ts';
import { EOT_TOKEN, type BpeDefinition } from './types.ts';

export const DEFAULT_VOCAB_SIZE = 4096;

export interface TrainBpeOptions {
  /** Total ids including <|endoftext|> (default 4096). At least 257. */
  vocabSize?: number;
  /** Stop when the most frequent pair occurs fewer times than this (default 1: merge while any pair exists). */
  minFrequency?: number;
  /** Called every 256 merges and at the end. */
  onProgress?: (vocabSoFar: number, vocabTarget: number) => void;
}

/** Count the pre-tokenized pieces of texts: the only pass over the raw text that training needs. */
export function countWords(texts: Iterable<string>, counts: Map<string, number> = new Map()): Map<string, number> {
  const re = gpt2Regex();
  for (const text of texts) {
    forEachPretoken(
      text,
      (p) => {
        counts.set(p, (counts.get(p) ?? 0) + 1);
      },
      re,
    );
  }
  return counts;
}

interface HeapEntry {
  count: number;
  a: number;
  b: number;
}

/** Train merges from word counts; returns the definition (tokens, merges, <|endoftext|> last). */
export function trainBpeFromCounts(wordCounts: Map<string, number>, opts: TrainBpeOptions = {}): BpeDefinition {
  const vocabSize = opts.vocabSize ?? DEFAULT_VOCAB_SIZE;
  const minFrequency = opts.minFrequency ?? 1;
  if (!Number.isInteger(vocabSize) || vocabSize < 257) throw new Error(`vocabSize must be an integer ≥ 257 (256 bytes + <|endoftext|>), got ${vocabSize}`);
  if (vocabSize > MAX_VOCAB) throw new Error(`vocabSize ${vocabSize} exceeds the maximum ${MAX_VOCAB}`);
  const target = vocabSize - 1; // tokens before the special one

  // Token strings; ids 0..255 are the bytes in GPT-2 order.
  const tok: string[] = BYTE_ORDER.map((b) => BYTE_TO_CHAR[b]);
  const tokId = new Map<string, number>();
  tok.forEach((t, i) => tokId.set(t, i));
  const byteId = new Int32Array(256);
  BYTE_ORDER.forEach((b, i) => (byteId[b] = i));

  // Distinct words as symbol arrays.
  const words: number[][] = [];
  const counts: number[] = [];
  const enc = new TextEncoder();
  for (const [w, c] of wordCounts) {
    const bytes = enc.encode(w);
    const syms = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = byteId[bytes[i]];
    words.push(syms);
    counts.push(c);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    const c = counts[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = pairKey(s[i], s[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + c);
      const list = pairWords.get(k);
      if (list === undefined) pairWords.set(k, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }

  // Max-heap: higher count first, then smaller (left, right) token strings.
  const heap: HeapEntry[] = [];
  const above = (x: HeapEntry, y: HeapEntry): boolean => {
    if (x.count !== y.count) return x.count > y.count;
    const xa = tok[x.a];
    const ya = tok[y.a];
    if (xa !== ya) return xa < ya;
    return tok[x.b] < tok[y.b];
  };
  const push = (e: HeapEntry): void => {
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!above(heap[i], heap[p])) break;
      const t = heap[i];
      heap[i] = heap[p];
      heap[p] = t;
      i = p;
    }
  };
  const pop = (): HeapEntry | undefined => {
    if (heap.length === 0) return undefined;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < n && above(heap[l], heap[m])) m = l;
        if (r < n && above(heap[r], heap[m])) m = r;
        if (m === i) break;
        const t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
      }
    }
    return top;
  };
  for (const [k, c] of pairCount) push({ count: c, a: Math.floor(k / 2097152), b: k % 2097152 });

  const merges: Array<[string, string]> = [];
  const stamp = new Int32Array(words.length).fill(-1);
  const delta = new Map<number, number>();
  const report = opts.onProgress;

  while (tok.length < target) {
    const top = pop();
    if (top === undefined) break;
    const { a, b } = top;
    const key = pairKey(a, b);
    const cur = pairCount.get(key) ?? 0;
    if (cur !== top.count) {
      if (cur > 0) push({ count: cur, a, b });
      continue;
    }
    if (cur < minFrequency) break;

    const str = tok[a] + tok[b];
    let z = tokId.get(str);
    if (z === undefined) {
      z = tok.length;
      tok.push(str);
      tokId.set(str, z);
    }
    const mergeNo = merges.length;
    merges.push([tok[a], tok[b]]);

    const list = pairWords.get(key) ?? [];
    pairWords.delete(key);
    pairCount.delete(key);
    delta.clear();
    for (const w of list) {
      if (stamp[w] === mergeNo) continue;
      stamp[w] = mergeNo;
      const s = words[w];
      let found = false;
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === a && s[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue; // stale index entry
      const c = counts[w];
      for (let i = 0; i + 1 < s.length; i++) {
        const k = pairKey(s[i], s[i + 1]);
        delta.set(k, (delta.get(k) ?? 0) - c);
      }
      let o = 0;
      for (let i = 0; i < s.length; ) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          s[o++] = z;
          i += 2;
        } else {
          s[o++] = s[i++];
        }
      }
      s.length = o;
      for (let i = 0; i + 1 < s.length; i++) {
        const x = s[i];
        const y = s[i + 1];
        const k = pairKey(x, y);
        delta.set(k, (delta.get(k) ?? 0) + c);
        if (x === z || y === z) {
          const l = pairWords.get(k);
          if (l === undefined) pairWords.set(k, [w]);
          else if (l[l.length - 1] !== w) l.push(w);
        }
      }
    }
    for (const [k, d] of delta) {
      if (d === 0 || k === key) continue;
      const nc = (pairCount.get(k) ?? 0) + d;
      if (nc <= 0) {
        pairCount.delete(k);
        pairWords.delete(k);
      } else {
        pairCount.set(k, nc);
        // Counts rise only for pairs containing the merged token (new, or an existing id reused):
        // queue those with their new count; falling counts are fixed lazily when they surface.
        if (d > 0) push({ count: nc, a: Math.floor(k / 2097152), b: k % 2097152 });
      }
    }
    if (report && merges.length % 256 === 0) report(tok.length, target + 1);
  }

  if (tokId.has(EOT_TOKEN)) {
    throw new Error(`BPE training learned the ordinary token ${JSON.stringify(EOT_TOKEN)} (the corpus contains it literally), which clashes with the special token; remove it from the corpus`);
  }
  const eotId = tok.length;
  tok.push(EOT_TOKEN);
  report?.(tok.length, target + 1);
  return { tokens: tok, merges, special: [{ id: eotId, content: EOT_TOKEN }] };
}

/** Train a byte-level BPE tokenizer on texts (the train split only). See the file comment. */
export function trainBpe(texts: Iterable<string>, opts: TrainBpeOptions = {}): BpeTokenizer {
  return new BpeTokenizer(trainBpeFromCounts(countWords(texts), opts), 'bpe');
}
