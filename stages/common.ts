/** Small helpers shared by the stage files (wiring only: the science is in lib/). */
import fs from 'node:fs';
import type { StageContext } from '../pipeline/types.ts';
import type { BackendKind } from '../lib/backend.ts';
import type { TokenArray } from '../lib/tokens.ts';

/** Initialise the backend the engine resolved for this run (recorded in the fingerprint). */
export async function initStageBackend(ctx: StageContext): Promise<string> {
  // imported here, not at the top: tfjs costs ~0.2 s of every engine start (a no-op rerun) otherwise
  const { initBackend } = await import('../lib/backend.ts');
  const name = await initBackend(ctx.env.backend as BackendKind, { quiet: false });
  // The engine resolved the backend (and put it in this instance's fingerprint) by loading the
  // binding only; if this process cannot compute with it, nothing is computed at all: numbers of
  // another backend must never be stored under this fingerprint.
  if (ctx.env.backend && name !== ctx.env.backend) {
    const { ortLoadError } = await import('../lib/native/ort.ts');
    throw new Error(
      `the run resolved backend '${ctx.env.backend}' (it is in this instance's fingerprint), but this process got '${name}'` +
        `${ortLoadError() ? ` (onnxruntime-node: ${ortLoadError()})` : ''}; reinstall with npm ci, or set params.backend: wasm`,
    );
  }
  // ONNX Runtime's thread pool gets the cores the engine gave this instance (GSAE_ORT_THREADS
  // overrides): two instances side by side on two cores run ~25% faster with one thread each than
  // with two each. ORT's results do not depend on the thread count.
  if (name === 'wasm+ort' && !process.env.GSAE_ORT_THREADS) {
    const { setOrtThreads } = await import('../lib/native/ort.ts');
    setOrtThreads(ctx.cpus);
  }
  ctx.log(`backend: ${name}${name === 'wasm+ort' ? ` (${ctx.cpus} ORT thread${ctx.cpus === 1 ? '' : 's'})` : ''}`);
  return name;
}

/** A throttled progress reporter: calling ctx.progress on every step is wasteful. */
export function throttled<A extends unknown[]>(fn: (...a: A) => void, ms = 500): (...a: A) => void {
  let last = 0;
  return (...a) => {
    const now = Date.now();
    if (now - last >= ms) {
      last = now;
      fn(...a);
    }
  };
}

/**
 * The SAE matrix shared by sae, downstream and steering: arch × k × seed, and β for g-SAEs only
 * (an axis that TopK instances do not have, so adding a β value leaves every TopK instance cached).
 */
export const SAE_MATRIX = {
  arch: 'sae.arch',
  beta: { key: 'sae.beta', when: { arch: 'gsae' } },
  k: 'sae.k',
  seed: 'sae.seeds',
} as const;

export { spreadWindows } from '../lib/collect.ts';
export { loadTrainingDead as trainingDead } from '../lib/sae/io.ts';

export function readJson(file: string): any {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/**
 * The collect stage's held-out windows of a split as downstream and clean_ref evaluate them (test:
 * an evenly spaced subset of `testTokens` positions; val: all of them), with the stored x, g and
 * ablation baselines of those windows.
 */
export async function heldOutOf(actsDir: string, splitTokens: TokenArray, split: 'val' | 'test', seqLen: number, d: number, testTokens: number) {
  const path = await import('node:path');
  const { ShardReader } = await import('../lib/activations.ts');
  const { spreadWindows } = await import('../lib/collect.ts');
  const { readArrays } = await import('../lib/util/arrays.ts');
  const { windowsAt } = await import('../lib/windows.ts');
  const dir = path.join(actsDir, split);
  const reader = new ShardReader(dir);
  const nWin = Number(reader.manifest.windows);
  const starts = spreadWindows(splitTokens.length, seqLen, nWin);
  const pick = split === 'test' ? evenlySpaced(nWin, Math.max(1, Math.floor(testTokens / seqLen))) : evenlySpaced(nWin, nWin);
  const rows = (a: Float32Array, width: number) => {
    const out = new Float32Array(pick.length * seqLen * width);
    pick.forEach((j, q) => out.set(a.subarray(j * seqLen * width, (j + 1) * seqLen * width), q * seqLen * width));
    return out;
  };
  const all = reader.readAll();
  const base = readArrays(path.join(dir, 'baselines')).arrays;
  return {
    windows: windowsAt(splitTokens, pick.map((j) => starts[j]), seqLen),
    x: rows(all.x, d),
    // float32 activations are the LM's own, bit for bit: the passes may start from them
    exact: reader.manifest.dtype === 'float32',
    g: all.g ? rows(all.g, d) : null,
    baselines: { ce_zero: rows(base.ce_zero as Float32Array, 1), ce_mean: rows(base.ce_mean as Float32Array, 1) },
  };
}

/** `n` indices spread evenly over [0, total) (all of them when n ≥ total). */
function evenlySpaced(total: number, n: number): number[] {
  if (n >= total) return Array.from({ length: total }, (_, i) => i);
  if (n === 1) return [0];
  return Array.from({ length: n }, (_, i) => Math.round((i * (total - 1)) / (n - 1)));
}
