/**
 * WebAssembly SIMD (f32x4) kernels for the sparse parts of an SAE step, generated at run time for a
 * given width d (a multiple of 4) by the small assembler in wasmasm.ts. They work on a
 * WebAssembly.Memory (shared, so worker threads can use the same buffers); pointers are byte
 * offsets into it. All arithmetic is float32.
 *
 *   axpy(v, w, y)                 y[0:d] += v · w[0:d]
 *   back(w, v, dy, gwd, gwe, xc)  gwd += v·dy; du = w·dy; gwe += du·xc; returns du
 *   resid(xh, x, c, dx, q, gbd)   r = xh − x; q = r; dx = c·r; gbd += dx; returns Σ r²
 *   scale(q, c, dx)               dx = c·q; returns Σ q²
 *   dot(a, b)                     Σ a·b over d values
 *   scanPlain(u, be, j0, m, thr, out, cap)          indices j ≥ j0 with u[j] + be[j] > thr
 *   scanGrad(u, be, a, j0, m, beta, thr, out, cap)  … with z = u + be > 0 and z + beta·z·|a| > thr
 *       (m a multiple of 4; at most cap indices, written as i32 to out; returns the count and
 *       leaves in global `stop` where the scan stopped (m when it finished, a multiple of 4))
 *   addInto(dst, src, n4)         dst[0:n] += src[0:n], n4 = n/4 (n a multiple of 4)
 *   sub(dst, a, b, n4)            dst[0:n] = a[0:n] − b[0:d] repeated (n a multiple of d): x − b_dec rows
 *   projRow(g, w)                 g −= (g·w) w          (decoder gradient: remove the parallel part)
 *   normRow(w)                    w /= ‖w‖ (if ‖w‖ > 0)
 *   adam(p, g, mo, vo, n4, b1, b2, step, rsb2, eps)  Adam on n = 4·n4 values (see below)
 *   scoreSparse(cand, got, u, be, wd, g, rowBytes, beta, gB, thr, cs, ci, n0)  the g-SAE scores of
 *       `got` scanned candidates, in float64 (see WasmSelector): appends s > thr to cs (f64) / ci
 *       (i32) from position n0, returns the new count; global `scored` = candidates dotted
 */
import { F32, F64, Fn, I32, V128, assemble, globalSet, type ValType } from '../util/wasmasm.ts';

/** Accumulators for a d-long dot product: 4 lanes × U. */
function unrollFor(d: number): number {
  if (d % 16 === 0) return 4;
  if (d % 8 === 0) return 2;
  return 1;
}

export interface SimdExports {
  axpy(v: number, w: number, y: number): void;
  back(w: number, v: number, dy: number, gwd: number, gwe: number, xc: number): number;
  resid(xh: number, x: number, c: number, dx: number, q: number, gbd: number): number;
  scale(q: number, c: number, dx: number): number;
  dot(a: number, b: number): number;
  scanPlain(u: number, be: number, j0: number, m: number, thr: number, out: number, cap: number): number;
  scanGrad(u: number, be: number, a: number, j0: number, m: number, beta: number, thr: number, out: number, cap: number): number;
  addInto(dst: number, src: number, n4: number): void;
  subRows(dst: number, a: number, b: number, rows: number): void;
  projRow(g: number, w: number): void;
  normRow(w: number): void;
  adam(p: number, g: number, mo: number, vo: number, n4: number, b1: number, b2: number, step: number, rsb2: number, eps: number): void;
  scoreSparse(cand: number, got: number, u: number, be: number, wd: number, g: number, rowBytes: number, beta: number, gB: number, thr: number, cs: number, ci: number, n0: number): number;
  stop: WebAssembly.Global;
  /** Candidates scoreSparse scored in its last call. */
  scored: WebAssembly.Global;
}

/** Sum the 4 lanes of the v128 in local `v` onto the stack (as f32). */
function hsum(f: Fn, v: number): void {
  f.get(v).f32x4Extract(0).get(v).f32x4Extract(1).f32Add().get(v).f32x4Extract(2).get(v).f32x4Extract(3).f32Add().f32Add();
}

