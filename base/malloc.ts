/**
 * glibc malloc settings for the processes that run numeric work (stage instances, benchmarks):
 * keep freed memory in the heap instead of giving it back to the OS at once. The ONNX Runtime
 * binding copies every graph output into a freshly allocated ArrayBuffer (onnxruntime-node
 * 1.24–1.30), tens of MB per call in the SAE encoder and the LM head; with glibc's defaults the
 * freed memory is trimmed and every new buffer faults its pages in again. Measured on a 2-core
 * Intel Xeon (bench/sae.ts, d 128, m 2048, one thread, three alternations): 37.2–39.7k tokens/s
 * without, 40.9–44.0k with; a downstream instance 11.1 → 10.3 s, a steering instance 7.3 → 6.3 s.
 * Setting any of these turns off glibc's dynamic mmap threshold, so the threshold is fixed too, at
 * its maximum (32 MiB on 64-bit): without it every allocation above 128 KiB is a fresh mapping
 * (measured: PyTorch's LM step 6.6k → 5.3k tokens/s with only the first two set; 7.0–7.2k with all
 * three, as without any). The cost: a process keeps its peak heap until it exits (stage processes
 * are short-lived). Defaults only: a variable already set in the environment wins. Other C
 * libraries ignore them.
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_TRIM_THRESHOLD_: String(2 ** 32),
  MALLOC_TOP_PAD_: String(2 ** 27),
  MALLOC_MMAP_THRESHOLD_: String(32 * 2 ** 20),
};

/** `env` with the MALLOC_ENV defaults under it. */
export function withMallocEnv<T extends Record<string, string | undefined>>(env: T): T {
  const out: Record<string, string | undefined> = { ...env };
  for (const [k, v] of Object.entries(MALLOC_ENV)) if (out[k] === undefined) out[k] = v;
  return out as T;
}
