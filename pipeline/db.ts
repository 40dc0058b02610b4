/**
 * results/results.duckdb, written only by the engine's parent process. The file is opened only
 * while writing a batch and closed right after (the first batch's connection is opened as the run
 * starts checking its instances), so `npm run query` and the DuckDB CLI can open it between
 * batches and after the run. Every record is also appended to the run's records.jsonl.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { EngineError } from './errors.ts';
import type { MetricRecord, TableRow } from './protocol.ts';
import type { InstanceKey } from './types.ts';
import { canonicalJson } from './util.ts';

type Bindings = typeof import('@duckdb/node-bindings');
type Connection = import('@duckdb/node-bindings').Connection;
type SqlValue = string | number | boolean | bigint | null;

/**
 * The writer uses DuckDB's low-level bindings (the C API): they load in ~20 ms where the high-level
 * @duckdb/node-api takes ~150 ms, which matters for a no-op run. Queries use the high-level API.
 */
let loaded: Promise<Bindings> | undefined;
function bindings(): Promise<Bindings> {
  loaded ??= import('@duckdb/node-bindings').then((mod) => (mod as Bindings & { default?: Bindings }).default ?? (mod as Bindings));
  return loaded;
}

/** Start loading DuckDB's bindings (a ~60 MB native library) while the run plans. */
export function loadRunStore(): void {
  bindings().catch(() => undefined);
}

async function exec(d: Bindings, conn: Connection, sql: string, values: SqlValue[] = []): Promise<void> {
  if (values.length === 0) {
    await d.query(conn, sql);
    return;
  }
  const stmt = await d.prepare(conn, sql);
  try {
    values.forEach((v, i) => {
      const idx = i + 1;
      if (v === null || v === undefined) d.bind_null(stmt, idx);
      else if (typeof v === 'string') d.bind_varchar(stmt, idx, v);
      else if (typeof v === 'boolean') d.bind_boolean(stmt, idx, v);
      else if (typeof v === 'bigint') d.bind_int64(stmt, idx, v);
      else d.bind_double(stmt, idx, v);
    });
    await d.execute_prepared(stmt);
  } finally {
    d.destroy_prepare_sync(stmt);
  }
}

export interface RunRow {
  run_id: string;
  started: Date;
  finished: Date | null;
  git_commit: string | null;
  params: unknown;
  overrides: unknown;
  env: Record<string, string>;
  status: 'running' | 'ok' | 'failed' | 'interrupted';
  command: string;
  jobs: number;
}

export interface StageRunRow {
  stage: string;
  instance: InstanceKey;
  label: string;
  fingerprint: string | null;
  status: 'cached' | 'ran' | 'failed' | 'skipped';
  seconds: number;
  reason: string;
  started: Date;
  finished: Date;
}

type DbRecord =
  | { kind: 'run'; row: RunRow }
  | { kind: 'stage_run'; row: StageRunRow }
  | { kind: 'metrics'; stage: string; instance: InstanceKey; items: MetricRecord[] }
  | { kind: 'table'; name: string; stage: string; instance: InstanceKey; rows: TableRow[] };

export const ENGINE_TABLES = ['runs', 'stage_runs', 'metrics', 'current_instances', 'latest_metrics'];

