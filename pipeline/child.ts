/**
 * Entry point of a child process running one stage instance. Started by the engine with the tsx
 * loader; receives a StartMessage, runs the stage, checks and hashes its outputs, reports back.
 */
import * as fs from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { withReadOnlyDb } from './db.ts';
import { projectParams } from './projection.ts';
import type { ChildMessage, MetricRecord, StartMessage, TableRow } from './protocol.ts';
import { hashOutputs } from './store.ts';
import type { StageContext, StageDef } from './types.ts';

function send(msg: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

async function findStage(msg: StartMessage): Promise<StageDef> {
  const isStage = (v: unknown): v is StageDef =>
    !!v && typeof v === 'object' && (v as StageDef).name === msg.stage && typeof (v as StageDef).run === 'function';
  const mod = (await import(pathToFileURL(msg.modulePath).href)) as Record<string, unknown>;
  for (const v of Object.values(mod)) if (isStage(v)) return v;
  const index = (await import(pathToFileURL(msg.stagesModule).href)) as { stages?: unknown[]; default?: { stages?: unknown[] } };
  const found = (index.stages ?? index.default?.stages ?? []).find(isStage);
  if (!found) throw new Error(`stage "${msg.stage}" not found in ${msg.modulePath} or ${msg.stagesModule}`);
  return found;
}

async function runStage(msg: StartMessage): Promise<void> {
  const stage = await findStage(msg);
  let pendingMetrics: MetricRecord[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const flushMetrics = (): void => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = undefined;
    if (pendingMetrics.length === 0) return;
    void send({ type: 'metrics', items: pendingMetrics });
    pendingMetrics = [];
  };
  const addMetric = (name: string, value: number, step: number | undefined): void => {
    if (typeof name !== 'string' || name === '') throw new Error('ctx.metric: name must be a non-empty string');
    if (typeof value !== 'number') throw new Error(`ctx.metric(${name}): value must be a number, got ${typeof value}`);
    if (step !== undefined && step !== null && !Number.isFinite(step)) throw new Error(`ctx.metric(${name}): step must be a finite number, got ${step}`);
    pendingMetrics.push({ name, value, step: step ?? null });
    if (pendingMetrics.length >= 1000) flushMetrics();
    else flushTimer ??= setTimeout(flushMetrics, 250);
  };
  let lastProgress = 0;
  const ctx: StageContext = {
    params: projectParams(msg.params, msg.declared, msg.stage, msg.hidden),
    instance: Object.freeze({ ...msg.instance }),
    inputs: msg.inputs,
    inputsAll: msg.inputsAll,
    outDir: msg.outDir,
    scratchDir: msg.scratchDir,
    env: Object.freeze({ ...msg.env }),
    cpus: msg.cpus ?? availableParallelism(),
    log: (message) => void send({ type: 'log', message: String(message) }),
    progress: (done, total, info) => {
      const now = Date.now();
      if (now - lastProgress < 200 && done < total) return;
      lastProgress = now;
      void send({ type: 'progress', done, total, info });
    },
    metric: (name, value, options) => addMetric(name, value, options?.step),
    metrics: (values, options) => {
      for (const [name, value] of Object.entries(values)) addMetric(name, value, options?.step);
    },
    table: (name, rows: TableRow[]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`ctx.table: "${name}" is not a valid table name`);
      if (!Array.isArray(rows)) throw new Error(`ctx.table(${name}): rows must be an array of objects`);
      if (rows.length > 0) void send({ type: 'table', name, rows });
    },
    readResults: (fn) => withReadOnlyDb(msg.resultsDb ?? path.resolve('results', 'results.duckdb'), fn),
  };
  try {
    await stage.run(ctx);
  } finally {
    flushMetrics(); // metrics of a failed attempt are recorded too (latest_metrics ignores them)
  }
  const missing: string[] = [];
  for (const out of msg.outputs) {
    try {
      await fs.stat(path.join(msg.outDir, out));
    } catch {
      missing.push(out);
    }
  }
  if (missing.length > 0) throw new Error(`run() finished but did not create its declared outputs: ${missing.join(', ')}`);
  const files = await hashOutputs(msg.outDir);
  // resourceUsage().maxRSS is in KiB and counts the worker threads of this process too.
  await send({ type: 'log', message: `peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB` });
  await send({ type: 'done', files });
}

// If the engine dies (even by SIGKILL) the IPC channel closes: stop too, committing nothing.
process.on('disconnect', () => process.exit(70));

process.once('message', (msg: StartMessage) => {
  runStage(msg).then(
    () => process.exit(0),
    async (e: unknown) => {
      const err = e instanceof Error ? e : new Error(String(e));
      await send({ type: 'error', message: err.message, stack: err.stack });
      process.exit(1);
    },
  );
});
