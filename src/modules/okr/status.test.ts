import { describe, expect, it } from 'vitest';
import type { Measure } from './progress.js';
import { computeStatus, cycleSpan } from './status.js';

// A 100-day cycle: 2026-01-01 … 2026-04-10 inclusive, so each day is 1% of it.
const span = cycleSpan({ start_date: '2026-01-01', end_date: '2026-04-10' });
const DAY = 86_400_000;
const at = (pct: number) => Date.parse('2026-01-01T00:00:00Z') + pct * DAY;

const kr = (o: Partial<Measure>): Measure => ({
  metric_type: 'number',
  baseline: 0,
  target: 100,
  current: 0,
  direction: 'increase',
  ...o,
});

describe('computeStatus with a cycle', () => {
  const table: [string, Partial<Measure>, number, string][] = [
    // linear, untouched: not_started while on pace, then at_risk past expected − 10, off_track past − 25
    ['untouched at start', {}, 0, 'not_started'],
    ['untouched at 10%', {}, 10, 'not_started'],
    ['untouched at 30%', {}, 30, 'off_track'],
    ['untouched at 20%', {}, 20, 'at_risk'],
    ['40% progress at 30%', { current: 40 }, 30, 'on_track'],
    ['40% progress at 50%', { current: 40 }, 50, 'on_track'],
    ['30% progress at 50%', { current: 30 }, 50, 'at_risk'],
    ['20% progress at 50%', { current: 20 }, 50, 'off_track'],
    ['80% progress at 90%', { current: 80 }, 90, 'on_track'],
    ['70% progress at 90%', { current: 70 }, 90, 'at_risk'],
    ['60% progress after the end', { current: 60 }, 120, 'off_track'],
    ['done at 30%', { current: 100 }, 30, 'achieved'],
    ['done after the end', { current: 100 }, 120, 'achieved'],
    ['before the cycle', { current: 5 }, -10, 'on_track'],
    // decrease
    ['decrease 50% at 50%', { baseline: 100, target: 0, current: 50, direction: 'decrease' }, 50, 'on_track'],
    ['decrease untouched at 50%', { baseline: 100, target: 0, current: 100, direction: 'decrease' }, 50, 'off_track'],
    // milestone
    ['milestone open at 5%', { metric_type: 'milestone', target: 1, current: 0 }, 5, 'not_started'],
    ['milestone open at 30%', { metric_type: 'milestone', target: 1, current: 0 }, 30, 'off_track'],
    ['milestone done', { metric_type: 'milestone', target: 1, current: 1 }, 30, 'achieved'],
    // percentage / currency behave linearly
    [
      'percentage 35 of 20→80 at 50%',
      { metric_type: 'percentage', baseline: 20, target: 80, current: 35 },
      50,
      'at_risk',
    ],
    ['currency on pace at 50%', { metric_type: 'currency', baseline: 0, target: 1000, current: 500 }, 50, 'on_track'],
    // threshold
    ['threshold met mid-cycle', { metric_type: 'threshold', target: 99, current: 99.5 }, 50, 'on_track'],
    ['threshold not met', { metric_type: 'threshold', target: 99, current: 98 }, 50, 'off_track'],
    ['threshold met after the end', { metric_type: 'threshold', target: 99, current: 99 }, 100, 'achieved'],
    [
      'threshold decrease met',
      { metric_type: 'threshold', target: 200, current: 150, direction: 'decrease' },
      30,
      'on_track',
    ],
  ];
  it.each(table)('%s', (_n, o, pct, expected) => {
    expect(computeStatus(kr(o), span, at(pct)).status).toBe(expected);
  });

  it('ends a band exactly when pace crosses it', () => {
    const m = kr({ current: 40 });
    const { status, expiresAt } = computeStatus(m, span, at(30));
    expect(status).toBe('on_track');
    // on_track until expected passes 50%: day 50
    expect(expiresAt).toBe(at(50) + 1);
    expect(computeStatus(m, span, at(50)).status).toBe('on_track');
    expect(computeStatus(m, span, at(50) + 1).status).toBe('at_risk');
    const atRisk = computeStatus(m, span, at(50) + 1);
    expect(atRisk.expiresAt).toBe(at(65) + 1);
    expect(computeStatus(m, span, at(65) + 1).status).toBe('off_track');
    expect(computeStatus(m, span, at(70)).expiresAt).toBeNull();
  });

  it('never expires bands that time cannot end', () => {
    expect(computeStatus(kr({ current: 95 }), span, at(10)).expiresAt).toBeNull();
    expect(computeStatus(kr({ current: 100 }), span, at(10)).expiresAt).toBeNull();
    expect(computeStatus(kr({ metric_type: 'threshold', target: 5, current: 6 }), span, at(10)).expiresAt).toBe(
      at(100),
    );
  });
});

describe('computeStatus without a cycle', () => {
  it.each([
    ['untouched', {}, 'not_started'],
    ['moved', { current: 3 }, 'on_track'],
    ['done', { current: 100 }, 'achieved'],
    ['threshold met', { metric_type: 'threshold', target: 5, current: 5 }, 'on_track'],
    ['threshold missed', { metric_type: 'threshold', target: 5, current: 4 }, 'off_track'],
  ] as [string, Partial<Measure>, string][])('%s', (_n, o, expected) => {
    const r = computeStatus(kr(o), null, at(50));
    expect(r.status).toBe(expected);
    expect(r.expiresAt).toBeNull();
  });
});
