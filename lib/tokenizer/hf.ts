/**
 * Hugging Face `tokenizers` tokenizer.json: writing ours, reading ours (and other byte-level BPE
 * files of the same shape, such as GPT-2's).
 *
 * The file we write is canonical (same definition → same bytes): 2-space indent like HF's own
 * output, vocab in id order, merges in rank order as "left right" strings. Merges as strings are
 * read by every tokenizers version (since 0.20 HF itself writes [left, right] pairs and reads both;
 * our reader accepts both too). Byte-level tokens never contain a space (a space byte is 'Ġ'), so
 * the string form is unambiguous.
 */
import type { BpeDefinition } from './types.ts';

const BYTE_LEVEL = { add_prefix_space: false, trim_offsets: true, use_regex: true };

function j(v: unknown): string {
  return JSON.stringify(v);
}

/** The canonical tokenizer.json text of a definition. */
export function toTokenizerJson(def: BpeDefinition): string {
  const lines: string[] = [];
  lines.push('{');
  lines.push('  "version": "1.0",');
  lines.push('  "truncation": null,');
  lines.push('  "padding": null,');
  if (def.special.length === 0) {
    lines.push('  "added_tokens": [],');
  } else {
    lines.push('  "added_tokens": [');
    const sorted = [...def.special].sort((a, b) => a.id - b.id);
    sorted.forEach((s, i) => {
      lines.push('    {');
      lines.push(`      "id": ${s.id},`);
      lines.push(`      "content": ${j(s.content)},`);
      lines.push('      "single_word": false,');
      lines.push('      "lstrip": false,');
      lines.push('      "rstrip": false,');
      lines.push('      "normalized": false,');
      lines.push('      "special": true');
      lines.push(i + 1 < sorted.length ? '    },' : '    }');
    });
    lines.push('  ],');
  }
  lines.push('  "normalizer": null,');
  lines.push('  "pre_tokenizer": {');
  lines.push('    "type": "ByteLevel",');
  lines.push('    "add_prefix_space": false,');
  lines.push('    "trim_offsets": true,');
  lines.push('    "use_regex": true');
  lines.push('  },');
  lines.push('  "post_processor": null,');
  lines.push('  "decoder": {');
  lines.push('    "type": "ByteLevel",');
  lines.push('    "add_prefix_space": true,');
  lines.push('    "trim_offsets": true,');
  lines.push('    "use_regex": true');
  lines.push('  },');
  lines.push('  "model": {');
  lines.push('    "type": "BPE",');
  lines.push('    "dropout": null,');
  lines.push('    "unk_token": null,');
  lines.push('    "continuing_subword_prefix": null,');
  lines.push('    "end_of_word_suffix": null,');
  lines.push('    "fuse_unk": false,');
  lines.push('    "byte_fallback": false,');
  // Special tokens are in the vocab too (as in GPT-2's tokenizer.json, <|endoftext|>: 50256).
  lines.push('    "vocab": {');
  const n = def.tokens.length;
  for (let id = 0; id < n; id++) {
    lines.push(`      ${j(def.tokens[id])}: ${id}${id + 1 < n ? ',' : ''}`);
  }
  lines.push('    },');
  if (def.merges.length === 0) {
    lines.push('    "merges": []');
  } else {
    lines.push('    "merges": [');
    const m = def.merges.length;
    for (let r = 0; r < m; r++) {
      const [a, b] = def.merges[r];
      lines.push(`      ${j(`${a} ${b}`)}${r + 1 < m ? ',' : ''}`);
    }
    lines.push('    ]');
  }
  lines.push('  }');
  lines.push('}');
  return lines.join('\n') + '\n';
}

