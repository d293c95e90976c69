import { describe, expect, it } from 'vitest';
import type { Doc } from '../../core/resource.js';
import { applyContribution, type Contribution, type RollupState, recompute, rollupFigures } from './rollup.js';

/** A small deterministic generator, so every run walks the same states. */
function generator(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

describe('objective roll-up from running sums', () => {
  // Weights in tenths, so the exact average is a fraction of integers: (Σ w·p) / Σ w.
  const tenths = [1, 2, 7, 13, 3];
  const total = tenths.reduce((a, b) => a + b, 0);
  const exactly = (hundredths: number[]) => {
    const num = hundredths.reduce((s, p, i) => s + tenths[i] * p, 0);
    const q = Math.floor(num / total);
    // 100 only when every key result is at 100.
    return hundredths.every((p) => p === 10_000)
      ? 100
      : Math.min(99.99, (2 * (num - q * total) >= total ? q + 1 : q) / 100);
  };

  it('shows what the exact average rounds to, on halves too, after thousands of adds and removes', () => {
    const rnd = generator(777);
    let krs: Doc[] = tenths.map((w, i) => ({ id: `k${i}`, objective_id: 'o', weight: w / 10, progress_pct: 0 }));
    let state: RollupState = recompute(krs);
    const contribution = (kr: Doc): Contribution => ({
      objectiveId: 'o',
      weight: kr.weight as number,
      progress: kr.progress_pct as number,
      status: 'on_track',
    });
    const set = (i: number, hundredths: number) => {
      const after = { ...krs[i], progress_pct: hundredths / 100 };
      state = applyContribution(applyContribution(state, contribution(krs[i]), -1), contribution(after), 1);
      krs = krs.map((k, j) => (j === i ? after : k));
    };
    let halves = 0;
    for (let n = 0; n < 30_000; n++) {
      set(Math.floor(rnd() * tenths.length), Math.round(rnd() * 10_000));
      if (n % 100 !== 99) continue;
      // Values whose exact average is a half (…5 in the third decimal): drift alone decides those.
      for (let tries = 0; tries < 500; tries++) {
        const ps = tenths.map(() => Math.round(rnd() * 10_000));
        const num = ps.reduce((s, p, i) => s + tenths[i] * p, 0);
        if ((2 * num) % (2 * total) !== total) continue;
        for (const [i, p] of ps.entries()) set(i, p);
        halves++;
        expect(rollupFigures(state).progress_pct).toBe(exactly(ps));
        expect(recompute(krs).progress_pct).toBe(exactly(ps));
        break;
      }
    }
    expect(halves).toBeGreaterThan(200);
  });

  // The contract's order, worst first: an objective reads the first of these any key result holds.
  const WORST_FIRST = ['off_track', 'at_risk', 'on_track', 'not_started', 'achieved'] as const;
  it.each(WORST_FIRST.flatMap((worse, i) => WORST_FIRST.slice(i + 1).map((better) => [worse, better])))(
    'reads %s beside %s',
    (worse, better) => {
      const state: RollupState = {
        rollup_weight_sum: 2,
        rollup_progress_sum: 100,
        rollup_status_counts: { [better]: 1, [worse]: 1 },
        key_result_count: 2,
        rollup_weight_peak: 1,
        rollup_short_count: 2,
      };
      expect(rollupFigures(state).status).toBe(worse);
    },
  );

  it('reads 100 only when every weighted key result is at 100: 100 beside 99.99 is 99.99, not 99.995 → 100', () => {
    const kr = (id: string, progress_pct: number, weight = 1): Doc => ({ id, objective_id: 'o', weight, progress_pct });
    expect(recompute([kr('a', 100), kr('b', 99.99)]).progress_pct).toBe(99.99);
    expect(recompute([kr('a', 100), kr('b', 100), kr('c', 12, 0)]).progress_pct).toBe(100);
    // 99.995 of a heavy key result beside one at 99.99: still short of every one at 100.
    expect(recompute([kr('a', 100, 1000), kr('b', 99.99, 1)]).progress_pct).toBe(99.99);
    expect(recompute([kr('a', 100), kr('b', 50)]).progress_pct).toBe(75);
    // Weights 1e9 apart: the average is 99.99999999999, 100 to 12 digits; one is still short.
    const apart = recompute([kr('a', 100, 1000), kr('b', 99.99, 0.000001)]);
    expect(apart.progress_pct).toBe(99.99);
    const contribution = (progress: number, weight: number): Contribution => ({
      objectiveId: 'o',
      weight,
      progress,
      status: 'on_track',
    });
    const met = applyContribution(
      applyContribution(apart, contribution(99.99, 0.000001), -1),
      contribution(100, 0.000001),
      1,
    );
    expect(rollupFigures(met).progress_pct).toBe(100);
    expect(rollupFigures(applyContribution(met, contribution(0, 0.000001), 1)).progress_pct).toBe(99.99);
  });
});
