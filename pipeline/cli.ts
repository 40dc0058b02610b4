/**
 * The engine's command line: run (default), dag, query, types.
 *   npx tsx pipeline/cli.ts run [targets...] [--force <t>] [--dry-run] [--jobs N] [--set k=v] ...
 * Exit codes: 0 ok, 1 a stage failed, 2 bad params / usage, 3 lock held, 130 interrupted.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { toDot, toMermaid } from './dag.ts';
import { querySql } from './db.ts';
import { CorruptRemoteObject, EngineError } from './errors.ts';
import { buildInstances } from './graph.ts';
import { readParamsFile, readSchema, validateParams } from './params.ts';
import { checkStageDefs, importProject, projectPaths } from './project.ts';
import { acquireLock } from './lock.ts';
import type { RemoteCache } from './remote.ts';
import { runPipeline } from './runner.ts';
import type { BullMQExecutor } from './executor.ts';
import { redactUrl } from './queue.ts';
import { UsageError } from './errors.ts';
import { Store } from './store.ts';
import { verifyStore } from './verify.ts';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number of seconds >= 0');
  return n;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** The S3 remote; its SDK (and BullMQ's, in the executor) load only when asked for: a local start stays fast. */
async function remoteCache(url: string, endpoint: string | undefined): Promise<RemoteCache> {
  const { RemoteCache } = await import('./remote.ts');
  return new RemoteCache({ url, endpoint });
}

interface RemoteOpts {
  remote?: string;
  s3Endpoint?: string;
}

interface CommonOpts {
  root?: string;
  params?: string;
}

const rootOption = (): Option => new Option('--root <dir>', 'project root').default(process.cwd(), 'current directory');
const paramsOption = (): Option => new Option('--params <file>', 'params file, relative to the root').default('params.yaml');

