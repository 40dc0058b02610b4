/**
 * Coordinator + 2 local BullMQ workers vs `run --jobs 2`, on the smoke preset (default) or the toy
 * fixture: wall time, and where the time of each remote instance goes. Needs redis-server on PATH.
 *   npm run bench -- scaleout [--toy] [targets...]
 * Per remote instance (medians over the instances):
 *   queued      job added → taken by a worker (BullMQ timestamp → processedOn)
 *   workerPrep  on the worker, around the stage process: re-plan with the job's params, recompute
 *               the fingerprint, pull the inputs, push the outputs ((finishedOn − processedOn) − run)
 *   coordinator on the coordinator, around the job: push the inputs, pull the result, commit
 *               (instance wall − (finishedOn − job added))
 *   run         the stage process on the worker (manifest `seconds`, as a local run measures it)
 */
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { querySql } from '../pipeline/db.ts';
import { parseRedisUrl, queueName } from '../pipeline/queue.ts';
import { parseRemoteUrl } from '../pipeline/remote.ts';
import { Store } from '../pipeline/store.ts';
import { cli } from '../test/pipeline/helpers.ts';
import { startScaleOut } from '../test/pipeline/scaleout.ts';

const argv = process.argv.slice(2);
const toy = argv.includes('--toy');
const targets = argv.filter((a) => !a.startsWith('--'));
const args = ['run', ...targets, '--jobs', '2', '--progress', 'none', ...(toy ? [] : ['--params', 'params.smoke.yaml'])];
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x: number): number => Math.round(x * 1000) / 1000;

const so = await startScaleOut();
try {
  const checkout = (): Promise<string> => (toy ? so.project() : so.repoCheckout());
  const local = await checkout();
  let t = Date.now();
  const l = await cli(local, args);
  const localS = (Date.now() - t) / 1000;
  if (l.code !== 0) throw new Error(`local run failed: ${l.stdout.slice(-3000)}\n${l.stderr.slice(-2000)}`);

  const url = `s3://${so.s3.bucket}/bench`;
  await so.worker(await checkout(), url);
  await so.worker(await checkout(), url);
  const coord = await checkout();
  t = Date.now();
  const r = await cli(coord, [...args, '--executor', 'bullmq', '--redis', so.redis.url, '--remote', url], so.s3.env);
  const remoteS = (Date.now() - t) / 1000;
  if (r.code !== 0) throw new Error(`coordinator run failed: ${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);

  // Per instance: the coordinator's wall (stage_runs), the job's timestamps (Redis), the run (manifest).
  const db = path.join(coord, 'results/results.duckdb');
  const rows = (await querySql(db, "SELECT label, fingerprint, seconds FROM stage_runs WHERE status = 'ran'")).rows;
  const store = new Store(path.join(coord, '.cache'));
  const env = (await querySql(db, 'SELECT env FROM runs')).rows[0][0] as string;
  const queue = new Queue(queueName(JSON.parse(env) as Record<string, string>, parseRemoteUrl(url)), { connection: parseRedisUrl(so.redis.url) as never });
  const parts = { queued: [] as number[], workerPrep: [] as number[], coordinator: [] as number[], run: [] as number[] };
  for (const [, fp, seconds] of rows as Array<[string, string, number]>) {
    const job = await queue.getJob(fp);
    const m = await store.readManifest(fp);
    if (!job?.processedOn || !job.finishedOn || !m) continue;
    parts.queued.push((job.processedOn - job.timestamp) / 1000);
    parts.workerPrep.push((job.finishedOn - job.processedOn) / 1000 - m.seconds);
    parts.coordinator.push(seconds - (job.finishedOn - job.timestamp) / 1000);
    parts.run.push(m.seconds);
  }
  await queue.close();
  const n = rows.length;
  console.log(
    JSON.stringify(
      {
        project: toy ? 'toy' : 'smoke preset',
        targets: targets.length ? targets : 'all',
        instances: n,
        localSeconds: round(localS),
        bullmqSeconds: round(remoteS),
        wallOverheadPerInstanceSeconds: round((remoteS - localS) / n),
        medianPerInstanceSeconds: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(median(v))])),
        totalPerInstanceSeconds: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(v.reduce((a, b) => a + b, 0))])),
      },
      null,
      1,
    ),
  );
} finally {
  await so.stop();
}
