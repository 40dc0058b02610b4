/**
 * ctx.inputs / ctx.inputsAll are keyed by the inputs a stage declares (checked by `tsc --noEmit`,
 * which test/project.test.ts runs): a misspelt input name, or an `all` input read as a single one,
 * is a type error. At run time defineStage is the identity.
 */
import { describe, expect, it } from 'vitest';
import { defineStage } from '../../stages/define.ts';

const seen: unknown[] = [];
const probe = defineStage<{ a: number }>()({
  name: 'probe',
  params: [],
  inputs: { acts: { stage: 'collect' }, sae: { stage: 'sae', all: true } },
  outputs: [],
  async run(ctx) {
    const dir: string = ctx.inputs.acts;
    const saes = ctx.inputsAll.sae.map((u) => u.dir);
    // @ts-expect-error: no input of that name
    seen.push(ctx.inputs.actz);
    // @ts-expect-error: acts is a single input
    seen.push(ctx.inputsAll.acts);
    // @ts-expect-error: sae is declared with all: true
    seen.push(ctx.inputs.sae);
    seen.push(dir, saes);
  },
});

describe('stage types', () => {
  it('defineStage returns the declaration itself', () => {
    expect(probe.name).toBe('probe');
    expect(Object.keys(probe.inputs!)).toEqual(['acts', 'sae']);
  });
});
