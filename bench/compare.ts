/**
 * `npm run bench -- compare [--reps 2] [--no-sae-gpt2]`: the project's LM and SAE benchmarks side
 * by side with the PyTorch peers in bench/peers/ (when python3 with torch is installed), in
 * alternation, so each ratio is measured in the same minutes on the same machine. Prints every
 * repetition with the load average, then the median ratio per figure against the goal of issue #10.
 * Without torch it prints the project's figures and says the peer is missing.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withMallocEnv } from '../base/malloc.ts';

const dir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(dir, '..');
const args = process.argv.slice(2);
const reps = Number(args[args.indexOf('--reps') + 1]) || 2;
const withGpt2 = !args.includes('--no-sae-gpt2');

// our benchmarks run with the stage processes' malloc settings (base/malloc.ts); the peers with the
// environment as given (as their users run them)
function run(cmd: string, argv: string[], env: NodeJS.ProcessEnv = withMallocEnv(process.env)): string {
  const r = spawnSync(cmd, argv, { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr?.slice(-2000)}`);
  return r.stdout;
}

function num(s: string): number {
  return Number(s.replace(/,/g, ''));
}

const pyEnv = { ...process.env };
delete pyEnv.OPENBLAS_CORETYPE;
delete pyEnv.OPENBLAS_L2_SIZE;
const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { env: pyEnv }).status === 0) ?? null;
const tsx = path.join(root, 'node_modules', '.bin', 'tsx');

type Figures = Record<string, number>;

function ours(): Figures {
  const f: Figures = {};
  const lm = run(tsx, [path.join(dir, 'lm.ts'), '--steps', '6', '--threads', String(Math.min(2, os.availableParallelism()))]);
  const grab = (re: RegExp) => Number(re.exec(lm)?.[1] ?? NaN);
  f.backend = NaN;
  f['lm train'] = Math.max(grab(/training step \(fwd\+bwd\+AdamW\)\s+\d+ ms\/batch\s+(\d+) tokens\/s/), grab(/training step as train\(\) runs it, \d+ threads\s+\d+ ms\/batch\s+(\d+) tokens\/s/) || 0);
  f['lm forward'] = grab(/forward \+ exact loss \(eval\)\s+\d+ ms\/batch\s+(\d+) tokens\/s/);
  f['lm activationAndGrad'] = grab(/activationAndGrad \([^)]*\)\s+\d+ ms\/batch\s+(\d+) tokens\/s/);
  const sae = run(tsx, [path.join(dir, 'sae.ts'), '--size', withGpt2 ? 'all' : 'small', '--threads', '1,2', '--steps', '8', '--large-steps', '3']);
  for (const line of sae.split('\n')) {
    const m = /^(small|gpt2)\s+\d+\s+\d+\s+(topk|gsae)\s+(\d+)\s+\d+\s+(\d+)/.exec(line);
    if (!m) continue;
    const key = `sae ${m[1]} ${m[2]}`;
    f[key] = Math.max(f[key] ?? 0, Number(m[4]));
  }
  return f;
}

function peer(): Figures {
  const f: Figures = {};
  if (!python) return f;
  for (const th of ['1', '2']) {
    const out = run(python, [path.join(dir, 'peers', 'torch_tiny_gpt.py'), th], pyEnv);
    const tr = /train ([\d,]+) tok\/s/.exec(out);
    const ev = /eval ([\d,]+) tok\/s/.exec(out);
    if (tr) f['lm train'] = Math.max(f['lm train'] ?? 0, num(tr[1]));
    if (ev) f['lm forward'] = Math.max(f['lm forward'] ?? 0, num(ev[1]));
  }
  f['lm activationAndGrad'] = NaN;
  for (const th of ['1', '2']) {
    const out = run(python, [path.join(dir, 'peers', 'torch_topk_sae.py'), th], pyEnv);
    for (const m of out.matchAll(/d=(\d+) m=\d+ k=\d+ batch=\d+ decoder=\w+: ([\d,]+) tokens\/s/g)) {
      const size = m[1] === '128' ? 'small' : 'gpt2';
      for (const arch of ['topk', 'gsae']) {
        const key = `sae ${size} ${arch}`; // the peer has no g-SAE: the g-SAE is compared with its TopK
        f[key] = Math.max(f[key] ?? 0, num(m[2]));
      }
    }
  }
  return f;
}

const GOALS: Record<string, number> = {
  'lm train': 1.0,
  'lm forward': 1.5,
  'sae small topk': 1.5,
  'sae small gsae': 1.5,
  'sae gpt2 topk': 1.5,
  'sae gpt2 gsae': 1.2,
};

const backend = run(tsx, ['-e', "import('./lib/backend.ts').then(async (m) => console.log(await m.initBackend('auto', { quiet: true })))"]).trim();
console.log(`compare: backend ${backend}, ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? '?'}), peer: ${python ? `PyTorch via ${python}` : 'missing (python3 with torch not found; see bench/peers/README.md)'}`);
const ratios = new Map<string, number[]>();
const oursAll = new Map<string, number[]>();
const peerAll = new Map<string, number[]>();
for (let r = 0; r < reps; r++) {
  const l0 = os.loadavg()[0];
  const o = ours();
  const p = peer();
  const l1 = os.loadavg()[0];
  console.log(`\nrepetition ${r + 1}/${reps}, load average ${l0.toFixed(2)} → ${l1.toFixed(2)} (1 min)`);
  console.log(`${'figure'.padEnd(24)} ${'ours tok/s'.padStart(11)} ${'peer tok/s'.padStart(11)} ${'ratio'.padStart(7)}`);
  for (const key of Object.keys(o)) {
    if (key === 'backend') continue;
    const ratio = o[key] / p[key];
    console.log(`${key.padEnd(24)} ${o[key].toFixed(0).padStart(11)} ${(p[key] ?? NaN).toFixed(0).padStart(11)} ${Number.isFinite(ratio) ? ratio.toFixed(2).padStart(7) : '      -'}`);
    (oursAll.get(key) ?? oursAll.set(key, []).get(key)!).push(o[key]);
    if (Number.isFinite(p[key])) (peerAll.get(key) ?? peerAll.set(key, []).get(key)!).push(p[key]);
    if (Number.isFinite(ratio)) (ratios.get(key) ?? ratios.set(key, []).get(key)!).push(ratio);
  }
}
const med = (a: number[] | undefined) => {
  if (!a || a.length === 0) return NaN;
  const s = a.slice().sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(`\nsummary (medians over ${reps} repetitions; the peer's g-SAE figure is its TopK step)`);
console.log(`${'figure'.padEnd(24)} ${'ours'.padStart(9)} ${'peer'.padStart(9)} ${'ratio'.padStart(7)} ${'goal'.padStart(6)}  met`);
for (const [key, vals] of oursAll) {
  const ratio = med(ratios.get(key));
  const goal = GOALS[key];
  const met = !Number.isFinite(ratio) || goal === undefined ? '-' : ratio >= goal ? 'yes' : 'no';
  console.log(
    `${key.padEnd(24)} ${med(vals).toFixed(0).padStart(9)} ${med(peerAll.get(key)).toFixed(0).padStart(9)} ${Number.isFinite(ratio) ? ratio.toFixed(2).padStart(7) : '      -'} ${goal ? `≥${goal}`.padStart(6) : '     -'}  ${met}`,
  );
}
if (!python) console.log('\nthe PyTorch peer is missing: install python3-torch and libopenblas0-pthread (bench/peers/README.md) to get the ratios');
