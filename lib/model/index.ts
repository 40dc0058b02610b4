/** The language-model substrate: GPT-2 in tfjs with hooks, HF checkpoint I/O, training. */
export * from './types.ts';
export { GPT2, createGPT2, initGPT2Params, gpt2ParamShapes, hookNames, validateConfig } from './gpt2.ts';
export type { ForwardBackwardResult } from './gpt2.ts';
export { loadGPT2, loadGPT2Config, saveGPT2, toHFConfig, fromHFConfig, gpt2ModelName, mapHFTensors, describeSafetensors } from './hf.ts';
export {
  train,
  evaluateLoss,
  unigramEntropy,
  sampleBatch,
  learningRate,
  AdamW,
  DEFAULT_LM_CONFIG,
  LM_DEFAULTS,
} from './train.ts';
export type { TrainOptions, LmTrainCallbacks, TrainResult } from './train.ts';
