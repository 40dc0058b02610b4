import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { activeBackend, initBackend, ortEnabled } from '../../lib/backend.ts';
import { ortAvailable, ortBindingLoads } from '../../lib/native/ort.ts';
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
/** What 'auto' picks before the wasm paths, when a native tfjs backend loads. */
const nativeAuto = hasGpu ? 'tensorflow-gpu' : hasNative ? 'tensorflow' : null;

/** Run a module snippet from the project root in a fresh process that behaves as if ORT were missing. */
function withoutOrt(code: string): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    encoding: 'utf8',
    env: { ...process.env, GSAE_NO_ORT: '1' },
  });
  expect(r.status, r.stderr).toBe(0);
  return r;
}

describe('backend choice', () => {
  it('rejects an unknown backend, naming the allowed ones', async () => {
    await expect(initBackend('metal' as never)).rejects.toThrow(/'metal' is not a backend; allowed: auto, tensorflow-gpu, tensorflow, wasm\+ort, wasm, cpu/);
  });

  // No test skips: where @tensorflow/tfjs-node(-gpu) loads, the same tests check the other branch.
  it('asking for tensorflow-gpu where it cannot load is a clear error (where it loads, it is chosen)', async () => {
    if (hasGpu) {
      expect(resolveBackend('tensorflow-gpu')).toBe('tensorflow-gpu');
      return;
    }
    await expect(initBackend('tensorflow-gpu')).rejects.toThrow(/'tensorflow-gpu' could not be loaded; install @tensorflow\/tfjs-node-gpu/);
    expect(() => resolveBackend('tensorflow-gpu')).toThrow(/params.backend: 'tensorflow-gpu' cannot be loaded/);
  });

  it('asking for tensorflow where it cannot load is a clear error (where it loads, it is chosen)', async () => {
    if (hasNative) {
      expect(resolveBackend('tensorflow')).toBe('tensorflow');
      return;
    }
    await expect(initBackend('tensorflow')).rejects.toThrow(/'tensorflow' could not be loaded/);
  });

  it('auto resolves to wasm+ort (or wasm without ONNX Runtime) unless tfjs-node loads; explicit wasm stays the pure path', async () => {
    expect(resolveBackend('auto')).toBe(nativeAuto ?? (ortAvailable() ? 'wasm+ort' : 'wasm'));
    expect(resolveBackend('wasm')).toBe('wasm');
    expect(await initBackend('wasm')).toBe('wasm');
    expect(ortEnabled()).toBe(false);
    expect(tf.getBackend()).toBe('wasm');
    expect(activeBackend()).toBe('wasm');
    // A matMul really runs on it.
    expect(Array.from(tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync())).toEqual([11]);
    // One backend per process: switching is refused rather than silently ignored.
    await expect(initBackend('cpu')).rejects.toThrow(/already initialised as 'wasm'/);
  });

  it('the engine names the backend by loading the binding only; a stage that then cannot compute with it refuses to run', () => {
    expect(ortBindingLoads()).toEqual({ ok: true }); // npm ci installs it (CI too)
    const r = withoutOrt(
      "const o = await import('./lib/native/ort.ts'); const c = await import('./stages/common.ts');" +
        "console.log('PROBE', JSON.stringify(o.ortBindingLoads()));" +
        "const ctx = { env: { backend: 'wasm+ort' }, cpus: 1, log: () => {} };" +
        "await c.initStageBackend(ctx).then((n) => console.log('RAN', n), (e) => console.log('REFUSED', e.message));",
    );
    expect(r.stdout).toContain('PROBE {"ok":false,"error":"disabled by GSAE_NO_ORT"}');
    expect(r.stdout).toMatch(/REFUSED the run resolved backend 'wasm\+ort' \(it is in this instance's fingerprint\), but this process got 'wasm' \(onnxruntime-node: disabled by GSAE_NO_ORT\)/);
  });

  it('without the ONNX Runtime binding, auto and wasm+ort fall back to wasm with a warning, never a crash', () => {
    const r = withoutOrt(
      "const e = await import('./stages/environment.ts'); const b = await import('./lib/backend.ts');" +
        "console.log('RESOLVED', e.resolveBackend('auto'), e.resolveBackend('wasm+ort'), await b.initBackend('wasm+ort'));",
    );
    expect(r.stdout).toContain(`RESOLVED ${nativeAuto ?? 'wasm'} wasm wasm`);
    expect(r.stderr).toMatch(/WARNING: onnxruntime-node could not load \(disabled by GSAE_NO_ORT\)/);
  });
});
