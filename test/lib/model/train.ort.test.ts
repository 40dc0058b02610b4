// The same tests on the wasm+ort backend (ONNX Runtime kernels; falls back to wasm without the binding).
import { expect, it } from 'vitest';
import { activeBackend } from '../../../lib/backend.ts';
import { ortAvailable } from '../../../lib/native/ort.ts';

process.env.GSAE_TEST_BACKEND = 'wasm+ort';
await import('./train.test.ts');

// In CI the binding ships with npm ci, so it must load: the check fails there instead of skipping.
it.skipIf(!ortAvailable() && !process.env.CI)('ran on wasm+ort', () => {
  expect(activeBackend()).toBe('wasm+ort');
});
