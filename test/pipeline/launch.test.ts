/**
 * pipeline/launch.mjs, the CLI's fast start from a bundle: it plans exactly what the source does,
 * never runs a stale bundle after an edit, and falls back to the source when the bundle cannot
 * be built.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, cli, LAUNCH, makeProject, removeProject } from './helpers.ts';

function launch(root: string, args: string[], cache: string, env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [LAUNCH, ...args, '--root', root], {
    cwd: root,
    env: { ...process.env, FORCE_COLOR: '0', PIPELINE_LAUNCH_DEBUG: '1', PIPELINE_LAUNCH_CACHE: cache, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

const launchLines = (r: CliResult): string[] => r.stderr.split('\n').filter((l) => l.startsWith('launch: '));
const summary = (r: CliResult): string => r.stdout.trim().split('\n').at(-1) ?? '';

describe('launch.mjs', () => {
  let root: string;
  let cache: string;
  beforeAll(async () => {
    root = await makeProject('toy');
    cache = await fs.mkdtemp(path.join(os.tmpdir(), 'launch-cache-'));
  });
  afterAll(async () => {
    await removeProject(root);
    await fs.rm(cache, { recursive: true, force: true });
  });

  it('runs from a bundle that plans exactly what the source plans, and reuses it while nothing changed', async () => {
    const fromSource = await cli(root, ['run', '--progress', 'plain'], {}, { fromSource: true });
    expect(fromSource.code, fromSource.stderr).toBe(0);
    expect(summary(fromSource)).toMatch(/^ok: \d+ ran, 0 cached/);

    const first = await launch(root, ['run', '--progress', 'plain'], cache);
    expect(first.code, first.stderr).toBe(0);
    expect(launchLines(first)).toEqual([expect.stringMatching(/^launch: built b-\S+ from \d+ files in \d+ ms$/)]);
    // Same fingerprints as the source's plan: every instance is a cache hit.
    expect(summary(first)).toMatch(/^nothing to run: all \d+ instances cached/);

    const second = await launch(root, ['run', '--progress', 'plain'], cache);
    expect(second.code, second.stderr).toBe(0);
    expect(launchLines(second)).toEqual([expect.stringMatching(/^launch: bundle b-\S+ \(\d+ files unchanged\)$/)]);
    expect(summary(second)).toMatch(/^nothing to run/);

    const dag = await launch(root, ['dag'], cache);
    expect(dag.stdout).toBe((await cli(root, ['dag'], {}, { fromSource: true })).stdout);
  });

  it('rebuilds after an edit to a bundled file: the edited code is what runs', async () => {
    const index = path.join(root, 'stages/index.ts');
    const text = await fs.readFile(index, 'utf8');
    const edited = text.replace("process.env.TOY_BACKEND ?? 'cpu'", "process.env.TOY_BACKEND ?? 'gpu'");
    expect(edited).not.toBe(text);
    // Same size, same inode, mtime put back: the check is by content, not by file stats.
    const st = await fs.stat(index);
    await fs.writeFile(index, edited);
    try {
      await fs.utimes(index, st.atime, st.mtime);
      const after = await fs.stat(index);
      expect([after.size, after.ino, Math.round(after.mtimeMs)]).toEqual([st.size, st.ino, Math.round(st.mtimeMs)]);
      const r = await launch(root, ['run', '--progress', 'plain', '--dry-run'], cache);
      expect(r.code, r.stderr).toBe(0);
      expect(launchLines(r)).toEqual([expect.stringMatching(/index\.ts changed: rebuilding$/), expect.stringMatching(/^launch: built /)]);
      // The environment (the engine calls it in this process) is the edited one.
      expect(r.stdout).toMatch(/to run {2}train\[k=1,seed=0\] +env backend: cpu → gpu/);
    } finally {
      await fs.writeFile(index, text);
    }
  });

  it('falls back to the source when the bundle cannot be built, with the error the source path gives', async () => {
    const file = path.join(root, 'stages/double.ts');
    const text = await fs.readFile(file, 'utf8');
    await fs.writeFile(file, `${text}\nexport const broken = ;\n`);
    try {
      const fromSource = await cli(root, ['run', '--progress', 'plain'], {}, { fromSource: true });
      const r = await launch(root, ['run', '--progress', 'plain'], cache);
      expect(launchLines(r)).toContainEqual(expect.stringMatching(/^launch: bundle unavailable \(.*\): running from source$/));
      expect(r.code).toBe(fromSource.code);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('double.ts');
    } finally {
      await fs.writeFile(file, text);
    }
    const again = await launch(root, ['run', '--progress', 'plain'], cache);
    expect(again.code, again.stderr).toBe(0);
    expect(launchLines(again)).toContainEqual(expect.stringMatching(/^launch: built /));
  });

  it('a package that is not installed (an optional import) stays for Node to resolve at run time', async () => {
    const file = path.join(root, 'stages/double.ts');
    const text = await fs.readFile(file, 'utf8');
    await fs.writeFile(file, `${text}\nexport const optional = (): Promise<unknown> => import('no-such-package-xyz').catch(() => null);\n`);
    try {
      const r = await launch(root, ['run', '--progress', 'plain'], cache);
      expect(r.code, r.stderr).toBe(0);
      expect(launchLines(r)).toContainEqual(expect.stringMatching(/^launch: built /));
      expect(launchLines(r).join('\n')).not.toContain('unavailable');
    } finally {
      await fs.writeFile(file, text);
    }
  });

  it('PIPELINE_LAUNCH=tsx runs from source', async () => {
    const r = await launch(root, ['run', '--progress', 'plain'], cache, { PIPELINE_LAUNCH: 'tsx' });
    expect(r.code, r.stderr).toBe(0);
    expect(launchLines(r)).toEqual(['launch: running from source']);
  });
});
