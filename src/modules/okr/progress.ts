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

/** A number as the decimal it is written as (its shortest form): integer digits and a scale. */
function asDecimal(x: number): { digits: bigint; scale: number } {
  const [mantissa = '0', exp = '0'] = String(x).split('e');
  const [whole = '0', fraction = ''] = mantissa.split('.');
  const scale = fraction.length - Number(exp);
  const digits = BigInt(whole + fraction);
  return scale >= 0 ? { digits, scale } : { digits: digits * 10n ** BigInt(-scale), scale: 0 };
}

/**
 * (current − baseline) / (target − baseline) × 100 to two decimals, half away from zero, on the
 * decimals as written: 100.47 of 200 is 50.235 → 50.24, where doubles read 612.55 − 512.08 as
 * 100.46999999999997 (→ 50.23). Inside (0, 100) exclusive.
 */
function exactPct(current: number, baseline: number, target: number): number {
  const [c, b, t] = [asDecimal(current), asDecimal(baseline), asDecimal(target)];
  const scale = Math.max(c.scale, b.scale, t.scale);
  const at = (d: { digits: bigint; scale: number }) => d.digits * 10n ** BigInt(scale - d.scale);
  let num = at(c) - at(b);
  let den = at(t) - at(b);
  if (den < 0n) [num, den] = [-num, -den];
  const hundredths = num * 10_000n;
  const q = hundredths / den;
  return Number(2n * (hundredths % den) >= den ? q + 1n : q) / 100;
}

/**
 * progress_pct: linear types move from baseline (0) to target (100), clamped to 0–100 and
 * rounded half away from zero to two decimals, on the values as written; 100 only once the
 * target is met (99.995–99.999…% of the way reads 99.99, as the target is not reached: the seed's
 * "the value the metric must reach for this KeyResult to be considered achieved"). target ==
 * baseline is 100 if met else 0; milestone and threshold are 0 or 100.
 */
export function progressPct(m: Measure): number {
  if (!LINEAR_TYPES.includes(m.metric_type) || m.target === m.baseline) return isMet(m) ? 100 : 0;
  if (isMet(m)) return 100;
  const raw = ((m.current - m.baseline) / (m.target - m.baseline)) * 100;
  if (!(raw > 0)) return 0;
  // Far from a rounding edge (nearly always), the double's rounding is the decimal's. How far
  // is far grows with the values against their span: 1,000,000.07 of 1,000,000 → 1,000,000.32
  // subtracts away most digits (21.8749996… for 21.875).
  const scaled = raw * 100;
  const frac = scaled - Math.floor(scaled);
  const span = Math.abs(m.target - m.baseline);
  const margin = 1e-6 + (1e-10 * (Math.abs(m.current) + Math.abs(m.baseline) + Math.abs(m.target))) / span;
  const pct = Math.abs(frac - 0.5) > margin ? Math.round(scaled) / 100 : exactPct(m.current, m.baseline, m.target);
  return Math.min(pct, 99.99);
}

/**
 * The direction a key result's bounds imply: `decrease` from a baseline above the target,
 * `increase` when they are equal; a threshold's is `increase` (at or above) unless chosen.
 */
export function impliedDirection(metricType: MetricType, baseline: number, target: number): Direction {
  if (metricType !== 'threshold' && target < baseline) return 'decrease';
  return 'increase';
}
