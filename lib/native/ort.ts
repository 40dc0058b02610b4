/**
 * Native GEMM-heavy kernels through ONNX Runtime's CPU execution provider (`onnxruntime-node`, an
 * optional dependency that ships linux/macOS/windows CPU binaries inside the npm package).
 *
 * We build small ONNX graphs in memory (onnx.ts) and run them through the binding's synchronous
 * `run` (the public `InferenceSession.run` only wraps it in a setImmediate promise), so the
 * synchronous tfjs code of the model and the SAE can call them between tfjs ops. Inputs are
 * passed as views on the caller's memory (the wasm heap of tfjs, or the SAE's shared memory) and
 * outputs are written into preallocated views: no copies.
 *
 * Determinism: ORT's MLAS GEMM splits the output matrix between threads and computes every
 * output element on one thread with the same K order, so results do not depend on
 * `intraOpNumThreads` (tested in test/lib/native/ort.test.ts). Spinning of idle pool threads is
 * off (the machine is shared, and tfjs runs on the calling thread between the calls).
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { onnxModel, type InitializerSpec, type NodeSpec, type ValueInfo } from './onnx.ts';

const require = createRequire(import.meta.url);

interface NativeSession {
  loadModel(buf: ArrayBufferLike, off: number, len: number, options: object): void;
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, options: object): Record<string, { data: Float32Array }>;
  dispose(): void;
}
interface OrtBinding {
  InferenceSession: new () => NativeSession;
}
type TensorCtor = new (type: string, data: Float32Array | Int32Array | BigInt64Array, dims: readonly number[]) => unknown;

let loaded: { binding: OrtBinding; Tensor: TensorCtor } | null | undefined;
let loadError: string | null = null;

/** Load the ONNX Runtime binding once; null (with ortLoadError()) when it is missing or broken. */
export function loadOrt(): { binding: OrtBinding; Tensor: TensorCtor } | null {
  if (loaded !== undefined) return loaded;
  if (process.env.GSAE_NO_ORT) {
    // for tests and comparisons: behave as if the binding were missing
    loaded = null;
    loadError = 'disabled by GSAE_NO_ORT';
    return null;
  }
  try {
    const b = require('onnxruntime-node/dist/binding.js') as { binding: OrtBinding; initOrt: () => void };
    const ortDir = require.resolve('onnxruntime-node/package.json');
    const common = createRequire(ortDir)('onnxruntime-common') as { Tensor: TensorCtor };
    b.initOrt();
    loaded = { binding: b.binding, Tensor: common.Tensor };
    // Smoke test: a 1x1 MatMul.
    const g = new OrtGraph(
      { inputs: [{ name: 'a', dims: [1, 1] }, { name: 'b', dims: [1, 1] }], outputs: [{ name: 'y', dims: [1, 1] }], nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }] },
      1,
    );
    const y = new Float32Array(1);
    g.run([new Float32Array([2]), new Float32Array([3])], [[1, 1], [1, 1]], [y], [[1, 1]]);
    g.dispose();
    if (y[0] !== 6) throw new Error(`smoke test returned ${y[0]}, expected 6`);
  } catch (e) {
    loaded = null;
    loadError = (e as Error).message.split('\n')[0];
  }
  return loaded;
}

/**
 * Whether the native binding loads here (its shared libraries resolve and it registers), without
 * creating ORT's environment or running anything: what the engine's process asks to name the
 * backend of a run (~2 ms, where loadOrt() costs ~30 ms of a no-op rerun). A stage process then
 * loads it fully (loadOrt, with the smoke test), and refuses to compute with another backend than
 * the one its fingerprint names (stages/common.ts).
 */
export function ortBindingLoads(): { ok: true } | { ok: false; error: string } {
  if (loaded !== undefined) return loaded ? { ok: true } : { ok: false, error: loadError ?? 'not loaded' };
  if (process.env.GSAE_NO_ORT) return { ok: false, error: 'disabled by GSAE_NO_ORT' };
  try {
    // the file dist/binding.js requires, without its onnxruntime-common (19 modules) and initOrt
    const dir = path.dirname(require.resolve('onnxruntime-node/package.json'));
    require(path.join(dir, 'bin', 'napi-v6', process.platform, process.arch, 'onnxruntime_binding.node'));
    return { ok: true };
  } catch (e) {
    return { ok: false, error: (e as Error).message.split('\n')[0] };
  }
}

