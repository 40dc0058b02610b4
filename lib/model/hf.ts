/**
 * Hugging Face GPT-2 checkpoints: a directory with config.json (GPT2Config) and model.safetensors
 * (or a sharded model.safetensors.index.json). Tensor names are GPT2Model's (`wte.weight`,
 * `h.0.attn.c_attn.weight`, ...), optionally prefixed with `transformer.` (GPT2LMHeadModel's
 * state dict). The attention-mask buffers `h.{i}.attn.bias` / `h.{i}.attn.masked_bias` and a tied
 * `lm_head.weight` are ignored. Our checkpoints load with
 * `transformers.GPT2LMHeadModel.from_pretrained(dir)`, and a downloaded gpt2 / gpt2-medium
 * directory loads here.
 */
import fs from 'node:fs';
import path from 'node:path';
import { decodeSafetensors, parseSafetensorsHeader, writeSafetensors, type TensorF32 } from '../safetensors.ts';
import { writeFileAtomicSync } from '../../base/atomic.ts';
import { GPT2, gpt2ParamShapes, validateConfig } from './gpt2.ts';
import type { GPT2Config } from './types.ts';

/** The config.json we write (HF GPT2Config fields; dropout off, gelu_new, tied embeddings). */
export function toHFConfig(c: GPT2Config, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: c.vocabSize,
    n_positions: c.nCtx,
    n_ctx: c.nCtx,
    n_embd: c.dModel,
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: c.layerNormEps,
    initializer_range: 0.02,
    resid_pdrop: 0.0,
    embd_pdrop: 0.0,
    attn_pdrop: 0.0,
    summary_first_dropout: 0.0,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    use_cache: true,
    tie_word_embeddings: true,
    // <|endoftext|> is GPT-2's bos and eos (50256); saveGPT2 passes the tokenizer's id.
    bos_token_id: null,
    eos_token_id: null,
    torch_dtype: 'float32',
    ...extra,
  };
}

/** OpenAI's GPT-2 sizes (n_layer, n_embd) → their Hugging Face / TransformerLens names. */
const GPT2_NAMES: Array<[number, number, string]> = [
  [12, 768, 'gpt2'],
  [24, 1024, 'gpt2-medium'],
  [36, 1280, 'gpt2-large'],
  [48, 1600, 'gpt2-xl'],
  [6, 768, 'distilgpt2'],
];

/**
 * The name a pretrained GPT-2 goes by ("gpt2" for GPT-2 small, as HookedTransformer.from_pretrained
 * and SAELens's model_name expect): from the config's `_name_or_path` when it names one of the
 * GPT-2 checkpoints, else from its shape (GPT-2's vocabulary and 1024 positions), else `fallback`.
 */
export function gpt2ModelName(c: GPT2Config, nameOrPath: unknown, fallback: string): string {
  const known = GPT2_NAMES.map((n) => n[2]);
  if (typeof nameOrPath === 'string') {
    const base = nameOrPath.replace(/\/+$/, '').split('/').pop() ?? '';
    if (known.includes(base)) return base;
  }
  if (c.vocabSize === 50257 && c.nCtx === 1024) {
    const hit = GPT2_NAMES.find(([l, d]) => l === c.nLayer && d === c.dModel);
    if (hit) return hit[2];
  }
  return fallback;
}

/** Read an HF GPT2Config object; throws for settings this implementation does not compute. */
export function fromHFConfig(j: Record<string, unknown>, file = 'config.json'): GPT2Config {
  const bad = (msg: string) => {
    throw new Error(`${file}: ${msg}`);
  };
  if (j.model_type !== undefined && j.model_type !== 'gpt2') bad(`model_type is '${j.model_type}', expected 'gpt2'`);
  const num = (k: string, dflt?: number): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'number') bad(`missing or non-numeric '${k}'`);
    return v as number;
  };
  const c: GPT2Config = {
    vocabSize: num('vocab_size', 50257),
    nCtx: num('n_positions', 1024),
    dModel: num('n_embd', 768),
    nLayer: num('n_layer', 12),
    nHead: num('n_head', 12),
    layerNormEps: num('layer_norm_epsilon', 1e-5),
  };
  const act = j.activation_function ?? 'gelu_new';
  if (act !== 'gelu_new') bad(`activation_function '${act}' is not supported (only gelu_new)`);
  if (j.n_inner != null && j.n_inner !== 4 * c.dModel) bad(`n_inner ${j.n_inner} is not supported (only 4 * n_embd)`);
  if (j.scale_attn_weights === false) bad('scale_attn_weights=false is not supported');
  if (j.scale_attn_by_inverse_layer_idx === true) bad('scale_attn_by_inverse_layer_idx=true is not supported');
  if (j.tie_word_embeddings === false) bad('untied word embeddings (tie_word_embeddings=false) are not supported');
  if (j.add_cross_attention === true) bad('add_cross_attention is not supported');
  validateConfig(c);
  return c;
}

const IGNORED = /^(h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight)$/;

function stripPrefix(name: string): string {
  return name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
}

