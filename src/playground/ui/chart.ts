/** One entry of a key result's `history`, oldest first. */
export interface Snapshot {
  at: string;
  value: number;
  progress_pct?: number | null;
  by?: string | null;
  source_type?: string;
  note?: string | null;
  confidence?: number | null;
}

export interface ChartPoint {
  x: number;
  y: number;
  snapshot: Snapshot;
}

export interface ChartModel {
  width: number;
  height: number;
  plot: { left: number; right: number; top: number; bottom: number };
  points: ChartPoint[];
  /** `x,y x,y …` for an SVG polyline. */
  line: string;
  /**
   * A reference line, its value's label and where its caption (`baseline 80K`) sits: above the
   * line, or below it where the other line's caption would overlap; empty where the other line
   * is the same value (one caption names both: `baseline = target 99.9`).
   */
  baseline: { y: number; value: number; label: string; caption: string; captionY: number } | null;
  target: { y: number; value: number; label: string; caption: string; captionY: number } | null;
  /** Distinct values, so `value` (not `label`) keys them. */
  yTicks: { y: number; value: number; label: string }[];
  xLabels: { x: number; label: string; anchor: 'start' | 'end' | 'middle' }[];
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Keeps the snapshots a chart can draw: a finite value and a parseable time. */
export function drawable(history: unknown): Snapshot[] {
  if (!Array.isArray(history)) return [];
  return history.filter(
    (s): s is Snapshot =>
      typeof s === 'object' && s !== null && isNum(s.value) && !Number.isNaN(Date.parse(String(s.at))),
  );
}

/** Round steps (1, 2, 2.5, 5 × 10^k) covering [lo, hi] in about `count` intervals. */
export function niceTicks(lo: number, hi: number, count = 4): number[] {
  if (!(hi > lo)) return [lo, lo + 1];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const first = Math.floor(lo / step) * step;
  const last = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let i = 0; first + i * step <= last + step * 1e-9; i++) ticks.push(Number((first + i * step).toPrecision(12)));
  return ticks;
}

export function formatNumber(n: number): string {
  const abs = Math.abs(n);
  const opts: Intl.NumberFormatOptions =
    abs >= 10_000 ? { notation: 'compact', maximumFractionDigits: 1 } : { maximumFractionDigits: 2 };
  return new Intl.NumberFormat('en-US', opts).format(n);
}

const COMPACT = [1, 2].map(
  (digits) => new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: digits }),
);
const COMPACT_EXACT = new Intl.NumberFormat('en-US', { notation: 'compact', maximumSignificantDigits: 21 });

/** The decimals JavaScript writes `v` with (`0.025` → 3, `1.5e-7` → 8, `120000` → 0). */
export function decimalsOf(v: number): number {
  const [mantissa, exponent] = String(Math.abs(v)).split('e');
  return Math.max(0, (mantissa.split('.')[1]?.length ?? 0) - Number(exponent ?? 0));
}

/**
 * Labels for numbers that must read as what they are and stay apart (axis ticks, a value beside
 * its target): compact (`80K`, `1.25M`) when that rounds none of them and each stays short
 * (three digits at most: not `100.01K`), else all in full (`100,004`, `100,010`) with
 * `fractionDigits` decimals at most: by default as many as the values have, so none is rounded
 * (`0.021 of 0.025`, not `0.02 of 0.03`). One format for the whole set.
 *
 * @example
 * formatValues([80000, 120000]); // ['80K', '120K']
 * formatValues([100004, 100010]); // ['100,004', '100,010']
 */
export function formatValues(
  values: readonly number[],
  fractionDigits = Math.max(0, ...values.map(decimalsOf)),
): string[] {
  if (values.some((v) => Math.abs(v) >= 10_000)) {
    for (const f of COMPACT) {
      const labels = values.map((v) => f.format(v));
      const short = (label: string) => label.replace(/\D/g, '').replace(/^0+/, '').length <= 3;
      if (values.every((v, i) => labels[i] === COMPACT_EXACT.format(v) && short(labels[i]))) return labels;
    }
  }
  const plain = new Intl.NumberFormat('en-US', { maximumFractionDigits: Math.min(20, fractionDigits) });
  return values.map((v) => plain.format(v));
}

/** How many decimals a tick step has (`2.5` → 1, `0.025` → 3, `500` → 0). */
export function stepDecimals(step: number): number {
  for (let d = 0; d < 20; d++) {
    const scaled = step * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, Math.abs(scaled))) return d;
  }
  return 20;
}

/** Tick labels as precise as their step: every tick its own label (`100,002.5`, not five `100K`). */
export function tickLabels(ticks: readonly number[]): string[] {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  return formatValues(ticks, Math.max(2, stepDecimals(step)));
}

/**
 * `95K of 120K MRR · baseline 80K · confidence 7/10`: current, target and baseline in one format
 * that rounds none of them (`100,004 of 100,010`, never `100K of 100K`).
 */
