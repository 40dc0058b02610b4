/**
 * A minimal ONNX model writer: just enough protobuf to build small graphs of standard operators
 * (MatMul, Gemm, Softmax, ...) in memory, with no onnx package. Field numbers follow onnx.proto3
 * (ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto, TensorProto).
 */

class PbWriter {
  private parts: number[] = [];

  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) b |= 0x80;
      this.parts.push(b);
    } while (x !== 0n);
    return this;
  }

  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    return this.tag(field, 0).varint(v);
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    for (const x of b) this.parts.push(x);
    return this;
  }

  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  msg(field: number, m: PbWriter): this {
    return this.bytes(field, m.finish());
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(new Float32Array([v]).buffer);
    for (const x of b) this.parts.push(x);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** A graph input/output: a float32 (or int64 / int32) tensor of fixed or symbolic dims. */
export interface ValueInfo {
  name: string;
  dims: (number | string)[];
  /** ONNX TensorProto.DataType: 1 float, 6 int32, 7 int64. Default 1. */
  type?: number;
}

export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
}

export interface InitializerSpec {
  name: string;
  dims: number[];
  /** int64 values (for Reshape shapes and the like) or float32 values. */
  int64?: number[];
  float?: Float32Array;
}

function valueInfo(v: ValueInfo): PbWriter {
  const shape = new PbWriter();
  for (const d of v.dims) shape.msg(1, typeof d === 'number' ? new PbWriter().int(1, d) : new PbWriter().str(2, d));
  const tensorType = new PbWriter().int(1, v.type ?? 1).msg(2, shape);
  return new PbWriter().str(1, v.name).msg(2, new PbWriter().msg(1, tensorType));
}

function attribute(name: string, v: AttrValue): PbWriter {
  const a = new PbWriter().str(1, name);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`onnx attribute ${name}: use { float } for non-integers`);
    a.int(3, v).int(20, 2);
  } else if (typeof v === 'string') a.str(4, v).int(20, 3);
  else if (Array.isArray(v)) {
    for (const x of v) a.int(8, x);
    a.int(20, 7);
  } else if ('float' in v) a.float(2, v.float).int(20, 1);
  else {
    for (const x of v.floats) a.float(7, x);
    a.int(20, 6);
  }
  return a;
}

/** Serialise a model (ir_version 8, default-domain opset `opset`). */
export function onnxModel(g: { inputs: ValueInfo[]; outputs: ValueInfo[]; nodes: NodeSpec[]; initializers?: InitializerSpec[] }, opset = 17): Uint8Array {
  const graph = new PbWriter();
  g.nodes.forEach((n, i) => {
    const node = new PbWriter();
    for (const x of n.inputs) node.str(1, x);
    for (const x of n.outputs) node.str(2, x);
    node.str(3, `n${i}`).str(4, n.op);
    for (const [k, v] of Object.entries(n.attrs ?? {})) node.msg(5, attribute(k, v));
    graph.msg(1, node);
  });
  graph.str(2, 'g');
  for (const t of g.initializers ?? []) {
    const tp = new PbWriter();
    for (const d of t.dims) tp.int(1, d);
    if (t.int64) {
      tp.int(2, 7).str(8, t.name);
      const raw = new BigInt64Array(t.int64.map((x) => BigInt(x)));
      tp.bytes(9, new Uint8Array(raw.buffer));
    } else {
      tp.int(2, 1).str(8, t.name);
      const f = t.float ?? new Float32Array(0);
      tp.bytes(9, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
    }
    graph.msg(5, tp);
  }
  for (const v of g.inputs) graph.msg(11, valueInfo(v));
  for (const v of g.outputs) graph.msg(12, valueInfo(v));
  return new PbWriter().int(1, 8).str(2, 'gsae-repro').msg(7, graph).msg(8, new PbWriter().str(1, '').int(2, opset)).finish();
}
