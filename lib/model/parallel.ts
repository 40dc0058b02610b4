/**
 * Data-parallel forward+backward over worker threads. The wasm backend runs on one thread, so on a
 * machine with free cores each extra worker (its own wasm instance and model replica) computes the
 * gradient of a share of the batch while the main thread computes its own share. The result is
 * the mean gradient over the whole batch (same math as one thread; float rounding differs).
 *
 * Two ways to split the batch:
 * - one share per participant (`shards` unset): a run is reproducible for a fixed number of workers;
 * - `shards` fixed shares, dealt round-robin to the participants (shard i to participant i mod n) and
 *   summed on this thread in shard order: each shard's gradient does not depend on who computed it
 *   (ONNX Runtime's kernels give the same numbers whatever their thread count), so the result is the
 *   same for any number of workers, zero included (tested bit for bit). The LM trainer uses this
 *   on wasm+ort (see train.ts `gradientShards`).
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
    /** Fixed number of batch shards (0: one share per participant). */
    private readonly shards: number,
  ) {}

  /**
   * Start `extraWorkers` worker threads holding replicas of `model` (same backend as this thread).
   * On wasm+ort each worker's ONNX Runtime pool gets `ortThreads` threads (default: ORT's default).
   */
  static async create(model: GPT2, extraWorkers: number, opts: { ortThreads?: number; shards?: number } = {}): Promise<DataParallel> {
    const shards = Math.max(0, Math.floor(opts.shards ?? 0));
    if (shards > 0 && extraWorkers + 1 > shards) throw new Error(`DataParallel: ${extraWorkers + 1} participants for ${shards} shards (some would idle)`);
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
    return new DataParallel(workers, names, sizes, shards);
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
    const parts = this.shards > 0 ? Math.min(this.shards, batch) : n;
    const shares: number[] = [];
    for (let i = 0; i < parts; i++) shares.push(Math.floor(batch / parts) + (i < batch % parts ? 1 : 0));
    const per = seqLen + 1;
    const total = this.sizes.reduce((a, b) => a + b, 0);
    const starts: number[] = [];
    shares.reduce((s, b) => (starts.push(s), s + b), 0);
    // shard i goes to participant i mod n (participant 0 is this thread)
    const owner = (i: number) => i % n;
    let params: Float32Array | null = null;
    const jobs = new Map<number, Promise<{ loss: number; grads: Float32Array }>>();
    for (let i = 0; i < parts; i++) {
      if (owner(i) === 0 || shares[i] === 0) continue;
      if (!params) {
        params = new Float32Array(total);
        let off = 0;
        this.names.forEach((name, j) => {
          params!.set(model.param(name).dataSync() as Float32Array, off);
          off += this.sizes[j];
        });
      }
      const job = this.workers[owner(i) - 1].run(params, tokens.slice(starts[i] * per, (starts[i] + shares[i]) * per), shares[i], seqLen);
      job.catch(() => {}); // awaited below in shard order; a failure surfaces there
      jobs.set(i, job);
    }
    // this thread's shards, in order, flattened as they finish
    const own = new Map<number, { loss: number; grads: Float32Array }>();
    const ownStart = performance.timeOrigin + performance.now();
    for (let i = 0; i < parts; i++) {
      if (owner(i) !== 0 || shares[i] === 0) continue;
      const r = model.forwardBackwardFlat(tokens.subarray(starts[i] * per, (starts[i] + shares[i]) * per), shares[i], seqLen);
      own.set(i, { loss: r.loss, grads: r.grad });
    }
    this.lastOwnSpan = [ownStart, performance.timeOrigin + performance.now()];
    // the weighted sum in shard order, whoever computed each shard
    const grad = new Float32Array(total);
    let loss = 0;
    let first = true;
    for (let i = 0; i < parts; i++) {
      if (shares[i] === 0) continue;
      const r = own.get(i) ?? (await jobs.get(i)!);
      const w = shares[i] / batch;
      const g = r.grads;
      if (first) {
        for (let j = 0; j < total; j++) grad[j] = w * g[j];
        loss = w * r.loss;
        first = false;
      } else {
        for (let j = 0; j < total; j++) grad[j] += w * g[j];
        loss += w * r.loss;
      }
    }
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

