// The ORT scorer of steering against the JavaScript loops (float64) on random logits.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, initBackend } from '../../../lib/backend.ts';
import { JsScorer, OrtScorer } from '../../../lib/eval/steeringScore.ts';
import { logitsGraph } from '../../../lib/model/ortgraphs.ts';
import { ortOp } from '../../../lib/native/tfort.ts';
import { mulberry32, randn } from '../../../lib/util/random.ts';

const [G, R, V, K] = [3, 10, 50, 5];

beforeAll(async () => {
  await initBackend('wasm+ort');
});

function randomLogits(n: number, seed: number, scale: number): Float32Array {
  const z = randn(mulberry32(seed));
  return Float32Array.from({ length: n }, () => scale * z());
}

describe('steering scores on ONNX Runtime', () => {
  it('runs on wasm+ort (in CI the binding must load)', () => {
    expect(activeBackend()).toBe('wasm+ort');
  });

  it('rise sums, KL and target-set log-probs equal the float64 loops', () => {
    const steered = tf.tensor2d(randomLogits(G * R * V, 1, 3), [G * R, V]);
    const clean = tf.tensor2d(randomLogits(R * V, 2, 3), [R, V]);
    const cal = [[1, 7, 9, 30, 49], [0, 2, 4, 6, 8], [45, 3, 17, 22, 11]];
    const lens = [[5, 6, 7, 8, 9], [49, 48, 47, 46, 45], [10, 20, 30, 40, 0]];
    const js = new JsScorer(V);
    const ort = new OrtScorer(V);
    const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
      expect(a.length).toBe(b.length);
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i]), `index ${i}: ${a[i]} vs ${b[i]}`).toBeLessThan(tol * (1 + Math.abs(b[i])));
    };
    close(ort.riseSums(steered, clean, G, R), js.riseSums(steered, clean, G, R), 1e-5);
    const o = ort.rows(steered, clean, cal, lens, G, R);
    const j = js.rows(steered, clean, cal, lens, G, R);
    for (const key of ['kl', 'calS', 'calC', 'lensS', 'lensC'] as const) close(o[key], j[key], 1e-5);
    expect(Math.min(...Array.from(j.kl))).toBeGreaterThan(0);
    tf.dispose([steered, clean]);
  });

  it('steered logits equal to the clean ones give exactly zero rise, KL and set differences', () => {
    const cleanData = randomLogits(R * V, 3, 2);
    const clean = tf.tensor2d(cleanData, [R, V]);
    const tiled = tf.tensor2d(Float32Array.from({ length: G * R * V }, (_, i) => cleanData[i % (R * V)]), [G * R, V]);
    const sets = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 0], [40, 41, 42, 43, 44]];
    const ort = new OrtScorer(V);
    expect(Array.from(ort.riseSums(tiled, clean, G, R)).every((x) => x === 0)).toBe(true);
    const o = ort.rows(tiled, clean, sets, sets, G, R);
    for (let i = 0; i < G * R; i++) {
      expect(o.calS[i]).toBe(o.calC[i]);
      expect(o.lensS[i]).toBe(o.lensC[i]);
      expect(Math.abs(o.kl[i])).toBe(0);
    }
    tf.dispose([clean, tiled]);
  });

  it('given hidden states and the unembedding, the same bits as given the logits of the model\'s logits graph', () => {
    const d = 8;
    const wte = tf.tensor2d(randomLogits(V * d, 4, 0.5), [V, d]);
    const hS = tf.tensor2d(randomLogits(G * R * d, 5, 1), [G * R, d]);
    const hC = tf.tensor2d(randomLogits(R * d, 6, 1), [R, d]);
    const logitsOf = (h: tf.Tensor2D) => ortOp('Logits', `logits:${d}:${V}`, () => logitsGraph(d, V), [h, wte], [[h.shape[0], V]])[0];
    const lS = logitsOf(hS);
    const clean = logitsOf(hC);
    const cal = [[1, 7, 9, 30, 49], [0, 2, 4, 6, 8], [45, 3, 17, 22, 11]];
    const lens = [[5, 6, 7, 8, 9], [49, 48, 47, 46, 45], [10, 20, 30, 40, 0]];
    const byLogits = new OrtScorer(V);
    const byHidden = new OrtScorer(V, wte);
    expect(byHidden.input).toBe('hidden');
    expect(Array.from(byHidden.riseSums(hS, clean, G, R))).toEqual(Array.from(byLogits.riseSums(lS, clean, G, R)));
    const o = byHidden.rows(hS, clean, cal, lens, G, R);
    const j = byLogits.rows(lS, clean, cal, lens, G, R);
    for (const key of ['kl', 'calS', 'calC', 'lensS', 'lensC'] as const) expect(Array.from(o[key])).toEqual(Array.from(j[key]));
    // and the hidden path is not vacuous: other hidden states give other scores
    const other = tf.tensor2d(randomLogits(G * R * d, 7, 1), [G * R, d]);
    expect(Array.from(byHidden.rows(other, clean, cal, lens, G, R).kl)).not.toEqual(Array.from(o.kl));
    expect(() => byHidden.riseSums(lS, clean, G, R)).toThrow(/hidden states hold/);
    tf.dispose([wte, hS, hC, lS, clean, other]);
  });
});
