import { describe, expect, it } from 'vitest';
import { chartModel, drawable, formatValues, niceTicks, summaryNumbers } from './chart';

describe('history chart', () => {
  it('picks round ticks covering the range', () => {
    expect(niceTicks(80000, 120000)).toEqual([80000, 90000, 100000, 110000, 120000]);
    expect(niceTicks(0, 7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(3, 3)).toEqual([3, 4]);
  });

  it('keeps only snapshots it can draw', () => {
    expect(drawable(null)).toEqual([]);
    expect(
      drawable([
        { at: 'nope', value: 1 },
        { at: '2026-11-01T00:00:00Z', value: null },
        { at: '2026-11-01T00:00:00Z', value: 2 },
      ]),
    ).toEqual([{ at: '2026-11-01T00:00:00Z', value: 2 }]);
  });

  it('draws value over time between the baseline and target lines', () => {
    const m = chartModel(
      [
        { at: '2026-11-01T00:00:00.000Z', value: 90000 },
        { at: '2026-11-15T00:00:00.000Z', value: 100000 },
        { at: '2026-11-29T00:00:00.000Z', value: 95000 },
      ],
      80000,
      120000,
    );
    expect(m.points).toHaveLength(3);
    // Time runs left to right across the plot; higher values sit higher (smaller y).
    expect(m.points[0].x).toBe(m.plot.left);
    expect(m.points[2].x).toBe(m.plot.right);
    expect(m.points[1].x).toBeCloseTo((m.plot.left + m.plot.right) / 2);
    expect(m.points[1].y).toBeLessThan(m.points[2].y);
    expect(m.target?.y).toBe(m.plot.top);
    expect(m.baseline?.y).toBe(m.plot.bottom);
    expect(m.line.split(' ')).toHaveLength(3);
    expect(m.xLabels.map((l) => l.label)).toEqual(['2026-11-01', '2026-11-29']);
    expect(m.yTicks[0].label).toBe('80K');
  });

  it('centres a single snapshot and draws without reference lines when there are none', () => {
    const m = chartModel([{ at: '2026-11-01T10:00:00.000Z', value: 5 }], null, undefined);
    expect(m.points[0].x).toBeCloseTo((m.plot.left + m.plot.right) / 2);
    expect(m.baseline).toBeNull();
    expect(m.target).toBeNull();
    expect(m.xLabels).toEqual([{ x: m.points[0].x, label: '11-01 10:00', anchor: 'middle' }]);
  });

  it('labels ticks as precisely as their step: distinct labels, never five "100K"', () => {
    const m = chartModel([{ at: '2026-11-01T00:00:00.000Z', value: 100004 }], 100000, 100010);
    const labels = m.yTicks.map((t) => t.label);
    expect(labels).toEqual(['100,000', '100,002.5', '100,005', '100,007.5', '100,010']);
    expect(new Set(m.yTicks.map((t) => t.value)).size).toBe(m.yTicks.length);
    expect([m.baseline?.label, m.target?.label]).toEqual(['100,000', '100,010']);
    // Round values keep the compact form.
    expect(chartModel([], 80000, 120000).yTicks.map((t) => t.label)).toEqual(['80K', '90K', '100K', '110K', '120K']);
    expect(chartModel([], 1_000_000, 2_000_000).yTicks.map((t) => t.label)).toEqual([
      '1M',
      '1.25M',
      '1.5M',
      '1.75M',
      '2M',
    ]);
    expect(chartModel([], 0, 0.01).yTicks.map((t) => t.label)).toEqual(['0', '0.0025', '0.005', '0.0075', '0.01']);
  });

  it('rounds no small number away: the summary and the reference lines say 0.021 of 0.025', () => {
    expect(summaryNumbers({ current: 0.023, target: 0.025, baseline: 0.021 }, '')).toBe(
      '0.023 of 0.025 · baseline 0.021',
    );
    expect(summaryNumbers({ current: 0.0021, target: 0.003, baseline: 0.001 }, '')).toBe(
      '0.0021 of 0.003 · baseline 0.001',
    );
    expect(formatValues([1.5e-7, 2])).toEqual(['0.00000015', '2']);
    const m = chartModel([{ at: '2026-11-01T00:00:00.000Z', value: 0.023 }], 0.021, 0.025);
    expect([m.baseline?.caption, m.target?.caption]).toEqual(['baseline 0.021', 'target 0.025']);
  });

  it('leaves room on the left for the longest tick label', () => {
    const narrow = chartModel([], 80000, 120000);
    expect(narrow.plot.left).toBe(56);
    const wide = chartModel([{ at: '2026-11-01T00:00:00.000Z', value: 1000004 }], 1000000, 1000010);
    expect(wide.yTicks.map((t) => t.label)).toContain('1,000,002.5');
    // 9 digits (~6.2 units each at 11px) and 2 marks, right-aligned 8 units before the plot.
    expect(wide.plot.left).toBeGreaterThanOrEqual(8 + 9 * 6.2 + 2 * 3.5);
    const huge = chartModel([], -1e15, 1e15);
    expect(huge.plot.left).toBeGreaterThan(wide.plot.left);
  });

  it('keeps the baseline and target captions apart: one caption for equal values, one below for close ones', () => {
    const same = chartModel([{ at: '2026-11-01T00:00:00.000Z', value: 99.5 }], 99.9, 99.9);
    expect([same.baseline?.caption, same.target?.caption]).toEqual(['', 'baseline = target 99.9']);
    const close = chartModel([{ at: '2026-11-01T00:00:00.000Z', value: 0 }], 99.5, 100);
    const [b, t] = [close.baseline, close.target];
    expect(Math.abs((b?.y ?? 0) - (t?.y ?? 0))).toBeLessThan(14);
    expect(Math.abs((b?.captionY ?? 0) - (t?.captionY ?? 0))).toBeGreaterThanOrEqual(14);
    const apart = chartModel([], 0, 100);
    expect([apart.baseline?.captionY, apart.target?.captionY]).toEqual([
      (apart.baseline?.y ?? 0) - 5,
      (apart.target?.y ?? 0) - 5,
    ]);
  });

  it('labels a span under a minute to the millisecond, so two check-ins a moment apart read apart', () => {
    const m = chartModel(
      [
        { at: '2026-11-01T00:47:01.120Z', value: 1 },
        { at: '2026-11-01T00:47:01.870Z', value: 2 },
      ],
      0,
      5,
    );
    expect(m.xLabels.map((l) => l.label)).toEqual(['00:47:01.120', '00:47:01.870']);
  });

  it('states the summary numbers without rounding them together', () => {
    expect(summaryNumbers({ current: 100004, target: 100010, baseline: 100000 }, 'MRR')).toBe(
      '100,004 of 100,010 MRR · baseline 100,000',
    );
    expect(summaryNumbers({ current: 95000, target: 120000, baseline: 80000, confidence: 7 }, '')).toBe(
      '95K of 120K · baseline 80K · confidence 7/10',
    );
    expect(summaryNumbers({ current: null, target: 5 }, '')).toBe('no value yet of 5');
    expect(formatValues([7.5, 12])).toEqual(['7.5', '12']);
  });
});
