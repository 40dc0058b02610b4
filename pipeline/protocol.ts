/** Messages between the engine (parent) and a stage instance's child process, over Node IPC. */
import type { FileEntry } from './store.ts';
import type { StageContext } from './types.ts';

/** The per-instance fields of the stage context travel as they are; the child adds the methods. */
export interface StartMessage extends Pick<StageContext, 'instance' | 'inputs' | 'inputsAll' | 'outDir' | 'scratchDir' | 'env'> {
  type: 'start';
  stage: string;
  label: string;
  /** Module that declares the stage (absolute), and the stages module as a fallback. */
  modulePath: string;
  stagesModule: string;
  params: unknown;
  /** The params keys this instance declares (conditional entries resolved). */
  declared: string[];
  /** Matrix lists of conditional variables this instance lacks: params key -> variable. */
  hidden: Record<string, string>;
  outputs: string[];
  /** results.duckdb of the run, for ctx.readResults (default: results/results.duckdb under the cwd). */
  resultsDb?: string;
  /** CPU cores this instance may use (see StageContext.cpus); absent: all of the machine's. */
  cpus?: number;
}

export interface MetricRecord {
  name: string;
  value: number;
  step: number | null;
}

export type TableRow = Record<string, string | number | boolean | null>;

export type ChildMessage =
  | { type: 'log'; message: string }
  | { type: 'progress'; done: number; total: number; info?: Record<string, string | number> }
  | { type: 'metrics'; items: MetricRecord[] }
  | { type: 'table'; name: string; rows: TableRow[] }
  | { type: 'done'; files: Record<string, FileEntry> }
  | { type: 'error'; message: string; stack?: string };
