/**
 * The engine's public contract: what a stage declares and what it receives when it runs.
 * Generic: nothing here knows about SAEs or language models.
 */
import type { DuckDBConnection } from '@duckdb/node-api';

/** One value of a matrix variable. */
export type MatrixValue = string | number | boolean;

/**
 * Values of the matrix variables of one stage instance, e.g. {arch: 'gsae', k: 32, seed: 0}, in the
 * order the stage declares them. A conditional variable (see `Conditional`) is absent from the
 * instances it does not apply to.
 */
export type InstanceKey = Record<string, MatrixValue>;

/**
 * A condition on an instance's matrix values: every named variable must be present and equal to the
 * value (or, for a list, to one of its values). {arch: 'gsae'}, {arch: ['gsae', 'dense'], k: 8}.
 */
export type When = Record<string, MatrixValue | MatrixValue[]>;

/** A params key that applies only to the instances matching `when`. */
export interface Conditional {
  key: string;
  when: When;
}

export interface InputSpec {
  /** Name of the upstream stage. */
  stage: string;
  /**
   * false (default): read the single upstream instance whose matrix values agree with this
   * instance's values on the matrix variables both stages share (Snakemake-style wildcards). A
   * shared conditional variable this instance lacks must be absent from the upstream instance too.
   * true: read every instance of the upstream stage (e.g. a report over all evaluations).
   * (When both stages are matrix stages sharing variables, "every" means every instance that
   * agrees on the shared variables: summary[arch=gsae] with all: true reads the gsae instances.)
   */
  all?: boolean;
}

export interface UpstreamInstance {
  instance: InstanceKey;
  /** Directory holding the committed outputs of that instance (read-only). */
  dir: string;
  fingerprint: string;
}

export interface MetricOptions {
  step?: number;
}

/** A stage's declared inputs (input name -> spec); the default, any names, is for generic code. */
export type InputSpecs = Record<string, InputSpec>;

/** Whether an input spec reads every upstream instance: true, false, or boolean (not known: generic code). */
type ReadsAll<S> = S extends { all: true } ? true : S extends { stage: string; all?: false } ? false : boolean;

/** ctx.inputs of a stage with inputs `I`: each input declared without `all` -> its upstream folder. */
export type SingleInputs<I extends InputSpecs> = { readonly [K in keyof I as ReadsAll<I[K]> extends true ? never : K]: string };

/** ctx.inputsAll of a stage with inputs `I`: each input declared with `all: true` -> every upstream instance. */
export type AllInputs<I extends InputSpecs> = { readonly [K in keyof I as ReadsAll<I[K]> extends false ? never : K]: UpstreamInstance[] };

export interface StageContext<P = any, I extends InputSpecs = InputSpecs> {
  /**
   * The params, restricted to the keys this stage declared for this instance (reading any other key
   * throws, so the fingerprint can never miss a dependency). For a matrix variable, the declared list
   * is there too, but use `instance` for this instance's value; the list of a conditional variable
   * this instance lacks is not there (reading it throws).
   */
  params: P;
  /** Matrix values of this instance ({} for a plain stage). */
  instance: InstanceKey;
  /** For inputs declared without `all`: input name -> the upstream output directory. */
  inputs: SingleInputs<I>;
  /** For inputs declared with `all: true`: input name -> every upstream instance. */
  inputsAll: AllInputs<I>;
  /** Write outputs here. A temporary directory, committed atomically only if run() resolves. */
  outDir: string;
  /**
   * Survives a failed or killed attempt of the same fingerprint: keep checkpoints here to resume
   * inside a long stage. Deleted after a successful commit.
   */
  scratchDir: string;
  /** The environment fingerprint fields this stage declared (e.g. {backend: 'wasm'}). */
  env: Record<string, string>;
  /**
   * CPU cores this instance may use: the machine's cores divided by the instances the engine runs
   * beside it (at least 1). A hint for thread pools; never part of a fingerprint, so a stage must
   * give the same numbers whatever it is.
   */
  cpus: number;
  log(message: string): void;
  /** Progress of long work: rate and ETA are derived by the engine. `info` shows beside the bar. */
  progress(done: number, total: number, info?: Record<string, string | number>): void;
  /** A number for results.duckdb (table `metrics`, long format). */
  metric(name: string, value: number, options?: MetricOptions): void;
  /** Several metrics at once (same semantics as metric()). */
  metrics(values: Record<string, number>, options?: MetricOptions): void;
  /**
   * Rows for a project table in results.duckdb (created on first use, columns from the first row;
   * the engine adds run_id, stage, instance JSON). For per-item results such as per-latent steering.
   */
  table(name: string, rows: Array<Record<string, string | number | boolean | null>>): void;
  /**
   * Read results.duckdb as it is now (the engine writes every upstream record before a stage
   * starts): opens it read-only, waiting while the engine writes a batch, runs `fn` on the
   * connection and closes it. For stages that report on the run.
   */
  readResults<T>(fn: (connection: DuckDBConnection) => Promise<T>): Promise<T>;
}

/**
 * A stage. Declared through `defineStage<Params>()({...})` (stages/define.ts), `I` is inferred from
 * `inputs`, so ctx.inputs and ctx.inputsAll are keyed by the declared names (a misspelt input name is
 * a type error).
 */
export interface StageDef<P = any, I extends InputSpecs = InputSpecs> {
  name: string;
  /** One line: what the stage does (shown by `dag` and in the README table). */
  description?: string;
  /**
   * Params keys this stage reads, dotted ('lm.n_layer') or a whole subtree ('lm').
   * Only these values enter the fingerprint. `{ key, when }` declares a key for the instances
   * matching `when` only (over this stage's matrix variables); for the others it is neither in the
   * fingerprint nor readable.
   */
  params: Array<string | Conditional>;
  /**
   * Matrix variables: variable name -> params key holding a list. One instance per combination,
   * in the order of the lists. Only the instance's own values enter its fingerprint, so growing a
   * list runs only the new instances. `{ key, when }` is a conditional variable: it is expanded only
   * for the combinations of the variables declared before it that match `when`; the other
   * instances lack it (e.g. `beta: { key: 'sae.beta', when: { arch: 'gsae' } }`).
   */
  matrix?: Record<string, string | Conditional>;
  /** Input name -> upstream stage. */
  inputs?: I;
  /** Files (relative to outDir) that run() must create; checked before commit. */
  outputs: string[];
  /** Environment fields (from the project's environment()) that enter the fingerprint. */
  env?: string[];
  /**
   * Always run on the coordinator's machine, also with `--executor bullmq`: for a stage that reads
   * what only the coordinator has (results/results.duckdb, files outside its inputs).
   */
  local?: boolean;
  run(ctx: StageContext<P, I>): Promise<void>;
}

/** What a project's stages module (default: stages/index.ts) exports. */
export interface Project {
  stages: StageDef[];
  /** Environment fingerprint fields, computed once per run in the parent (e.g. compute backend). */
  environment?(params: unknown): Promise<Record<string, string>>;
  /**
   * Cross-field checks the schema cannot express (`lm.n_head` divides `lm.d_model`, ...), called
   * with the schema-valid params (after `--set`) before anything runs, also for --dry-run. Returns
   * one line per problem, `params.a.b: <what is allowed>; got <value>` (empty: fine); any problem
   * ends the command with exit 2 and nothing runs. It may read small files named by the params
   * (a checkpoint's config.json) but must not write anything.
   */
  validate?(params: unknown): string[] | Promise<string[]>;
}
