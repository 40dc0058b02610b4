/**
 * Activation (+ gradient) shards on disk, and seeded shuffled row streams over them.
 *
 * Layout of a shard directory:
 *   manifest.json          {format, d, dtype, rows, rows_per_shard, has_grad, complete,
 *                           shards: [{x, g, rows, x_scale?, g_scale?}], mean_norm_x, mean_norm_g,
 *                           sum_norm_x, sum_norm_g, ...extra}
 *   x_00000.bin            rows × d, row-major, little-endian float32 or float16
 *   g_00000.bin            same for the gradient (absent when has_grad is false)
 * float16 shards are stored with a power-of-two scale per shard and array (`x_scale`, `g_scale`:
 * stored = value × scale, exact in binary) so large residual values cannot overflow and small
 * gradients keep their precision; decoding divides by the scale.
 *
 * Writing: ShardWriter keeps at most one shard in memory. After each complete shard it writes the
 * shard files (via temp file + rename) and then manifest.json with `complete: false`, atomically,
 * so a killed writer can be resumed (`ShardWriter.resume(dir)`) from its last complete shard:
 * `writer.rows` says how many input rows are safely stored, the caller restarts from that row.
 * `finish(extra)` flushes the last (short) shard and writes the final manifest (`complete: true`).
 *
 * Reading: ShardReader(dir) reads the manifest, `readShard(i)` decodes a shard to Float32Arrays,
 * and `stream(seed, start)` gives an endless, seeded, shuffled stream of rows (see RowSource).
 * Shuffling choice: if all shards fit in `maxMemoryBytes` (default 4 GiB, as float32; 500k rows ×
 * d=128 × (x + g) = 512 MB), everything is loaded once and each epoch is a full uniform permutation
 * of all rows. Otherwise shards are grouped in windows of as many shards as fit; each epoch visits
 * the shards in a seeded order, window by window, with the rows shuffled inside each window.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../base/atomic.ts';
import { deriveSeed, mulberry32 } from './util/random.ts';

export type ShardDtype = 'float32' | 'float16';

export interface ShardEntry {
  x: string;
  g: string | null;
  rows: number;
  /** float16 only: stored = x × x_scale (a power of two). */
  x_scale?: number;
  g_scale?: number;
}

export interface ShardManifest {
  format: 'gsae-shards-v1';
  d: number;
  dtype: ShardDtype;
  rows: number;
  rows_per_shard: number;
  has_grad: boolean;
  complete: boolean;
  shards: ShardEntry[];
  /** Mean over rows of ‖x‖₂ and ‖g‖₂ (0 when there is no gradient). */
  mean_norm_x: number;
  mean_norm_g: number;
  sum_norm_x: number;
  sum_norm_g: number;
  [extra: string]: unknown;
}

export interface ShardWriterOptions {
  d: number;
  rowsPerShard: number;
  dtype?: ShardDtype;
}

const MANIFEST = 'manifest.json';

// ---------------------------------------------------------------------------------------------
// float16 <-> float32

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** IEEE binary16 bits of a number, round to nearest even (overflow → ±inf). */
export function floatToHalfBits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is correct rounding
  return sign | h;
}

let halfTable: Float32Array | null = null;
/** float32 value of every binary16 bit pattern. */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const f = h & 0x3ff;
    if (e === 0) t[h] = s * f * 2 ** -24;
    else if (e === 31) t[h] = f ? NaN : s * Infinity;
    else t[h] = s * (1 + f / 1024) * 2 ** (e - 15);
  }
  halfTable = t;
  return t;
}

export function halfBitsToFloat(h: number): number {
  return halfToFloatTable()[h & 0xffff];
}

/** Power-of-two scale so that max|v| × scale ≤ 2^15 (float16 max is 65504). 1 for all-zero data. */
function halfScale(v: Float32Array): number {
  let mx = 0;
  for (let i = 0; i < v.length; i++) {
    const a = Math.abs(v[i]);
    if (a > mx) mx = a;
  }
  if (!(mx > 0) || !Number.isFinite(mx)) return 1;
  return 2 ** (15 - Math.ceil(Math.log2(mx)));
}