export function buildCli(): Command {
  const program = new Command('pipeline')
    .description('Declarative stage pipeline: fingerprints, content-addressed cache, parallel runs, DuckDB run store.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('run', { isDefault: true })
    .description('run every stage instance whose outputs are missing or stale (or only TARGETS and what they need)')
    .argument('[targets...]', "stage names or instance filters, e.g. sae or 'sae[k=32]'")
    .addOption(rootOption())
    .addOption(paramsOption())
    .option('--force <target>', 'rerun this stage (or filter) even if cached; repeatable', collect, [])
    .option('-n, --dry-run', 'list every instance as cached or to run, with the reason; run nothing')
    .option('-j, --jobs <n>', 'instances run in parallel', positiveInt, os.availableParallelism())
    .option('--set <key=value>', 'override a param for this run (YAML value), e.g. --set sae.k=[8,16]; repeatable', collect, [])
    .option('--wait <seconds>', 'wait this long for another run holding the store lock', nonNegative, 0)
    .option('--verify', 're-hash every cache entry before it is used, whatever its file stats (corrupted ones are recomputed)')
    .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'tty', 'plain', 'none']).default('auto'))
    .option('--remote <url>', 'shared remote cache s3://bucket/prefix: misses are pulled from it, new entries pushed to it')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)')
    .addOption(new Option('--executor <kind>', 'where instances run: local child processes or BullMQ workers').choices(['local', 'bullmq']).default('local'))
    .option('--redis <url>', 'Redis for --executor bullmq: redis://[user:password@]host:port or rediss:// (TLS)')
    .action(async (targets: string[], o: CommonOpts & RemoteOpts & { executor: 'local' | 'bullmq'; redis?: string } & { force: string[]; dryRun?: boolean; jobs: number; set: string[]; wait: number; verify?: boolean; progress: 'auto' }) => {
      const controller = new AbortController();
      let interrupts = 0;
      let firstAt = 0;
      const onSignal = (sig: NodeJS.Signals): void => {
        // Ctrl-C reaches us both from the terminal and relayed by npm/tsx: count one per second.
        if (interrupts > 0 && Date.now() - firstAt < 1000) return;
        if (interrupts === 0) firstAt = Date.now();
        interrupts++;
        process.stderr.write(`\n${sig}: stopping running stages (nothing uncommitted is kept)${interrupts > 1 ? '' : '; again to force'}\n`);
        if (interrupts > 1) process.exit(130);
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const remote = o.remote ? await remoteCache(o.remote, o.s3Endpoint) : undefined;
      let executor: BullMQExecutor | undefined;
      if (o.executor === 'bullmq') {
        if (!o.redis) throw new UsageError('--executor bullmq needs --redis redis://host:6379');
        if (!remote) throw new UsageError('--executor bullmq needs --remote s3://bucket/prefix (workers exchange outputs through it)');
        const { BullMQExecutor } = await import('./executor.ts');
        executor = new BullMQExecutor(o.redis, remote, (l) => process.stderr.write(`${l}\n`));
        try {
          await executor.connect();
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
      }
      const summary = await runPipeline({
        root: o.root,
        params: o.params,
        targets,
        force: o.force,
        dryRun: o.dryRun,
        jobs: o.jobs,
        set: o.set,
        waitSeconds: o.wait,
        verify: o.verify,
        progress: o.progress,
        signal: controller.signal,
        // Credentials never reach results.duckdb: URLs are recorded without their password.
        command: ['run', ...process.argv.slice(3).map(redactUrl)].join(' '),
        remote,
        executor,
      }).finally(() => executor?.close());
      process.exitCode = summary.exitCode;
      // With Redis gone, BullMQ's connections keep retrying and would hold the process open.
      if (executor?.lostRedis) process.exit(summary.exitCode);
    });

  program
    .command('dag')
    .description('print the stage graph (Mermaid; --dot for Graphviz DOT)')
    .addOption(rootOption())
    .addOption(paramsOption())
    .option('--dot', 'Graphviz DOT instead of Mermaid')
    .action(async (o: CommonOpts & { dot?: boolean }) => {
      const paths = projectPaths(o);
      const project = await importProject(paths.stagesModule);
      checkStageDefs(project.stages);
      let counts: Map<string, number> | undefined;
      try {
        const params = await readParamsFile(paths.params);
        validateParams(params, await readSchema(paths.schema));
        counts = new Map();
        for (const i of buildInstances(project.stages, params)) counts.set(i.stage.name, (counts.get(i.stage.name) ?? 0) + 1);
      } catch {
        counts = undefined; // the graph does not need params; instance counts do.
      }
      process.stdout.write(`${o.dot ? toDot(project.stages, counts) : toMermaid(project.stages, counts)}\n`);
    });

  program
    .command('query')
    .description('run SQL on results/results.duckdb and print a table')
    .argument('<sql>', 'SQL, e.g. "select * from latest_metrics"')
    .addOption(rootOption())
    .option('--json', 'print rows as JSON objects')
    .option('--csv', 'print CSV')
    .action(async (sql: string, o: { root?: string; json?: boolean; csv?: boolean }) => {
      const paths = projectPaths(o);
      const { columns, rows } = await querySql(path.join(paths.resultsDir, 'results.duckdb'), sql);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]]))), null, 1)}\n`);
      } else if (o.csv) {
        const cell = (v: unknown): string => {
          const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
          return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
        };
        process.stdout.write(`${[columns, ...rows].map((r) => r.map(cell).join(',')).join('\n')}\n`);
      } else {
        process.stdout.write(`${formatTable(columns, rows)}\n`);
      }
    });

  program
    .command('gc')
    .description('remove cache entries that no instance last used (older params, dropped matrix values)')
    .addOption(rootOption())
    .option('-n, --dry-run', 'only list what would be removed')
    .option('--wait <seconds>', 'wait this long for another run holding the store lock', nonNegative, 0)
    .action(async (o: { root?: string; dryRun?: boolean; wait: number }) => {
      const paths = projectPaths(o);
      const store = new Store(paths.cacheDir);
      const lock = await acquireLock(store.lockFile, { waitSeconds: o.wait });
      try {
        const { removed, kept } = await store.gc(!!o.dryRun);
        for (const r of removed) process.stdout.write(`${o.dryRun ? 'would remove' : 'removed'} ${r.label} ${r.fingerprint.slice(0, 12)} (${(r.bytes / 1e6).toFixed(1)} MB)\n`);
        const mb = removed.reduce((a, r) => a + r.bytes, 0) / 1e6;
        process.stdout.write(`${removed.length} entr${removed.length === 1 ? 'y' : 'ies'} (${mb.toFixed(1)} MB) ${o.dryRun ? 'to remove' : 'removed'}; ${kept} kept\n`);
      } finally {
        await lock.release();
      }
    });

  program
    .command('verify')
    .description('re-hash every cache entry in use; report corrupted ones and the instances they affect, and remove them so the next run recomputes them (exit 1 if any)')
    .addOption(rootOption())
    .option('--wait <seconds>', 'wait this long for another run holding the store lock', nonNegative, 0)
    .action(async (o: { root?: string; wait: number }) => {
      const paths = projectPaths(o);
      const store = new Store(paths.cacheDir);
      const lock = await acquireLock(store.lockFile, { waitSeconds: o.wait });
      try {
        const r = await verifyStore(store, { remove: true });
        for (const c of r.corrupted) {
          const affects = c.affects.length > 0 ? `; affects ${c.affects.join(', ')}` : '';
          process.stdout.write(`corrupted ${c.label} ${c.fingerprint.slice(0, 12)}: ${c.problem}${affects}; removed, the next run recomputes it\n`);
        }
        const summary = `${r.checked} entr${r.checked === 1 ? 'y' : 'ies'} in use, ${r.files} files (${(r.bytes / 1e6).toFixed(1)} MB) re-hashed`;
        process.stdout.write(r.corrupted.length === 0 ? `ok: ${summary}, none corrupted\n` : `${r.corrupted.length} corrupted: ${summary}\n`);
        if (r.corrupted.length > 0) process.exitCode = 1;
      } finally {
        await lock.release();
      }
    });

  program
    .command('worker')
    .description('run stage jobs of a coordinator (`run --executor bullmq`) from Redis, exchanging outputs through the remote cache')
    .addOption(rootOption())
    .requiredOption('--redis <url>', 'redis://[user:password@]host:port or rediss:// (TLS)')
    .requiredOption('--remote <url>', 'remote cache s3://bucket/prefix')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)')
    .option('--concurrency <n>', 'jobs run at once', positiveInt, 1)
    .action(async (o: { root?: string; redis: string; remote: string; s3Endpoint?: string; concurrency: number }) => {
      const remote = await remoteCache(o.remote, o.s3Endpoint);
      const { BullMQExecutor } = await import('./executor.ts');
      const { startWorker } = await import('./worker.ts');
      const probe = new BullMQExecutor(o.redis, remote, () => undefined);
      try {
        await probe.connect();
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const w = await startWorker({ root: o.root, redis: o.redis, remote, concurrency: o.concurrency });
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.stderr.write('worker stopping (running jobs go back to the queue)\n');
          void w.close().then(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  program
    .command('push')
    .description('upload every cache entry in use (refs/) to the remote cache, write-once (like dvc push)')
    .addOption(rootOption())
    .requiredOption('--remote <url>', 'remote cache s3://bucket/prefix')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)')
    .option('--all', 'every committed entry, not only those in use')
    .action(async (o: { root?: string; remote: string; s3Endpoint?: string; all?: boolean }) => {
      const paths = projectPaths(o);
      const store = new Store(paths.cacheDir);
      const remote = await remoteCache(o.remote, o.s3Endpoint);
      const fps = o.all ? await store.fingerprints() : [...(await store.referenced())].sort();
      let pushed = 0;
      let failed = 0;
      for (const fp of fps) {
        try {
          const r = await remote.pushEntry(store, fp);
          if (r.pushed) pushed++;
        } catch (e) {
          failed++;
          process.stderr.write(`${(e as Error).message}\n`);
        }
      }
      process.stdout.write(`${pushed} entr${pushed === 1 ? 'y' : 'ies'} pushed, ${fps.length - pushed - failed} already there${failed ? `, ${failed} failed` : ''}\n`);
      if (failed) process.exitCode = 1;
    });

  program
    .command('pull')
    .description('download entries of the remote cache into the local one, verifying every hash (like dvc pull)')
    .argument('[fingerprints...]', 'only these (default: every entry the remote holds)')
    .addOption(rootOption())
    .requiredOption('--remote <url>', 'remote cache s3://bucket/prefix')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)')
    .action(async (wanted: string[], o: { root?: string; remote: string; s3Endpoint?: string }) => {
      const paths = projectPaths(o);
      const store = new Store(paths.cacheDir);
      const remote = await remoteCache(o.remote, o.s3Endpoint);
      const fps = wanted.length > 0 ? wanted : await remote.fingerprints();
      const counts = { pulled: 0, present: 0, absent: 0, corrupted: 0 };
      const lock = await acquireLock(store.lockFile, { waitSeconds: 0 });
      try {
        for (const fp of fps) {
          try {
            counts[await remote.pullEntry(store, fp)]++;
          } catch (e) {
            if (!(e instanceof CorruptRemoteObject)) throw e;
            counts.corrupted++;
            process.stderr.write(`${e.message}\n`);
          }
        }
      } finally {
        await lock.release();
      }
      process.stdout.write(`${counts.pulled} pulled, ${counts.present} already present, ${counts.absent} not in the remote, ${counts.corrupted} corrupted (not used)\n`);
      if (counts.corrupted || counts.absent) process.exitCode = 1;
    });

  program
    .command('types')
    .description('generate <root>/stages/params.gen.ts (the Params type) from params.schema.json')
    .addOption(rootOption())
    .option('--check', 'only check that the generated file is up to date (exit 1 if stale)')
    .action(async (o: { root?: string; check?: boolean }) => {
      const paths = projectPaths(o);
      const out = path.join(path.dirname(paths.stagesModule), 'params.gen.ts');
      // loaded only here: json-schema-to-typescript and prettier cost ~0.1 s of every start otherwise
      const { writeParamsType } = await import('./codegen.ts');
      const r = await writeParamsType(paths.schema, out, !!o.check);
      const rel = path.relative(process.cwd(), r.file) || r.file;
      if (o.check && !r.upToDate) {
        process.stderr.write(`${rel} is stale: regenerate it with \`npx tsx pipeline/cli.ts types\`\n`);
        process.exitCode = 1;
      } else {
        process.stdout.write(r.written ? `wrote ${rel}\n` : `${rel} is up to date\n`);
      }
    });

  return program;
}

/** Aligned text table; numbers right-aligned; long cells cut. */
export function formatTable(columns: string[], rows: unknown[][]): string {
  const text = (v: unknown): string => {
    const s = v === null || v === undefined ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return s.length > 60 ? `${s.slice(0, 59)}…` : s;
  };
  const cells = rows.map((r) => r.map(text));
  const numeric = columns.map((_, i) => rows.some((r) => r[i] !== null) && rows.every((r) => r[i] === null || typeof r[i] === 'number' || (typeof r[i] === 'string' && /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(r[i] as string))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const fmt = (r: string[]): string => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const lines = [fmt(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(fmt)];
  lines.push(`(${rows.length} row${rows.length === 1 ? '' : 's'})`);
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code?.startsWith('commander.')) {
      // commander already printed the message (help or usage error).
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    }
    if (e instanceof EngineError) {
      process.stderr.write(`${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`${err.stack ?? String(e)}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname);
if (invokedDirectly) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
