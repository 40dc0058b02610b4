/**
 * One lock per store: <store>/lock holds {pid, host, started} of the run that owns the store.
 * Created with O_EXCL (link of a complete temp file), so two runs can never both own it. A lock
 * whose owner is a dead process on this host is cleared with a message.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockHeldError } from './errors.ts';

export interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

export interface Lock {
  file: string;
  release(): Promise<void>;
  releaseSync(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readLock(file: string): Promise<LockInfo | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as LockInfo;
  } catch {
    return undefined;
  }
}

export interface AcquireOptions {
  /** Seconds to wait for a live owner to finish (0: fail at once). */
  waitSeconds?: number;
  log?: (message: string) => void;
}

export async function acquireLock(file: string, opts: AcquireOptions = {}): Promise<Lock> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const deadline = Date.now() + (opts.waitSeconds ?? 0) * 1000;
  const me: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  await fs.mkdir(path.dirname(file), { recursive: true });
  let announcedWait = false;
  for (;;) {
    // Write a complete file first, then hard-link it into place: the link fails if a lock exists,
    // and a reader never sees a half-written lock.
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    await fs.writeFile(tmp, JSON.stringify(me));
    try {
      await fs.link(tmp, file);
      await fs.unlink(tmp);
      return makeLock(file, me);
    } catch (e) {
      await fs.unlink(tmp).catch(() => undefined);
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = await readLock(file);
    if (!owner) {
      // Unreadable: mid-removal by another process, or garbage. Garbage older than a few seconds goes.
      const st = await fs.stat(file).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 5000) {
        log(`removing unreadable lock ${file}`);
        await fs.unlink(file).catch(() => undefined);
      } else await sleep(100);
      continue;
    }
    if (owner.host === me.host && !alive(owner.pid)) {
      if (await removeIfSame(file, owner)) {
        log(`cleared a stale lock ${file} left by pid ${owner.pid} (started ${owner.started}), which is no longer running`);
      }
      continue;
    }
    const where = owner.host === me.host ? `pid ${owner.pid}` : `pid ${owner.pid} on ${owner.host}`;
    if (Date.now() >= deadline) {
      throw new LockHeldError(`another pipeline run (${where}, started ${owner.started}) holds ${file}`);
    }
    if (!announcedWait) {
      log(`waiting for another pipeline run (${where}, started ${owner.started}) to release ${file}`);
      announcedWait = true;
    }
    await sleep(Math.min(250, Math.max(10, deadline - Date.now())));
  }
}

/** Remove the lock only if it still is the stale one we read (another process may have replaced it). */
async function removeIfSame(file: string, stale: LockInfo): Promise<boolean> {
  const aside = `${file}.stale.${process.pid}`;
  try {
    await fs.rename(file, aside);
  } catch {
    return false;
  }
  const moved = await readLock(aside);
  if (moved && (moved.pid !== stale.pid || moved.started !== stale.started)) {
    // We moved a fresh lock by mistake: put it back unless someone took the place meanwhile.
    await fs.link(aside, file).catch(() => undefined);
    await fs.unlink(aside).catch(() => undefined);
    return false;
  }
  await fs.unlink(aside).catch(() => undefined);
  return true;
}

function makeLock(file: string, me: LockInfo): Lock {
  let released = false;
  const owned = async (): Promise<boolean> => {
    const cur = await readLock(file);
    return !!cur && cur.pid === me.pid && cur.started === me.started;
  };
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      if (await owned()) await fs.unlink(file).catch(() => undefined);
    },
    releaseSync() {
      if (released) return;
      released = true;
      try {
        const cur = JSON.parse(fsSync.readFileSync(file, 'utf8')) as LockInfo;
        if (cur.pid === me.pid && cur.started === me.started) fsSync.unlinkSync(file);
      } catch {
        /* already gone */
      }
    },
  };
}
