/**
 * Read-only access to results.duckdb for the report. Every number in the report comes from a
 * query run through here, so the SQL shown in the page is exactly what produced it.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

/** A result row with plain JS values (BIGINT → number, everything JSON-serialisable). */
export type Row = Record<string, string | number | boolean | null>;

export interface ReportDb {
  query(sql: string): Promise<Row[]>;
  /** Whether a table or view of that name exists (main schema). */
  hasRelation(name: string): Promise<boolean>;
  /** Whether a table or view has a column of that name (tables gain columns as stages change). */
  hasColumn(table: string, column: string): Promise<boolean>;
  close(): void;
}

function plain(v: unknown): string | number | boolean | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  // Timestamps, decimals, lists, structs: their string form (the report casts in SQL where it matters).
  return String(v);
}

export function wrapConnection(connection: DuckDBConnection, onClose?: () => void): ReportDb {
  const relations = new Map<string, boolean>();
  return {
    async query(sql: string): Promise<Row[]> {
      const reader = await connection.runAndReadAll(sql);
      return reader.getRowObjectsJS().map((r) => {
        const out: Row = {};
        for (const [key, value] of Object.entries(r)) out[key] = plain(value);
        return out;
      });
    },
    async hasRelation(name: string): Promise<boolean> {
      const key = name.toLowerCase();
      if (!relations.has(key)) {
        const reader = await connection.runAndReadAll(
          `SELECT count(*) AS n FROM information_schema.tables WHERE lower(table_name) = '${key.replace(/'/g, "''")}'`,
        );
        const n = Number(reader.getRowObjectsJS()[0]?.n ?? 0);
        relations.set(key, n > 0);
      }
      return relations.get(key)!;
    },
    async hasColumn(table: string, column: string): Promise<boolean> {
      const q = (v: string) => `'${v.toLowerCase().replace(/'/g, "''")}'`;
      const reader = await connection.runAndReadAll(
        `SELECT count(*) AS n FROM information_schema.columns WHERE lower(table_name) = ${q(table)} AND lower(column_name) = ${q(column)}`,
      );
      return Number(reader.getRowObjectsJS()[0]?.n ?? 0) > 0;
    },
    close() {
      onClose?.();
    },
  };
}

/** Opens the database file read-only (the engine's parent process is its only writer). */
export async function openReportDb(dbPath: string): Promise<ReportDb> {
  const instance = await DuckDBInstance.create(dbPath, { access_mode: 'READ_ONLY' });
  const connection = await instance.connect();
  return wrapConnection(connection, () => {
    connection.closeSync();
    instance.closeSync();
  });
}
