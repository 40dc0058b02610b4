/**
 * compare: the paired statistics behind every verdict (lib/eval/compare.ts): g-SAE − TopK per
 * k, β and seed on the same held-out sequences / steering contexts, over seeds, β* per k chosen on
 * the val split, Holm across k. Writes the DuckDB tables `paired` and `beta_selection`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { StageDef, UpstreamInstance } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { readJson } from './common.ts';

const stage = defineStage<Params>()({
  name: 'compare',
  description: 'Paired differences g-SAE − TopK with CIs, β* on val, verdicts and Holm across k',
  params: ['compare', 'interp.margin'],
  inputs: {
    downstream: { stage: 'downstream', all: true },
    steering: { stage: 'steering', all: true },
    interp: { stage: 'interp', all: true },
    interp_control: { stage: 'interp_control', all: true },
  },
  outputs: ['paired.json'],
  async run(ctx) {
    const { readDownstream } = await import('../lib/eval/downstream.ts');
    const { compareAll } = await import('../lib/eval/compare.ts');
    const p = ctx.params.compare;
    const arch = (u: UpstreamInstance) => String(u.instance.arch) as 'topk' | 'gsae';
    const beta = (u: UpstreamInstance) => (u.instance.beta === undefined ? 0 : Number(u.instance.beta));
    const downstream = ctx.inputsAll.downstream.map((u) => {
      const s = readJson(path.join(u.dir, 'summary.json'));
      const test = readDownstream(path.join(u.dir, 'per_token')).arrays;
      const val = readDownstream(path.join(u.dir, 'per_token_val')).arrays;
      const seqLen = Number(readDownstream(path.join(u.dir, 'per_token')).meta.seqLen);
      return {
        arch: arch(u),
        beta: beta(u),
        k: Number(u.instance.k),
        seed: Number(u.instance.seed),
        seqLen,
        test: test as never,
        val: val as never,
        dead: Math.round(s.dead_frac * s.m),
        m: Number(s.m),
        changeRate: s.change_rate,
        changeRateVal: s.change_rate_val,
      };
    });
    const steering = ctx.inputsAll.steering.map((u) => {
      const j = readJson(path.join(u.dir, 'latents.json'));
      return {
        arch: arch(u),
        beta: beta(u),
        k: Number(u.instance.k),
        seed: Number(u.instance.seed),
        alphas: j.alphas as number[],
        contexts: j.contexts.evaluation as number[],
        kl: j.per_context.kl,
        effect: j.per_context.effect,
      };
    });
    const interpScores = (dir: string) => readJson(path.join(dir, 'scores.json'));
    const interp = ctx.inputsAll.interp.map((u) => ({
      arch: arch(u),
      beta: beta(u),
      k: Number(u.instance.k),
      seed: Number(u.instance.seed),
      scores: (interpScores(u.dir).scores as { score: number }[]).map((s) => s.score),
    }));
    const res = compareAll(downstream, steering, { resamples: p.bootstrap_resamples, seed: p.seed, matchKl: p.match_kl, interpMargin: ctx.params.interp.margin }, interp);
    // Per-SAE automatic scores (and the random-init LM control) for the report's claim 4 row.
    const interpSummary = [
      ...ctx.inputsAll.interp.map((u) => ({ u, control: false })),
      ...ctx.inputsAll.interp_control.map((u) => ({ u, control: true })),
    ].map(({ u, control }) => {
      const s = interpScores(u.dir);
      return { arch: control ? 'topk' : arch(u), beta: control ? 0 : beta(u), k: Number(u.instance.k), seed: control ? 0 : Number(u.instance.seed), control, mean: s.mean, lo: s.lo, hi: s.hi, single_token_frac: s.single_token_frac, latents: s.scores.length };
    });
    ctx.table('interp_summary', interpSummary);
    ctx.table('paired', res.paired as never);
    ctx.table('beta_selection', res.betaSelection as never);
    if (res.matchKl !== null) ctx.metric('match_kl', res.matchKl);
    for (const r of res.paired.filter((r) => r.primary && r.seed === null && r.split === 'test' && r.is_beta_star)) {
      const ci = r.lo === null ? 'no CI' : `[${r.lo.toPrecision(3)}, ${r.hi!.toPrecision(3)}]`;
      ctx.log(`claim ${r.claim} ${r.label}${r.rule ? ` (${r.rule})` : ''} k=${r.k} β*=${r.beta}: g − t = ${r.diff.toPrecision(3)} ${ci}, ${r.interval}: ${r.verdict} (Holm: ${r.verdict_holm})`);
    }
    fs.writeFileSync(path.join(ctx.outDir, 'paired.json'), JSON.stringify({ ...res, interp: interpSummary }, null, 1));
  },
});
export default stage;
