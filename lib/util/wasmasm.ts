/**
 * A tiny WebAssembly binary assembler: just what the SAE's SIMD kernels and the LM's AdamW kernel
 * need (i32/f32 scalar ops, structured control flow, f32x4 and f64x2 SIMD), so the kernels can be
 * generated at run time, specialised for the model width d, with no build step and no dependency. Opcodes follow the WebAssembly
 * core spec (2.0, with fixed-width SIMD).
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof F64 | typeof V128;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function str(s: string): number[] {
  const b = Array.from(new TextEncoder().encode(s));
  return [...uleb(b.length), ...b];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** Function body builder. Locals: params first, then declared locals, by index. */
export class Fn {
  readonly code: number[] = [];
  readonly locals: ValType[] = [];
  constructor(
    readonly name: string,
    readonly params: ValType[],
    readonly results: ValType[],
  ) {}

  local(t: ValType): number {
    this.locals.push(t);
    return this.params.length + this.locals.length - 1;
  }

  private op(...b: number[]): this {
    this.code.push(...b);
    return this;
  }
  private simd(op: number, ...rest: number[]): this {
    return this.op(0xfd, ...uleb(op), ...rest);
  }

  // --- variables and constants
  get(i: number) {
    return this.op(0x20, ...uleb(i));
  }
  set(i: number) {
    return this.op(0x21, ...uleb(i));
  }
  tee(i: number) {
    return this.op(0x22, ...uleb(i));
  }
  i32(v: number) {
    return this.op(0x41, ...sleb(v | 0));
  }
  f32(v: number) {
    const b = new Uint8Array(new Float32Array([v]).buffer);
    return this.op(0x43, ...b);
  }
  f64(v: number) {
    const b = new Uint8Array(new Float64Array([v]).buffer);
    return this.op(0x44, ...b);
  }
  // --- control
  /** call function `index` (its position in the module's function list). */
  call(index: number) {
    return this.op(0x10, ...uleb(index));
  }
  block() {
    return this.op(0x02, 0x40);
  }
  loop() {
    return this.op(0x03, 0x40);
  }
  if_() {
    return this.op(0x04, 0x40);
  }
  else_() {
    return this.op(0x05);
  }
  end() {
    return this.op(0x0b);
  }
  br(depth: number) {
    return this.op(0x0c, ...uleb(depth));
  }
  brIf(depth: number) {
    return this.op(0x0d, ...uleb(depth));
  }
  ret() {
    return this.op(0x0f);
  }
  drop() {
    return this.op(0x1a);
  }
  // --- memory (memarg: align log2, offset)
  f32Load(offset = 0) {
    return this.op(0x2a, 2, ...uleb(offset));
  }
  f32Store(offset = 0) {
    return this.op(0x38, 2, ...uleb(offset));
  }
  f64Load(offset = 0) {
    return this.op(0x2b, 3, ...uleb(offset));
  }
  f64Store(offset = 0) {
    return this.op(0x39, 3, ...uleb(offset));
  }
  i32Load(offset = 0) {
    return this.op(0x28, 2, ...uleb(offset));
  }
  i32Store(offset = 0) {
    return this.op(0x36, 2, ...uleb(offset));
  }
  // --- i32
  i32Add() {
    return this.op(0x6a);
  }
  i32Sub() {
    return this.op(0x6b);
  }
  i32Mul() {
    return this.op(0x6c);
  }
  i32Shl() {
    return this.op(0x74);
  }
  i32LtS() {
    return this.op(0x48);
  }
  i32GeS() {
    return this.op(0x4e);
  }
  i32GtS() {
    return this.op(0x4a);
  }
  i32And() {
    return this.op(0x71);
  }
  i32Eq() {
    return this.op(0x46);
  }
  i32Eqz() {
    return this.op(0x45);
  }
  // --- f32
  f32Add() {
    return this.op(0x92);
  }
  f32Sub() {
    return this.op(0x93);
  }
  f32Mul() {
    return this.op(0x94);
  }
  f32Gt() {
    return this.op(0x5e);
  }
  f32Div() {
    return this.op(0x95);
  }
  f32Sqrt() {
    return this.op(0x91);
  }
  // --- f64
  f64PromoteF32() {
    return this.op(0xbb);
  }
  f64Add() {
    return this.op(0xa0);
  }
  f64Mul() {
    return this.op(0xa2);
  }
  f64Gt() {
    return this.op(0x64);
  }
  f64Le() {
    return this.op(0x65);
  }
  f64Abs() {
    return this.op(0x99);
  }
  // --- v128 / f32x4
  v128Load(offset = 0) {
    return this.simd(0x00, 4, ...uleb(offset));
  }
  v128Store(offset = 0) {
    return this.simd(0x0b, 4, ...uleb(offset));
  }
  f32x4Splat() {
    return this.simd(0x13);
  }
  f32x4Extract(lane: number) {
    return this.simd(0x1f, lane);
  }
  f32x4Gt() {
    return this.simd(0x44);
  }
  v128And() {
    return this.simd(0x4e);
  }
  v128Or() {
    return this.simd(0x50);
  }
  v128AnyTrue() {
    return this.simd(0x53);
  }
  i32x4Bitmask() {
    return this.simd(0xa4);
  }
  f32x4Abs() {
    return this.simd(0xe0);
  }
  f32x4Sqrt() {
    return this.simd(0xe3);
  }
  f32x4Add() {
    return this.simd(0xe4);
  }
  f32x4Sub() {
    return this.simd(0xe5);
  }
  f32x4Mul() {
    return this.simd(0xe6);
  }
  f32x4Div() {
    return this.simd(0xe7);
  }
  // --- f64x2 (two float32 in memory <-> one f64x2)
  /** v128.load64_zero: 8 bytes into the low half. */
  v128Load64Zero(offset = 0) {
    return this.simd(0x5d, 3, ...uleb(offset));
  }
  /** v128.store64_lane: the low 8 bytes (lane 0). */
  v128Store64Lane0(offset = 0) {
    return this.simd(0x5b, 3, ...uleb(offset), 0);
  }
  f64x2PromoteLowF32x4() {
    return this.simd(0x5f);
  }
  f32x4DemoteF64x2Zero() {
    return this.simd(0x5e);
  }
  f64x2Splat() {
    return this.simd(0x14);
  }
  f64x2Sqrt() {
    return this.simd(0xef);
  }
  f64x2Add() {
    return this.simd(0xf0);
  }
  f64x2Sub() {
    return this.simd(0xf1);
  }
  f64x2Mul() {
    return this.simd(0xf2);
  }
  f64x2Div() {
    return this.simd(0xf3);
  }
}