function encode(v: Float32Array, dtype: ShardDtype): { bytes: Uint8Array; scale?: number } {
  if (dtype === 'float32') {
    return { bytes: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  }
  const scale = halfScale(v);
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = floatToHalfBits(v[i] * scale);
  return { bytes: new Uint8Array(out.buffer), scale };
}

function decode(buf: Buffer, dtype: ShardDtype, count: number, scale = 1): Float32Array {
  if (dtype === 'float32') {
    if (buf.byteLength !== count * 4) throw new Error(`shard: expected ${count * 4} bytes, found ${buf.byteLength}`);
    const out = new Float32Array(count);
    new Uint8Array(out.buffer).set(buf);
    return out;
  }
  if (buf.byteLength !== count * 2) throw new Error(`shard: expected ${count * 2} bytes, found ${buf.byteLength}`);
  const table = halfToFloatTable();
  const h = new Uint16Array(count);
  new Uint8Array(h.buffer).set(buf);
  const out = new Float32Array(count);
  const inv = 1 / scale; // exact: scale is a power of two
  for (let i = 0; i < count; i++) out[i] = table[h[i]] * inv;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

export class ShardWriter {
  readonly dir: string;
  readonly d: number;
  readonly rowsPerShard: number;
  readonly dtype: ShardDtype;
  private hasGrad: boolean | null = null;
  private shards: ShardEntry[] = [];
  private rowsComplete = 0;
  private sumNormX = 0;
  private sumNormG = 0;
  private bufX: Float32Array;
  private bufG: Float32Array | null = null;
  private bufRows = 0;
  private bufSumX = 0;
  private bufSumG = 0;
  private done = false;

  constructor(dir: string, opts: ShardWriterOptions) {
    const { d, rowsPerShard } = opts;
    if (!(Number.isInteger(d) && d > 0)) throw new Error(`ShardWriter: d must be a positive integer, got ${d}`);
    if (!(Number.isInteger(rowsPerShard) && rowsPerShard > 0)) {
      throw new Error(`ShardWriter: rowsPerShard must be a positive integer, got ${rowsPerShard}`);
    }
    const dtype = opts.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'float16') throw new Error(`ShardWriter: dtype must be float32 or float16`);
    this.dir = dir;
    this.d = d;
    this.rowsPerShard = rowsPerShard;
    this.dtype = dtype;
    this.bufX = new Float32Array(rowsPerShard * d);
    fs.mkdirSync(dir, { recursive: true });
  }

  /**
   * Reopen an interrupted (or finished) writer. Returns null when `dir` has no manifest.
   * `writer.rows` = rows stored in complete shards; rows appended after the last complete shard
   * were lost and must be appended again. A finished directory gives `finished === true`.
   */
  static resume(dir: string): ShardWriter | null {
    const file = path.join(dir, MANIFEST);
    if (!fs.existsSync(file)) return null;
    const man = JSON.parse(fs.readFileSync(file, 'utf8')) as ShardManifest;
    const w = new ShardWriter(dir, { d: man.d, rowsPerShard: man.rows_per_shard, dtype: man.dtype });
    w.shards = man.shards.slice();
    w.rowsComplete = man.rows;
    w.sumNormX = man.sum_norm_x;
    w.sumNormG = man.sum_norm_g;
    w.hasGrad = man.shards.length > 0 || man.complete ? man.has_grad : null;
    w.done = man.complete;
    return w;
  }

  /** Rows safely written in complete shards plus rows waiting in the current shard buffer. */
  get rows(): number {
    return this.rowsComplete + this.bufRows;
  }

  /** Rows stored on disk (complete shards only). */
  get rowsOnDisk(): number {
    return this.rowsComplete;
  }

  get finished(): boolean {
    return this.done;
  }

  /** Append rows: x [rows, d]; g [rows, d] or null (then every append must pass null). */
  append(x: Float32Array, g: Float32Array | null): void {
    if (this.done) throw new Error('ShardWriter: already finished');
    const d = this.d;
    if (x.length % d !== 0) throw new Error(`ShardWriter.append: x has ${x.length} values, not a multiple of d=${d}`);
    if (g && g.length !== x.length) throw new Error('ShardWriter.append: g and x differ in length');
    const withG = g !== null;
    if (this.hasGrad === null) this.hasGrad = withG;
    if (this.hasGrad !== withG) {
      throw new Error(`ShardWriter.append: this writer ${this.hasGrad ? 'stores' : 'has no'} gradients; got g=${withG ? 'array' : 'null'}`);
    }
    if (withG && !this.bufG) this.bufG = new Float32Array(this.rowsPerShard * d);
    const n = x.length / d;
    let r = 0;
    while (r < n) {
      const take = Math.min(n - r, this.rowsPerShard - this.bufRows);
      this.bufX.set(x.subarray(r * d, (r + take) * d), this.bufRows * d);
      if (withG) this.bufG!.set(g!.subarray(r * d, (r + take) * d), this.bufRows * d);
      for (let t = 0; t < take; t++) {
        this.bufSumX += rowNorm(x, (r + t) * d, d);
        if (withG) this.bufSumG += rowNorm(g!, (r + t) * d, d);
      }
      this.bufRows += take;
      r += take;
      if (this.bufRows === this.rowsPerShard) this.flush();
    }
  }

  private flush(): void {
    if (this.bufRows === 0) return;
    const i = this.shards.length;
    const name = (p: string) => `${p}_${String(i).padStart(5, '0')}.bin`;
    const n = this.bufRows * this.d;
    const ex = encode(this.bufX.subarray(0, n), this.dtype);
    writeFileAtomicSync(path.join(this.dir, name('x')), ex.bytes);
    const entry: ShardEntry = { x: name('x'), g: null, rows: this.bufRows };
    if (ex.scale !== undefined) entry.x_scale = ex.scale;
    if (this.hasGrad) {
      const eg = encode(this.bufG!.subarray(0, n), this.dtype);
      writeFileAtomicSync(path.join(this.dir, name('g')), eg.bytes);
      entry.g = name('g');
      if (eg.scale !== undefined) entry.g_scale = eg.scale;
    }
    this.shards.push(entry);
    this.rowsComplete += this.bufRows;
    this.sumNormX += this.bufSumX;
    this.sumNormG += this.bufSumG;
    this.bufRows = 0;
    this.bufSumX = 0;
    this.bufSumG = 0;
    this.writeManifest(false, {});
  }

  private writeManifest(complete: boolean, extra: Record<string, unknown>): ShardManifest {
    const rows = this.rowsComplete;
    const man: ShardManifest = {
      ...extra,
      format: 'gsae-shards-v1',
      d: this.d,
      dtype: this.dtype,
      rows,
      rows_per_shard: this.rowsPerShard,
      has_grad: this.hasGrad ?? false,
      complete,
      shards: this.shards,
      mean_norm_x: rows > 0 ? this.sumNormX / rows : 0,
      mean_norm_g: rows > 0 && this.hasGrad ? this.sumNormG / rows : 0,
      sum_norm_x: this.sumNormX,
      sum_norm_g: this.sumNormG,
    };
    writeFileAtomicSync(path.join(this.dir, MANIFEST), JSON.stringify(man, null, 1));
    return man;
  }

  /** Flush the last shard and write the final manifest (extra fields are merged in). */
  finish(extra: Record<string, unknown> = {}): ShardManifest {
    if (this.done) {
      const man = JSON.parse(fs.readFileSync(path.join(this.dir, MANIFEST), 'utf8')) as ShardManifest;
      return man;
    }
    this.flush();
    this.done = true;
    return this.writeManifest(true, extra);
  }
}

function rowNorm(a: Float32Array, off: number, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += a[off + i] * a[off + i];
  return Math.sqrt(s);
}

// ---------------------------------------------------------------------------------------------
// Row sources and streams (what the SAE trainer consumes)

/** A stream position → rows mapping; read() copies the next n rows and advances. */
export interface RowStream {
  /** Absolute position in the endless stream (rows read since position 0 of epoch 0). */
  readonly position: number;
  read(n: number, x: Float32Array, g: Float32Array | null): void;
}

/**
 * Rows of activations (and gradients) that can be streamed in a seeded shuffled order.
 * stream(seed, start): epoch e = floor(p / rows) of the endless stream is a seeded permutation
 * (see the file header); the same (seed, start) always gives the same rows, so a trainer can
 * resume from a stored position without any other random state.
 */
export interface RowSource {
  readonly d: number;
  readonly rows: number;
  readonly hasGrad: boolean;
  /** Mean ‖x‖ over all rows, when known. */
  readonly meanNormX?: number;
  /** withGrad false: the stream is read with g = null only (a source may then skip loading g). */
  stream(seed: number, start?: number, withGrad?: boolean): RowStream;
}

interface Window {
  x: Float32Array;
  g: Float32Array | null;
  rows: number;
}

/**
 * Generic windowed shuffle. An epoch is split into windows (lists of shard ids, in a per-epoch
 * seeded order unless there is a single window); rows are permuted within each window.
 */
class WindowedStream implements RowStream {
  private pos: number;
  private cur: { epoch: number; w: number; perm: Int32Array; win: Window; start: number } | null = null;
  constructor(
    private readonly src: {
      d: number;
      rows: number;
      shardRows: number[];
      windowShards: number;
      load(ids: number[]): Window;
    },
    private readonly seed: number,
    start: number,
  ) {
    if (!(src.rows > 0)) throw new Error('row stream: the source has no rows');
    this.pos = start;
  }

  get position(): number {
    return this.pos;
  }

  /** Shard ids of each window of epoch e, and their row counts. */
  private windows(epoch: number): number[][] {
    const n = this.src.shardRows.length;
    const ids = Array.from({ length: n }, (_, i) => i);
    if (this.src.windowShards >= n) return [ids];
    const rng = mulberry32(deriveSeed(this.seed, `shard-order/${epoch}`));
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [ids[i], ids[j]] = [ids[j], ids[i]];
    }
    const out: number[][] = [];
    for (let i = 0; i < n; i += this.src.windowShards) out.push(ids.slice(i, i + this.src.windowShards));
    return out;
  }

  private locate(p: number): void {
    const epoch = Math.floor(p / this.src.rows);
    const off = p - epoch * this.src.rows;
    if (this.cur && this.cur.epoch === epoch && off >= this.cur.start && off < this.cur.start + this.cur.win.rows) return;
    const wins = this.windows(epoch);
    let start = 0;
    for (let w = 0; w < wins.length; w++) {
      const rows = wins[w].reduce((s, i) => s + this.src.shardRows[i], 0);
      if (off < start + rows) {
        const sameData = this.cur && this.cur.win.rows === rows && wins.length === 1;
        const win = sameData ? this.cur!.win : this.src.load(wins[w]);
        const perm = new Int32Array(rows);
        for (let i = 0; i < rows; i++) perm[i] = i;
        const rng = mulberry32(deriveSeed(this.seed, `rows/${epoch}/${w}`));
        for (let i = rows - 1; i > 0; i--) {
          const j = Math.floor(rng() * (i + 1));
          const t = perm[i];
          perm[i] = perm[j];
          perm[j] = t;
        }
        this.cur = { epoch, w, perm, win, start };
        return;
      }
      start += rows;
    }
    throw new Error('row stream: internal error locating a row');
  }

  read(n: number, x: Float32Array, g: Float32Array | null): void {
    const d = this.src.d;
    if (x.length < n * d || (g && g.length < n * d)) throw new Error('row stream: output buffer too small');
    let r = 0;
    while (r < n) {
      this.locate(this.pos);
      const c = this.cur!;
      const epoch = Math.floor(this.pos / this.src.rows);
      const off = this.pos - epoch * this.src.rows - c.start;
      const take = Math.min(n - r, c.win.rows - off);
      if (g && !c.win.g) throw new Error('row stream: the source has no gradients');
      for (let t = 0; t < take; t++) {
        const src = c.perm[off + t] * d;
        x.set(c.win.x.subarray(src, src + d), (r + t) * d);
        if (g) g.set(c.win.g!.subarray(src, src + d), (r + t) * d);
      }
      r += take;
      this.pos += take;
    }
  }
}

