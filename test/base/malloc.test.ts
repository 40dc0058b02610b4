import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { MALLOC_ENV, withMallocEnv } from '../../base/malloc.ts';

describe('malloc settings for numeric child processes', () => {
  it('adds the defaults under the given environment; a value already set wins', () => {
    const env: Record<string, string | undefined> = withMallocEnv({ PATH: '/bin', MALLOC_TOP_PAD_: '7' });
    expect(env.PATH).toBe('/bin');
    expect(env.MALLOC_TOP_PAD_).toBe('7');
    expect(env.MALLOC_TRIM_THRESHOLD_).toBe(MALLOC_ENV.MALLOC_TRIM_THRESHOLD_);
    expect(Number(MALLOC_ENV.MALLOC_TRIM_THRESHOLD_)).toBeGreaterThanOrEqual(2 ** 30);
  });

  it('reaches a child process', () => {
    const r = spawnSync(process.execPath, ['-e', 'console.log(process.env.MALLOC_TRIM_THRESHOLD_ + " " + process.env.MALLOC_TOP_PAD_)'], {
      env: withMallocEnv({ ...process.env, MALLOC_TRIM_THRESHOLD_: undefined, MALLOC_TOP_PAD_: undefined }),
      encoding: 'utf8',
    });
    expect(r.stdout.trim()).toBe(`${MALLOC_ENV.MALLOC_TRIM_THRESHOLD_} ${MALLOC_ENV.MALLOC_TOP_PAD_}`);
  });
});
