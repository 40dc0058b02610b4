/**
 * Atomic file writes: the data goes to a temporary file beside the target, is fsynced, and is
 * renamed over the target, so a reader (or a run resumed after a crash) never sees a half-written
 * file. The one implementation for pipeline/, lib/ and stages/.
 */

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

function tmpName(file: string): string {
  return `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
}

/** Write `data` to `file` atomically (temp file, fsync, rename); creates the parent directory. */
export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = tmpName(file);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Async form of writeFileAtomicSync (same durability). */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = tmpName(file);
  const handle = await fsp.open(tmp, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tmp, file);
}

/** Point the symlink `link` at `target` atomically (a temporary link renamed over it). */
export async function symlinkAtomic(target: string, link: string): Promise<void> {
  const tmp = `${link}.${process.pid}.tmp-link`;
  await fsp.rm(tmp, { force: true });
  await fsp.symlink(target, tmp);
  await fsp.rename(tmp, link);
}
