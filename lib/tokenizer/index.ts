/**
 * Tokenizers: one interface (types.ts) for two kinds.
 *  - 'bpe': our byte-level BPE trained on the train split (train.ts), saved as a Hugging Face
 *    tokenizer.json (hf.ts) and loaded back.
 *  - 'gpt2': GPT-2's r50k_base from js-tiktoken (gpt2.ts), <|endoftext|> = 50256.
 * Both encode with the same cached byte-level BPE engine (bpe.ts).
 */
import fs from 'node:fs';
import { writeFileAtomicSync } from '../../base/atomic.ts';
import { BpeTokenizer } from './bpe.ts';
import { GPT2_VOCAB_SIZE, gpt2Tokenizer } from './gpt2.ts';
import { parseTokenizerJson } from './hf.ts';
import { trainBpe, type TrainBpeOptions } from './train.ts';
import { TOKENIZER_KINDS, type Tokenizer, type TokenizerKind } from './types.ts';

export { BYTE_TO_CHAR, CHAR_TO_BYTE, bytesToTokenString, tokenStringToBytes } from './bytes.ts';
export { BpeTokenizer } from './bpe.ts';
export { GPT2_EOT_ID, GPT2_VOCAB_SIZE, gpt2Definition, gpt2Tokenizer } from './gpt2.ts';
export { parseTokenizerJson, tokenizerConfig, toTokenizerJson } from './hf.ts';
export { GPT2_PATTERN, pretokenize } from './pretokenize.ts';
export { DEFAULT_VOCAB_SIZE, countWords, trainBpe, trainBpeFromCounts, type TrainBpeOptions } from './train.ts';
export { EOT_TOKEN, TOKENIZER_KINDS, type BpeDefinition, type Tokenizer, type TokenizerKind } from './types.ts';

export interface MakeTokenizerOptions extends TrainBpeOptions {
  /** 'bpe': training texts (the train split). */
  texts?: Iterable<string>;
  /** 'bpe': load this tokenizer.json instead of training. */
  path?: string;
}

/**
 * A tokenizer of the given kind: 'gpt2' needs no options; 'bpe' trains on opts.texts with
 * opts.vocabSize (default 4096, <|endoftext|> included), or loads opts.path.
 */
export function makeTokenizer(kind: TokenizerKind, opts: MakeTokenizerOptions = {}): Tokenizer {
  switch (kind) {
    case 'gpt2':
      return gpt2Tokenizer();
    case 'bpe':
      if (opts.path !== undefined) return loadTokenizer(opts.path);
      if (opts.texts === undefined) throw new Error("makeTokenizer('bpe') needs training texts (opts.texts) or a tokenizer.json (opts.path)");
      return trainBpe(opts.texts, opts);
    default:
      throw new Error(`unknown tokenizer kind ${JSON.stringify(kind)}; expected one of ${TOKENIZER_KINDS.join(', ')}`);
  }
}

/** Write tok as a Hugging Face tokenizer.json (canonical text: same tokenizer → same bytes). */
export function saveTokenizer(tok: Tokenizer, file: string): void {
  writeFileAtomicSync(file, tok.toTokenizerJson());
}

/**
 * Load a byte-level BPE tokenizer.json (ours, or another of the same shape). The result has kind
 * 'gpt2' when the file defines exactly GPT-2's tokenizer, else 'bpe'. Its fingerprint is that of
 * the canonical re-serialization, so a file we wrote loads back with the same fingerprint.
 */
export function loadTokenizer(file: string): Tokenizer {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read tokenizer file ${file}: ${(e as Error).message}`);
  }
  const tok = new BpeTokenizer(parseTokenizerJson(text, file), 'bpe');
  if (tok.vocabSize === GPT2_VOCAB_SIZE) {
    const g = gpt2Tokenizer();
    if (tok.fingerprint() === g.fingerprint()) return g;
  }
  return tok;
}
