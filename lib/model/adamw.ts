/**
 * The LM's AdamW update, element by element in float64 (PyTorch's reference formula):
 *
 *   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  p ← p − lr·(m/bc₁ / (√(v/bc₂) + eps) + wd·p)
 *
 * with g = grad·scale (global-norm clipping), m and v stored in float32, and the float64 m, v of this
 * step used for p. Two implementations, bit for bit the same:
 * - `adamwRange`, plain TypeScript (the reference, and the fallback);
 * - `AdamWKernel`, WebAssembly SIMD: two float64 lanes per instruction (f64x2), with the same
 *   operations in the same order (wasm's f64 add/mul/div/sqrt are IEEE-754 correctly rounded, as
 *   are JavaScript's; neither fuses a multiply-add; f32 stores round to nearest-even in both). The
 *   update is bound by its three divisions and one square root per element, so two lanes halve it.
 *   m and v live in the kernel's memory.
 * Tested against each other in test/lib/model/adamw.test.ts.
 */
import { assemble, F64, Fn, I32, V128 } from '../util/wasmasm.ts';

export interface AdamWScalars {
  scale: number;
  beta1: number;
  beta2: number;
  bc1: number;
  bc2: number;
  eps: number;
  lr: number;
  wd: number;
}

/** The reference: parameter p (offset `off` in g, M, V) updated into `out`. */
export function adamwRange(p: Float32Array, out: Float32Array, g: Float32Array, M: Float32Array, V: Float32Array, off: number, s: AdamWScalars): void {
  const { scale, beta1, beta2, bc1, bc2, eps, lr, wd } = s;
  const ob1 = 1 - beta1;
  const ob2 = 1 - beta2;
  const n = p.length;
  for (let i = 0; i < n; i++) {
    const o = off + i;
    const gs = g[o] * scale;
    const mm = beta1 * M[o] + ob1 * gs;
    const vv = beta2 * V[o] + ob2 * gs * gs;
    M[o] = mm;
    V[o] = vv;
    out[i] = p[i] - lr * (mm / bc1 / (Math.sqrt(vv / bc2) + eps) + wd * p[i]);
  }
}

const PAGE = 65536;

/**
 * adamw(pP, pOut, pG, pM, pV, n, scale, beta1, beta2, ob1, ob2, bc1, bc2, eps, lr, wd): byte offsets
 * of p, out (n values), and of g, M, V at the parameter's offset; n even (the caller does an odd
 * last element in TypeScript). Two float32 are loaded and promoted to one f64x2, and demoted back
 * when stored.
 */
