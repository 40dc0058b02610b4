/**
 * A small pool of worker threads running SaeKernel chunks (see kernel.ts, worker.ts), started
 * through the TypeScript worker bootstrap of lib/util/tsWorker.ts.
 */
import type { Worker } from 'node:worker_threads';
import type { BackendKind } from '../backend.ts';
import { startTsWorker } from '../util/tsWorker.ts';
import type { KernelBuffers, KernelSpec } from './kernel.ts';

export class KernelPool {
  private nextId = 1;
  private pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;

  private constructor(private readonly workers: Worker[]) {
    for (const w of workers) {
      w.on('message', (msg: { type: string; id: number; message?: string }) => {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (msg.type === 'done') p.resolve();
        else p.reject(new Error(`sae worker failed: ${msg.message}`));
      });
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`sae worker exited with code ${code}`));
      });
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  get size(): number {
    return this.workers.length;
  }

  static async create(n: number, spec: KernelSpec, buf: KernelBuffers, backend: BackendKind): Promise<KernelPool> {
    const entry = new URL('./worker.ts', import.meta.url);
    const workers: Worker[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const w = startTsWorker(entry, { spec, buf, backend, participant: i + 1 });
        workers.push(w);
        await new Promise<void>((resolve, reject) => {
          const onMsg = (msg: { type: string; message?: string }) => {
            w.off('error', onErr);
            if (msg.type === 'ready') resolve();
            else reject(new Error(`sae worker failed to start: ${msg.message}`));
          };
          const onErr = (e: Error) => {
            w.off('message', onMsg);
            reject(e);
          };
          w.once('message', onMsg);
          w.once('error', onErr);
        });
      }
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new KernelPool(workers);
  }

  /**
   * Let every worker take chunks (type 'run': SaeKernel.runAvailable) or update blocks ('update':
   * SaeKernel.runUpdateBlocks) until none is left; resolves when all are done.
   */
  run(type: 'run' | 'update' = 'run'): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const jobs = this.workers.map((w) => {
      const id = this.nextId++;
      return new Promise<void>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        w.postMessage({ type, id });
      });
    });
    return Promise.all(jobs).then(() => undefined);
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    await Promise.all(ws.map((w) => w.terminate()));
  }
}
