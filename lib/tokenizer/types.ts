/** The tokenizer interface shared by every kind (our own byte-level BPE, GPT-2's r50k_base). */

export type TokenizerKind = 'bpe' | 'gpt2';
export const TOKENIZER_KINDS: readonly TokenizerKind[] = ['bpe', 'gpt2'];

/** The end-of-text special token: separates documents in token streams. */
export const EOT_TOKEN = '<|endoftext|>';

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** Number of ids, special tokens included: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  /** Id of <|endoftext|>. encode() never produces it: a literal "<|endoftext|>" in text is plain text. */
  readonly eotId: number;
  /** Text → ids. decode(encode(t)) === t for any well-formed string t. */
  encode(text: string): number[];
  /** Ids → text (the eot id decodes to "<|endoftext|>"). Throws on an id outside the vocabulary. */
  decode(ids: ArrayLike<number>): string;
  /** sha256 (hex) of the tokenizer's definition: the canonical tokenizer.json text. */
  fingerprint(): string;
  /** The canonical Hugging Face tokenizer.json text of this tokenizer. */
  toTokenizerJson(): string;
}

/** A byte-level BPE definition: what tokenizer.json holds, in our terms. */
export interface BpeDefinition {
  /** id → token string (byte-level characters, see bytes.ts); special tokens hold their content. */
  tokens: string[];
  /** Merges in rank order (rank 0 is applied first): [left, right] token strings. */
  merges: Array<[string, string]>;
  /** Special (added) tokens: matched by id; not produced by encode(). */
  special: Array<{ id: number; content: string }>;
}
