// The same tests on the wasm+ort backend (ONNX Runtime kernels; falls back to wasm without the binding).
import { expect, it } from 'vitest';
import { activeBackend } from '../../../lib/backend.ts';
import { ortAvailable, ortThreads, setOrtThreads } from '../../../lib/native/ort.ts';
import { createGPT2 } from '../../../lib/model/gpt2.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

process.env.GSAE_TEST_BACKEND = 'wasm+ort';
await import('./gpt2.test.ts');

// The binding ships with npm ci (linux/macOS/windows CPU binaries), so it must load: a failure, never a skip.
it('ran on wasm+ort', () => {
  expect(activeBackend()).toBe('wasm+ort');
});

it('the whole-step training graph gives the per-block graphs\' loss and gradients, the same bits for 1 and 2 ORT threads, for T = nCtx and T < nCtx', () => {
  const cfg = { vocabSize: 37, nCtx: 12, dModel: 16, nLayer: 2, nHead: 2, layerNormEps: 1e-5 };
  const model = createGPT2(cfg, 5);
  const u = mulberry32(8);
  for (const T of [12, 7]) {
    const B = 3;
    const tokens = Int32Array.from({ length: B * (T + 1) }, () => Math.floor(u() * cfg.vocabSize));
    model.fusedTraining = false;
    const blocks = model.forwardBackwardFlat(tokens, B, T);
    model.fusedTraining = true;
    const before = ortThreads();
    const runs = [1, 2].map((threads) => {
      setOrtThreads(threads);
      return model.forwardBackwardFlat(tokens, B, T);
    });
    setOrtThreads(before);
    expect(Array.from(runs[1].grad)).toEqual(Array.from(runs[0].grad));
    expect(runs[1].loss).toBe(runs[0].loss);
    expect(Math.abs(runs[0].loss - blocks.loss)).toBeLessThan(1e-6);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < blocks.grad.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(blocks.grad[i]));
      maxDiff = Math.max(maxDiff, Math.abs(blocks.grad[i] - runs[0].grad[i]));
    }
    expect(maxAbs).toBeGreaterThan(1e-3);
    expect(maxDiff).toBeLessThan(1e-5 * maxAbs);
    // the forwardBackward map is the same flat gradient, split by parameter
    const { grads } = model.forwardBackward(tokens, B, T);
    let off = 0;
    for (const name of model.paramNames) {
      const g = grads.get(name)!;
      expect(Array.from(g.dataSync()), name).toEqual(Array.from(runs[0].grad.subarray(off, off + g.size)));
      off += g.size;
      g.dispose();
    }
  }
  model.dispose();
});
