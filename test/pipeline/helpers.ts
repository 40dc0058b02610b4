/** Test helpers: fixture projects copied to a temp dir, and the real CLI run in a child process. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { querySql } from '../../pipeline/db.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const CLI = path.join(REPO, 'pipeline/cli.ts');
/** What `npm run pipeline` starts: the CLI from its bundle (pipeline/launch.mjs). */
export const LAUNCH = path.join(REPO, 'pipeline/launch.mjs');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
/** Bundles of the fixture projects: one folder for this test process, not node_modules/.cache. */
const LAUNCH_CACHE = path.join(os.tmpdir(), `pipeline-launch-test-${process.pid}`);

/** A fresh copy of test/fixtures/pipeline/<name> in a temp dir. */
export async function makeProject(name: string): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), `pipeline-${name}-`));
  await fs.cp(path.join(REPO, 'test/fixtures/pipeline', name), root, { recursive: true });
  return root;
}

export async function removeProject(root: string): Promise<void> {
  await fs.rm(root, { recursive: true, force: true });
  // Its bundle (launch.mjs keys a project's bundles by its stages module).
  const key = createHash('sha256').update(path.join(root, 'stages', 'index.ts')).digest('hex').slice(0, 16);
  await fs.rm(path.join(LAUNCH_CACHE, key), { recursive: true, force: true });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
  /** Output so far. */
  output(): { stdout: string; stderr: string };
}

/**
 * Start the CLI with `<args> --root <root>` as `npm run pipeline` does (pipeline/launch.mjs), or
 * from source through tsx (`fromSource`).
 */
export function startCli(root: string, args: string[], env: Record<string, string> = {}, opts: { fromSource?: boolean } = {}): CliProcess {
  const argv = opts.fromSource ? ['--import', TSX, CLI] : [LAUNCH];
  const child = spawn(process.execPath, [...argv, ...args, '--root', root], {
    cwd: root,
    env: { PIPELINE_LAUNCH_CACHE: LAUNCH_CACHE, ...process.env, ...env, FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, output: () => ({ stdout, stderr }) };
}

export function cli(root: string, args: string[], env: Record<string, string> = {}, opts: { fromSource?: boolean } = {}): Promise<CliResult> {
  return startCli(root, args, env, opts).done;
}

/** Lines the toy stages appended to trace.log since the last call (then cleared). */
export async function takeTrace(root: string): Promise<string[]> {
  const file = path.join(root, 'trace.log');
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  await fs.rm(file, { force: true });
  return text.split('\n').filter((l) => l !== '').sort();
}

/** Poll until cond() is true (bounded): waiting for an observable event, not for time to pass. */
export async function waitFor(cond: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function fileExists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** status per instance label for one run (default: the latest run). */
export async function stageStatuses(root: string, runId?: string): Promise<Record<string, string>> {
  const db = path.join(root, 'results/results.duckdb');
  const id =
    runId ?? ((await querySql(db, 'SELECT run_id FROM runs ORDER BY started DESC, run_id DESC LIMIT 1')).rows[0][0] as string);
  const { rows } = await querySql(db, `SELECT label, status FROM stage_runs WHERE run_id = '${id}' ORDER BY label`);
  return Object.fromEntries(rows.map((r) => [r[0] as string, r[1] as string]));
}

export function labelsWith(statuses: Record<string, string>, status: string): string[] {
  return Object.entries(statuses)
    .filter(([, s]) => s === status)
    .map(([l]) => l)
    .sort();
}

/** Every path under dir with its size and mtime: to show that a command changed nothing. */
export async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(rel, e.name);
      const st = await fs.lstat(path.join(dir, p));
      out.push(`${p} ${st.size} ${st.mtimeMs}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk('');
  return out.sort();
}