/**
 * Emit `for (i = 0; i < bytes; i += 16·U) body(U offsets)`: the body gets the byte offsets of its U
 * vectors relative to local i.
 */
function vecLoop(f: Fn, i: number, bytes: number, U: number, body: (u: number) => void): void {
  f.i32(0).set(i);
  f.loop();
  for (let u = 0; u < U; u++) body(u);
  f.get(i).i32(16 * U).i32Add().tee(i).i32(bytes).i32LtS().brIf(0);
  f.end();
}

export function buildSimdModule(d: number, memPages: { min: number; max: number; shared?: boolean }): Uint8Array<ArrayBuffer> {
  if (d % 4 !== 0) throw new Error(`simd kernels need d % 4 == 0 (d=${d})`);
  const U = unrollFor(d);
  const bytes = d * 4;
  const fns: Fn[] = [];

  {
    // axpy(v, w, y): y += v w
    const f = new Fn('axpy', [F32, I32, I32], []);
    const [v, w, y] = [0, 1, 2];
    const vv = f.local(V128);
    const i = f.local(I32);
    f.get(v).f32x4Splat().set(vv);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(y).get(i).i32Add();
      f.get(y).get(i).i32Add().v128Load(o);
      f.get(vv).get(w).get(i).i32Add().v128Load(o).f32x4Mul();
      f.f32x4Add().v128Store(o);
    });
    fns.push(f);
  }
  {
    // back(w, v, dy, gwd, gwe, xc) -> du
    const f = new Fn('back', [I32, F32, I32, I32, I32, I32], [F32]);
    const [w, v, dy, gwd, gwe, xc] = [0, 1, 2, 3, 4, 5];
    const vv = f.local(V128);
    const a = f.local(V128);
    const acc = Array.from({ length: U }, () => f.local(V128));
    const i = f.local(I32);
    const du = f.local(F32);
    f.get(v).f32x4Splat().set(vv);
    for (const c of acc) f.f32(0).f32x4Splat().set(c);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(dy).get(i).i32Add().v128Load(o).set(a);
      f.get(acc[u]).get(a).get(w).get(i).i32Add().v128Load(o).f32x4Mul().f32x4Add().set(acc[u]);
      f.get(gwd).get(i).i32Add();
      f.get(gwd).get(i).i32Add().v128Load(o).get(vv).get(a).f32x4Mul().f32x4Add();
      f.v128Store(o);
    });
    for (let u = 1; u < U; u++) f.get(acc[0]).get(acc[u]).f32x4Add().set(acc[0]);
    hsum(f, acc[0]);
    f.tee(du).f32x4Splat().set(vv);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(gwe).get(i).i32Add();
      f.get(gwe).get(i).i32Add().v128Load(o).get(vv).get(xc).get(i).i32Add().v128Load(o).f32x4Mul().f32x4Add();
      f.v128Store(o);
    });
    f.get(du);
    fns.push(f);
  }
  {
    // resid(xh, x, c, dx, q, gbd) -> Σ r²
    const f = new Fn('resid', [I32, I32, F32, I32, I32, I32], [F32]);
    const [xh, x, c, dx, q, gbd] = [0, 1, 2, 3, 4, 5];
    const cv = f.local(V128);
    const r = f.local(V128);
    const g = f.local(V128);
    const acc = Array.from({ length: U }, () => f.local(V128));
    const i = f.local(I32);
    f.get(c).f32x4Splat().set(cv);
    for (const a of acc) f.f32(0).f32x4Splat().set(a);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(xh).get(i).i32Add().v128Load(o).get(x).get(i).i32Add().v128Load(o).f32x4Sub().set(r);
      f.get(acc[u]).get(r).get(r).f32x4Mul().f32x4Add().set(acc[u]);
      f.get(q).get(i).i32Add().get(r).v128Store(o);
      f.get(cv).get(r).f32x4Mul().set(g);
      f.get(dx).get(i).i32Add().get(g).v128Store(o);
      f.get(gbd).get(i).i32Add();
      f.get(gbd).get(i).i32Add().v128Load(o).get(g).f32x4Add();
      f.v128Store(o);
    });
    for (let u = 1; u < U; u++) f.get(acc[0]).get(acc[u]).f32x4Add().set(acc[0]);
    hsum(f, acc[0]);
    fns.push(f);
  }
  {
    // scale(q, c, dx) -> Σ q²
    const f = new Fn('scale', [I32, F32, I32], [F32]);
    const [q, c, dx] = [0, 1, 2];
    const cv = f.local(V128);
    const a = f.local(V128);
    const acc = Array.from({ length: U }, () => f.local(V128));
    const i = f.local(I32);
    f.get(c).f32x4Splat().set(cv);
    for (const x of acc) f.f32(0).f32x4Splat().set(x);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(q).get(i).i32Add().v128Load(o).set(a);
      f.get(acc[u]).get(a).get(a).f32x4Mul().f32x4Add().set(acc[u]);
      f.get(dx).get(i).i32Add().get(cv).get(a).f32x4Mul().v128Store(o);
    });
    for (let u = 1; u < U; u++) f.get(acc[0]).get(acc[u]).f32x4Add().set(acc[0]);
    hsum(f, acc[0]);
    fns.push(f);
  }
  {
    // dot(a, b) -> Σ a b
    const f = new Fn('dot', [I32, I32], [F32]);
    const [a, b] = [0, 1];
    const acc = Array.from({ length: U }, () => f.local(V128));
    const i = f.local(I32);
    for (const x of acc) f.f32(0).f32x4Splat().set(x);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(acc[u]).get(a).get(i).i32Add().v128Load(o).get(b).get(i).i32Add().v128Load(o).f32x4Mul().f32x4Add().set(acc[u]);
    });
    for (let u = 1; u < U; u++) f.get(acc[0]).get(acc[u]).f32x4Add().set(acc[0]);
    hsum(f, acc[0]);
    fns.push(f);
  }
  // scans: shared body builder
  const scan = (name: string, grad: boolean) => {
    const params: ValType[] = grad ? [I32, I32, I32, I32, I32, F32, F32, I32, I32] : [I32, I32, I32, I32, F32, I32, I32];
    const f = new Fn(name, params, [I32]);
    const u = 0;
    const be = 1;
    const a = grad ? 2 : -1;
    const j0 = grad ? 3 : 2;
    const m = grad ? 4 : 3;
    const beta = grad ? 5 : -1;
    const thr = grad ? 6 : 4;
    const out = grad ? 7 : 5;
    const cap = grad ? 8 : 6;
    const j = f.local(I32);
    const n = f.local(I32);
    const bits = f.local(I32);
    const tv = f.local(V128);
    const z = f.local(V128);
    const bv = grad ? f.local(V128) : -1;
    const zero = grad ? f.local(V128) : -1;
    const lim = f.local(I32);
    f.get(thr).f32x4Splat().set(tv);
    if (grad) {
      f.get(beta).f32x4Splat().set(bv);
      f.f32(0).f32x4Splat().set(zero);
    }
    // mask of the group of 4 latents at j + off (pushed on the stack)
    const mask = (off: number) => {
      f.get(u).get(j).i32(2).i32Shl().i32Add().v128Load(4 * off);
      f.get(be).get(j).i32(2).i32Shl().i32Add().v128Load(4 * off);
      f.f32x4Add().set(z);
      if (grad) {
        // s = z + (beta z) |a|; mask = (z > 0) & (s > thr)
        f.get(z);
        f.get(bv).get(z).f32x4Mul();
        f.get(a).get(j).i32(2).i32Shl().i32Add().v128Load(4 * off).f32x4Abs();
        f.f32x4Mul().f32x4Add();
        f.get(tv).f32x4Gt();
        f.get(z).get(zero).f32x4Gt();
        f.v128And();
      } else {
        f.get(z).get(tv).f32x4Gt();
      }
    };
    // store the lanes of mask local mk (group at j + off) as candidates
    const emit = (mk: number, off: number) => {
      f.get(mk).i32x4Bitmask().tee(bits);
      f.if_();
      for (let lane = 0; lane < 4; lane++) {
        f.get(bits).i32(1 << lane).i32And().if_();
        f.get(out).get(n).i32(2).i32Shl().i32Add().get(j).i32(off + lane).i32Add().i32Store();
        f.get(n).i32(1).i32Add().set(n);
        f.end();
      }
      f.end();
    };
    const mks = [f.local(V128), f.local(V128), f.local(V128), f.local(V128)];
    const lim16 = f.local(I32);
    const m16 = f.local(I32);
    f.get(j0).set(j);
    f.i32(0).set(n);
    f.get(cap).i32(16).i32Sub().set(lim16);
    f.get(m).i32(16).i32Sub().set(m16);
    // fast loop: 16 latents per iteration, one branch when none passes
    f.block();
    f.loop();
    f.get(j).get(m16).i32GtS().brIf(1);
    f.get(n).get(lim16).i32GtS().brIf(1);
    for (let g = 0; g < 4; g++) {
      mask(4 * g);
      f.set(mks[g]);
    }
    f.get(mks[0]).get(mks[1]).v128Or().get(mks[2]).get(mks[3]).v128Or().v128Or().v128AnyTrue();
    f.if_();
    for (let g = 0; g < 4; g++) emit(mks[g], 4 * g);
    f.end();
    f.get(j).i32(16).i32Add().set(j);
    f.br(0);
    f.end();
    f.end();
    f.get(cap).i32(4).i32Sub().set(lim); // room for a whole group of 4
    f.block();
    f.loop();
    // while (j < m && n <= cap - 4)
    f.get(j).get(m).i32GeS().brIf(1);
    f.get(n).get(lim).i32GtS().brIf(1);
    mask(0);
    f.i32x4Bitmask().tee(bits);
    f.if_();
    for (let lane = 0; lane < 4; lane++) {
      f.get(bits).i32(1 << lane).i32And().if_();
      f.get(out).get(n).i32(2).i32Shl().i32Add().get(j).i32(lane).i32Add().i32Store();
      f.get(n).i32(1).i32Add().set(n);
      f.end();
    }
    f.end();
    f.get(j).i32(4).i32Add().set(j);
    f.br(0);
    f.end();
    f.end();
    f.get(j);
    globalSet(f, 0);
    f.get(n);
    fns.push(f);
  };
  scan('scanPlain', false);
  scan('scanGrad', true);
  {
    // addInto(dst, src, n4)
    const f = new Fn('addInto', [I32, I32, I32], []);
    const [dst, src, n4] = [0, 1, 2];
    const i = f.local(I32);
    const end = f.local(I32);
    f.get(n4).i32(4).i32Shl().set(end);
    f.i32(0).set(i);
    f.block();
    f.loop();
    f.get(i).get(end).i32GeS().brIf(1);
    f.get(dst).get(i).i32Add();
    f.get(dst).get(i).i32Add().v128Load().get(src).get(i).i32Add().v128Load().f32x4Add();
    f.v128Store();
    f.get(i).i32(16).i32Add().set(i);
    f.br(0);
    f.end();
    f.end();
    fns.push(f);
  }
  {
    // subRows(dst, a, b, rows): dst[r] = a[r] − b for each d-long row r
    const f = new Fn('subRows', [I32, I32, I32, I32], []);
    const [dst, a, b, rows] = [0, 1, 2, 3];
    const r = f.local(I32);
    const i = f.local(I32);
    const base = f.local(I32);
    f.i32(0).set(r);
    f.block();
    f.loop();
    f.get(r).get(rows).i32GeS().brIf(1);
    f.get(r).i32(bytes).i32Mul().set(base);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(dst).get(base).i32Add().get(i).i32Add();
      f.get(a).get(base).i32Add().get(i).i32Add().v128Load(o);
      f.get(b).get(i).i32Add().v128Load(o);
      f.f32x4Sub().v128Store(o);
    });
    f.get(r).i32(1).i32Add().set(r);
    f.br(0);
    f.end();
    f.end();
    fns.push(f);
  }
  {
    // projRow(g, w): g -= (g·w) w
    const f = new Fn('projRow', [I32, I32], []);
    const [g, w] = [0, 1];
    const acc = Array.from({ length: U }, () => f.local(V128));
    const i = f.local(I32);
    const dv = f.local(V128);
    for (const a of acc) f.f32(0).f32x4Splat().set(a);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(acc[u]).get(g).get(i).i32Add().v128Load(o).get(w).get(i).i32Add().v128Load(o).f32x4Mul().f32x4Add().set(acc[u]);
    });
    for (let u = 1; u < U; u++) f.get(acc[0]).get(acc[u]).f32x4Add().set(acc[0]);
    hsum(f, acc[0]);
    f.f32x4Splat().set(dv);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(g).get(i).i32Add();
      f.get(g).get(i).i32Add().v128Load(o).get(dv).get(w).get(i).i32Add().v128Load(o).f32x4Mul().f32x4Sub();
      f.v128Store(o);
    });
    fns.push(f);
  }
  {
    // normRow(w): w /= ||w||
    const f = new Fn('normRow', [I32], []);
    const w = 0;
    const acc = Array.from({ length: U }, () => f.local(V128));
    const i = f.local(I32);
    const s = f.local(F32);
    const iv = f.local(V128);
    for (const a of acc) f.f32(0).f32x4Splat().set(a);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(w).get(i).i32Add().v128Load(o).set(iv);
      f.get(acc[u]).get(iv).get(iv).f32x4Mul().f32x4Add().set(acc[u]);
    });
    for (let u = 1; u < U; u++) f.get(acc[0]).get(acc[u]).f32x4Add().set(acc[0]);
    hsum(f, acc[0]);
    f.tee(s).f32(0).f32Gt().if_();
    f.f32(1).get(s).f32Sqrt().f32Div().f32x4Splat().set(iv);
    vecLoop(f, i, bytes, U, (u) => {
      const o = 16 * u;
      f.get(w).get(i).i32Add();
      f.get(w).get(i).i32Add().v128Load(o).get(iv).f32x4Mul();
      f.v128Store(o);
    });
    f.end();
    fns.push(f);
  }
  {
    // adam(p, g, mo, vo, n4, b1, b2, step, rsb2, eps):
    //   m = b1 m + (1 − b1) g;  v = b2 v + (1 − b2) g²;  p −= step · m / (sqrt(v) · rsb2 + eps)
    // (step = lr / (1 − b1^t), rsb2 = 1 / sqrt(1 − b2^t): PyTorch's Adam)
    const f = new Fn('adam', [I32, I32, I32, I32, I32, F32, F32, F32, F32, F32], []);
    const [p, g, mo, vo, n4, b1, b2, step, rsb2, eps] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const i = f.local(I32);
    const end = f.local(I32);
    const vb1 = f.local(V128);
    const vb2 = f.local(V128);
    const vc1 = f.local(V128);
    const vc2 = f.local(V128);
    const vst = f.local(V128);
    const vr = f.local(V128);
    const ve = f.local(V128);
    const gv = f.local(V128);
    const mv = f.local(V128);
    const vv = f.local(V128);
    f.get(b1).f32x4Splat().set(vb1);
    f.get(b2).f32x4Splat().set(vb2);
    f.f32(1).get(b1).f32Sub().f32x4Splat().set(vc1);
    f.f32(1).get(b2).f32Sub().f32x4Splat().set(vc2);
    f.get(step).f32x4Splat().set(vst);
    f.get(rsb2).f32x4Splat().set(vr);
    f.get(eps).f32x4Splat().set(ve);
    f.get(n4).i32(4).i32Shl().set(end);
    f.i32(0).set(i);
    f.block();
    f.loop();
    f.get(i).get(end).i32GeS().brIf(1);
    f.get(g).get(i).i32Add().v128Load().set(gv);
    f.get(vb1).get(mo).get(i).i32Add().v128Load().f32x4Mul().get(vc1).get(gv).f32x4Mul().f32x4Add().set(mv);
    f.get(vb2).get(vo).get(i).i32Add().v128Load().f32x4Mul().get(vc2).get(gv).get(gv).f32x4Mul().f32x4Mul().f32x4Add().set(vv);
    f.get(mo).get(i).i32Add().get(mv).v128Store();
    f.get(vo).get(i).i32Add().get(vv).v128Store();
    f.get(p).get(i).i32Add();
    f.get(p).get(i).i32Add().v128Load();
    f.get(vst).get(mv).f32x4Mul();
    f.get(vv).f32x4Sqrt().get(vr).f32x4Mul().get(ve).f32x4Add();
    f.f32x4Div().f32x4Sub();
    f.v128Store();
    f.get(i).i32(16).i32Add().set(i);
    f.br(0);
    f.end();
    f.end();
    fns.push(f);
  }
  // scoreSparse: the g-SAE's exact scores of scanned candidates (WasmSelector, sparse mode), in
  // float64 with the operations of the TypeScript loop it replaces, in the same order
  {
    const dotIndex = fns.findIndex((fn) => fn.name === 'dot');
    const f = new Fn('scoreSparse', [I32, I32, I32, I32, I32, I32, I32, F64, F64, F64, I32, I32, I32], [I32]);
    const [cand, got, u, be, wd, g, rowBytes, beta, gB, thr, cs, ci, n0] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const t = f.local(I32);
    const jj = f.local(I32);
    const n = f.local(I32);
    const z = f.local(F64);
    const sc = f.local(F64);
    const scored = f.local(I32);
    f.get(n0).set(n);
    f.i32(0).set(t);
    f.i32(0).set(scored);
    f.block().loop();
    f.get(t).get(got).i32GeS().brIf(1);
    // jj = cand[t]; z = u[jj] + be[jj] (float32 values, added in float64)
    f.get(cand).get(t).i32(2).i32Shl().i32Add().i32Load().set(jj);
    f.get(u).get(jj).i32(2).i32Shl().i32Add().f32Load().f64PromoteF32();
    f.get(be).get(jj).i32(2).i32Shl().i32Add().f32Load().f64PromoteF32().f64Add().set(z);
    // if (z > 0 && !(z * gB <= thr))
    f.get(z).f64(0).f64Gt().if_();
    f.get(z).get(gB).f64Mul().get(thr).f64Le().i32Eqz().if_();
    f.get(scored).i32(1).i32Add().set(scored);
    // s = z + beta * z * |W_dec[jj] · g|
    f.get(z).get(beta).get(z).f64Mul();
    f.get(wd).get(jj).get(rowBytes).i32Mul().i32Add().get(g).call(dotIndex).f64PromoteF32().f64Abs();
    f.f64Mul().f64Add().set(sc);
    f.get(sc).get(thr).f64Gt().if_();
    f.get(cs).get(n).i32(3).i32Shl().i32Add().get(sc).f64Store();
    f.get(ci).get(n).i32(2).i32Shl().i32Add().get(jj).i32Store();
    f.get(n).i32(1).i32Add().set(n);
    f.end();
    f.end();
    f.end();
    f.get(t).i32(1).i32Add().set(t);
    f.br(0).end().end();
    globalSet(f.get(scored), 1);
    f.get(n);
    fns.push(f);
  }
  return assemble(fns, { min: memPages.min, max: memPages.max, shared: memPages.shared ?? true }, ['stop', 'scored']);
}
