/** Small helpers shared by the engine: canonical JSON, hashing, file walking. */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

/** JSON with object keys sorted, so equal values always give equal text (and equal hashes). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    if (flatAndSorted(value, keys)) return value; // serializes as it is (most of a fingerprint: code, packages)
    const out: Record<string, unknown> = {};
    for (const key of keys.sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** A plain object whose keys are in sorted order already and whose values are all JSON primitives. */
function flatAndSorted(value: object, keys: string[]): boolean {
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (let i = 0; i < keys.length; i++) {
    if (i > 0 && !(keys[i - 1] < keys[i])) return false;
    const v = (value as Record<string, unknown>)[keys[i]];
    if (v === undefined || (v !== null && typeof v === 'object') || typeof v === 'function') return false;
  }
  return true;
}

export function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Identity of a file's current bytes as far as the file system can tell cheaply. */
export interface FileStat {
  size: number;
  /** Modification time in nanoseconds (string: exceeds 2^53). */
  mtimeNs: string;
  /**
   * Status-change time in nanoseconds: set by the kernel on every write, chmod or rename of the
   * inode and cannot be set back by a user (unlike mtime, which `touch -d` restores), so a write
   * that keeps the size and restores the mtime is still seen.
   */
  ctimeNs: string;
  ino: string;
}

/*
 * The metadata reads below (stat, readdir, small JSON files) are synchronous inside async
 * signatures: each takes microseconds, while a promise round trip through libuv's thread pool took
 * ~1–3 ms under the concurrent cache checks of a run, and a no-op run is a chain of them
 * (76 instances: 235 ms of waiting).
 */
export async function fileStat(file: string): Promise<FileStat> {
  const st = statSync(file, { bigint: true });
  return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString(), ino: st.ino.toString() };
}

/** Equal size, mtime, ctime and inode: the bytes are trusted without re-hashing (a stat recorded without ctime never matches). */
export function sameStat(a: FileStat | undefined, b: FileStat | undefined): boolean {
  return !!a && !!b && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;
}

/** Every regular file below dir, as paths relative to dir with '/' separators, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  function walk(rel: string): void {
    const entries = readdirSync(path.join(dir, rel), { withFileTypes: true });
    for (const entry of entries) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) out.push(child);
      else if (entry.isSymbolicLink()) {
        const st = statSync(path.join(dir, child));
        if (st.isDirectory()) walk(child);
        else out.push(child);
      }
    }
  }
  walk('');
  return out.sort();
}

export async function exists(p: string): Promise<boolean> {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Write a file so readers never see it half-written: see base/atomic.ts. */
export { writeFileAtomic } from '../base/atomic.ts';

/** Short text for a value in messages: JSON, cut if long. */
export function showValue(value: unknown, max = 80): string {
  const text = value === undefined ? 'undefined' : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function getPath(obj: unknown, key: string): unknown {
  let cur: unknown = obj;
  for (const part of key.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.round(s - m * 60)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}
