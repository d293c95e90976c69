import { isMet, type Measure, progressPct } from './progress.js';

export type Status = 'off_track' | 'at_risk' | 'on_track' | 'not_started' | 'achieved';

export interface CycleSpan {
  /** `start_date` 00:00Z, ms. */
  start: number;
  /** The day after `end_date`, 00:00Z, ms (end_date is inclusive). */
  end: number;
}

const DAY = 86_400_000;

export function cycleSpan(cycle: Record<string, unknown> | null): CycleSpan | null {
  if (!cycle || typeof cycle.start_date !== 'string' || typeof cycle.end_date !== 'string') return null;
  return { start: Date.parse(`${cycle.start_date}T00:00:00Z`), end: Date.parse(`${cycle.end_date}T00:00:00Z`) + DAY };
}

/** Elapsed share of the cycle at `now`, 0–1. */
export function elapsedShare(span: CycleSpan, now: number): number {
  if (span.end <= span.start) return 1;
  return Math.min(1, Math.max(0, (now - span.start) / (span.end - span.start)));
}

export interface StatusResult {
  status: Status;
  /** When time alone can next change the status (ms), or null if it cannot. */
  expiresAt: number | null;
}

/**
 * Status by pace against the cycle (PRODUCT.md §2). Linear and milestone: achieved at 100;
 * else expected = elapsed share × 100, on_track if progress ≥ expected − 10 (not_started while
 * current equals baseline), at_risk if ≥ expected − 25, else off_track; without a cycle:
 * not_started while current equals baseline, else on_track. Threshold: met → on_track
 * (achieved once the cycle has ended), not met → off_track.
 */
export function computeStatus(m: Measure, span: CycleSpan | null, now: number): StatusResult {
  if (m.metric_type === 'threshold') {
    if (!isMet(m)) return { status: 'off_track', expiresAt: null };
    if (span && now >= span.end) return { status: 'achieved', expiresAt: null };
    return { status: 'on_track', expiresAt: span ? span.end : null };
  }
  const progress = progressPct(m);
  if (progress === 100) return { status: 'achieved', expiresAt: null };
  const untouched = m.current === m.baseline;
  if (!span) return { status: untouched ? 'not_started' : 'on_track', expiresAt: null };
  const expected = elapsedShare(span, now) * 100;
  // The status changes once `expected` passes progress + 10 (then + 25): that instant ends the band.
  const bandEnd = (margin: number) =>
    progress + margin >= 100
      ? null
      : Math.floor(span.start + ((progress + margin) / 100) * (span.end - span.start)) + 1;
  if (progress >= expected - 10) return { status: untouched ? 'not_started' : 'on_track', expiresAt: bandEnd(10) };
  if (progress >= expected - 25) return { status: 'at_risk', expiresAt: bandEnd(25) };
  return { status: 'off_track', expiresAt: null };
}
