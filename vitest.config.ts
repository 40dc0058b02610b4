import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Heavy numerical tests share 2 cores: run files in forked processes, two at a time.
    pool: 'forks',
    maxWorkers: 2,
  },
});
