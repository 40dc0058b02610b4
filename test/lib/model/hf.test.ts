import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../lib/backend.ts';
import { createGPT2, gpt2ParamShapes, type GPT2 } from '../../../lib/model/gpt2.ts';
import { describeSafetensors, fromHFConfig, gpt2ModelName, loadGPT2, saveGPT2, toHFConfig } from '../../../lib/model/hf.ts';
import { encodeSafetensors, readSafetensors, type TensorF32 } from '../../../lib/safetensors.ts';
import type { GPT2Config } from '../../../lib/model/types.ts';

const cfg: GPT2Config = { vocabSize: 31, nCtx: 12, dModel: 16, nLayer: 2, nHead: 4, layerNormEps: 1e-5 };
let tmp: string;
let model: GPT2;
let tokens: tf.Tensor2D;

function logitsOf(m: GPT2): Float32Array {
  const l = m.logits(tokens);
  const a = l.dataSync() as Float32Array;
  l.dispose();
  return a;
}

function writeDir(dir: string, tensors: Map<string, TensorF32>, config: Record<string, unknown> = toHFConfig(cfg)) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
}

beforeAll(async () => {
  await initBackend('wasm');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hf-'));
  model = createGPT2(cfg, 3);
  tokens = tf.tensor2d(
    Int32Array.from({ length: 20 }, (_, i) => (i * 7) % cfg.vocabSize),
    [2, 10],
    'int32',
  );
  return () => fs.rmSync(tmp, { recursive: true, force: true });
});

