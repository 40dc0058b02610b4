/**
 * GPT-2's pre-tokenization: text is cut into "words" by this regex before BPE, and merges never
 * cross a word boundary. Same pattern as openai/gpt-2, r50k_base and Hugging Face's ByteLevel
 * pre-tokenizer with use_regex=true.
 */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/** A fresh global regex for the pattern (regexes with the g flag carry state: do not share). */
export function gpt2Regex(): RegExp {
  return new RegExp(GPT2_PATTERN, 'gu');
}

/** Calls fn for every pre-token of text, in order. The pieces concatenate back to text. */
export function forEachPretoken(text: string, fn: (piece: string) => void, re: RegExp = gpt2Regex()): void {
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) fn(m[0]);
}

/** The pre-tokens of text as an array (convenience for tests and small inputs). */
export function pretokenize(text: string): string[] {
  const out: string[] = [];
  forEachPretoken(text, (p) => out.push(p));
  return out;
}
