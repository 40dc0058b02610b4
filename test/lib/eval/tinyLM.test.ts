import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../lib/backend.ts';
import { splitWindows } from '../../../lib/windows.ts';
import { TINY_HOOK, TinyLM, syntheticTokens } from './tinyLM.ts';

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
});

describe('TinyLM (the eval tests\' model)', () => {
  it('activationAndGrad: g is the gradient of the summed CE w.r.t. the hook activation (central differences)', () => {
    const lm = new TinyLM({ vocabSize: 24, dModel: 8, nCtx: 16, seed: 3 });
    const B = 2;
    const T = 6;
    const tokens = Int32Array.from(syntheticTokens(B * (T + 1), 24, 5));
    const { g } = lm.activationAndGrad(tokens, B, T, TINY_HOOK);
    const { inputs, targets } = splitWindows(tokens, 0, B, T);
    // summed CE in float64 from the logits of a pass with x + delta at the hook
    const loss = (delta: Float32Array): number => {
      const lg = tf.tidy(() => lm.logits(tf.tensor2d(inputs, [B, T], 'int32'), { [TINY_HOOK]: (x) => tf.add(x, tf.tensor3d(delta, [B, T, 8])) as tf.Tensor3D }).dataSync());
      let s = 0;
      for (let r = 0; r < B * T; r++) {
        let mx = -Infinity;
        for (let v = 0; v < 24; v++) mx = Math.max(mx, lg[r * 24 + v]);
        let z = 0;
        for (let v = 0; v < 24; v++) z += Math.exp(lg[r * 24 + v] - mx);
        s += mx + Math.log(z) - lg[r * 24 + targets[r]];
      }
      return s;
    };
    const eps = 1e-2;
    let worst = 0;
    for (const idx of [0, 5, 17, 40, 63, 77, 95]) {
      const up = new Float32Array(B * T * 8);
      const dn = new Float32Array(B * T * 8);
      up[idx] = eps;
      dn[idx] = -eps;
      const fd = (loss(up) - loss(dn)) / (2 * eps);
      worst = Math.max(worst, Math.abs(fd - g[idx]) / Math.max(1e-2, Math.abs(fd)));
    }
    expect(worst).toBeLessThan(2e-2);
    // and a wrong sign or a missing term would not pass
    expect(g.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    lm.dispose();
  });
});
