import { describe, expect, it } from 'vitest';
import { impliedDirection, type Measure, progressPct, roundHalfAwayFromZero } from './progress.js';

const kr = (o: Partial<Measure>): Measure => ({
  metric_type: 'number',
  baseline: 0,
  target: 100,
  current: 0,
  direction: 'increase',
  ...o,
});

describe('roundHalfAwayFromZero', () => {
  it.each([
    [1 / 3, 0.33],
    [(1 / 3) * 100, 33.33],
    [(2 / 3) * 100, 66.67],
    [1.005, 1.01],
    [12.345, 12.35],
    [12.344999, 12.34],
    [0.125, 0.13],
    [-0.125, -0.13],
    [-1.005, -1.01],
    [99.995, 100],
    [2.675, 2.68],
    [1e-9, 0],
    [-1e-9, 0],
    [0, 0],
  ])('rounds %d to %d', (x, expected) => {
    expect(roundHalfAwayFromZero(x)).toBe(expected);
    expect(Object.is(roundHalfAwayFromZero(x), -0)).toBe(false);
  });

  it('answers what rounding through 15 significant digits answers, on numbers with few decimals too', () => {
    // The function's long way, kept here as the reference for its shortcut.
    const reference = (x: number) => {
      const sign = x < 0 ? -1 : 1;
      const [mantissa, exp = '0'] = Math.abs(x).toPrecision(15).split('e');
      const rounded = Math.round(Number(`${mantissa}e${Number(exp) + 2}`));
      const [m, e = '0'] = String(rounded).split('e');
      const result = sign * Number(`${m}e${Number(e) - 2}`);
      return result === 0 ? 0 : result;
    };
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const samples: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const k = Math.round((random() - 0.5) * 2e6);
      samples.push(k / 100, k / 10, k, k / 1000, (random() - 0.5) * 10 ** Math.round(random() * 12), k * 1e6);
    }
    for (const x of samples) expect(roundHalfAwayFromZero(x)).toBe(reference(x));
  });
});

