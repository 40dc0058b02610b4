/**
 * Saving and loading SAEs in the layout SAELens reads (`SAE.load_from_disk(dir)`):
 *   sae_weights.safetensors  W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in], F32
 *   cfg.json                 SAELens TopK config, loadable by SAELens 5.x and 6.x (see SaeLensMeta):
 *                            architecture "topk", d_in, d_sae, k, dtype, device, apply_b_dec_to_input,
 *                            normalize_activations "none", reshape_activations, activation_fn_str
 *                            "topk", activation_fn_kwargs {k}, model_name, hook_name, hook_layer,
 *                            context_size, prepend_bos, dataset_path, ... flat and under `metadata`;
 *                            plus our fields: arch ("topk" | "gsae"), beta, seed, tokens_seen,
 *                            b_dec_init, training_input_scale_folded, ... (SAELens ignores them).
 *   firing_counts.bin        float64 little-endian [d_sae]: training tokens on which each latent fired
 *   firing_counts.json       {tokens_seen, dead_tokens, dead_frac, counts, last_fired}
 * A g-SAE loaded by SAELens behaves as a TopK SAE (gradient-free inference): the gradient
 * selection needs the loss gradient, which SAELens does not have.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../../base/atomic.ts';
import { readSafetensors, writeSafetensors } from '../safetensors.ts';
import type { TrainSaeResult } from './train.ts';
import type { SaeArch, SaeWeights } from './types.ts';

export const SAE_WEIGHTS_FILE = 'sae_weights.safetensors';
export const SAE_CFG_FILE = 'cfg.json';
export const FIRING_BIN = 'firing_counts.bin';
export const FIRING_JSON = 'firing_counts.json';

export interface FiringStats {
  counts: Float64Array;
  lastFired?: Float64Array;
  tokensSeen?: number;
  deadTokens?: number;
}

/**
 * What SAELens needs to know about where the SAE was trained. SAELens 5.x (`SAEConfig`, a dataclass
 * read flat) requires context_size, model_name, hook_name, hook_layer, hook_head_index, prepend_bos,
 * dataset_path and dataset_trust_remote_code; SAELens 6.x reads a cfg without `sae_lens_version`
 * as a pre-6.0 file: flat fields, with its `metadata` built from the flat keys it knows
 * (model_name, hook_name, context_size, dataset_path, prepend_bos, ...). We write every key flat
 * and the same keys under `metadata` (for readers of the 6.x layout), and no `sae_lens_version`
 * (we are not SAELens).
 */
export interface SaeLensMeta {
  /** TransformerLens / HF name of the model ("gpt2" for GPT-2 small), or our own model's name. */
  model_name: string;
  /** e.g. "blocks.2.hook_resid_pre". */
  hook_name: string;
  hook_layer: number;
  /** Tokens per training sequence. */
  context_size: number;
  /** Whether each training sequence started with a BOS token. */
  prepend_bos: boolean;
  /** Where the training text came from. */
  dataset_path: string;
  model_class_name?: string;
}

const META_REQUIRED: Array<keyof SaeLensMeta> = ['model_name', 'hook_name', 'hook_layer', 'context_size', 'prepend_bos', 'dataset_path'];

/**
 * Write an SAE to `dir` (created if needed): weights, cfg.json with the SAELens fields of `meta`
 * (flat and under `metadata`) and our fields `extra` (seed, tokens_seen, b_dec_init, ...; SAELens
 * ignores unknown keys). Firing statistics are optional.
 */
export function saveSae(dir: string, w: SaeWeights, meta: SaeLensMeta, extra: Record<string, unknown> = {}, firing?: FiringStats): void {
  for (const key of META_REQUIRED) {
    if (meta?.[key] === undefined || meta[key] === null) throw new Error(`saveSae: SAELens field ${key} is missing (SAELens 5.x cannot load the SAE without it)`);
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), {
    W_enc: { shape: [w.d, w.m], data: w.W_enc },
    W_dec: { shape: [w.m, w.d], data: w.W_dec },
    b_enc: { shape: [w.m], data: w.b_enc },
    b_dec: { shape: [w.d], data: w.b_dec },
  });
  const metadata = {
    model_name: meta.model_name,
    model_class_name: meta.model_class_name ?? 'HookedTransformer',
    hook_name: meta.hook_name,
    hook_layer: meta.hook_layer,
    hook_head_index: null,
    context_size: meta.context_size,
    prepend_bos: meta.prepend_bos,
    dataset_path: meta.dataset_path,
    dataset_trust_remote_code: false,
    seqpos_slice: [null],
    model_from_pretrained_kwargs: {},
    sae_lens_training_version: null,
  };
  const cfg = {
    ...extra,
    architecture: 'topk',
    d_in: w.d,
    d_sae: w.m,
    k: w.k,
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: true,
    normalize_activations: 'none',
    reshape_activations: 'none',
    activation_fn_str: 'topk',
    activation_fn_kwargs: { k: w.k },
    finetuning_scaling_factor: false,
    neuronpedia_id: null,
    ...metadata,
    metadata,
    arch: w.arch,
    beta: w.beta,
  };
  writeFileAtomicSync(path.join(dir, SAE_CFG_FILE), JSON.stringify(cfg, null, 2) + '\n');
  if (firing) {
    const c = firing.counts;
    if (c.length !== w.m) throw new Error(`saveSae: firing counts have ${c.length} values, expected m=${w.m}`);
    const bin = new Float64Array(c);
    writeFileAtomicSync(path.join(dir, FIRING_BIN), new Uint8Array(bin.buffer));
    let dead: number | null = null;
    if (firing.lastFired && firing.tokensSeen !== undefined && firing.deadTokens !== undefined) {
      let nd = 0;
      for (let j = 0; j < w.m; j++) if (firing.tokensSeen - firing.lastFired[j] >= firing.deadTokens) nd++;
      dead = nd / w.m;
    }
    writeFileAtomicSync(
      path.join(dir, FIRING_JSON),
      JSON.stringify({
        tokens_seen: firing.tokensSeen ?? null,
        dead_tokens: firing.deadTokens ?? null,
        dead_frac: dead,
        counts: Array.from(c),
        last_fired: firing.lastFired ? Array.from(firing.lastFired) : null,
      }) + '\n',
    );
  }
}

