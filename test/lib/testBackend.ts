import type { BackendKind } from '../../lib/backend.ts';

/**
 * The backend a test file runs on: 'wasm' by default; the `*.ort.test.ts` wrappers set
 * GSAE_TEST_BACKEND=wasm+ort before importing the same tests (ONNX Runtime kernels).
 */
export const TEST_BACKEND = (process.env.GSAE_TEST_BACKEND ?? 'wasm') as BackendKind;
