/**
 * Worker thread for data-parallel training (see parallel.ts): holds a replica of the model on its
 * own wasm backend; per step it receives the current parameters (one flat Float32Array) and a
 * share of the batch, and returns its mean loss and flat gradient.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendKind } from '../backend.ts';
import { GPT2 } from './gpt2.ts';
import { setOrtThreads } from '../native/ort.ts';
import type { GPT2Config } from './types.ts';

interface Init {
  config: GPT2Config;
  names: string[];
  shapes: number[][];
  backend: BackendKind;
  /** ONNX Runtime intra-op threads of this worker (wasm+ort), when set. */
  ortThreads?: number;
}

interface StepMsg {
  type: 'step';
  id: number;
  params: Float32Array;
  tokens: Int32Array;
  batch: number;
  seqLen: number;
}

const init = workerData as Init;
const port = parentPort!;
await initBackend(init.backend, { quiet: true });
if (init.ortThreads) setOrtThreads(init.ortThreads);
const sizes = init.shapes.map((s) => s.reduce((a, b) => a * b, 1));
const total = sizes.reduce((a, b) => a + b, 0);
let model: GPT2 | null = null;

function setParams(flat: Float32Array): void {
  const m = new Map<string, tf.Tensor>();
  let off = 0;
  init.names.forEach((n, i) => {
    m.set(n, tf.tensor(flat.subarray(off, off + sizes[i]), init.shapes[i], 'float32'));
    off += sizes[i];
  });
  if (!model) model = new GPT2(init.config, m);
  else model.setParams(m);
}

port.on('message', (msg: StepMsg | { type: 'close' }) => {
  if (msg.type === 'close') {
    model?.dispose();
    port.close();
    return;
  }
  try {
    const t0 = performance.timeOrigin + performance.now();
    setParams(msg.params);
    const { loss, grad: flat } = model!.forwardBackwardFlat(msg.tokens, msg.batch, msg.seqLen);
    if (flat.length !== total) throw new Error(`gradient worker: ${flat.length} gradient values, expected ${total}`);
    const span = [t0, performance.timeOrigin + performance.now()];
    port.postMessage({ type: 'grads', id: msg.id, loss, grads: flat, span }, [flat.buffer]);
  } catch (e) {
    port.postMessage({ type: 'error', id: msg.id, message: (e as Error).stack ?? String(e) });
  }
});
port.postMessage({ type: 'ready' });
