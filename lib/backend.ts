/**
 * Compute backend choice. Preference for `auto`: tfjs-node-gpu (CUDA) > tfjs-node (native CPU) >
 * wasm+ort (tfjs-wasm with the dense products and fused attention / MLP / head kernels in ONNX
 * Runtime, lib/native/) > wasm (SIMD, ships with the package, works offline) > cpu (pure JS,
 * ~40x slower). The native packages are optional dependencies: on a machine that cannot download
 * libtensorflow, or where the onnxruntime-node binding does not load, they are absent or fail to
 * load, and we fall through (with a warning when wasm+ort falls back to wasm).
 */
// tfjs-core, not the @tensorflow/tfjs bundle: its layers, converter, data and webgl packages were
// ~0.35 s of every stage process's start, and none is used.
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import path from 'node:path';
import { loadOrt, ortLoadError } from './native/ort.ts';

export type BackendKind = 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm+ort' | 'wasm' | 'cpu';
export const BACKEND_KINDS: readonly BackendKind[] = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm+ort', 'wasm', 'cpu'];

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
 * 'tensorflow', 'wasm+ort', 'wasm' or 'cpu'. Asking explicitly for a backend that cannot load
 * throws, except 'wasm+ort', which falls back to 'wasm' with a warning when the ONNX Runtime
 * binding cannot load (the label returned then says 'wasm').
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
  if (!name && (kind === 'wasm+ort' || kind === 'auto')) {
    const wasm = await tryWasm();
    if (wasm && loadOrt()) name = 'wasm+ort';
    else if (wasm) {
      name = 'wasm';
      if (kind === 'wasm+ort' && !options.quiet) {
        console.warn(`WARNING: onnxruntime-node could not load (${ortLoadError()}); using the pure tfjs-wasm backend (slower).`);
      }
    }
  }
  if (!name && kind === 'wasm') name = await tryWasm();
  if (!name && (kind === 'cpu' || kind === 'auto')) {
    await import('@tensorflow/tfjs-backend-cpu'); // registers 'cpu' (tfjs-core alone has no backend)
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

/** Whether the dense kernels run through ONNX Runtime (backend 'wasm+ort' on the wasm tfjs backend). */
export function ortEnabled(): boolean {
  return active?.name === 'wasm+ort' && tf.getBackend() === 'wasm';
}
