/**
 * Language-model benchmark (backend `--backend auto|wasm+ort|wasm|...`, default auto): tokens/s of a full training step (forward +
 * backward + AdamW), of forward+backward alone, of evaluation (forward + exact loss) and of
 * activationAndGrad (activation collection), for the default LM (4 layers, d=128, 4 heads,
 * context 128, vocab 4096) unless overridden. Wall time and this process's CPU time are both
 * reported (the machine is shared: CPU time is the better measure of our own cost).
 *
 * Run: `npx tsx bench/lm.ts [--batch 16] [--layers 4] [--d 128] [--heads 4] [--ctx 128]
 *       [--vocab 4096] [--steps 8] [--threads 2] [--profile]`, or via the bench dispatcher (default
 *       export). --threads also times the training step as the trainer runs it with that many threads.
 *
 * `--sotu [--tokens N] [--lr X] [--threads N]` instead trains the LM for real on the State-of-the-Union corpus
 * (our byte-level BPE with the vocabulary size, trained on the train split; cached in the OS temp
 * dir) and prints wall time, tokens/s, the final validation loss and the unigram entropy.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendKind } from '../lib/backend.ts';
import { createGPT2 } from '../lib/model/gpt2.ts';
import { AdamW, DEFAULT_LM_CONFIG, gradientPlan, sampleBatch, train, unigramEntropy } from '../lib/model/train.ts';
import { loadCorpus, splitCorpus } from '../lib/corpus.ts';
import { makeTokenizer } from '../lib/tokenizer/index.ts';
import { readTokenSplits, tokenizeSplits } from '../lib/tokens.ts';
import type { GPT2Config } from '../lib/model/types.ts';
import { DataParallel } from '../lib/model/parallel.ts';
import { ortEnabled } from '../lib/backend.ts';
import { ortThreads, setOrtThreads } from '../lib/native/ort.ts';

/**
 * Training settings of this benchmark for DEFAULT_LM_CONFIG on ~2 M tokens (State of the Union, 4096 BPE).
 * Measured on SOTU (bench/lm.ts --sotu, 1.5 M tokens): final val loss 4.98 nats at lr 1.5e-3,
 * 5.02 at 3e-3, 5.07 at 1e-3 (unigram entropy 6.54). About 9.5 min on one wasm thread, 6-9 min
 * with threads: 2 on this shared 2-core machine.
 */
const SOTU_TRAIN_OPTIONS = {
  batchSize: 16,
  seqLen: 128,
  trainTokens: 1_500_000,
  lr: 1.5e-3,
  minLrRatio: 0.1,
  weightDecay: 0.1,
  gradClip: 1.0,
  beta1: 0.9,
  beta2: 0.95,
  evalEverySteps: 200,
} as const;

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

interface Timing {
  wallMs: number;
  cpuMs: number;
}

/** Median wall and CPU time per call over `reps` calls after `warm` warm-up calls. */
function measure(f: () => void, reps: number, warm = 2): Timing {
  for (let i = 0; i < warm; i++) f();
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    f();
    const c = process.cpuUsage(c0);
    walls.push(performance.now() - t0);
    cpus.push((c.user + c.system) / 1000);
  }
  const med = (a: number[]) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return { wallMs: med(walls), cpuMs: med(cpus) };
}

async function measureAsync(f: () => Promise<void>, reps: number, warm = 2): Promise<Timing> {
  for (let i = 0; i < warm; i++) await f();
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await f();
    const c = process.cpuUsage(c0);
    walls.push(performance.now() - t0);
    cpus.push((c.user + c.system) / 1000);
  }
  const med = (a: number[]) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return { wallMs: med(walls), cpuMs: med(cpus) };
}

function report(label: string, tokens: number, t: Timing): void {
  const tw = (tokens / t.wallMs) * 1000;
  const tc = (tokens / t.cpuMs) * 1000;
  console.log(
    `${label.padEnd(34)} ${t.wallMs.toFixed(0).padStart(6)} ms/batch  ${tw.toFixed(0).padStart(7)} tokens/s wall  ` +
      `${tc.toFixed(0).padStart(7)} tokens/s per CPU-second`,
  );
}

