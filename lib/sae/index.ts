/** Public API of the SAE library (TopK SAE and g-SAE). */
export type { SaeArch, SaeWeights, SparseCode } from './types.ts';
export {
  trainSae,
  resolveTrainConfig,
  learningRate,
  hasCheckpoint,
  SAE_DEFAULTS,
  type TrainSaeConfig,
  type ResolvedTrainConfig,
  type SaeTrainCallbacks,
  type TrainMetrics,
  type TrainSaeResult,
} from './train.ts';
export { encodeSparse, decodeSparse, evaluateSae, selectionChangeRate, usesGradient, type SaeEvaluation } from './infer.ts';
export { saveSae, saveTrainResult, loadSae, loadSaeCfg, loadFiringCounts, type FiringStats, type SaeLensMeta } from './io.ts';
export { selectTopK, SelectScratch } from './select.ts';
