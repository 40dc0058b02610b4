/** Stage instances: matrix expansion, labels, instance-wise dependencies, target selection. */
import { UsageError } from './errors.ts';
import type { Conditional, InstanceKey, MatrixValue, StageDef, When } from './types.ts';
import { getPath, showValue } from './util.ts';

export interface InputEdge {
  name: string;
  stage: string;
  all: boolean;
  /** Upstream instance ids (one for a plain input). */
  from: string[];
}

export interface Instance {
  /** Label, unique: `sae[arch=gsae,k=32,seed=0]`, or the stage name for a plain stage. */
  id: string;
  stage: StageDef;
  instance: InstanceKey;
  inputs: InputEdge[];
}

export function instanceLabel(stage: string, instance: InstanceKey): string {
  const vars = Object.entries(instance);
  return vars.length === 0 ? stage : `${stage}[${vars.map(([k, v]) => `${k}=${String(v)}`).join(',')}]`;
}

/** Folder name for an instance below results/<stage>/ ('arch=gsae,k=32,seed=0'). */
export function instanceDirName(instance: InstanceKey): string {
  return Object.entries(instance)
    .map(([k, v]) => `${k}=${String(v).replace(/[/\\]/g, '_')}`)
    .join(',');
}

/** One matrix variable of a stage: its params key, and the condition if it is conditional. */
export interface MatrixAxis {
  variable: string;
  key: string;
  when?: When;
}

/** The params key of a matrix variable or params entry (a plain key or `{ key, when }`). */
export function matrixKey(spec: string | Conditional): string {
  return typeof spec === 'string' ? spec : spec.key;
}

/** The stage's matrix variables in declaration order. */
export function matrixAxes(stage: StageDef): MatrixAxis[] {
  return Object.entries(stage.matrix ?? {}).map(([variable, spec]) =>
    typeof spec === 'string' ? { variable, key: spec } : { variable, key: spec.key, when: spec.when },
  );
}

/** Does the instance satisfy the condition (every named variable present, equal or in the list)? */
export function matchesWhen(when: When | undefined, instance: InstanceKey): boolean {
  if (!when) return true;
  return Object.entries(when).every(([variable, want]) => {
    if (!Object.hasOwn(instance, variable)) return false;
    const have = instance[variable];
    return Array.isArray(want) ? want.includes(have) : want === have;
  });
}

/** Params keys this instance declares: the plain entries plus the conditional ones it matches. */
export function declaredKeys(stage: StageDef, instance: InstanceKey): string[] {
  const out: string[] = [];
  for (const entry of stage.params) {
    const key = typeof entry === 'string' ? entry : matchesWhen(entry.when, instance) ? entry.key : undefined;
    if (key !== undefined && !out.includes(key)) out.push(key);
  }
  return out;
}

/** Params keys of the stage's matrix lists (every variable, also those an instance lacks). */
export function matrixKeys(stage: StageDef): string[] {
  return [...new Set(matrixAxes(stage).map((a) => a.key))];
}

/**
 * Lists the instance must not see: params key -> variable, for each conditional variable the
 * instance lacks (unless a variable it has uses the same key).
 */
export function hiddenKeys(stage: StageDef, instance: InstanceKey): Record<string, string> {
  const axes = matrixAxes(stage);
  const present = new Set(axes.filter((a) => Object.hasOwn(instance, a.variable)).map((a) => a.key));
  const out: Record<string, string> = {};
  for (const a of axes) if (!Object.hasOwn(instance, a.variable) && !present.has(a.key)) out[a.key] ??= a.variable;
  return out;
}

function matrixList(stage: StageDef, axis: MatrixAxis, params: unknown): MatrixValue[] {
  const list = getPath(params, axis.key);
  if (!Array.isArray(list)) {
    throw new UsageError(`stage "${stage.name}": matrix variable "${axis.variable}" needs params.${axis.key} to be a list; got ${showValue(list)}`);
  }
  for (const v of list) {
    if (!['string', 'number', 'boolean'].includes(typeof v)) {
      throw new UsageError(`stage "${stage.name}": params.${axis.key} must hold strings, numbers or booleans; got ${showValue(v)}`);
    }
  }
  return list as MatrixValue[];
}

/**
 * Every combination, in list order. A conditional variable is expanded only for the combinations
 * (of the variables before it) that match its `when`; the others are kept without it. Its list is
 * read only if some combination needs it.
 */
export function expandMatrix(stage: StageDef, params: unknown): InstanceKey[] {
  let combos: InstanceKey[] = [{}];
  for (const axis of matrixAxes(stage)) {
    let list: MatrixValue[] | undefined;
    const next: InstanceKey[] = [];
    for (const c of combos) {
      if (!matchesWhen(axis.when, c)) {
        next.push(c);
        continue;
      }
      list ??= matrixList(stage, axis, params);
      for (const v of list) next.push({ ...c, [axis.variable]: v });
    }
    combos = next;
  }
  return combos;
}

/**
 * Does the upstream instance agree with the downstream instance on the variables both stages
 * declare? A variable the downstream instance lacks (conditional) must be absent upstream too.
 */
