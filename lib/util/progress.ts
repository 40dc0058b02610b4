/**
 * What a trainer reports while it runs, one shape for the LM trainer (lib/model/train.ts) and the
 * SAE trainer (lib/sae/train.ts). M: the trainer's metrics, by the names they are recorded under.
 */
export interface TrainProgress<M extends object> {
  step: number;
  totalSteps: number;
  tokensSeen: number;
  totalTokens: number;
  /** Training throughput of this call (a resumed run counts from where it resumed). */
  tokensPerSecond: number;
  elapsedSeconds: number;
  lr: number;
  /** The latest training metrics. */
  metrics: M;
}

export interface TrainCallbacks<M extends object> {
  /** Progress (the SAE trainer: every step; the LM trainer: every logEverySteps steps). */
  onProgress?(p: TrainProgress<M>): void;
  /** Metrics to record, step = tokens seen. */
  onMetrics?(values: M, step: number): void;
  onLog?(message: string): void;
}
