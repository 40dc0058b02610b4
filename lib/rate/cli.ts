/**
 * npm run rate [-- --port N] [--seed S] [--results DIR]: the blinded rating server on 127.0.0.1.
 * npm run rate -- --export FILE: every rating as JSON; --import FILE: add the ratings of FILE
 * (validated against the latents shown here; duplicates of (rater, instance, latent, time) skipped).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { projectPaths } from '../../pipeline/project.ts';
import { Store } from '../../pipeline/store.ts';
import { loadItems } from './items.ts';
import { RatingsStore, type Rating } from './store.ts';
import { startRateServer } from './server.ts';

const program = new Command('rate')
  .option('--port <n>', 'port (0 = any free port)', '8765')
  .option('--seed <n>', 'seed of the shuffled order', '0')
  .option('--root <dir>', 'project root', process.cwd())
  .option('--export <file>', 'write every rating to a JSON file and exit')
  .option('--import <file>', 'add the ratings of a JSON file (from --export) and exit')
  .parse();
const o = program.opts<{ port: string; seed: string; root: string; export?: string; import?: string }>();
const paths = projectPaths({ root: o.root });
const store = new RatingsStore(path.join(paths.resultsDir, 'results.duckdb'), new Store(paths.cacheDir).lockFile, paths.resultsDir);

if (o.export) {
  const all = await store.all();
  fs.writeFileSync(o.export, JSON.stringify({ format: 'gsae-ratings-v1', ratings: all }, null, 1));
  console.log(`wrote ${all.length} ratings to ${o.export}`);
} else if (o.import) {
  const j = JSON.parse(fs.readFileSync(o.import, 'utf8'));
  if (j.format !== 'gsae-ratings-v1' || !Array.isArray(j.ratings)) throw new Error(`${o.import}: not a gsae-ratings-v1 file (npm run rate -- --export)`);
  const seen = new Set((await store.all()).map((r) => `${r.rater}|${r.instance}|${r.latent}|${r.time}`));
  const known = new Map(loadItems(paths.resultsDir).map((it) => [`${it.instance}|${it.latent}`, it]));
  const add: Rating[] = [];
  for (const r of j.ratings as Rating[]) {
    const it = known.get(`${r.instance}|${r.latent}`);
    if (!it) throw new Error(`${o.import}: rating of unknown latent ${r.instance} #${r.latent} (not in this results/): nothing imported`);
    if (!Number.isInteger(r.score) || r.score < 1 || r.score > 5) throw new Error(`${o.import}: score ${r.score} not in 1–5: nothing imported`);
    if (!seen.has(`${r.rater}|${r.instance}|${r.latent}|${r.time}`)) add.push({ ...r, arch: it.arch, beta: it.beta, k: it.k, seed: it.seed, label: String(r.label ?? '') });
  }
  const waiting = await store.add(add);
  console.log(`imported ${add.length} ratings (${j.ratings.length - add.length} already present)${waiting ? `; ${waiting} queued: a pipeline run holds the store` : ''}`);
} else {
  const items = loadItems(paths.resultsDir, Number(o.seed));
  const srv = await startRateServer(items, store, { port: Number(o.port) });
  console.log(`rating ${items.length} latents at ${srv.url}  (Ctrl-C to stop)`);
  const stop = async () => {
    await srv.close();
    if (store.pending) console.log(`${store.pending} ratings still queued in ${store.pendingFile}: the next npm run rate writes them`);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
