import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../src/core/clock.js';
import { defineModule, type Job } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { freshStore, T0, testConfig } from './helpers.js';

// The jobs' timers: a run is never beside another of its job, and a tick that comes while one
// runs is not lost: the next run starts as soon as it ends (the connector schedule, behind slow
// feeds, ran every other tick).
describe('module jobs on their timers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs a job again as soon as a run that outlasted its interval ends, never beside it', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const fresh = await freshStore('sqlite');
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let runs = 0;
    let beside = 0;
    let running = false;
    const job: Job = {
      name: 'test.slow',
      intervalMs: 1000,
      async run() {
        if (running) beside++;
        running = true;
        runs++;
        if (runs === 1) await gate;
        running = false;
        return 0;
      },
    };
    const app = await buildApp({
      config: testConfig(),
      store: fresh.store,
      clock: new ManualClock(T0),
      runJobs: true,
      modules: [defineModule({ name: 'jobs', description: 'A slow job.', resources: [], jobs: [job] })],
    });
    try {
      vi.advanceTimersByTime(1000); // the first run starts, and outlasts…
      expect(runs).toBe(1);
      vi.advanceTimersByTime(1000); // …the next tick
      expect(runs).toBe(1);
      release();
      for (let i = 0; i < 100 && runs < 2; i++) await new Promise((r) => setImmediate(r));
      expect([runs, beside]).toEqual([2, 0]);
    } finally {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});
