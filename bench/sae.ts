/**
 * SAE training speed (tokens/s) for TopK and g-SAE, on synthetic activations and gradients.
 *
 *   npx tsx bench/sae.ts [--size small|gpt2|all] [--arch topk,gsae] [--threads 1,2] [--procs]
 *                        [--steps N] [--large-steps N] [--batch 4096] [--k 32] [--backend auto|wasm+ort|wasm]
 *
 * Sizes: small = d 128, m 2048 (this project's model); gpt2 = d 768, m 24576 (GPT-2 small, 32×).
 * For each (size, arch, threads) it trains for a few steps with trainSae and reports the median
 * step time after the first step, as tokens/s. `--procs` also runs two single-thread trainings in
 * two processes at once (the other way to use 2 cores: two SAE instances in parallel) and reports
 * their summed throughput. The process CPU time per step (all threads) is shown too: on a machine
 * shared with other jobs, tokens per CPU-second is the steadier figure. Reference on this 2-core machine (measured PyTorch CPU, 2 threads):
 * ~35,000 tokens/s (small), ~1,400 tokens/s (gpt2).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MemoryRows } from '../lib/activations.ts';
import { activeBackend, initBackend, type BackendKind } from '../lib/backend.ts';
import { trainSae } from '../lib/sae/train.ts';
import type { SaeArch } from '../lib/sae/types.ts';
import { mulberry32, randn } from '../lib/util/random.ts';

interface Args {
  size: string;
  arch: SaeArch[];
  threads: number[];
  procs: boolean;
  steps: number;
  largeSteps: number;
  batch: number;
  k: number;
  child: boolean;
  backend: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, def: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
  };
  return {
    size: get('size', 'all'),
    arch: get('arch', 'topk,gsae').split(',') as SaeArch[],
    threads: get('threads', '1,2').split(',').map(Number),
    procs: argv.includes('--procs'),
    steps: Number(get('steps', '12')),
    largeSteps: Number(get('large-steps', '3')),
    batch: Number(get('batch', '4096')),
    k: Number(get('k', '32')),
    child: argv.includes('--child'),
    backend: get('backend', 'auto'),
  };
}

const SIZES: Record<string, { d: number; m: number }> = { small: { d: 128, m: 2048 }, gpt2: { d: 768, m: 24576 } };

/** Synthetic rows: a sparse mix of random directions plus noise (so selection is not trivial), and g. */
function syntheticRows(d: number, rows: number, seed: number): MemoryRows {
  const rng = mulberry32(seed);
  const nr = randn(rng);
  const nAtoms = 4 * d;
  const atoms = Float32Array.from({ length: nAtoms * d }, () => nr() / Math.sqrt(d));
  const x = new Float32Array(rows * d);
  const g = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < 16; t++) {
      const a = Math.floor(rng() * nAtoms);
      const c = 3 * rng();
      for (let i = 0; i < d; i++) x[r * d + i] += c * atoms[a * d + i];
    }
    for (let i = 0; i < d; i++) {
      x[r * d + i] += 0.1 * nr();
      g[r * d + i] = 0.01 * nr();
    }
  }
  return new MemoryRows(d, x, g);
}

async function measure(
  size: string,
  arch: SaeArch,
  threads: number,
  a: Args,
): Promise<{ tokPerSec: number; stepMs: number; steps: number; cpuMs: number }> {
  const { d, m } = SIZES[size];
  const steps = size === 'small' ? a.steps : a.largeSteps;
  const src = syntheticRows(d, Math.min(65536, a.batch * 4), 1);
  const times: number[] = [];
  const cpus: number[] = [];
  let last = 0;
  let lastCpu = 0;
  const t0 = performance.now();
  await trainSae(
    src,
    { arch, k: a.k, m, beta: 1, trainTokens: (steps + 1) * a.batch, batchSize: a.batch, threads, deadTokens: 10 * a.batch, seed: 0 },
    {
      onStep: () => {
        const t = performance.now();
        const u = process.cpuUsage();
        const cpu = (u.user + u.system) / 1000;
        if (last > 0) {
          times.push(t - last);
          cpus.push(cpu - lastCpu);
        }
        last = t;
        lastCpu = cpu;
      },
    },
  );
  void t0;
  times.sort((x, y) => x - y);
  cpus.sort((x, y) => x - y);
  const med = times[Math.floor(times.length / 2)];
  return { tokPerSec: (a.batch / med) * 1000, stepMs: med, steps, cpuMs: cpus[Math.floor(cpus.length / 2)] };
}

async function runChildren(size: string, arch: SaeArch, a: Args): Promise<number> {
  const script = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, script, '--child', '--size', size, '--arch', arch, '--threads', '1', '--steps', String(a.steps), '--large-steps', String(a.largeSteps), '--batch', String(a.batch), '--k', String(a.k), '--backend', a.backend];
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (b) => (out += b));
      p.on('exit', (code) => {
        const m = /CHILD_TOKPS (\S+)/.exec(out);
        if (code === 0 && m) resolve(Number(m[1]));
        else reject(new Error(`bench child failed (${code}): ${out}`));
      });
    });
  const r = await Promise.all([one(), one()]);
  return r[0] + r[1];
}

const a = parseArgs(process.argv.slice(2));
await initBackend(a.backend as BackendKind, { quiet: true });
const sizes = a.size === 'all' ? ['small', 'gpt2'] : [a.size];
if (a.child) {
  const r = await measure(sizes[0], a.arch[0], 1, a);
  console.log(`CHILD_TOKPS ${r.tokPerSec}`);
} else {
  console.log(`SAE training speed, backend ${activeBackend()}, batch ${a.batch}, k ${a.k} (median step after the first; tokens/s)`);
  console.log('size   d    m      arch  threads  step ms   tokens/s   cpu ms/step  tokens/cpu-s');
  for (const size of sizes) {
    const { d, m } = SIZES[size];
    for (const arch of a.arch) {
      for (const th of a.threads) {
        const r = await measure(size, arch, th, a);
        console.log(
          `${size.padEnd(6)} ${String(d).padEnd(4)} ${String(m).padEnd(6)} ${arch.padEnd(5)} ${String(th).padEnd(8)} ${r.stepMs.toFixed(0).padStart(7)}  ${r.tokPerSec.toFixed(0).padStart(9)}  ${r.cpuMs.toFixed(0).padStart(11)}  ${((a.batch / r.cpuMs) * 1000).toFixed(0).padStart(12)}`,
        );
      }
      if (a.procs) {
        const tps = await runChildren(size, arch, a);
        console.log(`${size.padEnd(6)} ${String(d).padEnd(4)} ${String(m).padEnd(6)} ${arch.padEnd(5)} 2 procs  ${'-'.padStart(7)}  ${tps.toFixed(0).padStart(9)}`);
      }
    }
  }
  console.log('reference (PyTorch CPU, 2 threads, measured on a Zen 5 machine): small ~35,000 tokens/s, gpt2 ~1,400 tokens/s');
}
