/**
 * --jobs N runs independent instances in parallel processes. Two independent 1-second stages:
 * with --jobs 1 their intervals do not overlap; with --jobs 2 they do, and together they take
 * well under the sum of both (compared against --jobs 1 in the same test, not against a constant).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, makeProject, removeProject } from './helpers.ts';

interface Interval {
  start: number;
  end: number;
  cpus: number;
}

async function intervals(root: string): Promise<[Interval, Interval]> {
  const read = async (s: string): Promise<Interval> => JSON.parse(await fs.readFile(path.join(root, 'results', s, 'interval.json'), 'utf8')) as Interval;
  return [await read('a'), await read('b')];
}

const overlap = ([a, b]: [Interval, Interval]): number => Math.min(a.end, b.end) - Math.max(a.start, b.start);
const span = ([a, b]: [Interval, Interval]): number => Math.max(a.end, b.end) - Math.min(a.start, b.start);

describe('parallel instances', () => {
  const roots: string[] = [];
  afterAll(async () => {
    for (const r of roots) await removeProject(r);
  });

  it('two independent 1-second stages overlap with --jobs 2 and not with --jobs 1', async () => {
    const serialRoot = await makeProject('parallel');
    const parallelRoot = await makeProject('parallel');
    roots.push(serialRoot, parallelRoot);

    const serial = await cli(serialRoot, ['run', '--jobs', '1']);
    expect(serial.code, serial.stderr).toBe(0);
    const parallel = await cli(parallelRoot, ['run', '--jobs', '2']);
    expect(parallel.code, parallel.stderr).toBe(0);

    const s = await intervals(serialRoot);
    const p = await intervals(parallelRoot);
    for (const i of [...s, ...p]) expect(i.end - i.start).toBeGreaterThanOrEqual(1000);
    expect(overlap(s)).toBeLessThanOrEqual(0);
    // Measured overlap: the two seconds were spent (at least partly) at the same time, and the
    // pair took clearly less time than one after the other.
    expect(overlap(p)).toBeGreaterThan(0);
    expect(span(p)).toBeLessThan(span(s) - 500);
    // ctx.cpus: alone, an instance has every core; side by side, they share them
    const cores = os.availableParallelism();
    expect(s.map((i) => i.cpus)).toEqual([cores, cores]);
    expect(p.map((i) => i.cpus)).toEqual([Math.max(1, Math.floor(cores / 2)), Math.max(1, Math.floor(cores / 2))]);
  });
});
