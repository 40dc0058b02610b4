/** The engine's programmatic API (the CLI is a thin layer over it). */
export { runPipeline, planPipeline, dryRun, formatDryRun } from './runner.ts';
export type { RunOptions, RunSummary, InstanceResult, InstanceStatus, Plan } from './runner.ts';
export { querySql } from './db.ts';
export { toMermaid, toDot } from './dag.ts';
export { writeParamsType, generateParamsType } from './codegen.ts';
export { validateParams, readParamsFile, readSchema, parseOverride, applyOverrides } from './params.ts';
export { buildInstances, declaredKeys, expandMatrix, instanceLabel, matchesWhen, matrixAxes, matrixKey } from './graph.ts';
export type { MatrixAxis } from './graph.ts';
export { projectPaths } from './project.ts';
export { EngineError, ParamsError, UsageError, LockHeldError } from './errors.ts';
export type * from './types.ts';
