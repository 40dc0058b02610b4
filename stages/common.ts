/** Small helpers shared by the stage files (wiring only: the science is in lib/). */
import fs from 'node:fs';
import type { StageContext } from '../pipeline/types.ts';
import type { BackendKind } from '../lib/backend.ts';

/** Initialise the backend the engine resolved for this run (recorded in the fingerprint). */
export async function initStageBackend(ctx: StageContext): Promise<string> {
  // imported here, not at the top: tfjs costs ~0.2 s of every engine start (a no-op rerun) otherwise
  const { initBackend } = await import('../lib/backend.ts');
  const name = await initBackend(ctx.env.backend as BackendKind, { quiet: false });
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