function buildModule(pages: number): Uint8Array<ArrayBuffer> {
  const f = new Fn('adamw', [I32, I32, I32, I32, I32, I32, F64, F64, F64, F64, F64, F64, F64, F64, F64, F64], []);
  const [pP, pOut, pG, pM, pV, n] = [0, 1, 2, 3, 4, 5];
  const sc = Array.from({ length: 10 }, () => f.local(V128)); // the scalars, splatted
  const [vScale, vB1, vB2, vOb1, vOb2, vBc1, vBc2, vEps, vLr, vWd] = sc;
  const i = f.local(I32);
  const gs = f.local(V128);
  const mm = f.local(V128);
  const vv = f.local(V128);
  const pv = f.local(V128);
  sc.forEach((local, s) => f.get(6 + s).f64x2Splat().set(local));
  const at = (base: number) => f.get(base).get(i).i32Add();
  const load = (base: number) => at(base).v128Load64Zero().f64x2PromoteLowF32x4();
  // i: byte offset of the pair (i += 8)
  f.i32(0).set(i);
  f.block().loop();
  f.get(i).get(n).i32(2).i32Shl().i32GeS().brIf(1);
  // gs = g * scale
  load(pG).get(vScale).f64x2Mul().set(gs);
  // mm = beta1 * M + ob1 * gs
  f.get(vB1);
  load(pM).f64x2Mul().get(vOb1).get(gs).f64x2Mul().f64x2Add().set(mm);
  // vv = beta2 * V + ob2 * gs * gs   ((ob2 * gs) * gs, left to right as in JavaScript)
  f.get(vB2);
  load(pV).f64x2Mul().get(vOb2).get(gs).f64x2Mul().get(gs).f64x2Mul().f64x2Add().set(vv);
  // M = f32(mm), V = f32(vv)
  at(pM).get(mm).f32x4DemoteF64x2Zero().v128Store64Lane0();
  at(pV).get(vv).f32x4DemoteF64x2Zero().v128Store64Lane0();
  // out = p - lr * (mm / bc1 / (sqrt(vv / bc2) + eps) + wd * p)
  load(pP).set(pv);
  at(pOut).get(pv).get(vLr);
  f.get(mm).get(vBc1).f64x2Div().get(vv).get(vBc2).f64x2Div().f64x2Sqrt().get(vEps).f64x2Add().f64x2Div();
  f.get(vWd).get(pv).f64x2Mul().f64x2Add().f64x2Mul().f64x2Sub();
  f.f32x4DemoteF64x2Zero().v128Store64Lane0();
  f.get(i).i32(8).i32Add().set(i);
  f.br(0).end().end();
  return assemble([f], { min: pages, max: pages, shared: false });
}

/** The largest memory the kernel takes (wasm32: 4 GiB; keep clear of it). */
const MAX_BYTES = 3 * 2 ** 30;

/**
 * m, v and the flat gradient in one WebAssembly memory, with room for the largest parameter and its
 * output; `create` returns null when that does not fit (the caller keeps the TypeScript loop).
 */
export class AdamWKernel {
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly g: Float32Array;
  readonly p: Float32Array;
  readonly out: Float32Array;
  private constructor(
    private readonly fn: (...a: number[]) => void,
    memory: WebAssembly.Memory,
    total: number,
    maxParam: number,
  ) {
    const buf = memory.buffer;
    let off = 0;
    const take = (n: number) => {
      const a = new Float32Array(buf, off, n);
      off += 4 * (n + (n & 1)); // 8-byte aligned
      return a;
    };
    this.m = take(total);
    this.v = take(total);
    this.g = take(total);
    this.p = take(maxParam);
    this.out = take(maxParam);
  }

  static create(total: number, maxParam: number): AdamWKernel | null {
    const bytes = 4 * (3 * (total + 1) + 2 * (maxParam + 1));
    if (bytes > MAX_BYTES) return null;
    try {
      const pages = Math.ceil(bytes / PAGE) + 1;
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
      const mod = new WebAssembly.Module(buildModule(pages));
      const inst = new WebAssembly.Instance(mod, { env: { memory } });
      return new AdamWKernel(inst.exports.adamw as (...a: number[]) => void, memory, total, maxParam);
    } catch {
      return null;
    }
  }

  /**
   * Update one parameter: p (n values) at flat offset `off` of g, m and v; returns the new values
   * (a view on the kernel's memory, valid until the next call).
   */
  update(p: Float32Array, off: number, s: AdamWScalars): Float32Array {
    const n = p.length;
    this.p.set(p);
    const even = n & ~1;
    const { scale, beta1, beta2, bc1, bc2, eps, lr, wd } = s;
    const at = (a: Float32Array, i: number) => a.byteOffset + 4 * i;
    if (even > 0) this.fn(at(this.p, 0), at(this.out, 0), at(this.g, off), at(this.m, off), at(this.v, off), even, scale, beta1, beta2, 1 - beta1, 1 - beta2, bc1, bc2, eps, lr, wd);
    if (even < n) {
      // the odd last element, with the reference loop
      adamwRange(this.p.subarray(even, n), this.out.subarray(even, n), this.g, this.m, this.v, off + even, s);
    }
    return this.out.subarray(0, n);
  }
}
