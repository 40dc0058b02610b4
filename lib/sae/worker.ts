/**
 * Worker thread running SaeKernel chunks on shared memory (spawned by pool.ts). Each worker has
 * its own tfjs instance (same backend as the parent) for the encoder matMuls.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend, type BackendKind } from '../backend.ts';
import { SaeKernel, type KernelBuffers, type KernelSpec } from './kernel.ts';

interface Init {
  spec: KernelSpec;
  buf: KernelBuffers;
  backend: BackendKind;
  participant: number;
}

const port = parentPort!;
const init = workerData as Init;
try {
  await initBackend(init.backend, { quiet: true });
  const kernel = new SaeKernel(init.spec, init.buf, init.participant);
  port.on('message', (msg: { type: 'run' | 'update'; id: number }) => {
    try {
      if (msg.type === 'update') {
        kernel.runUpdateBlocks();
      } else {
        kernel.beginStep();
        kernel.runAvailable();
        kernel.endStep();
      }
      port.postMessage({ type: 'done', id: msg.id });
    } catch (e) {
      port.postMessage({ type: 'error', id: msg.id, message: (e as Error)?.stack ?? String(e) });
    }
  });
  port.postMessage({ type: 'ready' });
} catch (e) {
  port.postMessage({ type: 'error', id: -1, message: (e as Error)?.stack ?? String(e) });
}
