/** The equivalence verdict of claim 4 ("comparable"), apart from the difference tests in stats.ts. */
import type { Verdict } from './stats.ts';

/**
 * Equivalence verdict (two one-sided tests, TOST): with the CI of the difference g-SAE − TopK and
 * an equivalence margin m (ours, stated in params), the CI inside [−m, m] → 'reproduced' (the two
 * are equivalent within m: "comparable"); entirely outside it (lo > m or hi < −m) → 'not
 * reproduced'; otherwise, or without a CI, 'inconclusive'. A 95% CI makes this TOST at 2.5% per
 * side (conservative against the usual 90% interval for 5%).
 */
export function verdictEquivalence(ci: { lo: number; hi: number }, margin: number): Verdict {
  if (!(margin > 0)) throw new Error(`verdictEquivalence: the margin must be > 0, got ${margin}`);
  if (!Number.isFinite(ci.lo) || !Number.isFinite(ci.hi)) return 'inconclusive';
  if (ci.lo >= -margin && ci.hi <= margin) return 'reproduced';
  if (ci.lo > margin || ci.hi < -margin) return 'not reproduced';
  return 'inconclusive';
}
