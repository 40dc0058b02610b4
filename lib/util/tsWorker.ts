/**
 * A worker thread running a TypeScript module: the worker registers tsx's loader and imports
 * `entry`, so this works under tsx, vitest and any ESM host with the tsx package installed. A
 * module that fails to load posts `{ type: 'boot-error', message }` (its stack) instead of 'ready'.
 * The one bootstrap of the gradient workers (lib/model/parallel.ts) and the SAE kernel pool
 * (lib/sae/pool.ts).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);

function bootSource(entry: URL): string {
  const tsxDir = path.dirname(require.resolve('tsx/package.json'));
  const tsxApi = pathToFileURL(path.join(tsxDir, 'dist', 'esm', 'api', 'index.mjs')).href;
  // Eval code runs as CommonJS: dynamic import() only.
  return (
    `(async () => { const { register } = await import(${JSON.stringify(tsxApi)}); register(); ` +
    `await import(${JSON.stringify(entry.href)}); })().catch((e) => { ` +
    `require('node:worker_threads').parentPort.postMessage({ type: 'boot-error', message: String(e && e.stack || e) }); });`
  );
}

/** Start a worker thread running the TypeScript module at `entry` with `workerData`. */
export function startTsWorker(entry: URL, workerData: unknown): Worker {
  return new Worker(bootSource(entry), { eval: true, workerData });
}
