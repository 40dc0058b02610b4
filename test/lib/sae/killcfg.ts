/** Shared data and config of the kill test and its child process. */
import type { TrainSaeConfig } from '../../../lib/sae/train.ts';
import { plantedData } from './planted.ts';

export const killConfig: TrainSaeConfig = {
  arch: 'gsae',
  beta: 1,
  k: 4,
  m: 128,
  trainTokens: 40 * 256,
  batchSize: 256,
  lr: 3e-3,
  deadTokens: 512,
  seed: 5,
  threads: 1,
};

export function killData() {
  return plantedData({ d: 16, nAtoms: 64, s: 3, n: 4000, noise: 0.02, seed: 4, offset: 0.2 });
}
