import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at a time at least: Vitest's default (one less than the cores) ran one at a time
    // on a 2-core machine, where most of a file's time is spent waiting on PostgreSQL, child
    // processes and sockets (563 s one at a time, 308–340 s two at a time in eight runs on one machine).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
