/**
 * clean_ref: the LM's clean pass on the held-out windows that downstream evaluates, once for every
 * SAE: CE_clean and the KL reference per position (w̄ = pᵀ wte and −H(p), lib/model/ortgraphs.ts
 * ceKlGraph), for val and test. downstream then runs only the spliced passes (and the clean pass of
 * its first batch, which must give these numbers bit for bit). Without the fused head (backends
 * other than wasm+ort) it stores nothing and every downstream instance runs its own clean pass.
 */
import path from 'node:path';
import type { Params } from './params.gen.ts';
import { defineStage } from './define.ts';
import { heldOutOf, initStageBackend, readJson, throttled } from './common.ts';

const stage = defineStage<Params>()({
  name: 'clean_ref',
  description: "The LM's clean pass on downstream's held-out windows, once for all SAEs: CE and the KL reference per position",
  params: ['downstream.tokens', 'downstream.batch_size'],
  inputs: { lm: { stage: 'lm' }, tokens: { stage: 'tokenize' }, acts: { stage: 'collect' } },
  env: ['backend'],
  outputs: ['test.bin', 'test.json', 'val.bin', 'val.json'],
  async run(ctx) {
    await initStageBackend(ctx);
    const { loadGPT2 } = await import('../lib/model/index.ts');
    const { readTokenSplits } = await import('../lib/tokens.ts');
    const { cleanReference } = await import('../lib/eval/downstream.ts');
    const { writeArrays } = await import('../lib/util/arrays.ts');
    const p = ctx.params.downstream;
    const model = loadGPT2(ctx.inputs.lm);
    const splits = readTokenSplits(ctx.inputs.tokens);
    const acts = readJson(path.join(ctx.inputs.acts, 'summary.json'));
    const hook: string = acts.hook;
    const seqLen: number = acts.seq_len;
    const d = model.config.dModel;
    const progress = throttled((done: number, total: number) => ctx.progress(done, total));
    for (const split of ['test', 'val'] as const) {
      const h = await heldOutOf(ctx.inputs.acts, splits[split], split, seqLen, d, p.tokens);
      const ref = cleanReference(model, splits[split], {
        hook,
        seqLen,
        batch: p.batch_size,
        nTokens: h.windows.length,
        windows: h.windows,
        activations: h.exact ? h.x : undefined,
        onProgress: progress,
      });
      const positions = ref ? ref.ce.length : 0;
      writeArrays(path.join(ctx.outDir, split), ref ? { ce: ref.ce, wbar: ref.wbar, a: ref.a } : {}, { split, available: ref !== null, positions, d, hook });
      if (ref) {
        let ce = 0;
        for (const v of ref.ce) ce += v;
        ctx.metrics({ [split === 'test' ? 'ce_clean' : 'ce_clean_val']: ce / positions, [split === 'test' ? 'positions' : 'positions_val']: positions });
      }
      ctx.log(ref ? `${split}: clean pass over ${positions} positions stored` : `${split}: no fused head on this backend: every downstream instance runs its own clean pass`);
    }
    model.dispose();
  },
});
export default stage;
