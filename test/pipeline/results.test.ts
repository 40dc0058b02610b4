/**
 * switchResults: results/<stage> shows exactly the entries given; a stage that already does is
 * left as it is (no rename, no new links: a no-op run writes nothing there).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ResultEntry, switchResults } from '../../pipeline/store.ts';

describe('switchResults', () => {
  let dir: string;
  let results: string;
  const target = (fp: string): string => path.join(dir, '.cache/objects', fp, 'out');
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'switch-results-'));
    results = path.join(dir, 'results');
    for (const fp of ['a', 'b', 'c', 'd']) await fs.mkdir(target(fp), { recursive: true });
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Every path under results/ with its inode and link target. */
  async function state(): Promise<string[]> {
    const out: string[] = [];
    for (const rel of (await fs.readdir(results, { recursive: true })).sort()) {
      const p = path.join(results, rel);
      const st = await fs.lstat(p);
      out.push(`${rel} ${st.ino} ${st.isSymbolicLink() ? await fs.readlink(p) : 'dir'}`);
    }
    return out;
  }

  const matrix = (fps: string[]): ResultEntry[] => fps.map((fp, k) => ({ stage: 'train', instance: { k }, target: target(fp) }));

  it('leaves stages that already show the entries untouched, and switches the others', async () => {
    const plain: ResultEntry = { stage: 'source', instance: {}, target: target('a') };
    expect(await switchResults(results, [plain, ...matrix(['b', 'c'])], [])).toEqual([]);
    const first = await state();
    expect(first.map((l) => l.replace(/ \d+ /, ' '))).toEqual([
      'source ../.cache/objects/a/out',
      'train dir',
      'train/k=0 ../../.cache/objects/b/out',
      'train/k=1 ../../.cache/objects/c/out',
    ]);
    // The same entries: same inodes (nothing was recreated).
    await switchResults(results, [plain, ...matrix(['b', 'c'])], []);
    expect(await state()).toEqual(first);
    // One instance changed, one gone, one new: the stage is rebuilt to exactly these.
    await switchResults(results, [{ ...plain, target: target('d') }, ...matrix(['b']), { stage: 'train', instance: { k: 5 }, target: target('c') }], []);
    expect((await state()).map((l) => l.replace(/ \d+ /, ' '))).toEqual([
      'source ../.cache/objects/d/out',
      'train dir',
      'train/k=0 ../../.cache/objects/b/out',
      'train/k=5 ../../.cache/objects/c/out',
    ]);
    // A link with the right name but another target is not "already shown".
    await fs.rm(path.join(results, 'train/k=5'));
    await fs.symlink('../../.cache/objects/a/out', path.join(results, 'train/k=5'));
    await switchResults(results, [...matrix(['b']), { stage: 'train', instance: { k: 5 }, target: target('c') }], []);
    expect(await fs.readlink(path.join(results, 'train/k=5'))).toBe('../../.cache/objects/c/out');
  });
});