async function trainSotu(args: string[], cfg: GPT2Config, B: number): Promise<void> {
  const dir = path.join(os.tmpdir(), `gsae-bench-sotu-bpe${cfg.vocabSize}`);
  if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
    const t0 = performance.now();
    const docs = loadCorpus({ source: 'sotu' });
    const splits = splitCorpus(docs, { val: 0.1, test: 0.1, seed: 0 });
    const tok = makeTokenizer('bpe', { texts: splits.train.map((d) => d.text), vocabSize: cfg.vocabSize });
    tokenizeSplits(splits, tok, dir, { verify: false });
    console.log(`tokenized SOTU with a ${cfg.vocabSize} BPE in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${dir}`);
  }
  const { train: tr, val } = readTokenSplits(dir);
  const budget = arg(args, 'tokens', SOTU_TRAIN_OPTIONS.trainTokens);
  const lr = arg(args, 'lr', SOTU_TRAIN_OPTIONS.lr);
  const H = unigramEntropy(val, cfg.vocabSize);
  console.log(`train ${tr.length} tokens, val ${val.length} tokens; unigram entropy of val = ${H.toFixed(3)} nats`);
  const model = createGPT2(cfg, 0);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const r = await train(model, tr, {
    ...SOTU_TRAIN_OPTIONS,
    batchSize: B,
    seqLen: cfg.nCtx,
    trainTokens: budget,
    lr,
    threads: arg(args, 'threads', 1),
    valStream: val,
    evalEverySteps: Math.max(1, Math.round(budget / (B * cfg.nCtx) / 4)),
    logEverySteps: 50,
  }, {
    onProgress: (p) =>
      console.log(
        `step ${p.step}/${p.totalSteps} tokens ${p.tokensSeen} train_loss ${p.metrics.train_loss.toFixed(3)} lr ${p.lr.toExponential(2)} ` +
          `|g| ${p.metrics.grad_norm.toFixed(2)} ${p.tokensPerSecond.toFixed(0)} tok/s ${p.elapsedSeconds.toFixed(0)} s`,
      ),
    onMetrics: (values, step) => {
      if (values.val_loss !== undefined) console.log(`  val_loss ${values.val_loss.toFixed(4)} at ${step} tokens`);
    },
  });
  const cpu = process.cpuUsage(c0);
  console.log(
    `done: ${r.tokensSeen} tokens in ${((performance.now() - t0) / 1000).toFixed(0)} s wall ` +
      `(${((cpu.user + cpu.system) / 1e6).toFixed(0)} s CPU), training ${r.tokensPerSecond.toFixed(0)} tok/s; ` +
      `final val loss ${r.finalValLoss.toFixed(4)} vs unigram entropy ${H.toFixed(4)} nats`,
  );
  model.dispose();
}

