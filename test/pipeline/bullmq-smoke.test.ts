/**
 * The real project on BullMQ (smoke preset, real CLI, redis-server, s3rver): a coordinator and two
 * workers (separate checkouts and stores) run the matrix stage `sae` and what it needs, and give
 * the same fingerprints and output hashes as a local `--jobs 2` run; the remote instances' progress
 * reaches the coordinator's display like a local instance's.
 */
import { describe, expect, it } from 'vitest';
import { cli, labelsWith, stageStatuses } from './helpers.ts';
import { entries } from './scaleout.ts';
import { useScaleOut } from './scaleout-suite.ts';

describe('BullMQ on the smoke preset', () => {
  const so = useScaleOut();

  it('coordinator + two workers run the sae matrix: same fingerprints and output hashes as a local --jobs 2 run', async () => {
    const url = `s3://${so.s3.bucket}/smoke`;
    const args = ['run', 'sae', '--params', 'params.smoke.yaml', '--jobs', '2', '--progress', 'plain'];
    const local = await so.repoCheckout();
    const l = await cli(local, args);
    expect(l.code, l.stdout + l.stderr).toBe(0);
    const w1 = await so.worker(await so.repoCheckout(), url);
    const w2 = await so.worker(await so.repoCheckout(), url);
    const coord = await so.repoCheckout();
    const r = await cli(coord, [...args, '--executor', 'bullmq', '--redis', so.redis.url, '--remote', url], so.s3.env);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const st = await stageStatuses(coord);
    expect(labelsWith(st, 'ran').filter((x) => x.startsWith('sae[')).length).toBe(6);
    expect(labelsWith(st, 'ran').length).toBe(Object.keys(st).length);
    expect(await entries(coord)).toEqual(await entries(local));
    const ranOn = [w1, w2].map((w) => (w.output().stderr.match(/committed to the remote/g) ?? []).length);
    expect(ranOn[0] + ranOn[1]).toBe(Object.keys(st).length);
    expect(Math.min(...ranOn)).toBeGreaterThan(0);
    // What the stage printed on the worker is in the coordinator's display, as for a local instance.
    expect(r.stdout).toMatch(/\[sae\[arch=gsae,beta=3,k=8,seed=0\]\] held-out FVU/);
    expect(r.stdout).toMatch(/\[sae\[arch=gsae,beta=3,k=8,seed=0\]\] ran on worker/);
  }, 300_000);
});