function fail(source: string, msg: string): never {
  throw new Error(`${source}: ${msg}`);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parse a tokenizer.json text into a definition. Accepts byte-level BPE only: model.type "BPE"
 * (no unk token, no dropout, no subword prefix/suffix), pre_tokenizer ByteLevel with use_regex
 * true and add_prefix_space false, no normalizer; anything else would encode differently from our
 * encoder, so it is rejected with a message saying what.
 */
export function parseTokenizerJson(text: string, source = 'tokenizer.json'): BpeDefinition {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    fail(source, `not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(root)) fail(source, 'top level is not a JSON object');
  const model = root.model;
  if (!isObj(model)) fail(source, 'has no "model" object');
  if (model.type !== undefined && model.type !== 'BPE') fail(source, `model.type is ${j(model.type)}, only "BPE" is supported`);
  if (root.normalizer != null) fail(source, 'has a normalizer; only byte-level BPE without normalizer is supported');
  const pre = root.pre_tokenizer;
  if (!isObj(pre) || pre.type !== 'ByteLevel') fail(source, `pre_tokenizer must be {"type": "ByteLevel", ...}, got ${j(pre)}`);
  if (pre.use_regex === false) fail(source, 'pre_tokenizer.use_regex is false; only the GPT-2 regex split is supported');
  if (pre.add_prefix_space === true) fail(source, 'pre_tokenizer.add_prefix_space is true; only false is supported');
  for (const key of ['dropout', 'unk_token'] as const) {
    if (model[key] != null) fail(source, `model.${key} is ${j(model[key])}; only null is supported`);
  }
  // HF writes "" for GPT-2's (no prefix, no suffix): the same as null.
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[key] != null && model[key] !== '') fail(source, `model.${key} is ${j(model[key])}; only null or "" (none) is supported`);
  }
  // ignore_merges: true takes a whole pre-token that is in the vocab as one id without merging,
  // which can give other ids than BPE merges: our encoder does not do that, so refuse the file.
  if (model.ignore_merges != null && model.ignore_merges !== false) {
    fail(source, `model.ignore_merges is ${j(model.ignore_merges)}; only false is supported (whole-word vocab lookups before merging would encode differently)`);
  }
  const vocab = model.vocab;
  if (!isObj(vocab)) fail(source, 'model.vocab is not an object');

  const tokens: string[] = [];
  for (const [tok, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) fail(source, `model.vocab[${j(tok)}] = ${j(id)} is not a non-negative integer id`);
    const i = id as number;
    if (tokens[i] !== undefined) fail(source, `id ${i} is used by both ${j(tokens[i])} and ${j(tok)}`);
    tokens[i] = tok;
  }

  const special: Array<{ id: number; content: string }> = [];
  const added = root.added_tokens ?? [];
  if (!Array.isArray(added)) fail(source, 'added_tokens is not an array');
  added.forEach((t: unknown, k: number) => {
    if (!isObj(t) || !Number.isInteger(t.id) || typeof t.content !== 'string') fail(source, `added_tokens[${k}] lacks an integer "id" or a string "content"`);
    const id = t.id as number;
    const content = t.content;
    if (tokens[id] !== undefined && tokens[id] !== content) fail(source, `added_tokens[${k}] (${j(content)}) has id ${id}, which the vocab gives to ${j(tokens[id])}`);
    tokens[id] = content;
    special.push({ id, content });
  });

  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === undefined) fail(source, `vocabulary ids are not contiguous: no token has id ${i} (of ${tokens.length})`);
  }

  const mergesRaw = model.merges;
  if (!Array.isArray(mergesRaw)) fail(source, 'model.merges is not an array');
  const merges: Array<[string, string]> = mergesRaw.map((m: unknown, r: number) => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2 || parts[0] === '' || parts[1] === '') fail(source, `model.merges[${r}] = ${j(m)} is not "left right"`);
      return [parts[0], parts[1]] as [string, string];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]] as [string, string];
    fail(source, `model.merges[${r}] = ${j(m)} is neither "left right" nor ["left", "right"]`);
  });

  return { tokens, merges, special };
}

/**
 * tokenizer_config.json for a byte-level BPE with <|endoftext|> as bos/eos/unk (GPT-2's convention),
 * so `transformers.AutoTokenizer.from_pretrained(dir)` loads tokenizer.json from the same folder as a
 * GPT2TokenizerFast, and tokenizers.js (`new Tokenizer(tokenizerJson, tokenizerConfig)`) reads it.
 */
export function tokenizerConfig(def: Pick<BpeDefinition, 'special'>, modelMaxLength: number): Record<string, unknown> {
  const eot = def.special.find((s) => s.content === '<|endoftext|>');
  if (!eot) throw new Error('tokenizerConfig: the tokenizer has no <|endoftext|> special token');
  return {
    tokenizer_class: 'GPT2TokenizerFast',
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: eot.content,
    eos_token: eot.content,
    unk_token: eot.content,
    model_max_length: modelMaxLength,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(
      def.special.map((s) => [String(s.id), { content: s.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]),
    ),
  };
}