describe('progressPct', () => {
  const cases: [string, Partial<Measure>, number][] = [
    ['number, start', { current: 0 }, 0],
    ['number, halfway', { current: 50 }, 50],
    ['number, a third', { target: 3, current: 1 }, 33.33],
    ['number, two thirds', { target: 3, current: 2 }, 66.67],
    ['number, .005 rounds up', { target: 1000, current: 123.45 }, 12.35],
    ['number, .005 of a decimal span', { baseline: 0, target: 200, current: 0.01 }, 0.01],
    ['number, overshoot clamps', { current: 150 }, 100],
    ['number, undershoot clamps', { current: -20 }, 0],
    ['percentage, from 20 to 60', { metric_type: 'percentage', baseline: 20, target: 60, current: 30 }, 25],
    ['currency, baseline offset', { metric_type: 'currency', baseline: 80000, target: 120000, current: 95000 }, 37.5],
    ['decrease, halfway', { baseline: 100, target: 50, current: 75, direction: 'decrease' }, 50],
    ['decrease, overshoot', { baseline: 100, target: 50, current: 10, direction: 'decrease' }, 100],
    ['decrease, wrong way', { baseline: 100, target: 50, current: 120, direction: 'decrease' }, 0],
    ['target == baseline, met (increase)', { baseline: 10, target: 10, current: 10 }, 100],
    ['target == baseline, above (increase)', { baseline: 10, target: 10, current: 11 }, 100],
    ['target == baseline, not met (increase)', { baseline: 10, target: 10, current: 9 }, 0],
    ['target == baseline, met (decrease)', { baseline: 10, target: 10, current: 9, direction: 'decrease' }, 100],
    ['target == baseline, not met (decrease)', { baseline: 10, target: 10, current: 11, direction: 'decrease' }, 0],
    ['milestone, not done', { metric_type: 'milestone', target: 1, current: 0 }, 0],
    ['milestone, done', { metric_type: 'milestone', target: 1, current: 1 }, 100],
    ['milestone, beyond', { metric_type: 'milestone', target: 3, current: 5 }, 100],
    ['threshold increase, met (inclusive)', { metric_type: 'threshold', target: 99.9, current: 99.9 }, 100],
    ['threshold increase, not met', { metric_type: 'threshold', target: 99.9, current: 99.8 }, 0],
    [
      'threshold decrease, met (inclusive)',
      { metric_type: 'threshold', target: 200, current: 200, direction: 'decrease' },
      100,
    ],
    ['threshold decrease, not met', { metric_type: 'threshold', target: 200, current: 250, direction: 'decrease' }, 0],
    // Halves of the decimals as written, where doubles fall just short (612.55 − 512.08 is
    // 100.46999999999997): 100.47 of 200 is 50.235 → 50.24.
    ['a half of decimals as written', { baseline: 512.08, target: 712.08, current: 612.55 }, 50.24],
    ['a half of currency', { metric_type: 'currency', baseline: 20197.87, target: 20597.87, current: 20423.17 }, 56.33],
    ['a half at the low end', { baseline: 0.2, target: 200.2, current: 0.21 }, 0.01],
    ['a half, decreasing', { baseline: 712.08, target: 512.08, current: 611.61, direction: 'decrease' }, 50.24],
    // A span small against the values: the subtraction loses digits (21.8749996… for 21.875).
    [
      'a half of a small span of large values',
      { metric_type: 'currency', baseline: 1_000_000, target: 1_000_000.32, current: 1_000_000.07 },
      21.88,
    ],
    ['the same at 1e7', { baseline: 1e7, target: 1e7 + 0.32, current: 1e7 + 0.01 }, 3.13],
    ['the same at 1e8', { baseline: 1e8, target: 1e8 + 0.32, current: 1e8 + 0.05 }, 15.63],
    // 100 only once the target is met: within 0.005% of it is 99.99.
    ['a hair short of the target', { target: 1_000_000, current: 999_950 }, 99.99],
    ['a hair short, decreasing', { baseline: 1000, target: 0, current: 0.04, direction: 'decrease' }, 99.99],
    ['short by a double', { target: 0.30000000000000004, current: 0.3 }, 99.99],
    ['just met', { target: 0.30000000000000004, current: 0.30000000000000004 }, 100],
  ];
  it.each(cases)('%s', (_name, o, expected) => {
    expect(progressPct(kr(o))).toBe(expected);
  });

  it('equals the rounding of the exact decimal ratio on 20,000 random two-decimal key results', () => {
    let seed = 11;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const cents = () => Math.round((random() - 0.5) * 2e8) / 100;
    // Half of them small spans (a few cents) of large values, where the subtraction loses digits.
    const near = (x: number) => Math.round(x * 100 + (random() - 0.5) * 200) / 100;
    for (let i = 0; i < 20_000; i++) {
      const baseline = cents();
      const [target, current] = i % 2 ? [cents(), cents()] : [near(baseline), near(baseline)];
      if (baseline === target) continue;
      const direction = target < baseline ? 'decrease' : 'increase';
      // In cents, exactly: (current − baseline) / (target − baseline) in hundredths of a percent.
      const [c, b, t] = [current, baseline, target].map((x) => BigInt(Math.round(x * 100)));
      let [num, den] = [(c as bigint) - (b as bigint), (t as bigint) - (b as bigint)];
      if (den < 0n) [num, den] = [-num, -den];
      const met = num >= den;
      const q = num <= 0n ? 0n : (num * 10_000n) / den + (2n * ((num * 10_000n) % den) >= den ? 1n : 0n);
      const expected = met ? 100 : Math.min(99.99, num <= 0n ? 0 : Number(q) / 100);
      expect(progressPct(kr({ baseline, target, current, direction })), `${baseline} → ${target} at ${current}`).toBe(
        expected,
      );
    }
  });
});

describe('impliedDirection', () => {
  it.each([
    ['number', 0, 10, 'increase'],
    ['number', 10, 0, 'decrease'],
    ['currency', 5, 5, 'increase'],
    ['threshold', 10, 0, 'increase'],
    ['milestone', 0, 1, 'increase'],
    ['milestone', 5, 1, 'decrease'],
  ] as const)('%s %d → %d is %s', (type, baseline, target, expected) => {
    expect(impliedDirection(type, baseline, target)).toBe(expected);
  });
});