/** The engine's tables and views (also used by tests that build a results.duckdb by hand). */
export const ENGINE_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR, started TIMESTAMP, finished TIMESTAMP, git_commit VARCHAR,
     params JSON, overrides JSON, env JSON, backend VARCHAR, status VARCHAR, command VARCHAR, jobs INTEGER)`,
  `CREATE TABLE IF NOT EXISTS stage_runs (run_id VARCHAR, stage VARCHAR, instance JSON, label VARCHAR,
     fingerprint VARCHAR, status VARCHAR, seconds DOUBLE, reason VARCHAR, started TIMESTAMP, finished TIMESTAMP)`,
  `CREATE TABLE IF NOT EXISTS metrics (run_id VARCHAR, stage VARCHAR, instance JSON, name VARCHAR,
     step BIGINT, value DOUBLE, seq BIGINT)`,
  // Per (stage, instance): the fingerprint the most recent run used for it (ran or cached), i.e.
  // what results/ shows now. Switching a param back to a cached value switches this back too.
  `CREATE OR REPLACE VIEW current_instances AS
     SELECT s.stage, s.instance, s.label, s.fingerprint, s.run_id AS used_in_run
     FROM stage_runs s JOIN runs r USING (run_id)
     WHERE s.status IN ('ran', 'cached') AND s.fingerprint IS NOT NULL
     QUALIFY row_number() OVER (PARTITION BY s.stage, s.instance::VARCHAR ORDER BY r.started DESC, s.finished DESC NULLS LAST) = 1`,
  // Per (stage, instance, name, step): the value computed for the instance's current fingerprint,
  // from the latest run that ran that fingerprint to success. Cached instances keep the numbers of
  // the run that computed them; metrics of failed attempts never appear.
  `CREATE OR REPLACE VIEW latest_metrics AS
     SELECT m.stage, m.instance, m.name, m.step, m.value, m.run_id, r.started AS run_started, c.fingerprint
     FROM current_instances c
     JOIN stage_runs s ON s.stage = c.stage AND s.instance::VARCHAR = c.instance::VARCHAR
       AND s.fingerprint = c.fingerprint AND s.status = 'ran'
     JOIN metrics m ON m.run_id = s.run_id AND m.stage = s.stage AND m.instance::VARCHAR = s.instance::VARCHAR
     JOIN runs r ON r.run_id = m.run_id
     QUALIFY row_number() OVER (PARTITION BY m.stage, m.instance::VARCHAR, m.name, m.step ORDER BY r.started DESC, m.seq DESC) = 1`,
];

/**
 * Set as the comment of the engine's views after its DDL ran: a batch finds it and skips the DDL
 * (5 statements, ~10 ms and a catalog write per batch), until ENGINE_SCHEMA changes.
 */
const SCHEMA_TAG = `pipeline engine schema ${createHash('sha256').update(ENGINE_SCHEMA.join(';\n')).digest('hex').slice(0, 16)}`;
const SCHEMA_CHECK = `SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND table_name IN ('runs', 'stage_runs', 'metrics')
  UNION ALL SELECT 1 FROM duckdb_views() WHERE database_name = current_database() AND schema_name = 'main' AND view_name IN ('current_instances', 'latest_metrics') AND comment = $1`;

async function ensureSchema(d: Bindings, conn: Connection): Promise<void> {
  const stmt = await d.prepare(conn, SCHEMA_CHECK);
  let found: number;
  try {
    d.bind_varchar(stmt, 1, SCHEMA_TAG);
    found = d.row_count(await d.execute_prepared(stmt));
  } finally {
    d.destroy_prepare_sync(stmt);
  }
  if (found === 5) return;
  for (const sql of ENGINE_SCHEMA) await exec(d, conn, sql);
  for (const view of ['current_instances', 'latest_metrics']) await exec(d, conn, `COMMENT ON VIEW ${view} IS '${SCHEMA_TAG}'`);
}

function isLockError(e: unknown): boolean {
  return /lock|Conflicting/i.test(String((e as Error)?.message ?? e));
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/** UTC 'YYYY-MM-DD HH:MM:SS.mmm', which DuckDB reads as a TIMESTAMP. */
function ts(d: Date | null): string | null {
  return d ? d.toISOString().replace('T', ' ').replace('Z', '') : null;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A table cell as a bindable value (objects, which the contract does not allow, become JSON text). */
function cell(v: unknown): SqlValue {
  if (v === undefined || v === null) return null;
  if (typeof v === 'object') return JSON.stringify(v);
  return v as SqlValue;
}

function sqlType(v: unknown): string {
  if (typeof v === 'number') return 'DOUBLE';
  if (typeof v === 'boolean') return 'BOOLEAN';
  return 'VARCHAR';
}

export class RunStore {
  private pending: DbRecord[] = [];
  private writing: Promise<void> = Promise.resolve();
  /** Appends to records.jsonl, in order. */
  private recordsWritten: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private warned = false;

  constructor(
    readonly dbPath: string,
    private readonly recordsFile: string,
    private readonly runId: string,
    private readonly log: (m: string) => void,
  ) {
    loadRunStore();
  }

  /** A connection opened ahead of the first batch (open()), which takes it over. */
  private early: Promise<{ db: import('@duckdb/node-bindings').Database; conn: Connection } | undefined> | undefined;

  /**
   * Open the database now, on DuckDB's threads, while the run checks its instances: the first batch
   * writes on this connection and closes it (until then the file is locked, as during any batch).
   */
  open(): void {
    this.early ??= (async () => {
      const d = await bindings();
      // Synchronously: an fs promise would settle only once this thread is free again, i.e. after
      // the cache checks, and the open would start only then.
      mkdirSync(path.dirname(this.dbPath), { recursive: true });
      const db = await d.open(this.dbPath);
      try {
        return { db, conn: await d.connect(db) };
      } catch (e) {
        d.close_sync(db);
        throw e;
      }
    })().catch(() => undefined); // a lock held by a reader, say: the batch opens it itself, with retries
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** records.jsonl lines not yet handed to an append (appended together, in order). */
  private lines: string[] = [];

  private add(rec: DbRecord): void {
    this.pending.push(rec);
    this.lines.push(`${JSON.stringify(rec)}\n`);
    if (this.lines.length > 1) return; // an append is already queued: it takes this line too
    this.recordsWritten = this.recordsWritten
      .then(() => fs.mkdir(path.dirname(this.recordsFile), { recursive: true }))
      .then(() => {
        const text = this.lines.join('');
        this.lines = [];
        return fs.appendFile(this.recordsFile, text);
      })
      .catch(() => undefined);
  }

  run(row: RunRow): void {
    this.add({ kind: 'run', row });
  }
  stageRun(row: StageRunRow): void {
    this.add({ kind: 'stage_run', row });
  }
  metrics(stage: string, instance: InstanceKey, items: MetricRecord[]): void {
    this.add({ kind: 'metrics', stage, instance, items: items.map((m) => ({ ...m, seq: this.seq++ }) as MetricRecord) });
  }
  table(name: string, stage: string, instance: InstanceKey, rows: TableRow[]): void {
    this.add({ kind: 'table', name, stage, instance, rows });
  }

  /** Write soon (batches records that arrive close together). */
  scheduleFlush(delayMs = 300): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
  }

  /** Write what is pending; resolves once it is committed and the file is closed again. */
  flush(): Promise<void> {
    return this.commitPending().then(() => this.closed());
  }

  /**
   * Write what is pending; resolves once it is committed (durable in DuckDB's WAL), while the
   * connection may still be checkpointing on DuckDB's threads (closed() waits for that).
   */
  commitPending(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(() => this.writeBatch());
    return Promise.all([this.writing, this.recordsWritten]).then(() => undefined);
  }

  /** The last batch's checkpoint and close (the file stays locked until then). */
  private closing: Promise<void> = Promise.resolve();

  /** Resolves once no connection of this store is open. */
  closed(): Promise<void> {
    return this.writing.then(() => this.closing);
  }

  private async writeBatch(): Promise<void> {
    if (this.pending.length === 0) return;
    await this.closing; // the previous batch's connection holds the file's lock until it closes
    const batch = this.pending;
    this.pending = [];
    const d = await bindings();
    let lastError: unknown;
    for (let attempt = 0; attempt < 40; attempt++) {
      let db: import('@duckdb/node-bindings').Database | undefined;
      let conn: Connection | undefined;
      try {
        const early = attempt === 0 && this.early ? await this.early : undefined;
        this.early = undefined;
        if (early) ({ db, conn } = early);
        else {
          await fs.mkdir(path.dirname(this.dbPath), { recursive: true });
          db = await d.open(this.dbPath);
          conn = await d.connect(db);
        }
        try {
          await this.write(d, conn, batch);
        } catch (e) {
          if (isLockError(e)) throw e;
          // A record the database rejects (e.g. a string in a DOUBLE column of a project table)
          // must not hold back the others: write one by one, report and drop the bad ones.
          for (const rec of batch) {
            await this.write(d, conn, [rec]).catch((err: unknown) =>
              this.log(`results.duckdb rejected a ${rec.kind} record (${firstLine(err)}); it is kept in ${this.recordsFile}`),
            );
          }
        }
        // Committed. The checkpoint runs on DuckDB's threads, while this one goes on (close_sync
        // would run it on this thread: ~20–40 ms at the end of every run); then the file is closed.
        const [openDb, openConn] = [db, conn];
        [db, conn] = [undefined, undefined];
        this.closing = d
          .query(openConn, 'CHECKPOINT')
          .catch(() => undefined) // close_sync checkpoints instead
          .then(() => {
            d.disconnect_sync(openConn);
            d.close_sync(openDb);
          })
          .catch(() => undefined); // what was committed is in the WAL: the next open replays it
        return;
      } catch (e) {
        lastError = e;
        // Another process (a query, the DuckDB CLI) holds the file: retry for a while.
        if (!isLockError(e)) break;
        await sleep(250);
      } finally {
        if (conn) d.disconnect_sync(conn);
        if (db) d.close_sync(db);
      }
    }
    this.pending = [...batch, ...this.pending];
    if (!this.warned) {
      this.warned = true;
      this.log(`could not write ${this.dbPath} (${firstLine(lastError)}); will retry; records are kept in ${this.recordsFile}`);
    }
  }

  private async write(d: Bindings, conn: Connection, batch: DbRecord[]): Promise<void> {
    await ensureSchema(d, conn);
    await exec(d, conn, 'BEGIN TRANSACTION');
    const stageRuns: StageRunRow[] = [];
    // A run's row is written as it starts, once its commit is known and as it ends: within one
    // batch, only the last of them is written.
    const lastRunRow = new Map<string, DbRecord>();
    for (const rec of batch) if (rec.kind === 'run') lastRunRow.set(rec.row.run_id, rec);
    try {
      for (const rec of batch) {
        if (rec.kind === 'run') {
          if (lastRunRow.get(rec.row.run_id) !== rec) continue;
          const r = rec.row;
          await exec(d, conn, 'DELETE FROM runs WHERE run_id = $1', [r.run_id]);
          await exec(d, conn, 'INSERT INTO runs VALUES ($1, $2::TIMESTAMP, $3::TIMESTAMP, $4, $5, $6, $7, $8, $9, $10, $11)', [
            r.run_id,
            ts(r.started),
            ts(r.finished),
            r.git_commit,
            canonicalJson(r.params ?? {}),
            canonicalJson(r.overrides ?? {}),
            canonicalJson(r.env ?? {}),
            r.env?.backend ?? null,
            r.status,
            r.command,
            r.jobs,
          ]);
        } else if (rec.kind === 'stage_run') {
          stageRuns.push(rec.row);
        } else if (rec.kind === 'metrics') {
          const app = d.appender_create(conn, null, 'metrics');
          const inst = canonicalJson(rec.instance);
          for (const m of rec.items) {
            d.append_varchar(app, this.runId);
            d.append_varchar(app, rec.stage);
            d.append_varchar(app, inst);
            d.append_varchar(app, m.name);
            if (m.step === null || m.step === undefined) d.append_null(app);
            else d.append_int64(app, BigInt(Math.round(m.step)));
            d.append_double(app, m.value);
            d.append_int64(app, BigInt((m as MetricRecord & { seq?: number }).seq ?? 0));
            d.appender_end_row(app);
          }
          d.appender_close_sync(app);
        } else {
          await this.writeTable(d, conn, rec.name, rec.stage, rec.instance, rec.rows);
        }
      }
      this.writeStageRuns(d, conn, stageRuns);
      await exec(d, conn, 'COMMIT');
    } catch (e) {
      await exec(d, conn, 'ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  /**
   * stage_runs rows through an appender: one INSERT per row took ~1 ms each (76 instances: 90 ms),
   * one INSERT of every row with bound values ~20–35 ms, the appender ~5 ms.
   */
  private writeStageRuns(d: Bindings, conn: Connection, rows: StageRunRow[]): void {
    if (rows.length === 0) return;
    const app = d.appender_create(conn, null, 'stage_runs');
    try {
      for (const r of rows) {
        d.append_varchar(app, this.runId);
        d.append_varchar(app, r.stage);
        d.append_varchar(app, canonicalJson(r.instance));
        d.append_varchar(app, r.label);
        if (r.fingerprint === null) d.append_null(app);
        else d.append_varchar(app, r.fingerprint);
        d.append_varchar(app, r.status);
        d.append_double(app, r.seconds);
        d.append_varchar(app, r.reason);
        d.append_timestamp(app, { micros: BigInt(r.started.getTime()) * 1000n });
        d.append_timestamp(app, { micros: BigInt(r.finished.getTime()) * 1000n });
        d.appender_end_row(app);
      }
    } finally {
      d.appender_close_sync(app);
    }
  }

  private async writeTable(d: Bindings, conn: Connection, name: string, stage: string, instance: InstanceKey, rows: TableRow[]): Promise<void> {
    const table = quoteIdent(name);
    // Column types come from the first row that has a non-null value for the column.
    const types = new Map<string, string>();
    for (const row of rows) {
      for (const [k, v] of Object.entries(row)) {
        if (!types.has(k) || (v !== null && types.get(k) === 'NULL')) types.set(k, v === null ? 'NULL' : sqlType(v));
      }
    }
    const cols = [...types.keys()];
    const typeOf = (c: string): string => (types.get(c) === 'NULL' ? 'VARCHAR' : types.get(c)!);
    const defs = cols.map((c) => `, ${quoteIdent(c)} ${typeOf(c)}`).join('');
    await exec(d, conn, `CREATE TABLE IF NOT EXISTS ${table} (run_id VARCHAR, stage VARCHAR, instance JSON${defs})`);
    for (const c of cols) await exec(d, conn, `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${quoteIdent(c)} ${typeOf(c)}`);
    const inst = canonicalJson(instance);
    const allCols = ['run_id', 'stage', 'instance', ...cols];
    const chunk = Math.max(1, Math.floor(2000 / allCols.length));
    for (let i = 0; i < rows.length; i += chunk) {
      const part = rows.slice(i, i + chunk);
      const values: SqlValue[] = [];
      const tuples = part.map((row) => {
        const start = values.length;
        values.push(this.runId, stage, inst, ...cols.map((c) => cell(row[c])));
        return `(${allCols.map((_, j) => `$${start + j + 1}`).join(', ')})`;
      });
      await exec(d, conn, `INSERT INTO ${table} (${allCols.map(quoteIdent).join(', ')}) VALUES ${tuples.join(', ')}`, values);
    }
  }
}

/**
 * Open `dbPath` read-only, run `fn` on a connection, close it. The engine holds the file only while
 * writing a batch: a lock conflict is retried for about 10 s (the one place that does this).
 */
export async function withReadOnlyDb<T>(dbPath: string, fn: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  let instance: DuckDBInstance | undefined;
  for (let attempt = 0; !instance; attempt++) {
    try {
      instance = await DuckDBInstance.create(dbPath, { access_mode: 'READ_ONLY' });
    } catch (e) {
      if (attempt >= 40 || !isLockError(e)) throw e;
      await sleep(250);
    }
  }
  const connection = await instance.connect();
  try {
    return await fn(connection);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** Run SQL against results.duckdb read-only; returns column names and rows as JSON-safe values. */
export async function querySql(dbPath: string, sql: string): Promise<{ columns: string[]; rows: unknown[][] }> {
  await fs.access(dbPath).catch(() => {
    throw new EngineError(`${dbPath} does not exist yet: run the pipeline first`, 1);
  });
  try {
    return await withReadOnlyDb(dbPath, async (connection) => {
      const reader = await connection.runAndReadAll(sql);
      return { columns: reader.columnNames(), rows: reader.getRowsJson() as unknown[][] };
    });
  } catch (e) {
    throw new EngineError(String((e as Error).message), 1);
  }
}
