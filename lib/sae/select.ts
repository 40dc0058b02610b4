/**
 * Top-k selection per token, in plain TypeScript (measured on tfjs-wasm: as fast as tf.topk, and it fuses the
 * bias, the ReLU and the g-SAE score into one pass over the encoder output).
 *
 * Rule (lib/sae/types.ts): z = ReLU(u + b_enc) with u = (x − b_dec) W_enc;
 *   s = z                       (topk, or a g-SAE without gradient / with beta = 0)
 *   s = z + beta * z * |a|      (gsae; a = W_dec g, one number per latent)
 * the k largest s are kept, ties broken by the lower index; the kept values are z.
 * Output order: the selected latents with z > 0 by ascending index, then (if fewer than k are
 * positive) the zero-valued fillers. The order is canonical (it does not depend on the scratch
 * state), so sums over the selection are reproducible bit for bit.
 *
 * Algorithm: one scan keeps candidates with s above a running threshold in a buffer of 4k; when
 * the buffer is full, a quickselect keeps its best k and the threshold rises to the k-th score.
 * Only latents with z > 0 are candidates; if fewer than k latents are positive, the lowest-index
 * non-positive latents (value 0) fill the selection, which is what the tie rule gives. The scan
 * starts from a guessed threshold and is redone from 0 when fewer than k candidates pass it — the
 * result is exact either way (see SelectScratch.guess for how the guess is made).
 */

/** Candidate buffer size of a SelectScratch for k. */
export function selectCap(k: number): number {
  return Math.max(4 * k, 64);
}

/** Quantile of k-th score / row scale the threshold guess tracks: 2% of the guesses fail (then the row is scanned again). */
const GUESS_FAIL = 0.02;
/** Step of the multiplicative quantile tracker (down on a failure, up GUESS_FAIL / (1 − GUESS_FAIL) as much on a success). */
const GUESS_STEP = 0.02;

/**
 * Reusable scratch for selections of up to k latents.
 *
 * The threshold guess (speed only, never results): rows come in shuffled order, so the previous
 * row's k-th score says little about this one's; the k-th score is roughly proportional to the
 * row's scale (the callers pass ‖x − b_dec‖; measured on the default run's activations, TopK
 * k 32: k-th score / ‖x_c‖ varies 2× less than the k-th score itself). So the guess is
 * ratio × scale, where `ratio` tracks the GUESS_FAIL-quantile of k-th score / scale over the rows
 * seen. Measured there: 88 candidates per row pass the guess and 13% of rows fill the candidate
 * buffer, against 202 and 79% with the former guess (a fraction of the previous row's k-th score).
 */
export class SelectScratch {
  readonly cap: number;
  readonly cs: Float64Array;
  readonly ci: Int32Array;
  /** The tracked quantile of k-th score / scale (0: none yet, the first row is scanned from 0). */
  ratio = 0;
  /** `buffers`: cs and ci of selectCap(k) values each, e.g. views on a WebAssembly memory. */
  constructor(
    readonly k: number,
    buffers?: { cs: Float64Array; ci: Int32Array },
  ) {
    this.cap = selectCap(k);
    if (buffers && (buffers.cs.length < this.cap || buffers.ci.length < this.cap)) throw new Error(`SelectScratch: buffers hold fewer than ${this.cap} candidates`);
    this.cs = buffers?.cs ?? new Float64Array(this.cap);
    this.ci = buffers?.ci ?? new Int32Array(this.cap);
  }

  /** The threshold to start a row's scan from (0: scan everything). */
  guess(scale: number): number {
    return this.ratio > 0 && scale > 0 ? this.ratio * scale : 0;
  }

  /** Learn from a row: its k-th score (0 when fewer than k latents were positive) and its scale. */
  learn(kth: number, scale: number): void {
    if (!(kth > 0 && scale > 0)) return;
    const r = kth / scale;
    if (!(this.ratio > 0)) this.ratio = 0.8 * r;
    else if (r < this.ratio) this.ratio *= 1 - GUESS_STEP;
    else this.ratio *= 1 + (GUESS_STEP * GUESS_FAIL) / (1 - GUESS_FAIL);
  }
}

function swap(s: Float64Array, ix: Int32Array, a: number, b: number): void {
  const t = s[a];
  s[a] = s[b];
  s[b] = t;
  const u = ix[a];
  ix[a] = ix[b];
  ix[b] = u;
}

/** a ranks before b: higher score, or equal score and lower index. */
function before(s: Float64Array, ix: Int32Array, a: number, b: number): boolean {
  return s[a] > s[b] || (s[a] === s[b] && ix[a] < ix[b]);
}