export function ortLoadError(): string | null {
  return loadError;
}

/** Whether the binding is installed and works (loads it). */
export function ortAvailable(): boolean {
  return loadOrt() !== null;
}

let defaultThreads = Math.max(1, Number(process.env.GSAE_ORT_THREADS) || Math.min(os.availableParallelism?.() ?? os.cpus().length, 8));
/** Intra-op threads of sessions created from now on (the numbers do not depend on it). */
export function setOrtThreads(n: number): void {
  defaultThreads = Math.max(1, Math.floor(n));
}
export function ortThreads(): number {
  return defaultThreads;
}

export interface GraphSpec {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: NodeSpec[];
  initializers?: InitializerSpec[];
}

/** One ONNX graph in one ORT session; run() is synchronous. */
export class OrtGraph {
  private readonly session: NativeSession;
  private readonly inNames: string[];
  private readonly outNames: string[];
  private readonly T: TensorCtor;

  constructor(spec: GraphSpec, threads = defaultThreads) {
    const ort = loaded;
    if (!ort) throw new Error(`onnxruntime-node is not available${loadError ? `: ${loadError}` : ''}`);
    this.T = ort.Tensor;
    const bytes = onnxModel(spec);
    this.session = new ort.binding.InferenceSession();
    this.session.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      enableCpuMemArena: true,
      enableMemPattern: true,
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    });
    this.inNames = spec.inputs.map((v) => v.name);
    this.outNames = spec.outputs.map((v) => v.name);
  }

  /** Run with inputs and preallocated outputs (views on any memory) of the given shapes. */
  run(inputs: Float32Array[], inShapes: number[][], outputs: Float32Array[], outShapes: number[][]): void {
    const feeds: Record<string, unknown> = {};
    for (let i = 0; i < inputs.length; i++) feeds[this.inNames[i]] = new this.T('float32', inputs[i], inShapes[i]);
    const fetches: Record<string, unknown> = {};
    for (let i = 0; i < outputs.length; i++) fetches[this.outNames[i]] = new this.T('float32', outputs[i], outShapes[i]);
    this.session.run(feeds, fetches, {});
  }

  dispose(): void {
    this.session.dispose();
  }
}

const graphs = new Map<string, OrtGraph>();

/** A cached graph by key (built on first use with the current thread setting). */
export function cachedGraph(key: string, build: () => GraphSpec, threads = defaultThreads): OrtGraph {
  const k = `${key}|t${threads}`;
  let g = graphs.get(k);
  if (!g) {
    g = new OrtGraph(build(), threads);
    graphs.set(k, g);
  }
  return g;
}

/**
 * C = op(A) op(B) [+ bias] for float32 row-major views: A [M, K] (or [K, M] with transA), B [K, N]
 * (or [N, K] with transB), bias [N] or none. Writes C [M, N].
 */
export function gemm(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  M: number,
  K: number,
  N: number,
  opts: { transA?: boolean; transB?: boolean; bias?: Float32Array | null; threads?: number } = {},
): void {
  const tA = opts.transA ? 1 : 0;
  const tB = opts.transB ? 1 : 0;
  const hasBias = !!opts.bias;
  const g = cachedGraph(`gemm${tA}${tB}${hasBias ? 'b' : ''}`, () => ({
    inputs: [
      { name: 'a', dims: tA ? ['K', 'M'] : ['M', 'K'] },
      { name: 'b', dims: tB ? ['N', 'K'] : ['K', 'N'] },
      ...(hasBias ? [{ name: 'c', dims: ['N'] }] : []),
    ],
    outputs: [{ name: 'y', dims: ['M', 'N'] }],
    nodes: [{ op: 'Gemm', inputs: hasBias ? ['a', 'b', 'c'] : ['a', 'b'], outputs: ['y'], attrs: { transA: tA, transB: tB } }],
  }), opts.threads ?? defaultThreads);
  const inputs = [a.subarray(0, M * K), b.subarray(0, K * N)];
  const shapes = [tA ? [K, M] : [M, K], tB ? [N, K] : [K, N]];
  if (opts.bias) {
    inputs.push(opts.bias.subarray(0, N));
    shapes.push([N]);
  }
  g.run(inputs, shapes, [c.subarray(0, M * N)], [[M, N]]);
}