/** Save a training result: weights, cfg.json (with the training config) and firing counts. */
export function saveTrainResult(dir: string, res: TrainSaeResult, meta: SaeLensMeta, extra: Record<string, unknown> = {}): void {
  const c = res.cfg;
  saveSae(
    dir,
    res.weights,
    meta,
    {
      seed: c.seed,
      tokens_seen: res.tokensSeen,
      b_dec_init: c.bDecInit,
      // x was multiplied by this during training; the saved weights already have it folded back
      // (they take raw activations), so a reader must NOT apply it again.
      training_input_scale_folded: res.scale,
      normalize_during_training: c.normalize,
      lr: c.lr,
      batch_size: c.batchSize,
      aux_k: c.auxK,
      aux_alpha: c.auxAlpha,
      dead_tokens: c.deadTokens,
      aux_select: c.auxSelect,
      train: { ...c, checkpointDir: undefined },
      ...extra,
    },
    { counts: res.firingCounts, lastFired: res.lastFired, tokensSeen: res.tokensSeen, deadTokens: c.deadTokens },
  );
}

export function loadSaeCfg(dir: string): Record<string, any> {
  const file = path.join(dir, SAE_CFG_FILE);
  if (!fs.existsSync(file)) throw new Error(`loadSae: no ${SAE_CFG_FILE} in ${dir}`);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Load an SAE saved by saveSae (or a SAELens TopK SAE: arch topk, beta 0). */
export function loadSae(dir: string): SaeWeights {
  const cfg = loadSaeCfg(dir);
  const st = readSafetensors(path.join(dir, SAE_WEIGHTS_FILE));
  const get = (name: string, shape: number[]): Float32Array => {
    const t = st.tensors.get(name);
    if (!t) throw new Error(`loadSae: ${dir}/${SAE_WEIGHTS_FILE} has no tensor '${name}'`);
    if (t.shape.join() !== shape.join()) {
      throw new Error(`loadSae: tensor '${name}' has shape [${t.shape}], expected [${shape}]`);
    }
    return t.data;
  };
  const d = Number(cfg.d_in);
  const m = Number(cfg.d_sae);
  const k = Number(cfg.k ?? cfg.activation_fn_kwargs?.k);
  if (!(d > 0 && m > 0 && k > 0)) throw new Error(`loadSae: cfg.json in ${dir} lacks d_in, d_sae or k`);
  const arch: SaeArch = cfg.arch === 'gsae' ? 'gsae' : 'topk';
  return {
    arch,
    d,
    m,
    k,
    beta: arch === 'gsae' ? Number(cfg.beta ?? 0) : 0,
    W_enc: get('W_enc', [d, m]),
    W_dec: get('W_dec', [m, d]),
    b_enc: get('b_enc', [m]),
    b_dec: get('b_dec', [d]),
  };
}

/** Firing statistics saved with an SAE, or null. */
export function loadFiringCounts(dir: string): FiringStats | null {
  const file = path.join(dir, FIRING_JSON);
  if (!fs.existsSync(file)) return null;
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  return {
    counts: Float64Array.from(j.counts),
    lastFired: j.last_fired ? Float64Array.from(j.last_fired) : undefined,
    tokensSeen: j.tokens_seen ?? undefined,
    deadTokens: j.dead_tokens ?? undefined,
  };
}

/**
 * Training-dead latents of a saved SAE (1 = dead): never fired in training, or not fired during
 * its last dead_tokens training tokens (read from firing_counts.json).
 */
export function loadTrainingDead(dir: string): Uint8Array {
  const j = JSON.parse(fs.readFileSync(path.join(dir, FIRING_JSON), 'utf8'));
  const counts: number[] = j.counts;
  const last: number[] | null = j.last_fired;
  const seen: number = j.tokens_seen ?? 0;
  const window: number = j.dead_tokens ?? Infinity;
  return Uint8Array.from(counts, (c, i) => {
    if (c === 0) return 1;
    if (!last) return 0;
    return last[i] === 0 || seen - last[i] >= window ? 1 : 0;
  });
}
