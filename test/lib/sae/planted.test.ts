/**
 * A real learning test: data from a known sparse dictionary (512 unit atoms in d = 64, 4 active per
 * row with magnitudes in [0.5, 1.5], small noise); a TopK SAE with k = 4 and m = 1024 must find at
 * least 90% of the atoms (cosine > 0.9 with some decoder row). ~500k training tokens.
 */
import { TEST_BACKEND } from './../testBackend.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { MemoryRows } from '../../../lib/activations.ts';
import { initBackend } from '../../../lib/backend.ts';
import { evaluateSae } from '../../../lib/sae/infer.ts';
import { trainSae } from '../../../lib/sae/train.ts';
import { plantedData, recovered } from './planted.ts';

beforeAll(async () => {
  await initBackend(TEST_BACKEND);
});

describe('planted dictionary', () => {
  it('a TopK SAE recovers >= 90% of 512 planted atoms', async () => {
    const d = 64;
    const P = plantedData({ d, nAtoms: 512, s: 4, n: 65536, noise: 0.01, seed: 1 });
    const res = await trainSae(new MemoryRows(d, P.x), {
      arch: 'topk',
      k: 4,
      m: 1024,
      trainTokens: 500_000,
      batchSize: 1024,
      lr: 3e-3,
      deadTokens: 50_000,
      seed: 0,
      threads: 2,
    });
    const frac = recovered(P.atoms, 512, res.weights.W_dec, 1024, d, 0.9);
    const ev = evaluateSae(res.weights, P.x.subarray(0, 8192 * d));
    console.log(`planted: recovered ${(100 * frac).toFixed(1)}% of atoms, held FVU ${ev.fvu.toFixed(3)}, ${res.tokensPerSecond.toFixed(0)} tokens/s`);
    expect(frac).toBeGreaterThanOrEqual(0.9);
    expect(ev.fvu).toBeLessThan(0.2);
  });
});
