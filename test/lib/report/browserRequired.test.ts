/**
 * In CI the browser test must fail, not skip, when no Chromium can start: run it in a child vitest
 * with CI=true and the launch disabled (GSAE_TEST_NO_BROWSER=1), and expect a failure naming why.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../../..');

describe('browser test in CI', () => {
  it('fails (exit ≠ 0) when CI=true and Chromium cannot start', () => {
    const r = spawnSync('npx', ['vitest', 'run', 'test/lib/report/browser.test.ts'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, CI: 'true', GSAE_TEST_NO_BROWSER: '1', FORCE_COLOR: '0' },
    });
    const out = r.stdout + r.stderr;
    expect(r.status, out).not.toBe(0);
    expect(out).toContain('CI=true and no headless Chromium could be started');
    expect(out).not.toMatch(/\b2 skipped\b/);
  }, 120_000);
});
