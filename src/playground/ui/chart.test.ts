import { describe, expect, it } from 'vitest';
import { chartModel, drawable, niceTicks } from './chart';

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
});
