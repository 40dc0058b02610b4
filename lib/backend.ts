/**
 * Compute backend choice. Preference for `auto`: tfjs-node-gpu (CUDA) > tfjs-node (native CPU) >
 * wasm (SIMD, ships with the package, works offline: the default here) > cpu (pure JS, ~40x slower).
 * The native packages are optional dependencies: on a machine that cannot download libtensorflow
 * they are absent or fail to load, and we fall through.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import path from 'node:path';

export type BackendKind = 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_KINDS: readonly BackendKind[] = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

const require = createRequire(import.meta.url);
let active: { requested: BackendKind; name: string } | null = null;

async function tryNative(pkg: string): Promise<string | null> {
  try {
    // The native packages register the 'tensorflow' backend on import.
    await import(pkg);
    if (await tf.setBackend('tensorflow')) {
      await tf.ready();
      return 'tensorflow';
    }
  } catch {
    /* not installed, or libtensorflow missing: fall through */
  }
  return null;
}

async function tryWasm(): Promise<string | null> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(dir + path.sep);
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
  } catch {
    /* fall through */
  }
  return null;
}

/**
 * Initialise the tfjs backend. Returns the label recorded with runs: 'tensorflow-gpu',
 * 'tensorflow', 'wasm' or 'cpu'. Asking explicitly for a backend that cannot load throws.
 */
export async function initBackend(kind: BackendKind = 'auto', options: { quiet?: boolean } = {}): Promise<string> {
  if (!BACKEND_KINDS.includes(kind)) {
    throw new Error(`backend: '${kind}' is not a backend; allowed: ${BACKEND_KINDS.join(', ')}`);
  }
  if (active && (active.requested === kind || kind === 'auto' || active.name === kind)) return active.name;
  if (active) {
    throw new Error(`backend: already initialised as '${active.name}' in this process; cannot switch to '${kind}'`);
  }
  let name: string | null = null;
  if (kind === 'tensorflow-gpu' || kind === 'auto') {
    name = (await tryNative('@tensorflow/tfjs-node-gpu')) ? 'tensorflow-gpu' : null;
  }
  if (!name && (kind === 'tensorflow' || kind === 'auto')) {
    name = (await tryNative('@tensorflow/tfjs-node')) ? 'tensorflow' : null;
  }
  if (!name && (kind === 'wasm' || kind === 'auto')) name = await tryWasm();
  if (!name && (kind === 'cpu' || kind === 'auto')) {
    await tf.setBackend('cpu');
    await tf.ready();
    name = 'cpu';
    if (!options.quiet) {
      console.warn('WARNING: using the pure-JS cpu backend: about 40x slower than wasm.');
    }
  }
  if (!name) {
    const hint =
      kind === 'tensorflow-gpu'
        ? 'install @tensorflow/tfjs-node-gpu (needs network access to download libtensorflow, CUDA 11.2 and cuDNN 8.1)'
        : kind === 'tensorflow'
          ? 'install @tensorflow/tfjs-node (needs network access to download libtensorflow)'
          : 'reinstall dependencies with npm ci';
    throw new Error(`backend: '${kind}' could not be loaded; ${hint}, or use backend: auto`);
  }
  active = { requested: kind, name };
  return name;
}

export function activeBackend(): string | null {
  return active?.name ?? null;
}
