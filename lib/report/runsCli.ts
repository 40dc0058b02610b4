/**
 * npm run compare-runs -- [run ids or prefixes...] [--md | --csv | --json] [--last N] [--db results/results.duckdb]
 * (not `npm run compare`: `compare` is the pipeline stage of the paired statistics)
 */
import { parseArgs } from 'node:util';
import { openReportDb } from './db.ts';
import { compareRuns, formatCsv, formatJson, formatMarkdown, formatText, selectRuns } from './runs.ts';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        db: { type: 'string', default: 'results/results.duckdb' },
        md: { type: 'boolean', default: false },
        csv: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        last: { type: 'string', default: '10' },
      },
    });
  } catch (e) {
    process.stderr.write(`compare-runs: ${(e as Error).message}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const last = Number(values.last);
  if (!Number.isInteger(last) || last < 1) {
    process.stderr.write(`compare-runs: --last must be a positive integer; got ${JSON.stringify(values.last)}\n`);
    return 2;
  }
  let db;
  try {
    db = await openReportDb(values.db!);
  } catch (e) {
    process.stderr.write(`compare-runs: cannot open ${values.db}: ${(e as Error).message.split('\n')[0]}\n`);
    return 2;
  }
  try {
    const ids = await selectRuns(db, positionals, last);
    if (ids.length === 0) {
      process.stderr.write('compare-runs: no run finished ok yet (name runs explicitly to include failed ones)\n');
      return 1;
    }
    const c = await compareRuns(db, ids);
    const text = values.json ? formatJson(c) : values.csv ? formatCsv(c) : values.md ? formatMarkdown(c) : formatText(c);
    process.stdout.write(`${text}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`compare-runs: ${(e as Error).message}\n`);
    return 2;
  } finally {
    db.close();
  }
}

process.exitCode = await main();