/** Reorder [0, n) so that its first k entries are the best k (by score desc, index asc). */
export function partialTop(s: Float64Array, ix: Int32Array, n: number, k: number): void {
  let lo = 0;
  let hi = n - 1;
  const target = k - 1;
  while (hi > lo) {
    const mid = (lo + hi) >> 1;
    if (before(s, ix, mid, lo)) swap(s, ix, mid, lo);
    if (before(s, ix, hi, lo)) swap(s, ix, hi, lo);
    if (before(s, ix, hi, mid)) swap(s, ix, hi, mid);
    const ps = s[mid];
    const pi = ix[mid];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (s[i] > ps || (s[i] === ps && ix[i] < pi)) i++;
      while (ps > s[j] || (ps === s[j] && pi < ix[j])) j--;
      if (i <= j) {
        swap(s, ix, i, j);
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
}

/** Sort the first n candidates by ascending latent index, their scores alongside (insertion sort: n ≤ a few dozen). */
export function sortByIndex(cs: Float64Array | Float32Array, ci: Int32Array, n: number): void {
  for (let a = 1; a < n; a++) {
    const i = ci[a];
    const s = cs[a];
    let b = a - 1;
    while (b >= 0 && ci[b] > i) {
      ci[b + 1] = ci[b];
      cs[b + 1] = cs[b];
      b--;
    }
    ci[b + 1] = i;
    cs[b + 1] = s;
  }
}

/** Keep the best k of n buffered candidates; returns the new threshold (worst kept score). */
function shrink(sc: SelectScratch, n: number, k: number): number {
  partialTop(sc.cs, sc.ci, n, k);
  let mn = sc.cs[0];
  for (let t = 1; t < k; t++) if (sc.cs[t] < mn) mn = sc.cs[t];
  return mn;
}

/** Scan for candidates with score > thr; returns the number of buffered candidates (≤ cap). */
function scanPlain(U: Float32Array, uOff: number, bEnc: Float32Array, m: number, k: number, thr: number, sc: SelectScratch): number {
  const { cs, ci, cap } = sc;
  let n = 0;
  for (let j = 0; j < m; j++) {
    const z = U[uOff + j] + bEnc[j];
    if (z > thr) {
      cs[n] = z;
      ci[n] = j;
      if (++n === cap) {
        thr = shrink(sc, n, k);
        n = k;
      }
    }
  }
  return n;
}

function scanGrad(
  U: Float32Array,
  uOff: number,
  bEnc: Float32Array,
  m: number,
  k: number,
  A: Float32Array,
  aOff: number,
  beta: number,
  thr: number,
  sc: SelectScratch,
): number {
  const { cs, ci, cap } = sc;
  let n = 0;
  for (let j = 0; j < m; j++) {
    const z = U[uOff + j] + bEnc[j];
    if (z > 0) {
      const s = z + beta * z * Math.abs(A[aOff + j]);
      if (s > thr) {
        cs[n] = s;
        ci[n] = j;
        if (++n === cap) {
          thr = shrink(sc, n, k);
          n = k;
        }
      }
    }
  }
  return n;
}

/**
 * Select the top k latents of one token.
 * U: encoder output (without b_enc) at offset uOff, m values; bEnc [m];
 * A: W_dec g (abs is taken) at aOff, or null for plain TopK;
 * writes k indices and values (z as float32) at outOff. Requires 1 ≤ k ≤ m.
 * Returns the number of selected latents with z > 0 (the token's L0).
 */
export function selectTopK(
  U: Float32Array,
  uOff: number,
  bEnc: Float32Array,
  m: number,
  k: number,
  A: Float32Array | null,
  aOff: number,
  beta: number,
  outIdx: Int32Array,
  outVal: Float32Array,
  outOff: number,
  sc: SelectScratch,
  scale = 1,
): number {
  const useG = A !== null && beta !== 0;
  const guess = sc.guess(scale);
  let n = useG ? scanGrad(U, uOff, bEnc, m, k, A!, aOff, beta, guess, sc) : scanPlain(U, uOff, bEnc, m, k, guess, sc);
  if (n < k && guess > 0) {
    n = useG ? scanGrad(U, uOff, bEnc, m, k, A!, aOff, beta, 0, sc) : scanPlain(U, uOff, bEnc, m, k, 0, sc);
  }
  if (n > k) {
    partialTop(sc.cs, sc.ci, n, k);
    n = k;
  }
  sortByIndex(sc.cs, sc.ci, n);
  const { cs, ci } = sc;
  let kth = Infinity;
  for (let t = 0; t < n; t++) {
    const j = ci[t];
    outIdx[outOff + t] = j;
    outVal[outOff + t] = useG ? Math.fround(U[uOff + j] + bEnc[j]) : Math.fround(cs[t]);
    if (cs[t] < kth) kth = cs[t];
  }
  sc.learn(n === k ? kth : 0, scale);
  const l0 = n;
  if (n < k) {
    // fewer than k positive latents: the lowest-index non-positive ones, value 0
    let t = n;
    for (let j = 0; j < m && t < k; j++) {
      if (!(U[uOff + j] + bEnc[j] > 0)) {
        outIdx[outOff + t] = j;
        outVal[outOff + t] = 0;
        t++;
      }
    }
  }
  return l0;
}

/**
 * AuxK selection: the top auxK latents among `dead` (ascending latent ids, nDead ≥ auxK of them)
 * by z = ReLU(u + b_enc) — or, with A and beta, by the g-SAE score. Latents with z = 0 are
 * returned with value 0 only to fill the auxK slots (they contribute nothing).
 * Returns the number of selected latents with z > 0.
 */
export function selectAmong(
  U: Float32Array,
  uOff: number,
  bEnc: Float32Array,
  dead: Int32Array,
  nDead: number,
  auxK: number,
  A: Float32Array | null,
  aOff: number,
  beta: number,
  outIdx: Int32Array,
  outVal: Float32Array,
  outOff: number,
  sc: SelectScratch,
): number {
  const { cs, ci, cap } = sc;
  const useG = A !== null && beta !== 0;
  let n = 0;
  let thr = 0;
  for (let t = 0; t < nDead; t++) {
    const j = dead[t];
    const z = U[uOff + j] + bEnc[j];
    if (z > 0) {
      const s = useG ? z + beta * z * Math.abs(A![aOff + j]) : z;
      if (s > thr) {
        cs[n] = s;
        ci[n] = j;
        if (++n === cap) {
          thr = shrink(sc, n, auxK);
          n = auxK;
        }
      }
    }
  }
  if (n > auxK) {
    partialTop(cs, ci, n, auxK);
    n = auxK;
  }
  sortByIndex(cs, ci, n);
  for (let t = 0; t < n; t++) {
    const j = ci[t];
    outIdx[outOff + t] = j;
    outVal[outOff + t] = Math.fround(U[uOff + j] + bEnc[j]);
  }
  for (let t = n; t < auxK; t++) {
    outIdx[outOff + t] = 0;
    outVal[outOff + t] = 0;
  }
  return n;
}

/** Minimal view of the SIMD kernels used by the selection (simd.ts). */
export interface ScanKernels {
  scanPlain(u: number, be: number, j0: number, m: number, thr: number, out: number, cap: number): number;
  scanGrad(u: number, be: number, a: number, j0: number, m: number, beta: number, thr: number, out: number, cap: number): number;
  dot(a: number, b: number): number;
  scoreSparse?(cand: number, got: number, u: number, be: number, wd: number, g: number, rowBytes: number, beta: number, gB: number, thr: number, cs: number, ci: number, n0: number): number;
  stop: WebAssembly.Global;
  scored?: WebAssembly.Global;
}

/** How the g-SAE term |W_dec g| is obtained. */
export const SCORE = {
  /** s = z (TopK, or no gradient, or beta = 0). */
  plain: 0,
  /** |a| read from a dense row A = g W_decᵀ (computed by a matMul). */
  dense: 1,
  /**
   * |a_j| = |W_dec[j]·g| computed only for candidates: since decoder rows have unit norm,
   * s_j ≤ z_j (1 + beta‖g‖), so only latents with z_j > thr / (1 + beta‖g‖) can enter.
   */
  sparse: 2,
} as const;

/**
 * Top-k selection with the candidate scan done by WebAssembly SIMD kernels (m % 4 == 0). The
 * kernels only pre-filter with float32 scores against a threshold lowered by a safety margin;
 * every candidate is then scored exactly as in selectTopK (float64 from the float32 inputs), so
 * the result equals selectTopK's for the same scores, in the same canonical order.
 */
export class WasmSelector {
  /** Candidates scored exactly since the last reset (for the dense / sparse decision). */
  scored = 0;
  private readonly u32: Float32Array;
  /**
   * Score sparse candidates in the WebAssembly kernel (default) or in the TypeScript loop (the
   * reference it is tested against bit for bit); read when a selector is made.
   */
  static scoreInWasm = true;
  /** Whether the scratch's cs / ci are views on the kernels' memory (then scoreSparse scores the sparse candidates). */
  private readonly inMemory: boolean;
  constructor(
    private readonly ex: ScanKernels,
    memory: WebAssembly.Memory,
    private readonly cand: Int32Array,
    private readonly sc: SelectScratch,
    private readonly m: number,
    private readonly k: number,
    private readonly rowBytes: number,
  ) {
    this.u32 = new Float32Array(memory.buffer);
    this.inMemory = WasmSelector.scoreInWasm && sc.cs.buffer === memory.buffer && sc.ci.buffer === memory.buffer && typeof ex.scoreSparse === 'function';
  }

  /**
   * Select for one token. uPtr, bePtr: byte offsets of the U row and b_enc. mode SCORE.dense: aPtr =
   * the A row; SCORE.sparse: wdPtr = W_dec, gPtr = the token's g, gB = 1 + beta‖g‖ (an upper bound
   * of 1 + beta|a_j|). scale: the row's scale for the threshold guess (SelectScratch; speed only).
   * Writes k indices and values at outOff; returns the token's L0.
   */
  select(
    uPtr: number,
    bePtr: number,
    mode: number,
    beta: number,
    aPtr: number,
    wdPtr: number,
    gPtr: number,
    gB: number,
    outIdx: Int32Array,
    outVal: Float32Array,
    outOff: number,
    scale = 1,
  ): number {
    const { sc, k, m } = this;
    const F = this.u32;
    const u0 = uPtr >> 2;
    const b0 = bePtr >> 2;
    const guess = sc.guess(scale);
    let n = this.scan(guess, uPtr, bePtr, mode, beta, aPtr, wdPtr, gPtr, gB);
    if (n < k && guess > 0) n = this.scan(0, uPtr, bePtr, mode, beta, aPtr, wdPtr, gPtr, gB);
    const { cs, ci } = sc;
    if (n > k) {
      partialTop(cs, ci, n, k);
      n = k;
    }
    sortByIndex(cs, ci, n);
    let kth = Infinity;
    for (let t = 0; t < n; t++) {
      const j = ci[t];
      outIdx[outOff + t] = j;
      outVal[outOff + t] = Math.fround(F[u0 + j] + F[b0 + j]);
      if (cs[t] < kth) kth = cs[t];
    }
    sc.learn(n === k ? kth : 0, scale);
    const l0 = n;
    if (n < k) {
      let t = n;
      for (let j = 0; j < m && t < k; j++) {
        if (!(F[u0 + j] + F[b0 + j] > 0)) {
          outIdx[outOff + t] = j;
          outVal[outOff + t] = 0;
          t++;
        }
      }
    }
    return l0;
  }

  private scan(thr: number, uPtr: number, bePtr: number, mode: number, beta: number, aPtr: number, wdPtr: number, gPtr: number, gB: number): number {
    const { ex, sc, cand, k, m, rowBytes } = this;
    const F = this.u32;
    const u0 = uPtr >> 2;
    const b0 = bePtr >> 2;
    const a0 = aPtr >> 2;
    const cap = Math.min(sc.cap, cand.length);
    const { cs, ci } = sc;
    const pc = cand.byteOffset;
    let n = 0;
    let j = 0;
    for (;;) {
      if (cap - n < 8) {
        thr = shrink(sc, n, k);
        n = k;
      }
      let got: number;
      if (mode === SCORE.dense) {
        got = ex.scanGrad(uPtr, bePtr, aPtr, j, m, beta, thr > 0 ? thr * (1 - 2 ** -20) : -1e-30, pc, cap - n);
      } else {
        const t = mode === SCORE.sparse ? thr / gB : thr;
        got = ex.scanPlain(uPtr, bePtr, j, m, t > 0 ? t * (1 - 2 ** -20) : -1e-30, pc, cap - n);
      }
      j = ex.stop.value as number;
      if (mode === SCORE.sparse && this.inMemory) {
        // the exact scores in WebAssembly (one call for all candidates, the same float64 operations)
        n = ex.scoreSparse!(pc, got, uPtr, bePtr, wdPtr, gPtr, rowBytes, beta, gB, thr, cs.byteOffset, ci.byteOffset, n);
        this.scored += ex.scored!.value as number;
        if (j >= m) return n;
        continue;
      }
      for (let t = 0; t < got; t++) {
        const jj = cand[t];
        const z = F[u0 + jj] + F[b0 + jj];
        if (!(z > 0)) continue;
        let s = z;
        if (mode === SCORE.dense) {
          s = z + beta * z * Math.abs(F[a0 + jj]);
        } else if (mode === SCORE.sparse) {
          if (z * gB <= thr) continue;
          this.scored++;
          s = z + beta * z * Math.abs(ex.dot(wdPtr + jj * rowBytes, gPtr));
        }
        if (s > thr) {
          cs[n] = s;
          ci[n] = jj;
          n++;
        }
      }
      if (j >= m) return n;
    }
  }
}
