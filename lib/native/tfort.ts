/**
 * tfjs glue for ONNX Runtime graphs on the wasm backend: `ortOp` runs a cached ORT graph as a tfjs
 * kernel (named `Ort<family>`, so tf.profile shows it), reading its inputs straight from the wasm
 * heap and writing its outputs into freshly allocated tfjs tensors on the same heap (no copies).
 */
import * as tf from '@tensorflow/tfjs-core';
import { cachedGraph, type GraphSpec } from './ort.ts';

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

const builders = new Map<string, () => GraphSpec>();
const registered = new Set<string>();

function ensureKernel(family: string): string {
  const name = `Ort${family}`;
  if (registered.has(name)) return name;
  registered.add(name);
  tf.registerKernel({
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { key, outShapes } = attrs as unknown as { key: string; outShapes: number[][] };
      const be = backend as unknown as WasmBackendLike;
      const ins = Object.keys(inputs)
        .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
        .map((n) => (inputs as Record<string, tf.TensorInfo>)[n]);
      // Allocate every output first: an allocation may grow the heap and detach older views.
      const outs = outShapes.map((s) => be.makeOutput(s, 'float32'));
      const inViews = ins.map((t) => be.typedArrayFromHeap(t) as Float32Array);
      const outViews = outs.map((t) => be.typedArrayFromHeap(t) as Float32Array);
      const g = cachedGraph(key, builders.get(key)!);
      g.run(
        inViews,
        ins.map((t) => t.shape),
        outViews,
        outShapes,
      );
      return outs;
    },
  });
  return name;
}

/**
 * The float32 values of a tensor without a copy: a view on the wasm heap (valid until the next tfjs
 * allocation, which may grow the heap; read it at once), or the dataSync copy on other backends.
 */
export function readF32(t: tf.Tensor): Float32Array {
  const be = tf.backend() as unknown as Partial<WasmBackendLike>;
  if (tf.getBackend() === 'wasm' && t.dtype === 'float32' && typeof be.typedArrayFromHeap === 'function') {
    return be.typedArrayFromHeap(t as unknown as tf.TensorInfo) as Float32Array;
  }
  return t.dataSync() as Float32Array;
}

/**
 * Run graph `key` (built by `build` on first use) on float32 tensors; returns tensors of the
 * given output shapes. wasm backend only.
 */
export function ortOp(family: string, key: string, build: () => GraphSpec, inputs: tf.Tensor[], outShapes: number[][]): tf.Tensor[] {
  if (!builders.has(key)) builders.set(key, build);
  const name = ensureKernel(family);
  const named: Record<string, tf.Tensor> = {};
  inputs.forEach((t, i) => {
    if (t.dtype !== 'float32') throw new Error(`ortOp ${key}: input ${i} is ${t.dtype}, expected float32`);
    named[`i${i}`] = t;
  });
  const r = tf.engine().runKernel(name, named, { key, outShapes } as unknown as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  return Array.isArray(r) ? r : [r];
}
