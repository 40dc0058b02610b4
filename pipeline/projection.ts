/** ctx.params: the params seen through the keys a stage declared (kept apart: children load only this). */

/** Is key declared by one of the declared keys (equal, or inside a declared subtree)? */
export function isDeclared(key: string, declared: string[]): boolean {
  return declared.some((d) => key === d || key.startsWith(`${d}.`));
}

/** Keys the JS runtime or tooling probes on any object; reading them must not throw. */
const PROBE_KEYS = new Set(['then', 'toJSON', 'constructor', 'asymmetricMatch', 'nodeType', '$$typeof', 'toString', 'valueOf', 'inspect']);

/**
 * ctx.params: the params restricted to the declared keys. Reading an undeclared key throws, so a
 * stage cannot depend on a value that its fingerprint does not include. `hidden` (key -> matrix
 * variable) removes keys from inside declared subtrees: the lists of the conditional matrix
 * variables this instance lacks, so it cannot depend on them either.
 */
export function projectParams(params: unknown, declared: string[], stage: string, hidden: Record<string, string> = {}): unknown {
  const hiddenKeys = Object.keys(hidden);
  const hiddenBy = (key: string): string | undefined => hiddenKeys.find((h) => key === h || key.startsWith(`${h}.`));
  const hidesInside = (key: string): boolean => hiddenKeys.some((h) => h.startsWith(`${key}.`));
  const build = (prefix: string, value: unknown): unknown => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    const full = declared.some((d) => prefix !== '' && (prefix === d || prefix.startsWith(`${d}.`)));
    if (full && !hidesInside(prefix)) return structuredClone(value);
    const target: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (hiddenBy(key) !== undefined) continue;
      if (isDeclared(key, declared) && !hidesInside(key)) target[k] = structuredClone(v);
      else if (isDeclared(key, declared) || declared.some((d) => d.startsWith(`${key}.`))) target[k] = build(key, v);
    }
    return new Proxy(target, {
      get(t, prop, receiver) {
        if (typeof prop === 'symbol' || PROBE_KEYS.has(prop) || prop in t) return Reflect.get(t, prop, receiver);
        const key = prefix ? `${prefix}.${prop}` : prop;
        const h = hiddenBy(key);
        if (h !== undefined && isDeclared(key, declared)) {
          throw new Error(
            `stage "${stage}" read params key "${key}", the list of matrix variable "${hidden[h]}", which this instance does not have ` +
              `(a conditional variable), so its fingerprint does not track it.`,
          );
        }
        if (h === undefined && isDeclared(key, declared)) return undefined;
        throw new Error(
          `stage "${stage}" read params key "${key}", which it does not declare ` +
            `(declared: ${declared.join(', ') || 'none'}). Add "${key}" to the stage's params so its fingerprint tracks it.`,
        );
      },
      set() {
        throw new Error(`stage "${stage}": ctx.params is read-only`);
      },
    });
  };
  return build('', params);
}
