/** The experiment: the list of stages, in dependency order, and the environment they depend on. */
import type { Project } from '../pipeline/types.ts';
import type { Params } from './params.gen.ts';
import { corpusSourceFingerprint, pretrainedFingerprint, resolveBackend } from './environment.ts';
import corpus from './corpus.ts';
import tokenize from './tokenize.ts';
import lm from './lm.ts';
import collect from './collect.ts';
import sae from './sae.ts';
import cleanRef from './clean_ref.ts';
import downstream from './downstream.ts';
import steering from './steering.ts';
import { interp, lmRandom, collectControl, saeControl, interpControl } from './interp.ts';
import compare from './compare.ts';
import report from './report.ts';
import { validateParams } from './validate.ts';
import path from 'node:path';
import { ratingsStamp } from '../lib/rate/store.ts';

export const stages: Project['stages'] = [corpus, tokenize, lm, collect, cleanRef, sae, downstream, steering, interp, lmRandom, collectControl, saeControl, interpControl, compare, report];

export async function environment(params: unknown): Promise<Record<string, string>> {
  const p = params as Params;
  return {
    backend: resolveBackend(p.backend),
    corpus_source: corpusSourceFingerprint(p.corpus.source),
    lm_pretrained: pretrainedFingerprint(p.lm.pretrained),
    // count + hash of the ratings table (npm run rate writes it): a new rating reruns the report only
    ratings: ratingsStamp(path.resolve('results')),
  };
}

/** Cross-field checks before anything runs (the engine calls this after the schema check). */
export function validate(params: unknown): string[] {
  return validateParams(params);
}
