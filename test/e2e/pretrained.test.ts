/**
 * A "real GPT-2" through the pipeline (a tiny random checkpoint in GPT-2's format, vocabulary and
 * name, since no download is possible): the LM folder re-saves it with bos/eos = 50256 and GPT-2's
 * tokenizer files, and the SAE's cfg.json names the model "gpt2" as SAELens / TransformerLens do.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../lib/backend.ts';
import { createGPT2 } from '../../lib/model/gpt2.ts';
import { saveGPT2 } from '../../lib/model/hf.ts';
import { REPO_FILES } from '../repoFiles.ts';

const ROOT = path.resolve(__dirname, '../..');
const COPY = REPO_FILES;

describe('a pretrained GPT-2 checkpoint (lm.pretrained)', () => {
  let dir: string;
  let ckpt: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gsae-pretrained-'));
    for (const f of COPY) fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    await initBackend('wasm');
    ckpt = path.join(dir, 'gpt2-checkpoint');
    const model = createGPT2({ vocabSize: 50257, nCtx: 64, dModel: 8, nLayer: 2, nHead: 2, layerNormEps: 1e-5 }, 1);
    saveGPT2(model, ckpt);
    model.dispose();
    // As a checkpoint saved by transformers: its name, and no bos/eos of ours.
    const cfg = JSON.parse(fs.readFileSync(path.join(ckpt, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(ckpt, 'config.json'), JSON.stringify({ ...cfg, _name_or_path: 'openai-community/gpt2', bos_token_id: 50256, eos_token_id: 50256 }));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('re-saves it as an HF folder with bos/eos 50256 and tokenizer files; the SAE cfg.json says model_name gpt2', () => {
    const r = spawnSync(
      'npm',
      ['run', '--silent', 'pipeline', '--', 'sae[arch=topk,k=4]', '--params', 'params.smoke.yaml', '--progress', 'plain',
        '--set', `lm.pretrained=${ckpt}`, '--set', 'tokenizer.kind=gpt2', '--set', 'collect.layer=1', '--set', 'collect.train_tokens=2048'],
      { cwd: dir, encoding: 'utf8' },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, 'results', f), 'utf8'));
    expect(read('lm/config.json')).toMatchObject({ bos_token_id: 50256, eos_token_id: 50256, vocab_size: 50257, gsae_model_name: 'gpt2' });
    expect(read('lm/tokenizer.json').added_tokens).toEqual([expect.objectContaining({ id: 50256, content: '<|endoftext|>' })]);
    expect(read('lm/tokenizer_config.json')).toMatchObject({ tokenizer_class: 'GPT2TokenizerFast', bos_token: '<|endoftext|>', model_max_length: 64 });
    expect(read('sae/arch=topk,k=4,seed=0/cfg.json')).toMatchObject({ model_name: 'gpt2', hook_name: 'blocks.1.hook_resid_pre', hook_layer: 1, context_size: 32, prepend_bos: false, metadata: { model_name: 'gpt2' } });
  }, 300_000);
});
