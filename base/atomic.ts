/**
 * Atomic file writes: the data goes to a temporary file beside the target, is fsynced, and is
 * renamed over the target, so a reader (or a run resumed after a crash) never sees a half-written
 * file. The one implementation for pipeline/, lib/ and stages/ (here, outside all three, so each
 * can import it without breaking the layering).
 */

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

function tmpName(file: string): string {
  return `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
}

/** A file written in pieces through `fd` that appears at its path, complete, only on commit(). */
export interface AtomicFileSync {
  readonly fd: number;
  /** fsync, close, rename over the target. */
  commit(): void;
  /** Close and remove the temporary file; the target is untouched. */
  abort(): void;
}

/** Open a temporary file beside `file` (creating the parent directory) to be committed atomically. */
export function openFileAtomicSync(file: string): AtomicFileSync {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = tmpName(file);
  const fd = fs.openSync(tmp, 'w');
  return {
    fd,
    commit() {
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
    },
    abort() {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
    },
  };
}

/** Write `data` to `file` atomically (temp file, fsync, rename); creates the parent directory. */
export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  const out = openFileAtomicSync(file);
  try {
    fs.writeFileSync(out.fd, data);
  } catch (e) {
    out.abort();
    throw e;
  }
  out.commit();
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
