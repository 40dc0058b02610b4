/**
 * The browser test must fail, not skip, when no Chromium can start (in CI and off it): run it in a
 * child vitest with the launch disabled (GSAE_TEST_NO_BROWSER=1), and expect a failure naming why.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../../..');

describe('browser test without a browser', () => {
  it('fails (exit ≠ 0) when Chromium cannot start, with or without CI=true', () => {
    for (const ci of ['true', '']) {
      const r = spawnSync('npx', ['vitest', 'run', 'test/lib/report/browser.test.ts'], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, CI: ci, GSAE_TEST_NO_BROWSER: '1', FORCE_COLOR: '0' },
      });
      const out = (r.stdout + r.stderr).replace(/\x1b\[[0-9;]*m/g, '');
      expect(r.status, out).not.toBe(0);
      expect(out).toContain('no headless Chromium could be started');
      // the file fails (vitest lists the tests of a suite whose set-up threw as not run; the run fails)
      expect(out).toMatch(/Test Files\s+1 failed/);
    }
  }, 120_000);
});
