/**
 * `npm run bench -- memory [--backend auto]`: peak RSS at GPT-2 small width, each part in its own
 * process (so each peak is its own): the LM passes of collect / downstream / steering on a
 * GPT-2-small-shaped model (12 layers, d 768, 12 heads, V 50257, random weights; batch 16 × 128),
 * one LM training step of that model (AdamW), and SAE training steps at d 768, m 24,576, k 32,
 * batch 4096 (TopK and g-SAE, 1 and 2 threads).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const bi = args.indexOf('--backend');
const backend = bi >= 0 ? args[bi + 1] : 'auto';
const part = args[args.indexOf('--part') + 1];

async function child(which: string): Promise<void> {
  const { initBackend } = await import('../lib/backend.ts');
  const name = await initBackend(backend as 'auto', { quiet: true });
  const t0 = performance.now();
  if (which.startsWith('lm')) {
    const { createGPT2 } = await import('../lib/model/gpt2.ts');
    const { AdamW } = await import('../lib/model/train.ts');
    const cfg = { vocabSize: 50257, nCtx: 1024, dModel: 768, nLayer: 12, nHead: 12, layerNormEps: 1e-5 };
    const model = createGPT2(cfg, 0);
    const B = 16;
    const T = 128;
    const tokens = Int32Array.from({ length: B * (T + 1) }, (_, i) => (i * 7919) % cfg.vocabSize);
    if (which === 'lm-forward') for (let i = 0; i < 2; i++) model.lossPerToken(tokens, B, T);
    if (which === 'lm-collect') for (let i = 0; i < 2; i++) model.activationAndGrad(tokens, B, T, 'blocks.7.hook_resid_pre');
    if (which === 'lm-train') {
      const opt = new AdamW(model, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
      for (let i = 0; i < 2; i++) {
        const { grads } = model.forwardBackward(tokens, B, T);
        opt.step(model, grads, 1e-4, 1);
      }
    }
  } else {
    const [, arch, th] = which.split('-');
    const { trainSae } = await import('../lib/sae/train.ts');
    const { MemoryRows } = await import('../lib/activations.ts');
    const d = 768;
    const rows = 8192;
    const x = Float32Array.from({ length: rows * d }, (_, i) => Math.sin(i * 0.37) + 0.1 * Math.cos(i * 1.3));
    const g = Float32Array.from({ length: rows * d }, (_, i) => 0.01 * Math.cos(i * 0.11));
    await trainSae(new MemoryRows(d, x, g), { arch: arch as 'topk', k: 32, m: 24576, beta: 1, trainTokens: 2 * 4096, batchSize: 4096, threads: Number(th), initSamples: 4096 });
  }
  const rss = process.resourceUsage().maxRSS / 1024 / 1024;
  console.log(`PART ${which} ${name} ${rss.toFixed(2)} GiB ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

if (part) await child(part);
else {
  console.log(`peak RSS at GPT-2 small width (backend ${backend}); each part in its own process`);
  for (const p of ['lm-forward', 'lm-collect', 'lm-train', 'sae-topk-1', 'sae-gsae-1', 'sae-topk-2', 'sae-gsae-2']) {
    const r = spawnSync(process.execPath, [...process.execArgv, self, '--part', p, '--backend', backend], { encoding: 'utf8', cwd: path.dirname(self) });
    const line = /PART (.*)/.exec(r.stdout)?.[1];
    console.log(line ? `  ${line}` : `  ${p} failed: ${r.stderr.slice(-500)}`);
  }
}
