/**
 * Top-k selection per token, in plain TypeScript (FACTS.md: as fast as tf.topk, and it fuses the
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
 * starts from a threshold guessed from the previous token (half its k-th score) and is redone
 * from 0 in the rare case that fewer than k candidates pass it — the result is exact either way.
 */

/** Reusable scratch for selections of up to k latents. */
export class SelectScratch {
  readonly cap: number;
  readonly cs: Float64Array;
  readonly ci: Int32Array;
  /** k-th score of the previous selection (threshold guess). */
  last = 0;
  constructor(readonly k: number) {
    this.cap = Math.max(4 * k, 64);
    this.cs = new Float64Array(this.cap);
    this.ci = new Int32Array(this.cap);
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

/** Sort the first n candidates by ascending latent index (insertion sort: n ≤ a few dozen). */
function sortByIndex(cs: Float64Array, ci: Int32Array, n: number): void {
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
): number {
  const useG = A !== null && beta !== 0;
  const guess = sc.last > 0 ? 0.5 * sc.last : 0;
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
  sc.last = n === k ? kth : 0;
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
 * AuxK selection: the top kAux latents among `dead` (ascending latent ids, nDead ≥ kAux of them)
 * by z = ReLU(u + b_enc) — or, with A and beta, by the g-SAE score. Latents with z = 0 are
 * returned with value 0 only to fill the kAux slots (they contribute nothing).
 * Returns the number of selected latents with z > 0.
 */
export function selectAmong(
  U: Float32Array,
  uOff: number,
  bEnc: Float32Array,
  dead: Int32Array,
  nDead: number,
  kAux: number,
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
          thr = shrink(sc, n, kAux);
          n = kAux;
        }
      }
    }
  }
  if (n > kAux) {
    partialTop(cs, ci, n, kAux);
    n = kAux;
  }
  sortByIndex(cs, ci, n);
  for (let t = 0; t < n; t++) {
    const j = ci[t];
    outIdx[outOff + t] = j;
    outVal[outOff + t] = Math.fround(U[uOff + j] + bEnc[j]);
  }
  for (let t = n; t < kAux; t++) {
    outIdx[outOff + t] = 0;
    outVal[outOff + t] = 0;
  }
  return n;
}

/** Minimal view of the SIMD scan kernels (simd.ts). */
export interface ScanKernels {
  scanPlain(u: number, be: number, j0: number, m: number, thr: number, out: number, cap: number): number;
  scanGrad(u: number, be: number, a: number, j0: number, m: number, beta: number, thr: number, out: number, cap: number): number;
  stop: WebAssembly.Global;
}

/**
 * selectTopK with the candidate scan done by a WebAssembly SIMD kernel (m % 4 == 0). The kernel
 * only pre-filters with float32 scores against a threshold lowered by a safety margin; every
 * candidate is then scored exactly as in selectTopK (float64), so the result is identical.
 * F: Float32Array over the whole wasm memory; uPtr, bePtr, aPtr: byte offsets of the token's U
 * row, b_enc and A row (aPtr ignored when beta = 0); cand: i32 scratch in the same memory.
 */
export function selectTopKWasm(
  ex: ScanKernels,
  F: Float32Array,
  uPtr: number,
  bePtr: number,
  aPtr: number,
  m: number,
  k: number,
  beta: number,
  cand: Int32Array,
  outIdx: Int32Array,
  outVal: Float32Array,
  outOff: number,
  sc: SelectScratch,
): number {
  const useG = beta !== 0;
  const u0 = uPtr >> 2;
  const b0 = bePtr >> 2;
  const a0 = aPtr >> 2;
  const cap = Math.min(sc.cap, cand.length);
  const { cs, ci } = sc;
  const pc = cand.byteOffset;
  const scan = (thr0: number): number => {
    let thr = thr0;
    let n = 0;
    let j = 0;
    for (;;) {
      if (cap - n < 8) {
        thr = shrink(sc, n, k);
        n = k;
      }
      const lo = thr > 0 ? thr * (1 - 2 ** -20) : -1e-30;
      const got = useG ? ex.scanGrad(uPtr, bePtr, aPtr, j, m, beta, lo, pc, cap - n) : ex.scanPlain(uPtr, bePtr, j, m, lo, pc, cap - n);
      j = ex.stop.value as number;
      for (let t = 0; t < got; t++) {
        const jj = cand[t];
        const z = F[u0 + jj] + F[b0 + jj];
        if (!(z > 0)) continue;
        const s = useG ? z + beta * z * Math.abs(F[a0 + jj]) : z;
        if (s > thr) {
          cs[n] = s;
          ci[n] = jj;
          n++;
        }
      }
      if (j >= m) return n;
    }
  };
  const guess = sc.last > 0 ? 0.5 * sc.last : 0;
  let n = scan(guess);
  if (n < k && guess > 0) n = scan(0);
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
  sc.last = n === k ? kth : 0;
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
