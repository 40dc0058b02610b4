/**
 * The project's cross-field checks (stages/validate.ts, called by the engine before anything runs):
 * each constraint a stage used to find only when reached, and the CLI's exit 2 with one line per problem.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { validateParams } from '../stages/validate.ts';

const ROOT = path.resolve(__dirname, '..');
const defaults = YAML.parse(fs.readFileSync(path.join(ROOT, 'params.yaml'), 'utf8'));
const smoke = YAML.parse(fs.readFileSync(path.join(ROOT, 'params.smoke.yaml'), 'utf8'));
const full = YAML.parse(fs.readFileSync(path.join(ROOT, 'params.full.yaml'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'validate-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function withSet(base: any, sets: Record<string, unknown>): any {
  const p = structuredClone(base);
  for (const [key, value] of Object.entries(sets)) {
    const parts = key.split('.');
    let cur = p;
    for (const part of parts.slice(0, -1)) cur = cur[part];
    cur[parts[parts.length - 1]] = value;
  }
  return p;
}

/** A GPT-2 small-shaped checkpoint directory (config.json + an empty model.safetensors stand-in). */
function fakeGpt2(name: string, config: Record<string, unknown> = {}): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2', n_layer: 12, n_embd: 768, n_positions: 1024, vocab_size: 50257, ...config }));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), '');
  return dir;
}

describe('validateParams (stages/validate.ts)', () => {
  it('accepts the shipped presets', () => {
    expect(validateParams(defaults)).toEqual([]);
    expect(validateParams(smoke)).toEqual([]);
    expect(validateParams(full)).toEqual([]);
  });

  it.each([
    [{ 'lm.n_head': 3 }, 'params.lm.n_head: must divide lm.d_model (128): one of 1, 2, 4, 8, 16, 32, 64; got 3'],
    [{ 'collect.layer': 9 }, 'params.collect.layer: must be < the number of blocks, 4 (lm.n_layer): 0..3; got 9'],
    [{ 'collect.layer': 4 }, 'params.collect.layer: must be < the number of blocks, 4 (lm.n_layer): 0..3; got 4'],
    [{ 'sae.k': [8, 4096] }, 'params.sae.k: every k must be ≤ the number of latents, sae.expansion × d_model = 16 × 128 = 2048; got [8,4096]'],
    [{ 'sae.expansion': 1, 'sae.k': [8, 200] }, 'params.sae.k: every k must be ≤ the number of latents, sae.expansion × d_model = 1 × 128 = 128; got [8,200]'],
    [{ 'steering.context_len': 129 }, "params.steering.context_len: must be ≤ the model's context, 128 (lm.n_ctx); got 129"],
    [{ 'downstream.tokens': 65537 }, "params.downstream.tokens: must be ≤ collect.test_tokens (65536): downstream evaluates on collect's test windows; got 65537"],
    [{ 'sae.batch_size': 4 }, 'params.sae.batch_size: must be ≥ 8 (each batch is split into 8 chunks for d_sae 2048); got 4'],
    [{ 'lm.pretrained': '/nonexistent/gpt2', 'tokenizer.kind': 'gpt2' }, 'params.lm.pretrained: must be a directory holding a Hugging Face GPT-2 checkpoint (config.json + model.safetensors); /nonexistent/gpt2 does not exist; got "/nonexistent/gpt2"'],
  ])('%j → one line naming the key, what is allowed and the value', (sets, line) => {
    expect(validateParams(withSet(defaults, sets))).toEqual([line]);
  });

  it('reports every problem at once', () => {
    expect(validateParams(withSet(defaults, { 'lm.n_head': 3, 'collect.layer': 9, 'sae.k': [4096] }))).toHaveLength(3);
  });

  it('a pretrained LM: needs the gpt2 tokenizer; layer, d_model and context come from its config.json', () => {
    const dir = fakeGpt2('gpt2');
    const base = withSet(defaults, { 'lm.pretrained': dir, 'tokenizer.kind': 'gpt2', 'collect.layer': 7 });
    expect(validateParams(base)).toEqual([]);
    // lm.n_head / d_model of our own LM do not matter for a pretrained one
    expect(validateParams(withSet(base, { 'lm.n_head': 3 }))).toEqual([]);
    expect(validateParams(withSet(base, { 'tokenizer.kind': 'bpe' }))).toEqual([
      `params.tokenizer.kind: must be "gpt2" when lm.pretrained is set (a real GPT-2 reads GPT-2's own token ids); got "bpe"`,
    ]);
    const cfg = path.join(dir, 'config.json');
    expect(validateParams(withSet(base, { 'collect.layer': 12 }))).toEqual([`params.collect.layer: must be < the number of blocks, 12 (${cfg}): 0..11; got 12`]);
    // d = 768 from the checkpoint: k = 4096 fits with expansion 16, not with expansion 4
    expect(validateParams(withSet(base, { 'sae.k': [4096] }))).toEqual([]);
    expect(validateParams(withSet(base, { 'sae.k': [4096], 'sae.expansion': 4 }))).toEqual([
      `params.sae.k: every k must be ≤ the number of latents, sae.expansion × d_model = 4 × 768 = 3072 (${cfg}); got [4096]`,
    ]);
    const short = fakeGpt2('short', { n_positions: 32 });
    expect(validateParams(withSet(base, { 'lm.pretrained': short }))).toEqual([
      `params.steering.context_len: must be ≤ the model's context, 32 (${path.join(short, 'config.json')}); got 64`,
    ]);
    const bad = path.join(tmp, 'broken');
    fs.mkdirSync(bad);
    fs.writeFileSync(path.join(bad, 'config.json'), '{ not json');
    expect(validateParams(withSet(base, { 'lm.pretrained': bad }))[0]).toMatch(/^params\.lm\.pretrained: .*broken\/config\.json must be a readable GPT-2 config\.json \(.*\); got ".*broken"$/);
  });

  it('the CLI stops before anything runs: exit 2, one line per problem, no stack trace, nothing written', () => {
    const dir = path.join(tmp, 'project');
    for (const f of ['base', 'pipeline', 'lib', 'stages', 'params.yaml', 'params.schema.json', 'package.json', 'tsconfig.json']) {
      fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
    }
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    // node + the tsx loader, not npx: npm itself may print warnings on stderr (e.g. about .npmrc keys)
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'pipeline/cli.ts', 'run', '--set', 'lm.n_head=3', '--set', 'collect.layer=9'], { cwd: dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'invalid params:',
      '  params.lm.n_head: must divide lm.d_model (128): one of 1, 2, 4, 8, 16, 32, 64; got 3',
      '  params.collect.layer: must be < the number of blocks, 4 (lm.n_layer): 0..3; got 9',
    ]);
    expect(r.stdout).toBe('');
    expect(fs.existsSync(path.join(dir, 'results'))).toBe(false);
    expect(fs.existsSync(path.join(dir, '.cache'))).toBe(false);
  }, 60_000);
});
