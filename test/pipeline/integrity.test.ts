/**
 * A cache that cannot lie, and a results/ folder that shows one run (toy project, real CLI):
 *  - one bit flipped in place in a cached file, with its mtime set back, is detected (ctime);
 *  - `verify` re-hashes every entry in use, names the corrupted ones and what they affect, removes
 *    them and exits 1; `run --verify` re-hashes before using;
 *  - a failed run leaves results/ showing the previous complete run.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileStat } from '../../pipeline/util.ts';
import { cli, labelsWith, makeProject, removeProject, stageStatuses } from './helpers.ts';

/** Flip one bit of `file` in place (same size, same inode) and set its mtime back, to the nanosecond. */
async function flipBitKeepMtime(file: string): Promise<void> {
  const before = await fileStat(file);
  await fs.chmod(file, 0o644);
  const fh = await fs.open(file, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, 0);
  b[0] ^= 0x01;
  await fh.write(b, 0, 1, 0);
  await fh.close();
  await fs.chmod(file, 0o444);
  const ns = BigInt(before.mtimeNs);
  const stamp = `@${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
  const t = spawnSync('touch', ['-m', '-d', stamp, file]);
  expect(t.status, String(t.stderr)).toBe(0);
  const after = await fileStat(file);
  // What the old quick check compared is identical: only the ctime tells.
  expect({ size: after.size, mtimeNs: after.mtimeNs, ino: after.ino }).toEqual({ size: before.size, mtimeNs: before.mtimeNs, ino: before.ino });
  expect(after.ctimeNs).not.toBe(before.ctimeNs);
}

describe('cache integrity and results/ (toy project, real CLI)', () => {
  let root: string;
  beforeAll(async () => {
    root = await makeProject('toy');
    const first = await cli(root, ['run', '--jobs', '2']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
  });
  afterAll(async () => {
    await removeProject(root);
  });

  it('a bit flipped in place with the mtime restored is re-hashed and recomputed, never served', async () => {
    const real = await fs.realpath(path.join(root, 'results/source/data.txt'));
    await flipBitKeepMtime(real);
    expect(await fs.readFile(real, 'utf8')).toBe('0\n2\n3\n4\n5\n');
    const r = await cli(root, ['run', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cache entry source \([0-9a-f]{12}\) corrupted \(file data\.txt content changed\): recomputing/);
    expect(labelsWith(await stageStatuses(root), 'ran')).toEqual(['source']);
    expect(await fs.readFile(path.join(root, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n');
    // After the commit (chmod included) the recorded stats are the file's: the next no-op re-hashes nothing.
    const again = await cli(root, ['run']);
    expect(again.stdout).toContain('nothing to run');
    expect(again.stderr).not.toContain('corrupted');
  });

  it('verify re-hashes every entry in use, reports a corrupted one and what it affects, removes it, exits 1', async () => {
    const ok = await cli(root, ['verify']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ok: 8 entries in use, \d+ files .* re-hashed, none corrupted$/m);

    // Same size, content changed, every stat put back except ctime: only a re-hash can see it.
    const real = await fs.realpath(path.join(root, 'results/train/k=1,seed=0/model.json'));
    await flipBitKeepMtime(real);
    const bad = await cli(root, ['verify']);
    expect(bad.code).toBe(1);
    // Its readers, transitively: evaluate reads train, report reads every evaluate.
    expect(bad.stdout).toMatch(/^corrupted train\[k=1,seed=0\] [0-9a-f]{12}: file model\.json content changed; affects evaluate\[k=1,seed=0\], report; removed, the next run recomputes it$/m);
    expect(bad.stdout).toMatch(/^1 corrupted: 8 entries in use/m);

    const dry = await cli(root, ['run', '--dry-run']);
    expect(dry.stdout).toMatch(/to run\s+train\[k=1,seed=0\]\s/);
    const r = await cli(root, ['run']);
    expect(r.code, r.stderr).toBe(0);
    expect(labelsWith(await stageStatuses(root), 'ran')).toEqual(['train[k=1,seed=0]']);
    expect((await cli(root, ['verify'])).code).toBe(0);
  });

  it('run --verify re-hashes an entry even when its stats match the manifest', async () => {
    // Corrupt the bytes and then make the manifest's recorded stats match them (as a lying quick check would).
    const real = await fs.realpath(path.join(root, 'results/source/data.txt'));
    await flipBitKeepMtime(real);
    const fp = path.basename(path.dirname(path.dirname(real)));
    const manifestFile = path.join(root, '.cache/objects', fp, 'manifest.json');
    const manifest = JSON.parse(await fs.readFile(manifestFile, 'utf8'));
    manifest.files['data.txt'].stat = await fileStat(real);
    await fs.writeFile(manifestFile, JSON.stringify(manifest));

    const plain = await cli(root, ['run', '--dry-run']);
    expect(plain.stdout).toContain('nothing to run'); // the quick check trusts equal stats
    const r = await cli(root, ['run', '--verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cache entry source \([0-9a-f]{12}\) corrupted \(file data\.txt content changed\): recomputing/);
    expect(await fs.readFile(path.join(root, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n');
  });

  it('a failed run leaves results/ showing the last complete run; its own outputs are in results/runs/<id>/outputs', async () => {
    const shown = await fs.readlink(path.join(root, 'results/runs/latest'));
    // source reruns with new content, slow (which reads it) fails, the rest runs on the new source.
    const r = await cli(root, ['run', '--set', 'source.n=6', '--set', 'slow.fail=true']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`results/ still shows run ${shown} (this run failed)`);
    expect(await fs.readlink(path.join(root, 'results/runs/latest'))).toBe(shown);
    expect(await fs.readFile(path.join(root, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n');
    expect(await fs.readFile(path.join(root, 'results/double/doubled.txt'), 'utf8')).not.toContain('value=12');
    const runId = /^run (\S+):/m.exec(r.stdout)![1];
    const own = path.join(root, 'results/runs', runId, 'outputs');
    expect(await fs.readFile(path.join(own, 'source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n6\n');
    expect(await fs.readFile(path.join(own, 'double/doubled.txt'), 'utf8')).toContain('value=12');
    await expect(fs.access(path.join(own, 'slow'))).rejects.toThrow();

    // The next complete run switches everything at once.
    const ok = await cli(root, ['run', '--set', 'source.n=6']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await fs.readlink(path.join(root, 'results/runs/latest'))).toBe(/^run (\S+):/m.exec(ok.stdout)![1]);
    expect(await fs.readFile(path.join(root, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n6\n');
    expect(await fs.readFile(path.join(root, 'results/double/doubled.txt'), 'utf8')).toContain('value=12');
  });

  it('a smaller matrix drops the instances the run does not have; a targeted run keeps only what still matches', async () => {
    const r = await cli(root, ['run', '--set', 'source.n=6', '--set', 'train.k=[2]']);
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.readdir(path.join(root, 'results/train'))).sort()).toEqual(['k=2,seed=0']);
    // A targeted run of source with other params: downstream links made from the old source go.
    const t = await cli(root, ['run', 'source', '--set', 'source.n=5', '--set', 'train.k=[2]']);
    expect(t.code, t.stderr).toBe(0);
    expect(await fs.readFile(path.join(root, 'results/source/data.txt'), 'utf8')).toBe('1\n2\n3\n4\n5\n');
    for (const stale of ['double', 'train', 'evaluate', 'report', 'slow']) {
      await expect(fs.lstat(path.join(root, 'results', stale)), stale).rejects.toThrow();
    }
    // A targeted run that changes nothing upstream keeps the downstream links (they still match).
    const full = await cli(root, ['run', '--set', 'source.n=5', '--set', 'train.k=[2]']);
    expect(full.code, full.stderr).toBe(0);
    const again = await cli(root, ['run', 'source', '--set', 'source.n=5', '--set', 'train.k=[2]']);
    expect(again.code, again.stderr).toBe(0);
    expect(await fs.readFile(path.join(root, 'results/double/doubled.txt'), 'utf8')).toContain('value=10');
    expect((await fs.readdir(path.join(root, 'results/train'))).sort()).toEqual(['k=2,seed=0']);
  });
});
