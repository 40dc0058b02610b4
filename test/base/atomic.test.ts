/** base/atomic.ts: a file appears complete at its path on commit, never half-written. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openFileAtomicSync, symlinkAtomic, writeFileAtomicSync } from '../../base/atomic.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atomic-'));

describe('atomic writes', () => {
  it('openFileAtomicSync: the target keeps its old contents until commit; abort leaves no trace', () => {
    const file = path.join(dir, 'sub', 'a.bin');
    writeFileAtomicSync(file, 'old');
    const out = openFileAtomicSync(file);
    fs.writeSync(out.fd, 'new contents');
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    out.commit();
    expect(fs.readFileSync(file, 'utf8')).toBe('new contents');
    const dropped = openFileAtomicSync(file);
    fs.writeSync(dropped.fd, 'half');
    dropped.abort();
    expect(fs.readFileSync(file, 'utf8')).toBe('new contents');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['a.bin']);
  });

  it('symlinkAtomic replaces a link in one step', async () => {
    const link = path.join(dir, 'latest');
    await symlinkAtomic('run-1', link);
    await symlinkAtomic('run-2', link);
    expect(fs.readlinkSync(link)).toBe('run-2');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('latest'))).toEqual(['latest']);
  });
});
