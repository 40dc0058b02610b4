/** A ScaleOut started before the tests of the calling file or describe block and stopped after them. */
import { afterAll, beforeAll } from 'vitest';
import type { RedisOptions } from './redis.ts';
import { type ScaleOut, startScaleOut } from './scaleout.ts';

export function useScaleOut(opts: RedisOptions = {}): ScaleOut {
  let so: ScaleOut | undefined;
  beforeAll(async () => {
    so = await startScaleOut(opts);
  });
  afterAll(async () => {
    await so?.stop();
  });
  return new Proxy({} as ScaleOut, {
    get: (_t, key) => {
      if (!so) throw new Error('useScaleOut: used before its beforeAll ran');
      return so[key as keyof ScaleOut];
    },
  });
}
