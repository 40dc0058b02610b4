/**
 * `defineStage<Params>()({...})`: a stage declaration whose ctx.inputs / ctx.inputsAll are typed by
 * the input names it declares (pipeline/types.ts StageDef). The identity at run time.
 */
import type { InputSpecs, StageDef } from '../pipeline/types.ts';

export function defineStage<P>(): <const I extends InputSpecs = {}>(def: StageDef<P, I>) => StageDef<P, I> {
  return (def) => def;
}
