/**
 * The `ratings` table of results/results.duckdb, written by the rating server only. The pipeline's
 * parent process is DuckDB's other writer, so every write takes the store's lock (the same lock a
 * pipeline run holds for its whole duration): while a run holds it, ratings wait in memory (and
 * in <results>/ratings.pending.json, so a crash loses nothing) and are flushed when it is free.
 * After each flush <results>/ratings.version holds the count and a hash of the table: the
 * project's environment() reads it, so the report (env field `ratings`) reruns when ratings change.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { acquireLock } from '../../pipeline/lock.ts';
import { LockHeldError } from '../../pipeline/errors.ts';

export interface Rating {
  rater: string;
  /** The SAE's stage instance, e.g. "arch=gsae,beta=3,k=8,seed=0". */
  instance: string;
  arch: string;
  beta: number | null;
  k: number;
  seed: number;
  latent: number;
  score: number;
  label: string;
  time: string;
}

export const RATINGS_DDL = `CREATE TABLE IF NOT EXISTS ratings (rater VARCHAR, instance VARCHAR, arch VARCHAR, beta DOUBLE, k INTEGER, seed INTEGER, latent INTEGER, score INTEGER, label VARCHAR, time VARCHAR)`;

export class RatingsStore {
  private queue: Rating[] = [];
  private flushing: Promise<number> | null = null;
  constructor(
    readonly dbPath: string,
    readonly lockFile: string,
    readonly resultsDir: string,
  ) {
    const pending = this.pendingFile;
    if (fs.existsSync(pending)) this.queue = JSON.parse(fs.readFileSync(pending, 'utf8'));
  }
  get pendingFile(): string {
    return path.join(this.resultsDir, 'ratings.pending.json');
  }
  get versionFile(): string {
    return path.join(this.resultsDir, 'ratings.version');
  }
  get pending(): number {
    return this.queue.length;
  }

  /** Queue ratings and try to write them; resolves to the number still waiting (0: written). */
  async add(rows: Rating[]): Promise<number> {
    this.queue.push(...rows);
    fs.mkdirSync(this.resultsDir, { recursive: true });
    fs.writeFileSync(this.pendingFile, JSON.stringify(this.queue));
    return this.flush();
  }

  /** Write the queue if the store's lock is free (never waits for a running pipeline). */
  async flush(): Promise<number> {
    while (this.flushing) await this.flushing;
    if (this.queue.length === 0) return 0;
    this.flushing = this.flushOnce().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async flushOnce(): Promise<number> {
    let lock;
    try {
      lock = await acquireLock(this.lockFile, { waitSeconds: 0, log: () => {} });
    } catch (e) {
      if (e instanceof LockHeldError || /lock/i.test(String((e as Error).message))) return this.queue.length;
      throw e;
    }
    try {
      const batch = [...this.queue];
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const inst = await DuckDBInstance.create(this.dbPath);
      const conn = await inst.connect();
      try {
        await conn.run(RATINGS_DDL);
        await conn.run('BEGIN TRANSACTION');
        for (const r of batch) {
          await conn.run('INSERT INTO ratings VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', [r.rater, r.instance, r.arch, r.beta, r.k, r.seed, r.latent, r.score, r.label, r.time] as never);
        }
        await conn.run('COMMIT');
        const res = await conn.runAndReadAll("SELECT count(*)::INTEGER AS n, coalesce(string_agg(rater || '|' || instance || '|' || latent || '|' || score || '|' || label || '|' || time, ';' ORDER BY time, rater, instance, latent), '') AS s FROM ratings");
        const [n, s] = res.getRows()[0] as [number, string];
        fs.writeFileSync(this.versionFile, `${n} ${crypto.createHash('sha256').update(String(s)).digest('hex').slice(0, 16)}\n`);
      } finally {
        conn.closeSync();
        inst.closeSync();
      }
      this.queue.splice(0, batch.length);
      if (this.queue.length) fs.writeFileSync(this.pendingFile, JSON.stringify(this.queue));
      else fs.rmSync(this.pendingFile, { force: true });
      return this.queue.length;
    } finally {
      await lock.release();
    }
  }

  /** Every rating in the table (read-only when the lock is held by someone else). */
  async all(): Promise<Rating[]> {
    if (!fs.existsSync(this.dbPath)) return [];
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const inst = await DuckDBInstance.create(this.dbPath, { access_mode: 'READ_ONLY' });
    const conn = await inst.connect();
    try {
      const has = await conn.runAndReadAll("SELECT count(*)::INTEGER FROM information_schema.tables WHERE table_name = 'ratings'");
      if (Number(has.getRows()[0][0]) === 0) return [];
      const res = await conn.runAndReadAll('SELECT rater, instance, arch, beta, k, seed, latent, score, label, time FROM ratings ORDER BY time, rater, instance, latent');
      return res.getRowObjectsJson() as unknown as Rating[];
    } finally {
      conn.closeSync();
      inst.closeSync();
    }
  }
}

/** The ratings stamp environment() records (a pipeline env field): "none" without ratings. */
export function ratingsStamp(resultsDir: string): string {
  const f = path.join(resultsDir, 'ratings.version');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : 'none';
}
