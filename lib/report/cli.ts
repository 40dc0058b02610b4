/**
 * Build the report from the command line, outside the pipeline:
 *   npx tsx lib/report/cli.ts [--db results/results.duckdb] [--out results/report] [--run <run_id>]
 *                             [--latents latents.json]   (a LatentBrowserData JSON array)
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildReport } from './index.ts';
import type { LatentBrowserData } from './types.ts';

const { values } = parseArgs({
  options: {
    db: { type: 'string', default: 'results/results.duckdb' },
    out: { type: 'string', default: 'results/report' },
    run: { type: 'string' },
    latents: { type: 'string' },
  },
});

const latentBrowser = values.latents ? (JSON.parse(await readFile(values.latents, 'utf8')) as LatentBrowserData) : undefined;
const res = await buildReport({ dbPath: values.db!, outDir: values.out!, latentBrowser, meta: { runId: values.run } });
for (const c of res.charts) {
  process.stdout.write(`${c.status.padEnd(8)} ${c.name.padEnd(30)} ${String(c.rows).padStart(6)} rows${c.message ? `  ${c.message}` : ''}\n`);
}
for (const s of res.claims.summary) process.stdout.write(`claim ${s.claim}: ${s.status}\n`);
process.stdout.write(`${res.indexHtml}\n`);
if (res.charts.some((c) => c.status === 'error')) process.exitCode = 1;