function agrees(shared: string[], down: InstanceKey, up: InstanceKey): boolean {
  return shared.every((v) => (Object.hasOwn(down, v) ? Object.hasOwn(up, v) && up[v] === down[v] : !Object.hasOwn(up, v)));
}

/** Every instance of every stage, in a topological order (upstream first), with resolved inputs. */
export function buildInstances(stages: StageDef[], params: unknown): Instance[] {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const order = topoSortStages(stages);
  const instancesOf = new Map<string, Instance[]>();
  const out: Instance[] = [];
  for (const stage of order) {
    const list: Instance[] = [];
    for (const key of expandMatrix(stage, params)) {
      const id = instanceLabel(stage.name, key);
      const inputs: InputEdge[] = [];
      for (const [name, spec] of Object.entries(stage.inputs ?? {})) {
        const upstream = byName.get(spec.stage)!;
        const candidates = instancesOf.get(spec.stage) ?? [];
        // Wildcards: agree on the matrix variables both stages declare (absent = absent).
        const shared = Object.keys(upstream.matrix ?? {}).filter((v) => Object.hasOwn(stage.matrix ?? {}, v));
        const matching = candidates.filter((c) => agrees(shared, key, c.instance));
        if (spec.all) {
          inputs.push({ name, stage: spec.stage, all: true, from: matching.map((m) => m.id) });
        } else {
          if (matching.length !== 1) {
            throw new UsageError(
              `${id}: input "${name}" must match exactly one instance of "${spec.stage}" on the shared matrix variables ` +
                `(${shared.map((v) => (Object.hasOwn(key, v) ? v : `${v} absent`)).join(', ') || 'none'}), but ${matching.length} match` +
                (matching.length > 1 ? `; declare it with all: true to read every instance` : ''),
            );
          }
          inputs.push({ name, stage: spec.stage, all: false, from: [matching[0].id] });
        }
      }
      list.push({ id, stage, instance: key, inputs });
    }
    instancesOf.set(stage.name, list);
    out.push(...list);
  }
  return out;
}

export function topoSortStages(stages: StageDef[]): StageDef[] {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const state = new Map<string, 'visiting' | 'done'>();
  const out: StageDef[] = [];
  const visit = (s: StageDef, trail: string[]): void => {
    const st = state.get(s.name);
    if (st === 'done') return;
    if (st === 'visiting') throw new UsageError(`stages form a cycle: ${[...trail, s.name].join(' -> ')}`);
    state.set(s.name, 'visiting');
    for (const spec of Object.values(s.inputs ?? {})) visit(byName.get(spec.stage)!, [...trail, s.name]);
    state.set(s.name, 'done');
    out.push(s);
  };
  for (const s of stages) visit(s, []);
  return out;
}

/** Parse a target: `sae` or `sae[k=32]` or `sae[arch=gsae,k=32]`. */
export function parseTarget(text: string): { stage: string; filter: Record<string, string> } {
  const m = /^([A-Za-z][A-Za-z0-9_-]*)(?:\[(.*)\])?$/.exec(text.trim());
  if (!m) throw new UsageError(`target "${text}" is not a stage name or stage[var=value,...]`);
  const filter: Record<string, string> = {};
  for (const part of (m[2] ?? '').split(',').filter((p) => p.trim() !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`target "${text}": "${part}" is not var=value`);
    filter[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return { stage: m[1], filter };
}

/** Instances selected by targets (stage names or label filters). */
export function matchTargets(instances: Instance[], targets: string[]): Set<string> {
  const out = new Set<string>();
  for (const t of targets) {
    const { stage, filter } = parseTarget(t);
    const ofStage = instances.filter((i) => i.stage.name === stage);
    if (ofStage.length === 0) {
      const names = [...new Set(instances.map((i) => i.stage.name))];
      throw new UsageError(`unknown stage "${stage}" (stages: ${names.join(', ')})`);
    }
    for (const v of Object.keys(filter)) {
      if (!Object.hasOwn(ofStage[0].stage.matrix ?? {}, v)) {
        throw new UsageError(`target "${t}": stage "${stage}" has no matrix variable "${v}"`);
      }
    }
    // An instance lacking a (conditional) variable does not match a filter on it.
    const hits = ofStage.filter((i) => Object.entries(filter).every(([k, v]) => Object.hasOwn(i.instance, k) && String(i.instance[k]) === v));
    if (hits.length === 0) throw new UsageError(`target "${t}" matches no instance of "${stage}"`);
    for (const h of hits) out.add(h.id);
  }
  return out;
}

/** The selected instances plus everything they need, transitively (kept in topological order). */
export function withDependencies(instances: Instance[], selected: Set<string>): Instance[] {
  const byId = new Map(instances.map((i) => [i.id, i]));
  const need = new Set<string>();
  const stack = [...selected];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (need.has(id)) continue;
    need.add(id);
    for (const e of byId.get(id)!.inputs) stack.push(...e.from);
  }
  return instances.filter((i) => need.has(i.id));
}
