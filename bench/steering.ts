/**
 * `npm run bench -- steering [--latents 24] [--contexts 32] [--ctx 64] [--profile]`: one steering
 * evaluation (lib/eval/steering.ts) at the default LM shape (4L d128 V4096) with a random model
 * and a random unit-norm decoder (m 1024): seconds, forward tokens/s, and with --profile the
 * share of the time in the forward passes vs the scoring of the logits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend, initBackend } from '../lib/backend.ts';
import { createGPT2 } from '../lib/model/index.ts';
import { evaluateSteering } from '../lib/eval/steering.ts';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
await initBackend((args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'auto') as never);
const cfg = { vocabSize: 4096, nCtx: 128, dModel: 128, nLayer: 4, nHead: 4, layerNormEps: 1e-5 };
const model = createGPT2(cfg, 0);
const m = 1024;
const d = cfg.dModel;
const W = new Float32Array(m * d);
let s = 1;
for (let i = 0; i < W.length; i++) {
  s = (s * 16807) % 2147483647;
  W[i] = s / 2147483647 - 0.5;
}
for (let i = 0; i < m; i++) {
  let n = 0;
  for (let j = 0; j < d; j++) n += W[i * d + j] ** 2;
  for (let j = 0; j < d; j++) W[i * d + j] /= Math.sqrt(n);
}
const tokens = new Int32Array(200_000);
for (let i = 0; i < tokens.length; i++) {
  s = (s * 16807) % 2147483647;
  tokens[i] = s % cfg.vocabSize;
}
const opts = {
  hook: 'blocks.2.hook_resid_pre' as const,
  sae: { W_dec: W, m, d },
  firingCounts: new Float64Array(m).fill(1),
  meanNorm: 5,
  nLatents: arg('latents', 24),
  nContexts: arg('contexts', 32),
  contextLen: arg('ctx', 64),
};
let forwardMs = 0;
if (args.includes('--profile')) {
  // time the forward passes alone: wrap logits() and force its data
  const logits = model.logits.bind(model);
  model.logits = ((t: tf.Tensor2D, h?: never) => {
    const t0 = performance.now();
    const out = logits(t, h);
    out.dataSync();
    forwardMs += performance.now() - t0;
    return out;
  }) as typeof model.logits;
}
const res = evaluateSteering(model, tokens, opts);
console.log(`backend ${activeBackend()}: steering ${res.latents.length} latents × ${res.alphas.length} α × ${opts.nContexts} contexts of ${opts.contextLen}: ${res.cost.seconds.toFixed(2)} s, ${Math.round(res.cost.forwardTokensPerSecond)} forward tokens/s overall`);
if (forwardMs) console.log(`  forward passes (logits to JS) ${(forwardMs / 1000).toFixed(2)} s, scoring and the rest ${(res.cost.seconds - forwardMs / 1000).toFixed(2)} s`);