describe('HF GPT-2 checkpoints', () => {
  it('save -> load gives identical logits; names, shapes and config follow HF GPT2', () => {
    const dir = path.join(tmp, 'plain');
    saveGPT2(model, dir);
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(j).toMatchObject({
      model_type: 'gpt2',
      architectures: ['GPT2LMHeadModel'],
      vocab_size: 31,
      n_positions: 12,
      n_embd: 16,
      n_layer: 2,
      n_head: 4,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      tie_word_embeddings: true,
    });
    const st = readSafetensors(path.join(dir, 'model.safetensors'));
    expect(st.metadata.format).toBe('pt');
    const shapes = Object.fromEntries([...st.tensors].map(([k, v]) => [k, v.shape]));
    expect(shapes['wte.weight']).toEqual([31, 16]);
    expect(shapes['wpe.weight']).toEqual([12, 16]);
    expect(shapes['h.1.attn.c_attn.weight']).toEqual([16, 48]);
    expect(shapes['h.1.attn.c_attn.bias']).toEqual([48]);
    expect(shapes['h.0.attn.c_proj.weight']).toEqual([16, 16]);
    expect(shapes['h.0.mlp.c_fc.weight']).toEqual([16, 64]);
    expect(shapes['h.0.mlp.c_proj.weight']).toEqual([64, 16]);
    expect(shapes['ln_f.bias']).toEqual([16]);
    expect(Object.keys(shapes).length).toBe(gpt2ParamShapes(cfg).size);
    const back = loadGPT2(dir);
    expect(back.config).toEqual(cfg);
    expect(logitsOf(back)).toEqual(logitsOf(model));
    back.dispose();
  });

  it("config.json names the end-of-text id as bos and eos (GPT-2: 50256), as HF's own gpt2 config does", () => {
    const dir = path.join(tmp, 'eot');
    saveGPT2(model, dir, { eotId: 30 });
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(j.bos_token_id).toBe(30);
    expect(j.eos_token_id).toBe(30);
  });

  it('names a real GPT-2 as TransformerLens / SAELens do ("gpt2", "gpt2-medium", ...), else the fallback', () => {
    const small = { vocabSize: 50257, nCtx: 1024, dModel: 768, nLayer: 12, nHead: 12, layerNormEps: 1e-5 };
    expect(gpt2ModelName(small, undefined, 'dir')).toBe('gpt2');
    expect(gpt2ModelName({ ...small, dModel: 1024, nLayer: 24, nHead: 16 }, undefined, 'dir')).toBe('gpt2-medium');
    expect(gpt2ModelName(small, 'openai-community/gpt2-large', 'dir')).toBe('gpt2-large');
    expect(gpt2ModelName(cfg, undefined, 'my-model')).toBe('my-model');
  });

  it('loads the transformer. prefix, ignores attn.bias / masked_bias / lm_head buffers', () => {
    const arrays = model.paramArrays();
    const tensors = new Map<string, TensorF32>();
    for (const [n, a] of arrays) tensors.set('transformer.' + n, { shape: model.param(n).shape, data: a });
    for (let i = 0; i < cfg.nLayer; i++) {
      tensors.set(`transformer.h.${i}.attn.bias`, { shape: [1, 1, 12, 12], data: new Float32Array(144) });
      tensors.set(`transformer.h.${i}.attn.masked_bias`, { shape: [], data: Float32Array.from([-1e4]) });
    }
    tensors.set('lm_head.weight', { shape: [31, 16], data: arrays.get('wte.weight')! });
    const dir = path.join(tmp, 'prefixed');
    writeDir(dir, tensors);
    const back = loadGPT2(dir);
    expect(logitsOf(back)).toEqual(logitsOf(model));
    back.dispose();
    saveGPT2(model, path.join(tmp, 'pfx2'), { prefix: 'transformer.' });
    const back2 = loadGPT2(path.join(tmp, 'pfx2'));
    expect(logitsOf(back2)).toEqual(logitsOf(model));
    back2.dispose();
  });

  it('errors name the tensor and file: wrong shape, missing, truncated, unknown, bad config', () => {
    const arrays = model.paramArrays();
    const base = () => new Map([...arrays].map(([n, a]) => [n, { shape: model.param(n).shape, data: a }]));
    // wrong shape
    const t1 = base();
    t1.set('h.1.mlp.c_fc.weight', { shape: [64, 16], data: arrays.get('h.1.mlp.c_fc.weight')! });
    writeDir(path.join(tmp, 'shape'), t1);
    expect(() => loadGPT2(path.join(tmp, 'shape'))).toThrow(/shape.*model\.safetensors: tensor 'h\.1\.mlp\.c_fc\.weight' has shape \[64,16\], expected \[16,64\]/);
    // missing
    const t2 = base();
    t2.delete('h.0.ln_2.bias');
    writeDir(path.join(tmp, 'missing'), t2);
    expect(() => loadGPT2(path.join(tmp, 'missing'))).toThrow(/missing.*model\.safetensors: missing tensor 'h\.0\.ln_2\.bias'/);
    // truncated file
    saveGPT2(model, path.join(tmp, 'trunc'));
    const f = path.join(tmp, 'trunc', 'model.safetensors');
    const bytes = fs.readFileSync(f);
    fs.writeFileSync(f, bytes.subarray(0, bytes.length - 40));
    expect(() => loadGPT2(path.join(tmp, 'trunc'))).toThrow(/tensor 'ln_f\.bias'.*truncated.*trunc\/model\.safetensors/);
    // unexpected tensor
    const t3 = base();
    t3.set('h.5.ln_1.weight', { shape: [16], data: new Float32Array(16) });
    writeDir(path.join(tmp, 'extra'), t3);
    expect(() => loadGPT2(path.join(tmp, 'extra'))).toThrow(/unexpected tensor 'h\.5\.ln_1\.weight'/);
    // config
    writeDir(path.join(tmp, 'relu'), base(), { ...toHFConfig(cfg), activation_function: 'relu' });
    expect(() => loadGPT2(path.join(tmp, 'relu'))).toThrow(/config\.json: activation_function 'relu'/);
    expect(() => loadGPT2(path.join(tmp, 'nothing-here'))).toThrow(/config\.json not found/);
    fs.mkdirSync(path.join(tmp, 'nost'));
    fs.writeFileSync(path.join(tmp, 'nost', 'config.json'), JSON.stringify(toHFConfig(cfg)));
    expect(() => loadGPT2(path.join(tmp, 'nost'))).toThrow(/no model\.safetensors/);
  });

  it('reads the config.json of the real gpt2 / gpt2-medium (as on the Hugging Face hub)', () => {
    const gpt2 = {
      activation_function: 'gelu_new',
      architectures: ['GPT2LMHeadModel'],
      attn_pdrop: 0.1,
      bos_token_id: 50256,
      embd_pdrop: 0.1,
      eos_token_id: 50256,
      initializer_range: 0.02,
      layer_norm_epsilon: 1e-5,
      model_type: 'gpt2',
      n_ctx: 1024,
      n_embd: 768,
      n_head: 12,
      n_layer: 12,
      n_positions: 1024,
      resid_pdrop: 0.1,
      summary_activation: null,
      summary_first_dropout: 0.1,
      summary_proj_to_labels: true,
      summary_type: 'cls_index',
      summary_use_proj: true,
      task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } },
      vocab_size: 50257,
    };
    expect(fromHFConfig(gpt2)).toEqual({ vocabSize: 50257, nCtx: 1024, dModel: 768, nLayer: 12, nHead: 12, layerNormEps: 1e-5 });
    const medium = { ...gpt2, n_embd: 1024, n_head: 16, n_layer: 24, n_special: 0, predict_special_tokens: true };
    expect(fromHFConfig(medium)).toMatchObject({ dModel: 1024, nHead: 16, nLayer: 24 });
    expect(() => fromHFConfig({ ...gpt2, model_type: 'llama' })).toThrow(/model_type/);
    expect(() => fromHFConfig({ ...gpt2, n_inner: 1000 })).toThrow(/n_inner/);
    // our own config round-trips
    expect(fromHFConfig(toHFConfig(cfg))).toEqual(cfg);
    // and the header of our file is readable without loading the data
    saveGPT2(model, path.join(tmp, 'desc'));
    expect(describeSafetensors(path.join(tmp, 'desc', 'model.safetensors'))['h.0.attn.c_attn.weight']).toEqual({
      dtype: 'F32',
      shape: [16, 48],
    });
  });

  it('loads a sharded checkpoint (model.safetensors.index.json)', () => {
    const arrays = model.paramArrays();
    const names = [...arrays.keys()];
    const dir = path.join(tmp, 'sharded');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHFConfig(cfg)));
    const weightMap: Record<string, string> = {};
    const half = Math.floor(names.length / 2);
    [names.slice(0, half), names.slice(half)].forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const m = new Map(part.map((n) => [n, { shape: model.param(n).shape, data: arrays.get(n)! }]));
      fs.writeFileSync(path.join(dir, file), encodeSafetensors(m));
      for (const n of part) weightMap[n] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const back = loadGPT2(dir);
    expect(logitsOf(back)).toEqual(logitsOf(model));
    back.dispose();
  });
});