export function summaryNumbers(doc: Record<string, unknown>, unit: string): string {
  const hasCurrent = doc.current !== null && doc.current !== undefined && Number.isFinite(Number(doc.current));
  const hasBaseline = typeof doc.baseline === 'number';
  const values = [Number(doc.target), hasCurrent ? Number(doc.current) : 0, hasBaseline ? (doc.baseline as number) : 0];
  const [target, current, baseline] = formatValues(values);
  return [
    hasCurrent ? current : 'no value yet',
    ' of ',
    target,
    unit ? ` ${unit}` : '',
    hasBaseline ? ` · baseline ${baseline}` : '',
    typeof doc.confidence === 'number' ? ` · confidence ${doc.confidence}/10` : '',
  ].join('');
}

/** A time axis label (UTC), as precise as the span of the chart needs (milliseconds under a minute). */
function formatTime(t: number, spanMs: number): string {
  const iso = new Date(t).toISOString();
  if (spanMs < 60_000) return iso.slice(11, 23);
  if (spanMs < 3_600_000) return iso.slice(11, 19);
  if (spanMs < 2 * 86_400_000) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  return iso.slice(0, 10);
}

/** Lays out a value-over-time chart with baseline and target lines, in SVG user units. */
export function chartModel(
  history: Snapshot[],
  baseline: unknown,
  target: unknown,
  size: { width: number; height: number } = { width: 640, height: 240 },
): ChartModel {
  const { width, height } = size;
  const values = history.map((s) => s.value);
  const bounds = [baseline, target].filter(isNum);
  let lo = Math.min(...values, ...bounds);
  let hi = Math.max(...values, ...bounds);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const ticks = niceTicks(lo, hi);
  const labels = tickLabels(ticks);
  // Room on the left for the longest tick label (11px type: ~6.2 units a digit, ~3.5 a mark).
  const labelWidth = (l: string) => l.replace(/[^0-9A-Z]/g, '').length * 6.2 + l.replace(/[0-9A-Z]/g, '').length * 3.5;
  const left = Math.max(56, Math.ceil(12 + Math.max(0, ...labels.map(labelWidth))));
  const plot = { left, right: width - 16, top: 16, bottom: height - 28 };
  const yMin = ticks[0];
  const yMax = ticks[ticks.length - 1];
  const y = (v: number) => plot.bottom - ((v - yMin) / (yMax - yMin)) * (plot.bottom - plot.top);

  const times = history.map((s) => Date.parse(s.at));
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (!Number.isFinite(t0)) [t0, t1] = [0, 1];
  if (t0 === t1) [t0, t1] = [t0 - 3_600_000, t1 + 3_600_000];
  const x = (t: number) => plot.left + ((t - t0) / (t1 - t0)) * (plot.right - plot.left);

  const points = history.map((snapshot, i) => ({ x: x(times[i]), y: y(snapshot.value), snapshot }));
  // Baseline and target in one format, so the two never read as the same number.
  const refLabels = formatValues([isNum(baseline) ? baseline : 0, isNum(target) ? target : 0]);
  const refs: { baseline: ChartModel['baseline']; target: ChartModel['target'] } = { baseline: null, target: null };
  if (isNum(baseline)) {
    const by = y(baseline);
    refs.baseline = {
      y: by,
      value: baseline,
      label: refLabels[0],
      caption: `baseline ${refLabels[0]}`,
      captionY: by - 5,
    };
  }
  if (isNum(target)) {
    const ty = y(target);
    refs.target = { y: ty, value: target, label: refLabels[1], caption: `target ${refLabels[1]}`, captionY: ty - 5 };
  }
  if (refs.baseline && refs.target) {
    if (refs.baseline.value === refs.target.value) {
      refs.target.caption = `baseline = target ${refLabels[1]}`;
      refs.baseline.caption = '';
    } else if (Math.abs(refs.baseline.y - refs.target.y) < 14) {
      // Too close for both above their lines: the lower line's caption goes below it.
      const lower = refs.baseline.y > refs.target.y ? refs.baseline : refs.target;
      lower.captionY = lower.y + 13;
    }
  }
  const span = t1 - t0;
  const xLabels: ChartModel['xLabels'] =
    history.length === 0
      ? []
      : times[0] === times[times.length - 1]
        ? [{ x: points[0].x, label: formatTime(times[0], 86_400_000), anchor: 'middle' }]
        : [
            { x: plot.left, label: formatTime(t0, span), anchor: 'start' },
            { x: plot.right, label: formatTime(t1, span), anchor: 'end' },
          ];
  return {
    width,
    height,
    plot,
    points,
    line: points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' '),
    baseline: refs.baseline,
    target: refs.target,
    yTicks: ticks.map((v, i) => ({ y: y(v), value: v, label: labels[i] })),
    xLabels,
  };
}
