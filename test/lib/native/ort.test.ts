import { beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, initBackend } from '../../../lib/backend.ts';
import { gemm, ortAvailable, setOrtThreads, ortThreads } from '../../../lib/native/ort.ts';
import { createGPT2 } from '../../../lib/model/gpt2.ts';
import { mulberry32 } from '../../../lib/util/random.ts';

const has = ortAvailable();

function rand(n: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  return Float32Array.from({ length: n }, () => u() - 0.5);
}

function refGemm(a: Float32Array, b: Float32Array, M: number, K: number, N: number, tA: boolean, tB: boolean, bias: Float32Array | null): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) s += (tA ? a[k * M + i] : a[i * K + k]) * (tB ? b[j * K + k] : b[k * N + j]);
      c[i * N + j] = s;
    }
  }
  return c;
}

beforeAll(async () => {
  await initBackend('wasm+ort', { quiet: true });
});

describe('ONNX Runtime GEMM (the binding ships with npm ci: it must load)', () => {
  it('equals a float64 oracle for every transpose and bias combination', () => {
    const [M, K, N] = [37, 53, 29];
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        for (const withBias of [false, true]) {
          const a = rand(M * K, 1);
          const b = rand(K * N, 2);
          const bias = withBias ? rand(N, 3) : null;
          const c = new Float32Array(M * N);
          gemm(a, b, c, M, K, N, { transA: tA, transB: tB, bias });
          const r = refGemm(a, b, M, K, N, tA, tB, bias);
          let err = 0;
          for (let i = 0; i < c.length; i++) err = Math.max(err, Math.abs(c[i] - r[i]));
          expect(err, `transA ${tA} transB ${tB} bias ${withBias}`).toBeLessThan(1e-5);
        }
      }
    }
  });

  it('gives bit-identical results whatever the number of intra-op threads (GEMM shapes of the LM and the SAE)', () => {
    for (const [M, K, N, tA, tB] of [
      [2048, 128, 384, 0, 0],
      [128, 2048, 512, 1, 0],
      [512, 128, 4096, 0, 1],
      [256, 768, 3072, 0, 0],
      [7, 33, 129, 1, 1],
    ] as const) {
      const a = rand(M * K, 4);
      const b = rand(K * N, 5);
      const outs = [1, 2, 3].map((t) => {
        const c = new Float32Array(M * N);
        gemm(a, b, c, M, K, N, { transA: !!tA, transB: !!tB, threads: t });
        return Buffer.from(c.buffer);
      });
      expect(outs[1].equals(outs[0]) && outs[2].equals(outs[0]), `${M}x${K}x${N}`).toBe(true);
    }
  });

  it('the LM forward/backward graphs give bit-identical numbers with 1 and 2 threads', () => {
    expect(activeBackend()).toBe('wasm+ort');
    const cfg = { vocabSize: 97, nCtx: 16, dModel: 32, nLayer: 2, nHead: 4, layerNormEps: 1e-5 };
    const tokens = Int32Array.from(rand(4 * 17, 6), (v) => Math.floor((v + 0.5) * 97));
    const before = ortThreads();
    const run = (t: number) => {
      setOrtThreads(t);
      const model = createGPT2(cfg, 3);
      const { loss, grads } = model.forwardBackward(tokens, 4, 16);
      const flat = [...grads.values()].map((g) => Buffer.from((g.dataSync() as Float32Array).buffer));
      for (const g of grads.values()) g.dispose();
      const eval_ = Buffer.from(model.lossPerToken(tokens, 4, 16).buffer);
      model.dispose();
      return { loss, flat, eval_ };
    };
    const one = run(1);
    const two = run(2);
    setOrtThreads(before);
    expect(two.loss).toBe(one.loss);
    expect(two.eval_.equals(one.eval_)).toBe(true);
    one.flat.forEach((g, i) => expect(two.flat[i].equals(g), `gradient ${i}`).toBe(true));
  });
});
