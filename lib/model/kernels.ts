/**
 * Small tfjs helpers that route around slow paths of the wasm backend.
 *
 * - splitRows: tf.split / tf.unstack on wasm run one Slice per output, and the wasm Slice kernel
 *   copies the WHOLE input out of the heap for every slice (backend.readSync), so unstacking a
 *   [64, 128, 32] tensor costs 64 full copies. Our kernel copies each block once from a heap view.
 * - matMul never uses the transpose flags (10-30x slower on wasm): callers transpose explicitly.
 */
import * as tf from '@tensorflow/tfjs-core';

const SPLIT_KERNEL = 'GsaeSplitAxis0';
const GATHER_KERNEL = 'GsaeGatherRows';

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

let registered = false;
function ensureRegistered(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: SPLIT_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = (inputs as { x: tf.TensorInfo }).x;
      const { sizes, inner, squeeze } = attrs as unknown as { sizes: number[]; inner: number[]; squeeze: boolean };
      const be = backend as unknown as WasmBackendLike;
      const innerSize = inner.reduce((a, b) => a * b, 1);
      // Allocate every output first: an allocation may grow the wasm heap and detach views.
      const outs = sizes.map((s) => be.makeOutput(squeeze ? inner : [s, ...inner], x.dtype));
      const xv = be.typedArrayFromHeap(x);
      let off = 0;
      for (let i = 0; i < outs.length; i++) {
        const n = sizes[i] * innerSize;
        if (n > 0) (be.typedArrayFromHeap(outs[i]) as Float32Array).set(xv.subarray(off, off + n) as Float32Array);
        off += n;
      }
      return outs;
    },
  });
  tf.registerKernel({
    kernelName: GATHER_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const { x, indices } = inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
      const be = backend as unknown as WasmBackendLike;
      const [R, C] = x.shape;
      const n = indices.shape[0];
      const out = be.makeOutput([n, C], x.dtype);
      const xv = be.typedArrayFromHeap(x) as Float32Array;
      const iv = be.typedArrayFromHeap(indices) as Int32Array;
      const ov = be.typedArrayFromHeap(out) as Float32Array;
      for (let i = 0; i < n; i++) {
        const r = iv[i];
        if (!(r >= 0 && r < R)) throw new Error(`gatherRows: index ${r} at position ${i} is outside [0, ${R})`);
        ov.set(xv.subarray(r * C, r * C + C), i * C);
      }
      return out;
    },
  });
}

/** Rows of a 2-D float32 matrix: x[indices] (forward only; fast on wasm). */
export function gatherRows(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  if (tf.getBackend() !== 'wasm') return tf.gather(x, indices);
  ensureRegistered();
  return tf.engine().runKernel(GATHER_KERNEL, { x, indices }) as tf.Tensor2D;
}

/** Column sums of a 2-D matrix, [N, k] -> [k], as a matMul with a ones row (wasm's axis-0 Sum is slow). */
export function sumRows(x: tf.Tensor2D): tf.Tensor1D {
  return tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x), [x.shape[1]]);
}

/**
 * Split x along axis 0 into blocks of the given sizes (default: x.shape[0] blocks of 1 row, with
 * that axis removed, like tf.unstack). Fast on wasm; falls back to tf.split/tf.unstack elsewhere.
 */
export function splitRows(x: tf.Tensor, sizes: number[]): tf.Tensor[] {
  if (tf.getBackend() !== 'wasm') return tf.split(x, sizes, 0);
  ensureRegistered();
  const inner = x.shape.slice(1);
  return tf.engine().runKernel(SPLIT_KERNEL, { x }, { sizes, inner, squeeze: false } as unknown as tf.NamedAttrMap) as tf.Tensor[];
}

/** tf.unstack along axis 0, fast on wasm. */
export function unstack0(x: tf.Tensor): tf.Tensor[] {
  if (tf.getBackend() !== 'wasm') return tf.unstack(x, 0);
  ensureRegistered();
  const sizes = new Array(x.shape[0]).fill(1);
  const inner = x.shape.slice(1);
  return tf.engine().runKernel(SPLIT_KERNEL, { x }, { sizes, inner, squeeze: true } as unknown as tf.NamedAttrMap) as tf.Tensor[];
}
