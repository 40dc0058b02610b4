import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { activeBackend, initBackend } from '../../lib/backend.ts';
import { resolveBackend } from '../../stages/environment.ts';

const require = createRequire(import.meta.url);
const installed = (pkg: string): boolean => {
  try {
    require(pkg);
    return true;
  } catch {
    return false;
  }
};
const hasGpu = installed('@tensorflow/tfjs-node-gpu');
const hasNative = installed('@tensorflow/tfjs-node');

describe('backend choice', () => {
  it('rejects an unknown backend, naming the allowed ones', async () => {
    await expect(initBackend('metal' as never)).rejects.toThrow(/'metal' is not a backend; allowed: auto, tensorflow-gpu, tensorflow, wasm, cpu/);
  });

  it.skipIf(hasGpu)('asking for tensorflow-gpu where it cannot load is a clear error', async () => {
    await expect(initBackend('tensorflow-gpu')).rejects.toThrow(/'tensorflow-gpu' could not be loaded; install @tensorflow\/tfjs-node-gpu/);
    expect(() => resolveBackend('tensorflow-gpu')).toThrow(/params.backend: 'tensorflow-gpu' cannot be loaded/);
  });

  it.skipIf(hasNative)('asking for tensorflow where it cannot load is a clear error', async () => {
    await expect(initBackend('tensorflow')).rejects.toThrow(/'tensorflow' could not be loaded/);
  });

  it.skipIf(hasGpu || hasNative)('auto resolves to wasm here, and the stages then get exactly that backend', async () => {
    expect(resolveBackend('auto')).toBe('wasm');
    expect(await initBackend('wasm')).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(activeBackend()).toBe('wasm');
    // A matMul really runs on it.
    expect(Array.from(tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync())).toEqual([11]);
    // One backend per process: switching is refused rather than silently ignored.
    await expect(initBackend('cpu')).rejects.toThrow(/already initialised as 'wasm'/);
  });
});
