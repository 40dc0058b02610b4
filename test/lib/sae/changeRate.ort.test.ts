// The same tests on the wasm+ort backend (ONNX Runtime kernels; falls back to wasm without the binding).
import { expect, it } from 'vitest';
import { activeBackend } from '../../../lib/backend.ts';

process.env.GSAE_TEST_BACKEND = 'wasm+ort';
await import('./changeRate.test.ts');

// The binding ships with npm ci (linux/macOS/windows CPU binaries), so it must load: a failure, never a skip.
it('ran on wasm+ort', () => {
  expect(activeBackend()).toBe('wasm+ort');
});