/** Fill `out` with the whole of `file`, which must be exactly out.byteLength bytes long. */
function readFileInto(file: string, out: Uint8Array): void {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size !== out.byteLength) throw new Error(`shard: expected ${out.byteLength} bytes, found ${size} in ${file}`);
    let got = 0;
    while (got < out.byteLength) {
      const n = fs.readSync(fd, out, got, out.byteLength - got, got);
      if (n === 0) throw new Error(`shard: ${file} ended after ${got} of ${out.byteLength} bytes`);
      got += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** In-memory rows as a RowSource (one window: every epoch is a full permutation). */
export class MemoryRows implements RowSource {
  readonly rows: number;
  readonly hasGrad: boolean;
  readonly meanNormX: number;
  constructor(
    readonly d: number,
    readonly x: Float32Array,
    readonly g: Float32Array | null = null,
  ) {
    if (x.length % d !== 0) throw new Error(`MemoryRows: x has ${x.length} values, not a multiple of d=${d}`);
    if (g && g.length !== x.length) throw new Error('MemoryRows: g and x differ in length');
    this.rows = x.length / d;
    this.hasGrad = g !== null;
    let s = 0;
    for (let r = 0; r < this.rows; r++) s += rowNorm(x, r * d, d);
    this.meanNormX = this.rows > 0 ? s / this.rows : 0;
  }
  stream(seed: number, start = 0): RowStream {
    const win: Window = { x: this.x, g: this.g, rows: this.rows };
    return new WindowedStream(
      { d: this.d, rows: this.rows, shardRows: [this.rows], windowShards: 1, load: () => win },
      seed,
      start,
    );
  }
}

export interface ShardReaderOptions {
  /** Accept a manifest with complete: false (an interrupted writer). Default false. */
  allowIncomplete?: boolean;
  /** Memory budget for the shuffle window, in bytes of float32 data (x and g). Default 4 GiB. */
  maxMemoryBytes?: number;
}

export class ShardReader implements RowSource {
  readonly dir: string;
  readonly manifest: ShardManifest;
  readonly d: number;
  readonly rows: number;
  readonly hasGrad: boolean;
  readonly meanNormX: number;
  readonly meanNormG: number;
  private readonly maxMemoryBytes: number;
  private all: Window | null = null;

  constructor(dir: string, opts: ShardReaderOptions = {}) {
    const file = path.join(dir, MANIFEST);
    if (!fs.existsSync(file)) throw new Error(`ShardReader: no ${MANIFEST} in ${dir}`);
    const man = JSON.parse(fs.readFileSync(file, 'utf8')) as ShardManifest;
    if (man.format !== 'gsae-shards-v1') throw new Error(`ShardReader: ${file} is not a gsae-shards-v1 manifest`);
    if (!man.complete && !opts.allowIncomplete) {
      throw new Error(`ShardReader: ${dir} is incomplete (the writer did not finish); pass allowIncomplete to read it`);
    }
    this.dir = dir;
    this.manifest = man;
    this.d = man.d;
    this.rows = man.rows;
    this.hasGrad = man.has_grad;
    this.meanNormX = man.mean_norm_x;
    this.meanNormG = man.mean_norm_g;
    this.maxMemoryBytes = opts.maxMemoryBytes ?? 4 * 1024 ** 3;
  }

  get numShards(): number {
    return this.manifest.shards.length;
  }

  /** Decode shard i to float32: x [rows, d], g [rows, d] or null. */
  readShard(i: number): { x: Float32Array; g: Float32Array | null; rows: number } {
    const s = this.manifest.shards[i];
    if (!s) throw new Error(`ShardReader: no shard ${i} (there are ${this.numShards})`);
    const count = s.rows * this.d;
    const x = new Float32Array(count);
    const g = s.g ? new Float32Array(count) : null;
    this.readShardInto(i, x, g, 0);
    return { x, g, rows: s.rows };
  }

  /**
   * Decode shard i into x (and g, when given and the shard has gradients) from value offset off.
   * float32 shards are read straight into the arrays (no intermediate buffer).
   */
  private readShardInto(i: number, x: Float32Array, g: Float32Array | null, off: number): void {
    const s = this.manifest.shards[i];
    if (!s) throw new Error(`ShardReader: no shard ${i} (there are ${this.numShards})`);
    const count = s.rows * this.d;
    const part = (file: string, scale: number, out: Float32Array) => {
      const full = path.join(this.dir, file);
      if (this.manifest.dtype === 'float32') readFileInto(full, new Uint8Array(out.buffer, out.byteOffset + off * 4, count * 4));
      else out.set(decode(fs.readFileSync(full), this.manifest.dtype, count, scale), off);
    };
    part(s.x, s.x_scale ?? 1, x);
    if (g && s.g) part(s.g, s.g_scale ?? 1, g);
  }

  /**
   * Rows r0 .. r0 + n − 1 of shard i, decoded to float32 (x [n, d], g [n, d] or null): positional
   * reads of just those bytes, for callers that want a few windows of every shard.
   */
  readShardRows(i: number, r0: number, n: number): { x: Float32Array; g: Float32Array | null } {
    const s = this.manifest.shards[i];
    if (!s) throw new Error(`ShardReader: no shard ${i} (there are ${this.numShards})`);
    if (!(r0 >= 0 && n >= 0 && r0 + n <= s.rows)) throw new Error(`ShardReader: rows ${r0}..${r0 + n - 1} are outside shard ${i} (${s.rows} rows)`);
    const width = this.manifest.dtype === 'float32' ? 4 : 2;
    const count = n * this.d;
    const part = (file: string, scale: number) => {
      const buf = Buffer.alloc(count * width);
      const fd = fs.openSync(path.join(this.dir, file), 'r');
      try {
        const got = fs.readSync(fd, buf, 0, buf.length, r0 * this.d * width);
        if (got !== buf.length) throw new Error(`ShardReader: ${file} ends before row ${r0 + n}`);
      } finally {
        fs.closeSync(fd);
      }
      return decode(buf, this.manifest.dtype, count, scale);
    };
    return { x: part(s.x, s.x_scale ?? 1), g: s.g ? part(s.g, s.g_scale ?? 1) : null };
  }

  /** All rows in shard order (x, g concatenated; withGrad false: g is not loaded, null). Kept once read. */
  readAll(withGrad = true): Window {
    const grad = withGrad && this.hasGrad;
    if (this.all && (this.all.g || !grad)) return this.all;
    this.all = this.load(this.manifest.shards.map((_, i) => i), grad);
    return this.all;
  }

  private load(ids: number[], withGrad: boolean): Window {
    const rows = ids.reduce((s, i) => s + this.manifest.shards[i].rows, 0);
    const x = new Float32Array(rows * this.d);
    const g = withGrad && this.hasGrad ? new Float32Array(rows * this.d) : null;
    let off = 0;
    for (const i of ids) {
      this.readShardInto(i, x, g, off);
      off += this.manifest.shards[i].rows * this.d;
    }
    return { x, g, rows };
  }

  /** Shards per shuffle window under the memory budget (all of them when they fit). */
  get windowShards(): number {
    const perShard = this.manifest.rows_per_shard * this.d * 4 * (this.hasGrad ? 2 : 1);
    return Math.max(1, Math.min(this.numShards, Math.floor(this.maxMemoryBytes / perShard)));
  }

  stream(seed: number, start = 0, withGrad = true): RowStream {
    const W = this.windowShards;
    const all = W >= this.numShards;
    const grad = withGrad && this.hasGrad;
    return new WindowedStream(
      {
        d: this.d,
        rows: this.rows,
        shardRows: this.manifest.shards.map((s) => s.rows),
        windowShards: W,
        load: (ids) => (all ? this.readAll(grad) : this.load(ids, grad)),
      },
      seed,
      start,
    );
  }

  /**
   * Seeded shuffled batches (a convenience over stream()): yields `batches` batches of
   * batchSize rows, crossing epochs as needed.
   */
  *batches(opts: { batchSize: number; seed: number; start?: number; batches?: number }): Generator<{
    x: Float32Array;
    g: Float32Array | null;
    position: number;
  }> {
    const s = this.stream(opts.seed, opts.start ?? 0);
    const total = opts.batches ?? Math.ceil(this.rows / opts.batchSize);
    for (let b = 0; b < total; b++) {
      const x = new Float32Array(opts.batchSize * this.d);
      const g = this.hasGrad ? new Float32Array(opts.batchSize * this.d) : null;
      const position = s.position;
      s.read(opts.batchSize, x, g);
      yield { x, g, position };
    }
  }
}