/**
 * Map HF tensors (any prefix) onto our parameter names, checking shapes. Errors name the tensor
 * and the file.
 */
export function mapHFTensors(
  c: GPT2Config,
  tensors: Map<string, TensorF32>,
  file: string,
): Map<string, Float32Array> {
  const expected = gpt2ParamShapes(c);
  const out = new Map<string, Float32Array>();
  const origName = new Map<string, string>();
  for (const [raw, t] of tensors) {
    const name = stripPrefix(raw);
    if (IGNORED.test(name)) continue;
    const shape = expected.get(name);
    if (!shape) throw new Error(`${file}: unexpected tensor '${raw}' (not a GPT-2 parameter for this config)`);
    if (out.has(name)) throw new Error(`${file}: tensor '${name}' appears twice ('${origName.get(name)}' and '${raw}')`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new Error(`${file}: tensor '${raw}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
    }
    out.set(name, t.data);
    origName.set(name, raw);
  }
  const missing = [...expected.keys()].filter((n) => !out.has(n));
  if (missing.length) {
    throw new Error(
      `${file}: missing tensor${missing.length > 1 ? 's' : ''} ${missing
        .slice(0, 5)
        .map((n) => `'${n}'`)
        .join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`,
    );
  }
  return out;
}

function readConfig(dir: string): GPT2Config {
  const f = path.join(dir, 'config.json');
  if (!fs.existsSync(f)) throw new Error(`loadGPT2: ${f} not found`);
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch (e) {
    throw new Error(`loadGPT2: ${f} is not valid JSON: ${(e as Error).message}`);
  }
  return fromHFConfig(j, f);
}

/** Read all tensors of a checkpoint directory (single file or sharded index). */
function readTensors(dir: string): { tensors: Map<string, TensorF32>; file: string } {
  const single = path.join(dir, 'model.safetensors');
  const index = path.join(dir, 'model.safetensors.index.json');
  const keep = (n: string) => !IGNORED.test(stripPrefix(n));
  if (fs.existsSync(single)) {
    const bytes = fs.readFileSync(single);
    return { tensors: decodeSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), single, keep).tensors, file: single };
  }
  if (fs.existsSync(index)) {
    const j = JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> };
    const files = [...new Set(Object.values(j.weight_map ?? {}))];
    const tensors = new Map<string, TensorF32>();
    for (const f of files) {
      const p = path.join(dir, f);
      const bytes = fs.readFileSync(p);
      for (const [n, t] of decodeSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), p, keep).tensors) {
        tensors.set(n, t);
      }
    }
    return { tensors, file: index };
  }
  const hasBin = fs.existsSync(path.join(dir, 'pytorch_model.bin'));
  throw new Error(
    `loadGPT2: no model.safetensors in ${dir}` +
      (hasBin ? ' (only pytorch_model.bin: convert it to safetensors, e.g. with transformers save_pretrained(safe_serialization=True))' : ''),
  );
}

/** Load a Hugging Face GPT-2 directory (config.json + model.safetensors). */
export function loadGPT2(dir: string): GPT2 {
  const config = readConfig(dir);
  const { tensors, file } = readTensors(dir);
  return GPT2.fromArrays(config, mapHFTensors(config, tensors, file));
}

/** Just the config of a checkpoint directory (cheap). */
export function loadGPT2Config(dir: string): GPT2Config {
  return readConfig(dir);
}

/**
 * Save as a Hugging Face GPT-2 directory: config.json (GPT2Config, GPT2LMHeadModel; bos/eos =
 * `eotId`, the tokenizer's <|endoftext|>) and model.safetensors (F32, GPT2Model names without
 * prefix, metadata format=pt).
 */
export function saveGPT2(
  model: GPT2,
  dir: string,
  opts: { extraConfig?: Record<string, unknown>; prefix?: '' | 'transformer.'; eotId?: number } = {},
): void {
  fs.mkdirSync(dir, { recursive: true });
  const prefix = opts.prefix ?? '';
  const tensors = new Map<string, TensorF32>();
  for (const [n, a] of model.paramArrays()) tensors.set(prefix + n, { shape: model.param(n).shape.slice(), data: a });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const cfgFile = path.join(dir, 'config.json');
  const ids = opts.eotId === undefined ? {} : { bos_token_id: opts.eotId, eos_token_id: opts.eotId };
  writeFileAtomicSync(cfgFile, JSON.stringify(toHFConfig(model.config, { ...ids, ...opts.extraConfig }), null, 2) + '\n');
}

/** Tensor names and shapes of a safetensors file without reading the data (for diagnostics). */
export function describeSafetensors(file: string): Record<string, { dtype: string; shape: number[] }> {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(8);
    fs.readSync(fd, head, 0, 8, 0);
    const n = Number(head.readBigUInt64LE(0));
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(8 + n, size));
    fs.readSync(fd, buf, 0, buf.length, 0);
    const { header } = parseSafetensorsHeader(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), file);
    return Object.fromEntries(Object.entries(header).map(([k, v]) => [k, { dtype: v.dtype, shape: v.shape }]));
  } finally {
    fs.closeSync(fd);
  }
}

