/**
 * Cross-field checks of the params, run by the engine before anything runs (Project.validate):
 * every constraint a stage would otherwise find only when it is reached (after corpus, tokenize and
 * an LM training). One line per problem: `params.<key>: <what is allowed>; got <value>`.
 * With lm.pretrained, the checkpoint's config.json is read here (just that file).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Params } from './params.gen.ts';

/** The model dimensions the later stages will see. */
interface ModelShape {
  nLayer: number;
  dModel: number;
  nCtx: number;
  vocabSize: number;
  /** Where the numbers come from, for messages. */
  from: string;
}

const GPT2_VOCAB = 50257;

/** Read a pretrained checkpoint's config.json the way lib/model/hf.ts does (defaults of GPT2Config). */
function pretrainedShape(dir: string, problems: string[]): ModelShape | null {
  const file = path.join(path.resolve(dir), 'config.json');
  const got = JSON.stringify(dir);
  if (!fs.existsSync(path.resolve(dir))) {
    problems.push(`params.lm.pretrained: must be a directory holding a Hugging Face GPT-2 checkpoint (config.json + model.safetensors); ${path.resolve(dir)} does not exist; got ${got}`);
    return null;
  }
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    problems.push(`params.lm.pretrained: ${file} must be a readable GPT-2 config.json (${(e as Error).message.split('\n')[0]}); got ${got}`);
    return null;
  }
  if (!fs.existsSync(path.join(path.resolve(dir), 'model.safetensors')) && !fs.existsSync(path.join(path.resolve(dir), 'model.safetensors.index.json'))) {
    problems.push(`params.lm.pretrained: the directory must hold model.safetensors (or model.safetensors.index.json); got ${got}`);
  }
  if (j.model_type !== undefined && j.model_type !== 'gpt2') problems.push(`params.lm.pretrained: ${file} must be a GPT-2 config (model_type "gpt2"); got model_type ${JSON.stringify(j.model_type)}`);
  const num = (k: string, dflt: number): number => (typeof j[k] === 'number' ? (j[k] as number) : dflt);
  return { nLayer: num('n_layer', 12), dModel: num('n_embd', 768), nCtx: num('n_positions', 1024), vocabSize: num('vocab_size', GPT2_VOCAB), from: `${file}` };
}

export function validateParams(params: unknown): string[] {
  const p = params as Params;
  const problems: string[] = [];
  const add = (key: string, allowed: string, value: unknown): void => {
    problems.push(`params.${key}: ${allowed}; got ${JSON.stringify(value)}`);
  };

  let shape: ModelShape | null;
  if (p.lm.pretrained) {
    if (p.tokenizer.kind !== 'gpt2') add('tokenizer.kind', `must be "gpt2" when lm.pretrained is set (a real GPT-2 reads GPT-2's own token ids)`, p.tokenizer.kind);
    shape = pretrainedShape(p.lm.pretrained, problems);
    if (shape && shape.vocabSize < GPT2_VOCAB) add('lm.pretrained', `the checkpoint's vocabulary must hold GPT-2's ${GPT2_VOCAB} ids (${shape.from} has vocab_size ${shape.vocabSize})`, p.lm.pretrained);
  } else {
    if (p.lm.d_model % p.lm.n_head !== 0) {
      const divisors = Array.from({ length: Math.min(64, p.lm.d_model) }, (_, i) => i + 1).filter((h) => p.lm.d_model % h === 0);
      add('lm.n_head', `must divide lm.d_model (${p.lm.d_model}): one of ${divisors.join(', ')}`, p.lm.n_head);
    }
    const vocab = p.tokenizer.kind === 'gpt2' ? GPT2_VOCAB : p.tokenizer.vocab_size;
    shape = { nLayer: p.lm.n_layer, dModel: p.lm.d_model, nCtx: p.lm.n_ctx, vocabSize: vocab, from: 'lm' };
  }
  if (!shape) return problems;
  const of = shape.from === 'lm' ? '' : ` (${shape.from})`;

  if (p.collect.layer >= shape.nLayer) {
    add('collect.layer', `must be < the number of blocks, ${shape.nLayer}${shape.from === 'lm' ? ' (lm.n_layer)' : of}: 0..${shape.nLayer - 1}`, p.collect.layer);
  }
  if (p.steering.context_len > shape.nCtx) {
    add('steering.context_len', `must be ≤ the model's context, ${shape.nCtx}${shape.from === 'lm' ? ' (lm.n_ctx)' : of}`, p.steering.context_len);
  }
  if (p.downstream.tokens > p.collect.test_tokens) {
    add('downstream.tokens', `must be ≤ collect.test_tokens (${p.collect.test_tokens}): downstream evaluates on collect's test windows`, p.downstream.tokens);
  }
  const m = p.sae.expansion * shape.dModel;
  const tooBig = p.sae.k.filter((k) => k > m);
  if (tooBig.length > 0) {
    add('sae.k', `every k must be ≤ the number of latents, sae.expansion × d_model = ${p.sae.expansion} × ${shape.dModel} = ${m}${of}`, p.sae.k);
  }
  // The SAE trainer splits each batch into a fixed number of chunks (lib/sae/train.ts).
  const chunks = 8 * m * shape.dModel <= 32 * 2 ** 20 ? 8 : 2;
  if (p.sae.batch_size < chunks) add('sae.batch_size', `must be ≥ ${chunks} (each batch is split into ${chunks} chunks for d_sae ${m})`, p.sae.batch_size);
  return problems;
}
