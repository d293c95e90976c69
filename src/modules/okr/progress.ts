/** Progress of a key result: plain functions, the one place the formula and its rounding live. */

export type MetricType = 'number' | 'percentage' | 'currency' | 'milestone' | 'threshold';
export type Direction = 'increase' | 'decrease';

export interface Measure {
  metric_type: MetricType;
  baseline: number;
  target: number;
  current: number;
  direction: Direction;
}

export const LINEAR_TYPES: readonly MetricType[] = ['number', 'percentage', 'currency'];

/**
 * Rounds half away from zero to `digits` decimals. Binary noise is cleared first (15
 * significant digits), so 1.005 → 1.01 and 12.345000000000002 → 12.35, as a person expects.
 */
export function roundHalfAwayFromZero(x: number, digits = 2): number {
  if (!Number.isFinite(x) || x === 0) return x === 0 ? 0 : x;
  // Already at most `digits` decimals (0, 50, 12.5 …): the long way would answer the same
  // number, since x · 10^digits is then an integer well inside 15 significant digits.
  const scale = 10 ** digits;
  const scaled = x * scale;
  if (Number.isInteger(scaled) && Math.abs(scaled) < 1e13) return scaled / scale;
  const sign = x < 0 ? -1 : 1;
  const [mantissa, exp = '0'] = Math.abs(x).toPrecision(15).split('e');
  const rounded = Math.round(Number(`${mantissa}e${Number(exp) + digits}`));
  const [m, e = '0'] = String(rounded).split('e');
  const result = sign * Number(`${m}e${Number(e) - digits}`);
  return result === 0 ? 0 : result;
}

/** Whether the target is met, for the types where "met" is a yes/no question. */
export function isMet(m: Measure): boolean {
  if (m.metric_type === 'milestone') return m.current >= m.target;
  return m.direction === 'decrease' ? m.current <= m.target : m.current >= m.target;
}

/**
 * progress_pct: linear types move from baseline (0) to target (100), clamped to 0–100;
 * target == baseline is 100 if met else 0; milestone and threshold are 0 or 100.
 */
export function progressPct(m: Measure): number {
  if (!LINEAR_TYPES.includes(m.metric_type) || m.target === m.baseline) return isMet(m) ? 100 : 0;
  const raw = ((m.current - m.baseline) / (m.target - m.baseline)) * 100;
  return roundHalfAwayFromZero(Math.min(100, Math.max(0, raw)));
}

/**
 * The direction a key result's bounds imply: `decrease` from a baseline above the target,
 * `increase` when they are equal; a threshold's is `increase` (at or above) unless chosen.
 */
export function impliedDirection(metricType: MetricType, baseline: number, target: number): Direction {
  if (metricType !== 'threshold' && target < baseline) return 'decrease';
  return 'increase';
}
