/**
 * latest_metrics follows the fingerprint each instance currently uses (current_instances): a param
 * switched to B and back to a cached A shows A's numbers again, not B's; metrics of a failed
 * attempt never appear. The toy project's train stage logs loss = 1 / (step + w), w = lr · (k + seed)
 * summed over the steps so far, and evaluate logs score = sum / (1 + w), so every lr gives different numbers.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { querySql } from '../../pipeline/db.ts';
import { cli, makeProject, removeProject, stageStatuses } from './helpers.ts';

/** The toy train loss at step 1 and the evaluate score (numbers 1..5, sum 15) for one lr and k (seed 0). */
const loss1 = (lr: number, k: number): number => 1 / (1 + lr * k);
const score = (lr: number, k: number): number => 15 / (1 + 5 * lr * k);

describe('latest_metrics and current_instances follow the current fingerprint (toy project, real CLI)', () => {
  let root: string;
  let db: string;
  const q = async (sql: string): Promise<unknown[][]> => (await querySql(db, sql)).rows;
  const runIds: string[] = [];
  /** Fingerprint of an instance in a run. */
  const fp = async (runId: string, stage: string, k: number): Promise<string> =>
    (await q(`SELECT fingerprint FROM stage_runs WHERE run_id = '${runId}' AND stage = '${stage}' AND (instance->>'k') = '${k}'`))[0][0] as string;
  const latest = async (stage: string, k: number, step: number | null): Promise<unknown[][]> =>
    q(`SELECT round(value, 6), fingerprint, run_id FROM latest_metrics
       WHERE stage = '${stage}' AND (instance->>'k') = '${k}' AND step ${step === null ? 'IS NULL' : `= ${step}`}`);
  const run = async (args: string[], code = 0): Promise<string> => {
    const r = await cli(root, ['run', 'evaluate', '--jobs', '2', ...args]);
    expect(r.code, r.stdout + r.stderr).toBe(code);
    const id = (await q('SELECT run_id FROM runs ORDER BY started DESC LIMIT 1'))[0][0] as string;
    runIds.push(id);
    return id;
  };
  const r6 = (x: number): number => Math.round(x * 1e6) / 1e6;

  beforeAll(async () => {
    root = await makeProject('toy');
    db = path.join(root, 'results/results.duckdb');
  });
  afterAll(async () => {
    await removeProject(root);
  });

  it('A, then B, then A again (cached): latest_metrics shows A, current_instances A’s fingerprint', async () => {
    const a = await run([]); // train.lr = 0.1 in params.yaml
    const b = await run(['--set', 'train.lr=0.3']);
    expect(Object.values(await stageStatuses(root, b)).filter((s) => s === 'ran')).toHaveLength(4);
    const a2 = await run([]);
    expect(await stageStatuses(root, a2)).toEqual({
      source: 'cached',
      'train[k=1,seed=0]': 'cached',
      'train[k=2,seed=0]': 'cached',
      'evaluate[k=1,seed=0]': 'cached',
      'evaluate[k=2,seed=0]': 'cached',
    });
    const fpA = await fp(a, 'train', 1);
    expect(await fp(b, 'train', 1)).not.toBe(fpA);
    expect(await fp(a2, 'train', 1)).toBe(fpA);

    // The scenario tells the rules apart: the old view (latest run in which the instance RAN) gives B.
    expect(
      await q(`SELECT round(m.value, 6) FROM metrics m JOIN stage_runs s ON s.run_id = m.run_id AND s.stage = m.stage
                 AND s.instance::VARCHAR = m.instance::VARCHAR AND s.status = 'ran' JOIN runs r ON r.run_id = m.run_id
               WHERE m.stage = 'train' AND (m.instance->>'k') = '1' AND m.step = 1 ORDER BY r.started DESC LIMIT 1`),
    ).toEqual([[r6(loss1(0.3, 1))]]);

    // latest_metrics: A's numbers, computed in run a, with A's fingerprint.
    expect(await latest('train', 1, 1)).toEqual([[r6(loss1(0.1, 1)), fpA, a]]);
    expect(await latest('train', 2, 1)).toEqual([[r6(loss1(0.1, 2)), await fp(a, 'train', 2), a]]);
    expect(await latest('evaluate', 1, null)).toEqual([[r6(score(0.1, 1)), await fp(a, 'evaluate', 1), a]]);
    expect(await latest('evaluate', 2, null)).toEqual([[r6(score(0.1, 2)), await fp(a, 'evaluate', 2), a]]);
    // One row per (stage, instance, name, step): 5 loss steps per train instance, one score per evaluate instance.
    expect(await q(`SELECT stage, count(*)::INT FROM latest_metrics WHERE stage IN ('train', 'evaluate') GROUP BY stage ORDER BY stage`)).toEqual([
      ['evaluate', 2],
      ['train', 10],
    ]);
    expect(await q(`SELECT count(*)::INT FROM latest_metrics WHERE run_id = '${b}'`)).toEqual([[0]]);

    // current_instances: A's fingerprint, used last in the third run.
    expect(await q(`SELECT stage, instance::VARCHAR, label, fingerprint, used_in_run FROM current_instances ORDER BY stage, instance::VARCHAR`)).toEqual([
      ['evaluate', '{"k":1,"seed":0}', 'evaluate[k=1,seed=0]', await fp(a, 'evaluate', 1), a2],
      ['evaluate', '{"k":2,"seed":0}', 'evaluate[k=2,seed=0]', await fp(a, 'evaluate', 2), a2],
      ['source', '{}', 'source', (await q(`SELECT fingerprint FROM stage_runs WHERE run_id = '${a}' AND stage = 'source'`))[0][0], a2],
      ['train', '{"k":1,"seed":0}', 'train[k=1,seed=0]', fpA, a2],
      ['train', '{"k":2,"seed":0}', 'train[k=2,seed=0]', await fp(a, 'train', 2), a2],
    ]);
  });

  it('a failed attempt: its metrics never appear; the failed instance keeps its current numbers', async () => {
    const [a, , a2] = runIds;
    // C: lr = 0.5 with train k=2 failing after logging its 5 losses.
    const c = await run(['--set', 'train.lr=0.5', '--set', 'train.fail_k=2'], 1);
    expect(await stageStatuses(root, c)).toEqual({
      source: 'cached',
      'train[k=1,seed=0]': 'ran',
      'train[k=2,seed=0]': 'failed',
      'evaluate[k=1,seed=0]': 'ran',
      'evaluate[k=2,seed=0]': 'skipped',
    });
    expect(await q(`SELECT count(*)::INT FROM metrics WHERE run_id = '${c}' AND stage = 'train' AND (instance->>'k') = '2'`)).toEqual([[5]]);
    // Nothing of the failed instance from run c; k=2 still shows A, k=1 shows C.
    expect(await q(`SELECT count(*)::INT FROM latest_metrics WHERE run_id = '${c}' AND (instance->>'k') = '2'`)).toEqual([[0]]);
    expect(await latest('train', 2, 1)).toEqual([[r6(loss1(0.1, 2)), await fp(a, 'train', 2), a]]);
    expect(await latest('evaluate', 2, null)).toEqual([[r6(score(0.1, 2)), await fp(a, 'evaluate', 2), a]]);
    expect(await latest('train', 1, 1)).toEqual([[r6(loss1(0.5, 1)), await fp(c, 'train', 1), c]]);
    expect(await latest('evaluate', 1, null)).toEqual([[r6(score(0.5, 1)), await fp(c, 'evaluate', 1), c]]);
    // A failed or skipped attempt does not change what an instance currently is.
    expect(await q(`SELECT stage, (instance->>'k'), used_in_run FROM current_instances WHERE stage <> 'source' ORDER BY 1, 2`)).toEqual([
      ['evaluate', '1', c],
      ['evaluate', '2', a2],
      ['train', '1', c],
      ['train', '2', a2],
    ]);
  });
});