export default async function run(args: string[] = []): Promise<void> {
  const bi = args.indexOf('--backend');
  const backend = await initBackend((bi >= 0 ? args[bi + 1] : 'auto') as BackendKind);
  const cfg: GPT2Config = {
    ...DEFAULT_LM_CONFIG,
    vocabSize: arg(args, 'vocab', DEFAULT_LM_CONFIG.vocabSize),
    nCtx: arg(args, 'ctx', DEFAULT_LM_CONFIG.nCtx),
    dModel: arg(args, 'd', DEFAULT_LM_CONFIG.dModel),
    nLayer: arg(args, 'layers', DEFAULT_LM_CONFIG.nLayer),
    nHead: arg(args, 'heads', DEFAULT_LM_CONFIG.nHead),
  };
  const B = arg(args, 'batch', 16);
  if (args.includes('--sotu')) return trainSotu(args, cfg, B);
  const T = cfg.nCtx;
  const reps = arg(args, 'steps', 8);
  const model = createGPT2(cfg, 0);
  console.log(
    `backend ${backend}; GPT-2 L=${cfg.nLayer} d=${cfg.dModel} H=${cfg.nHead} ctx=${cfg.nCtx} V=${cfg.vocabSize} ` +
      `(${(model.numParams / 1e6).toFixed(2)} M params); batch ${B} x ${T} = ${B * T} tokens`,
  );
  // A token stream with some structure (a random walk over the vocabulary).
  const stream = new Uint16Array(200_000);
  let s = 1;
  for (let i = 0; i < stream.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    stream[i] = (stream[Math.max(0, i - 1)] + (s >>> 16) % 64) % cfg.vocabSize;
  }
  let step = 0;
  const opt = new AdamW(model, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const trainStep = () => {
    const batch = sampleBatch(stream, B, T, 0, step++);
    const { grads } = model.forwardBackward(batch, B, T);
    opt.step(model, grads, 1e-3, 1.0);
  };
  const fixed = sampleBatch(stream, B, T, 1, 0);
  const fwdBwd = () => {
    const { grads } = model.forwardBackward(fixed, B, T);
    for (const g of grads.values()) g.dispose();
  };
  const fwd = () => {
    model.lossPerToken(fixed, B, T);
  };
  const mid = `blocks.${Math.floor(cfg.nLayer / 2)}.hook_resid_pre`;
  const actGrad = () => {
    model.activationAndGrad(fixed, B, T, mid);
  };
  trainStep();
  fwd();
  const tensorsBefore = tf.memory().numTensors;
  report('training step (fwd+bwd+AdamW)', B * T, measure(trainStep, reps));
  report('forward+backward', B * T, measure(fwdBwd, reps));
  report('forward + exact loss (eval)', B * T, measure(fwd, reps));
  report(`activationAndGrad (${mid})`, B * T, measure(actGrad, reps));
  console.log(`tensors: ${tensorsBefore} before, ${tf.memory().numTensors} after (must be equal)`);
  const threads = arg(args, 'threads', 2);
  if (threads > 1) {
    // the trainer's own setup for `threads` (train.ts gradientPlan): on wasm+ort fixed batch shards
    // over min(threads, shards) participants; on wasm one participant (worker) per thread
    const plan = gradientPlan(threads);
    const before = ortThreads();
    if (ortEnabled()) setOrtThreads(plan.ortThreads);
    const dp = await DataParallel.create(model, plan.workers, { shards: plan.shards, ortThreads: ortEnabled() ? plan.ortThreads : undefined });
    const dpStep = async () => {
      const batch = sampleBatch(stream, B, T, 0, step++);
      const r = await dp.forwardBackward(model, batch, B, T);
      opt.stepFlat(model, r.grad, 1e-3, 1.0);
    };
    report(`training step as train() runs it, ${threads} threads`, B * T, await measureAsync(dpStep, reps));
    console.log(
      `  (${plan.shards > 0 ? `${plan.shards} batch shards, ` : ''}${plan.workers + 1} participants${ortEnabled() ? ` × ${plan.ortThreads} ORT thread(s)` : ''}; ` +
        'CPU time counts all threads of this process)',
    );
    await dp.close();
    setOrtThreads(before);
  }
  for (const [label, fn] of args.includes('--profile') ? ([['forward+backward', fwdBwd], ['forward + exact loss', fwd]] as const) : []) {
    const prof = await tf.profile(fn);
    const agg = new Map<string, { ms: number; n: number }>();
    for (const k of prof.kernels) {
      const key = k.name === 'BatchMatMul' || k.name === 'Transpose' ? `${k.name} ${JSON.stringify(k.inputShapes)}` : k.name;
      const a = agg.get(key) ?? { ms: 0, n: 0 };
      a.ms += k.kernelTimeMs as number;
      a.n++;
      agg.set(key, a);
    }
    console.log(`profile of one ${label} (kernel wall ms, inflated by the profiler):`);
    let total = 0;
    for (const v of agg.values()) total += v.ms;
    console.log(`  total ${total.toFixed(1)} ms in ${prof.kernels.length} kernels`);
    for (const [k, v] of [...agg].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) {
      console.log(`  ${k.padEnd(60)} ${v.ms.toFixed(1).padStart(8)} ms  n=${v.n}`);
    }
  }
  opt.dispose();
  model.dispose();
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await run(process.argv.slice(2));
}
