/**
 * Engine benchmark: a 50-instance toy DAG holding ~1 GB of artifacts, in a temp dir.
 *   prep (1) -> gen[i] (24, ~1/24 GB each) -> summarize[i] (24) -> merge (1, reads all)
 * Times, through the real CLI: first run, no-op rerun, dry-run, and a no-op rerun after every
 * artifact was touched (stats differ, so content is re-hashed: the fallback path).
 *   npm run bench -- engine [--gb 1] [--jobs 2] [--keep]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** As `npm run pipeline` starts it: the CLI from its bundle (pipeline/launch.mjs). */
const LAUNCH = path.join(REPO, 'pipeline/launch.mjs');
const N = 24;

const STAGES = `
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

type Ctx = { params: any; instance: any; inputs: Record<string, string>; inputsAll: Record<string, Array<{ dir: string }>>; outDir: string; progress(d: number, t: number): void; metric(n: string, v: number): void };

export const prep = {
  name: 'prep', params: ['bench.seed'], outputs: ['seed.txt'],
  async run(ctx: Ctx) { await fs.writeFile(path.join(ctx.outDir, 'seed.txt'), String(ctx.params.bench.seed)); },
};

export const gen = {
  name: 'gen', params: ['bench.mb_per_artifact'], matrix: { i: 'bench.items' }, inputs: { seed: { stage: 'prep' } }, outputs: ['blob.bin'],
  async run(ctx: Ctx) {
    const mb = ctx.params.bench.mb_per_artifact as number;
    const chunk = Buffer.alloc(1 << 20);
    let x = (ctx.instance.i as number) * 2654435761 + 1;
    const fh = await fs.open(path.join(ctx.outDir, 'blob.bin'), 'w');
    for (let m = 0; m < mb; m++) {
      for (let j = 0; j < chunk.length; j += 4) { x = (x * 1664525 + 1013904223) >>> 0; chunk.writeUInt32LE(x, j); }
      await fh.write(chunk);
      ctx.progress(m + 1, mb);
    }
    await fh.close();
  },
};

export const summarize = {
  name: 'summarize', params: [], matrix: { i: 'bench.items' }, inputs: { blob: { stage: 'gen' } }, outputs: ['summary.json'],
  async run(ctx: Ctx) {
    const fh = await fs.open(path.join(ctx.inputs.blob, 'blob.bin'), 'r');
    const buf = Buffer.alloc(1 << 20);
    await fh.read(buf, 0, buf.length, 0);
    await fh.close();
    const digest = createHash('sha256').update(buf).digest('hex');
    ctx.metric('first_byte', buf[0]);
    await fs.writeFile(path.join(ctx.outDir, 'summary.json'), JSON.stringify({ i: ctx.instance.i, digest }));
  },
};

export const merge = {
  name: 'merge', params: [], inputs: { all: { stage: 'summarize', all: true } }, outputs: ['merged.json'],
  async run(ctx: Ctx) {
    const parts = await Promise.all(ctx.inputsAll.all.map(async (u) => JSON.parse(await fs.readFile(path.join(u.dir, 'summary.json'), 'utf8'))));
    await fs.writeFile(path.join(ctx.outDir, 'merged.json'), JSON.stringify(parts));
  },
};

export const stages = [prep, gen, summarize, merge];
`;

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    bench: {
      type: 'object',
      additionalProperties: false,
      properties: {
        seed: { type: 'integer' },
        mb_per_artifact: { type: 'integer', minimum: 1 },
        items: { type: 'array', items: { type: 'integer' }, uniqueItems: true },
      },
    },
  },
};

function runCli(root: string, args: string[]): Promise<{ seconds: number; code: number | null; stdout: string; stderr: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const env = { ...process.env, PIPELINE_LAUNCH_CACHE: path.join(root, '.launch') }; // goes with the temp dir
    const child = spawn(process.execPath, [LAUNCH, ...args, '--root', root], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ seconds: (performance.now() - t0) / 1000, code, stdout, stderr }));
  });
}

async function touchAll(dir: string): Promise<number> {
  let n = 0;
  const now = new Date();
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    if (!p.includes(`${path.sep}out${path.sep}`)) continue;
    await fs.utimes(p, now, now);
    n++;
  }
  return n;
}

export default async function main(args: string[]): Promise<void> {
  const arg = (name: string, def: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : def;
  };
  const gb = Number(arg('gb', '1'));
  const jobs = arg('jobs', String(os.availableParallelism()));
  const mb = Math.max(1, Math.round((gb * 1024) / N));
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-engine-'));
  await fs.mkdir(path.join(root, 'stages'));
  await fs.writeFile(path.join(root, 'stages/index.ts'), STAGES);
  await fs.writeFile(path.join(root, 'params.schema.json'), JSON.stringify(SCHEMA));
  await fs.writeFile(path.join(root, 'params.yaml'), `bench:\n  seed: 1\n  mb_per_artifact: ${mb}\n  items: [${Array.from({ length: N }, (_, i) => i).join(', ')}]\n`);
  console.log(`engine benchmark: 50 instances, ${N} × ${mb} MB = ${((N * mb) / 1024).toFixed(2)} GB of artifacts, jobs=${jobs}, in ${root}`);

  const rows: Array<[string, string, string]> = [];
  const step = async (what: string, cliArgs: string[], expect: RegExp): Promise<void> => {
    const r = await runCli(root, cliArgs);
    if (r.code !== 0 || !expect.test(r.stdout)) {
      console.error(r.stdout.slice(-3000), r.stderr.slice(-3000));
      throw new Error(`${what}: unexpected result (exit ${r.code})`);
    }
    const inner = /\((\d+(?:\.\d+)?s)\)\s*$/m.exec(r.stdout.trim().split('\n').pop() ?? '');
    rows.push([what, `${r.seconds.toFixed(2)} s`, inner ? inner[1] : '-']);
  };
  try {
    await step('first run (50 instances, writes + hashes the artifacts)', ['run', '--jobs', jobs, '--progress', 'plain'], /ok: 50 ran/);
    await step('no-op rerun', ['run', '--jobs', jobs], /nothing to run: all 50 instances cached/);
    await step('no-op rerun (again)', ['run', '--jobs', jobs], /nothing to run: all 50 instances cached/);
    await step('dry-run', ['run', '--dry-run'], /nothing to run: all 50 instances cached/);
    const touched = await touchAll(path.join(root, '.cache/objects'));
    await step(`no-op rerun after touching all ${touched} artifacts (re-hash fallback)`, ['run', '--jobs', jobs], /nothing to run: all 50 instances cached/);
    await step('no-op rerun (stats trusted again)', ['run', '--jobs', jobs], /nothing to run: all 50 instances cached/);
  } finally {
    if (!args.includes('--keep')) await fs.rm(root, { recursive: true, force: true });
  }
  const w = [Math.max(...rows.map((r) => r[0].length)), 10, 14];
  const line = (r: string[]): string => `${r[0].padEnd(w[0])}  ${r[1].padStart(w[1])}  ${r[2].padStart(w[2])}`;
  console.log(line(['step', 'wall (CLI)', 'engine (inner)']));
  console.log(line(['-'.repeat(w[0]), '-'.repeat(w[1]), '-'.repeat(w[2])]));
  for (const r of rows) console.log(line(r));
}