/**
 * Assemble a module importing a memory (env.memory; shared when `shared`) and exporting the
 * functions under their names. Mutable i32 globals may be declared (exported as well).
 */
export function assemble(fns: Fn[], mem: { min: number; max: number; shared: boolean }, globals: string[] = []): Uint8Array<ArrayBuffer> {
  const types: number[][] = fns.map((f) => [0x60, ...uleb(f.params.length), ...f.params, ...uleb(f.results.length), ...f.results]);
  const typeSec = section(1, [...uleb(types.length), ...types.flat()]);
  const limits = mem.shared ? [0x03, ...uleb(mem.min), ...uleb(mem.max)] : [0x01, ...uleb(mem.min), ...uleb(mem.max)];
  const importSec = section(2, [...uleb(1), ...str('env'), ...str('memory'), 0x02, ...limits]);
  const funcSec = section(3, [...uleb(fns.length), ...fns.flatMap((_, i) => uleb(i))]);
  const globalSec = section(6, [...uleb(globals.length), ...globals.flatMap(() => [I32, 0x01, 0x41, 0x00, 0x0b])]);
  const exports: number[] = [];
  fns.forEach((f, i) => exports.push(...str(f.name), 0x00, ...uleb(i)));
  globals.forEach((g, i) => exports.push(...str(g), 0x03, ...uleb(i)));
  const exportSec = section(7, [...uleb(fns.length + globals.length), ...exports]);
  const bodies = fns.map((f) => {
    // group consecutive locals of the same type
    const groups: [number, ValType][] = [];
    for (const t of f.locals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    const body = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n), t]), ...f.code, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const codeSec = section(10, [...uleb(bodies.length), ...bodies.flat()]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...typeSec, ...importSec, ...funcSec, ...globalSec, ...exportSec, ...codeSec]);
}

/** global.get / global.set helpers (globals are indexed in declaration order). */
export function globalGet(f: Fn, i: number): Fn {
  f.code.push(0x23, ...uleb(i));
  return f;
}
export function globalSet(f: Fn, i: number): Fn {
  f.code.push(0x24, ...uleb(i));
  return f;
}
