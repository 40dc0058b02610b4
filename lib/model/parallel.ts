/**
 * Data-parallel forward+backward over worker threads. The wasm backend runs on one thread, so on a
 * machine with free cores each extra worker (its own wasm instance and model replica) computes the
 * gradient of a share of the batch while the main thread computes its own share. The result is
 * the mean gradient over the whole batch (same math as one thread; float rounding differs, so a
 * run is reproducible for a fixed number of workers).
 */
import type { Worker } from 'node:worker_threads';
import { activeBackend, type BackendKind } from '../backend.ts';
import { startTsWorker } from '../util/tsWorker.ts';
import type { GPT2 } from './gpt2.ts';

interface Pending {
  resolve: (r: { loss: number; grads: Float32Array }) => void;
  reject: (e: Error) => void;
}

class GradWorker {
  private pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | null = null;
  /** Wall-clock [start, end] (ms since epoch) of the worker's last job, for diagnostics. */
  lastSpan: number[] = [];
  readonly ready: Promise<void>;

  constructor(readonly worker: Worker) {
    this.ready = new Promise((resolve, reject) => {
      worker.once('message', (m: { type: string; message?: string }) =>
        m.type === 'ready' ? resolve() : reject(new Error(m.message ?? `worker: unexpected ${m.type}`)),
      );
      worker.once('error', reject);
    });
    worker.on('message', (m: { type: string; id: number; loss: number; grads: Float32Array; message: string; span: number[] }) => {
      if (m.span) this.lastSpan = m.span;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === 'grads') p.resolve({ loss: m.loss, grads: m.grads });
      else p.reject(new Error(`gradient worker failed: ${m.message}`));
    });
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', (code) => {
      if (code !== 0) this.fail(new Error(`gradient worker exited with code ${code}`));
    });
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  run(params: Float32Array, tokens: Int32Array, batch: number, seqLen: number): Promise<{ loss: number; grads: Float32Array }> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'step', id, params, tokens, batch, seqLen }, [tokens.buffer as ArrayBuffer]);
    });
  }
}

export class DataParallel {
  private constructor(
    private readonly workers: GradWorker[],
    private readonly names: string[],
    private readonly sizes: number[],
  ) {}

  /**
   * Start `extraWorkers` worker threads holding replicas of `model` (same backend as this thread).
   * On wasm+ort each worker's ONNX Runtime pool gets `ortThreads` threads (default: ORT's default).
   */
  static async create(model: GPT2, extraWorkers: number, opts: { ortThreads?: number } = {}): Promise<DataParallel> {
    const names = model.paramNames;
    const shapes = names.map((n) => model.param(n).shape);
    const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
    const backend = (activeBackend() ?? 'wasm') as BackendKind;
    const entry = new URL('./grad-worker.ts', import.meta.url);
    const workers: GradWorker[] = [];
    for (let i = 0; i < extraWorkers; i++) {
      workers.push(new GradWorker(startTsWorker(entry, { config: model.config, names, shapes, backend, ortThreads: opts.ortThreads })));
    }
    try {
      await Promise.all(workers.map((w) => w.ready));
    } catch (e) {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw new Error(`could not start gradient workers: ${(e as Error).message}`);
    }
    return new DataParallel(workers, names, sizes);
  }

  /** Wall-clock spans of the last step: this thread's share and each worker's, for diagnostics. */
  lastOwnSpan: number[] = [];
  get spans(): { own: number[]; workers: number[][] } {
    return { own: this.lastOwnSpan, workers: this.workers.map((w) => w.lastSpan) };
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Mean loss and mean gradient (flat, parameter order of model.paramNames) over `batch`
   * sequences of seqLen+1 tokens, split across this thread and the workers.
   */
  async forwardBackward(model: GPT2, tokens: Int32Array, batch: number, seqLen: number): Promise<{ loss: number; grad: Float32Array }> {
    const n = this.threads;
    const shares: number[] = [];
    for (let i = 0; i < n; i++) shares.push(Math.floor(batch / n) + (i < batch % n ? 1 : 0));
    const per = seqLen + 1;
    const total = this.sizes.reduce((a, b) => a + b, 0);
    const params = new Float32Array(total);
    let off = 0;
    this.names.forEach((name, i) => {
      params.set(model.param(name).dataSync() as Float32Array, off);
      off += this.sizes[i];
    });
    let start = shares[0];
    const jobs: Promise<{ loss: number; grads: Float32Array }>[] = [];
    for (let w = 0; w < this.workers.length; w++) {
      const b = shares[w + 1];
      if (b === 0) continue;
      jobs.push(this.workers[w].run(params, tokens.slice(start * per, (start + b) * per), b, seqLen));
      start += b;
    }
    const jobShares = shares.slice(1).filter((b) => b > 0);
    const ownStart = performance.timeOrigin + performance.now();
    const own = model.forwardBackward(tokens.subarray(0, shares[0] * per), shares[0], seqLen);
    this.lastOwnSpan = [ownStart, performance.timeOrigin + performance.now()];
    const grad = new Float32Array(total);
    off = 0;
    const w0 = shares[0] / batch;
    this.names.forEach((name, i) => {
      const g = own.grads.get(name)!.dataSync() as Float32Array;
      for (let j = 0; j < g.length; j++) grad[off + j] = w0 * g[j];
      off += this.sizes[i];
    });
    for (const g of own.grads.values()) g.dispose();
    let loss = w0 * own.loss;
    const results = await Promise.all(jobs);
    results.forEach((r, k) => {
      const wk = jobShares[k] / batch;
      loss += wk * r.loss;
      for (let j = 0; j < total; j++) grad[j] += wk * r.grads[j];
    });
    return { loss, grad };
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        w.worker.postMessage({ type: 'close' });
        await w.worker.terminate();
      }),
    );
  }
}

