/**
 * GPT-2's own tokenizer (r50k_base, 50,257 ids, <|endoftext|> = 50256), defined by the ranks that
 * ship inside js-tiktoken.
 *
 * tiktoken stores ranks (token bytes → id), not merges. We rebuild GPT-2's merge list from them
 * (each token of rank r ≥ 256 is the BPE of its bytes under the merges of lower rank, which gives
 * exactly two parts: that pair is merge r - 256), which lets the same fast cached encoder serve both
 * kinds and lets saveTokenizer write GPT-2 as a Hugging Face tokenizer.json. Tests check the ids
 * against js-tiktoken's own encoder.
 */
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import { bytesToTokenString } from './bytes.ts';
import { BpeTokenizer, pairKey } from './bpe.ts';
import { GPT2_PATTERN } from './pretokenize.ts';
import { EOT_TOKEN, type BpeDefinition } from './types.ts';

export const GPT2_VOCAB_SIZE = 50257;
export const GPT2_EOT_ID = 50256;

/** Token bytes by rank, decoded from js-tiktoken's compressed rank table. */
function rankBytes(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const line of gpt2Ranks.bpe_ranks.split('\n')) {
    if (line === '') continue;
    const [, offsetStr, ...b64] = line.split(' ');
    const offset = Number.parseInt(offsetStr, 10);
    b64.forEach((s, i) => (out[offset + i] = new Uint8Array(Buffer.from(s, 'base64'))));
  }
  return out;
}

/** GPT-2's definition (tokens by id, merges by rank) rebuilt from the r50k_base ranks. */
export function gpt2Definition(): BpeDefinition {
  if (gpt2Ranks.pat_str !== GPT2_PATTERN) throw new Error('js-tiktoken gpt2 pattern differs from GPT2_PATTERN');
  const bytesByRank = rankBytes();
  const eot = gpt2Ranks.special_tokens[EOT_TOKEN];
  if (eot !== GPT2_EOT_ID || bytesByRank.length !== GPT2_EOT_ID) {
    throw new Error(`unexpected js-tiktoken gpt2 table: ${bytesByRank.length} ranks, ${EOT_TOKEN} = ${eot}`);
  }
  const tokens: string[] = bytesByRank.map((b, r) => {
    if (b === undefined) throw new Error(`js-tiktoken gpt2 table has no token of rank ${r}`);
    return bytesToTokenString(b);
  });
  const byteId = new Int32Array(256).fill(-1);
  for (let r = 0; r < 256; r++) {
    if (bytesByRank[r].length !== 1) throw new Error(`gpt2 rank ${r} is not a single byte`);
    byteId[bytesByRank[r][0]] = r;
  }
  const rankOf = new Map<number, number>(); // pair → result id (= its rank)
  const merges: Array<[string, string]> = [];
  for (let r = 256; r < bytesByRank.length; r++) {
    const bytes = bytesByRank[r];
    let syms = Array.from(bytes, (b) => byteId[b]);
    while (syms.length > 2) {
      let best = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < syms.length; i++) {
        const z = rankOf.get(pairKey(syms[i], syms[i + 1]));
        if (z !== undefined && z < best) {
          best = z;
          at = i;
        }
      }
      if (at < 0) break;
      syms = [...syms.slice(0, at), best, ...syms.slice(at + 2)];
    }
    if (syms.length !== 2) throw new Error(`cannot derive the merge for gpt2 token ${r} (${JSON.stringify(tokens[r])})`);
    rankOf.set(pairKey(syms[0], syms[1]), r);
    merges.push([tokens[syms[0]], tokens[syms[1]]]);
  }
  tokens.push(EOT_TOKEN);
  return { tokens, merges, special: [{ id: GPT2_EOT_ID, content: EOT_TOKEN }] };
}

let cached: BpeTokenizer | null = null;

/** GPT-2's tokenizer (built once per process, about a second). */
export function gpt2Tokenizer(): BpeTokenizer {
  if (cached === null) cached = new BpeTokenizer(gpt2Definition(), 'gpt2');
  return cached;
}
