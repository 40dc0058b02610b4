/**
 * Coordinator + 2 local BullMQ workers vs `run --jobs 2` on the toy fixture project: wall time and
 * overhead per instance. Needs redis-server on PATH.   npx tsx bench/scaleout.ts
 */
import { cli, makeProject, removeProject, stageStatuses, startCli, waitFor } from '../test/pipeline/helpers.ts';
import { startRedis } from '../test/pipeline/redis.ts';
import { startS3 } from '../test/pipeline/s3.ts';

const redis = await startRedis();
const s3 = await startS3();
const roots: string[] = [];
const project = async (): Promise<string> => {
  const r = await makeProject('toy');
  roots.push(r);
  return r;
};
const local = await project();
let t = Date.now();
const l = await cli(local, ['run', '--jobs', '2']);
const localS = (Date.now() - t) / 1000;
const n = Object.keys(await stageStatuses(local)).length;
const url = `s3://${s3.bucket}/bench`;
const workers = [startCli(await project(), ['worker', '--redis', redis.url, '--remote', url], s3.env), startCli(await project(), ['worker', '--redis', redis.url, '--remote', url], s3.env)];
for (const w of workers) await waitFor(() => w.output().stderr.includes(' on queue '), 'worker');
const coord = await project();
t = Date.now();
const r = await cli(coord, ['run', '--jobs', '2', '--executor', 'bullmq', '--redis', redis.url, '--remote', url], s3.env);
const remoteS = (Date.now() - t) / 1000;
console.log(JSON.stringify({ instances: n, localExit: l.code, remoteExit: r.code, localSeconds: localS, bullmqSeconds: remoteS, overheadPerInstanceSeconds: (remoteS - localS) / n }));
for (const w of workers) w.child.kill('SIGTERM');
await Promise.all(workers.map((w) => w.done));
for (const x of roots) await removeProject(x);
await redis.stop();
await s3.stop();
