/**
 * The fingerprint of a stage instance: sha256 of the canonical JSON of these components.
 * Every field is listed in docs/ENGINE.md; change that text when changing this type.
 */
import type { InstanceKey } from './types.ts';
import { canonicalJson, sha256, showValue } from './util.ts';

/** Bumped when the engine changes what a fingerprint means (or how outputs are stored). */
export const ENGINE_FINGERPRINT_VERSION = 1;

export interface InputFingerprint {
  label: string;
  /** Content hash of the upstream instance's committed outputs (not its fingerprint). */
  content: string;
}

export interface FingerprintComponents {
  engine: number;
  stage: string;
  /** Local source files of the stage's code closure (path relative to root -> sha256). */
  code: Record<string, string>;
  /** Third-party packages the closure imports, and their dependencies: lockfile key -> version. */
  packages: Record<string, string>;
  /**
   * Params keys this instance declares (conditional entries only where `when` matches) -> values,
   * with every matrix list of the stage left out (also the lists of variables the instance lacks).
   */
  params: Record<string, unknown>;
  /** This instance's matrix values (only the variables it has). */
  instance: InstanceKey;
  /** Input name -> upstream content (one for a plain input, every instance for `all: true`). */
  inputs: Record<string, InputFingerprint | InputFingerprint[]>;
  /** Declared environment fields -> values from the project's environment(). */
  env: Record<string, string>;
  /** The declared output files. */
  outputs: string[];
}

export function fingerprintOf(c: FingerprintComponents): string {
  return sha256(canonicalJson(c));
}

function diffRecord(kind: string, prev: Record<string, unknown>, next: Record<string, unknown>, fmt: (k: string, a: unknown, b: unknown) => string): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(prev), ...Object.keys(next)])].sort();
  for (const k of keys) {
    const a = prev[k];
    const b = next[k];
    if (canonicalJson(a) === canonicalJson(b)) continue;
    out.push(`${kind} ${fmt(k, a, b)}`);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Leaf-level differences of two params values: 'train.lr: 0.1 → 0.2'. */
function diffParams(prefix: string, a: unknown, b: unknown, out: string[]): void {
  if (canonicalJson(a) === canonicalJson(b)) return;
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) diffParams(`${prefix}.${k}`, a[k], b[k], out);
    return;
  }
  out.push(`param ${prefix}: ${a === undefined ? '(absent)' : showValue(a, 40)} → ${b === undefined ? '(absent)' : showValue(b, 40)}`);
}

/** Why the new components differ from the ones of the last committed entry, most telling first. */
export function explainChange(prev: FingerprintComponents, next: FingerprintComponents): string[] {
  const reasons: string[] = [];
  if (prev.engine !== next.engine) reasons.push(`engine fingerprint version ${prev.engine} → ${next.engine}`);
  for (const k of [...new Set([...Object.keys(prev.params), ...Object.keys(next.params)])].sort()) diffParams(k, prev.params[k], next.params[k], reasons);
  reasons.push(
    ...diffRecord('matrix', prev.instance, next.instance, (k, a, b) => `${k}: ${showValue(a)} → ${showValue(b)}`),
    ...diffRecord('code:', prev.code, next.code, (k, a, b) => `${k} ${a === undefined ? 'added' : b === undefined ? 'removed' : 'changed'}`),
    ...diffRecord('package', prev.packages, next.packages, (k, a, b) => `${k}: ${String(a ?? 'none')} → ${String(b ?? 'none')}`),
    ...diffRecord('env', prev.env, next.env, (k, a, b) => `${k}: ${String(a ?? 'none')} → ${String(b ?? 'none')}`),
  );
  const inputNames = [...new Set([...Object.keys(prev.inputs), ...Object.keys(next.inputs)])].sort();
  for (const name of inputNames) {
    const a = prev.inputs[name];
    const b = next.inputs[name];
    if (canonicalJson(a) === canonicalJson(b)) continue;
    if (a === undefined || b === undefined) {
      reasons.push(`input ${name} ${a === undefined ? 'added' : 'removed'}`);
    } else if (Array.isArray(a) || Array.isArray(b)) {
      const before = new Map((Array.isArray(a) ? a : [a]).map((i) => [i.label, i.content]));
      const after = Array.isArray(b) ? b : [b];
      const changed = after.filter((i) => before.has(i.label) && before.get(i.label) !== i.content).map((i) => i.label);
      const added = after.filter((i) => !before.has(i.label)).map((i) => i.label);
      const removed = [...before.keys()].filter((l) => !after.some((i) => i.label === l));
      const parts = [
        ...changed.slice(0, 3).map((l) => `${l} changed`),
        ...added.slice(0, 3).map((l) => `${l} added`),
        ...removed.slice(0, 3).map((l) => `${l} removed`),
      ];
      const more = changed.length + added.length + removed.length - parts.length;
      reasons.push(`input ${name}: ${parts.join(', ')}${more > 0 ? ` (+${more} more)` : ''}`);
    } else {
      reasons.push(a.label === b.label ? `input ${b.label} changed` : `input ${name}: ${a.label} → ${b.label}`);
    }
  }
  if (canonicalJson(prev.outputs) !== canonicalJson(next.outputs)) reasons.push(`outputs ${showValue(prev.outputs)} → ${showValue(next.outputs)}`);
  if (prev.stage !== next.stage) reasons.push(`stage name ${prev.stage} → ${next.stage}`);
  return reasons;
}
