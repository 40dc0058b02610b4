/**
 * What the rating page shows: the interp stage's sampled latents (results/interp/<instance>/
 * scores.json: top-activating training contexts and logit-lens promoted tokens) of every TopK SAE
 * and of the g-SAEs at β* (results/compare/paired.json; every β when compare has not run). Each
 * latent gets an opaque id; the page never sees the instance. Order: seeded shuffle within each
 * (k, arch) stratum, then the strata interleaved round-robin (in a shuffled stratum order).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { mulberry32 } from '../util/random.ts';

export interface RateItem {
  id: string;
  instance: string;
  arch: string;
  beta: number | null;
  k: number;
  seed: number;
  latent: number;
  contexts: { tokens: string[]; acts: number[]; at: number }[];
  promoted: string[];
}

/** "arch=gsae,beta=3,k=8,seed=0" → its fields. */
export function parseInstance(s: string): Record<string, string> {
  return Object.fromEntries(s.split(',').map((kv) => kv.split('=') as [string, string]));
}

function shuffle<T>(a: T[], u: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export function loadItems(resultsDir: string, seed = 0): RateItem[] {
  const dir = path.join(resultsDir, 'interp');
  if (!fs.existsSync(dir)) throw new Error(`no ${dir}: run the pipeline (the interp stage) first`);
  const compare = path.join(resultsDir, 'compare', 'paired.json');
  const betaStar = new Map<number, number>();
  if (fs.existsSync(compare)) {
    for (const b of JSON.parse(fs.readFileSync(compare, 'utf8')).betaSelection ?? []) if (b.chosen) betaStar.set(Number(b.k), Number(b.beta));
  }
  const items: RateItem[] = [];
  for (const inst of fs.readdirSync(dir).sort()) {
    const f = path.join(dir, inst, 'scores.json');
    if (!fs.existsSync(f)) continue;
    const v = parseInstance(inst);
    const k = Number(v.k);
    const beta = v.beta === undefined ? null : Number(v.beta);
    if (v.arch === 'gsae' && betaStar.has(k) && betaStar.get(k) !== beta) continue;
    for (const s of JSON.parse(fs.readFileSync(f, 'utf8')).scores as any[]) {
      if (!s.contexts?.length) continue;
      const id = crypto.createHash('sha256').update(`${inst}|${s.latent}`).digest('hex').slice(0, 12);
      items.push({ id, instance: inst, arch: v.arch, beta, k, seed: Number(v.seed), latent: Number(s.latent), contexts: s.contexts, promoted: s.promoted ?? [] });
    }
  }
  const u = mulberry32(seed);
  const strata = new Map<string, RateItem[]>();
  for (const it of items) strata.set(`${it.k}|${it.arch}`, [...(strata.get(`${it.k}|${it.arch}`) ?? []), it]);
  const groups = shuffle([...strata.keys()].sort(), u).map((key) => shuffle(strata.get(key)!, u));
  const out: RateItem[] = [];
  for (let i = 0; out.length < items.length; i++) for (const g of groups) if (i < g.length) out.push(g[i]);
  return out;
}
