import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../pipeline/util.ts';

/** The definition: keys sorted at every level, undefined members dropped (the fast path must agree). */
function reference(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) if ((v as Record<string, unknown>)[k] !== undefined) out[k] = sort((v as Record<string, unknown>)[k]);
      return out;
    }
    return v;
  };
  return JSON.stringify(sort(value));
}

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe('{"a":1,"b":2}');
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
  });

  it('gives the same text for the same value in any key order', () => {
    const a = { 'lib/x.ts': 'h1', 'lib/a.ts': 'h2', '@s/p': '1.0.0', 'a/node_modules/b': '2.0.0' };
    const b = Object.fromEntries(Object.entries(a).reverse());
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe(reference(a));
  });

  it('agrees with the definition on flat, nested, integer-like and non-plain values', () => {
    const cases: unknown[] = [
      {},
      { '10': 'x', '9': 'y', a: 'z' }, // integer-like keys: object order is numeric, string sort is not
      { a: null, b: true, c: 1.5, d: 'e' },
      { a: 'x', b: () => 1 },
      { when: new Date(0), list: [3, { b: 1, a: 2 }] },
      Object.assign(Object.create(null) as object, { b: 1, a: 2 }),
      Object.assign(Object.create(null) as object, { a: 1, b: 2 }),
      [{ b: 1, a: 1 }, 'x', null],
      { a: { b: { c: { e: 1, d: 2 } } } },
    ];
    for (const c of cases) expect(canonicalJson(c)).toBe(reference(c));
  });
});
