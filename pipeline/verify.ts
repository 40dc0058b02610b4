/**
 * `verify`: re-hash every cache entry in use (the one each instance last used, refs/), whatever the
 * file stats say — like `git fsck` or `dvc cache check`. A corrupted entry is reported with the
 * instances it affects (the instance itself and every instance whose recorded inputs are that very
 * content, transitively: they would read the bad bytes if they ran) and removed, so the next run
 * recomputes it instead of serving it.
 */
import type { Store } from './store.ts';

export interface CorruptEntry {
  label: string;
  stage: string;
  fingerprint: string;
  problem: string;
  /** Labels of instances that read this entry's content, directly or through other instances. */
  affects: string[];
}

export interface VerifyReport {
  checked: number;
  files: number;
  bytes: number;
  corrupted: CorruptEntry[];
}

export async function verifyStore(store: Store, opts: { remove?: boolean; onEntry?: (label: string) => void } = {}): Promise<VerifyReport> {
  const refs = await store.refs();
  const corrupted: CorruptEntry[] = [];
  // Upstream label + content hash -> labels of the entries in use whose fingerprint was made from it.
  const readers = new Map<string, Set<string>>();
  const contentOf = new Map<string, string>();
  let files = 0;
  let bytes = 0;
  for (const ref of refs) {
    const manifest = await store.readManifest(ref.fingerprint);
    if (!manifest) continue; // already gone (removed or never committed): the next run recomputes it anyway
    contentOf.set(ref.label, manifest.contentHash);
    for (const input of Object.values(manifest.components.inputs ?? {})) {
      for (const i of Array.isArray(input) ? input : [input]) {
        const key = `${i.label}\0${i.content}`;
        if (!readers.has(key)) readers.set(key, new Set());
        readers.get(key)!.add(ref.label);
      }
    }
  }
  for (const ref of refs) {
    const manifest = await store.readManifest(ref.fingerprint);
    if (!manifest) continue;
    opts.onEntry?.(ref.label);
    const v = await store.verify(ref.fingerprint, { rehash: true });
    files += Object.keys(manifest.files).length;
    bytes += Object.values(manifest.files).reduce((a, f) => a + f.size, 0);
    if (v.ok || v.missing) continue;
    corrupted.push({ label: ref.label, stage: ref.stage, fingerprint: ref.fingerprint, problem: v.problem, affects: [] });
  }
  for (const c of corrupted) {
    const seen = new Set<string>();
    const queue = [`${c.label}\0${contentOf.get(c.label)}`];
    while (queue.length > 0) {
      for (const reader of readers.get(queue.shift()!) ?? []) {
        if (seen.has(reader)) continue;
        seen.add(reader);
        queue.push(`${reader}\0${contentOf.get(reader)}`);
      }
    }
    c.affects = [...seen].sort();
    if (opts.remove) await store.remove(c.fingerprint);
  }
  return { checked: refs.length, files, bytes, corrupted };
}
