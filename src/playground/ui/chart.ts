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
  baseline: { y: number; value: number } | null;
  target: { y: number; value: number } | null;
  yTicks: { y: number; label: string }[];
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

/** A time axis label (UTC), as precise as the span of the chart needs. */
function formatTime(t: number, spanMs: number): string {
  const iso = new Date(t).toISOString();
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
  const plot = { left: 56, right: width - 16, top: 16, bottom: height - 28 };
  const values = history.map((s) => s.value);
  const refs = [baseline, target].filter(isNum);
  let lo = Math.min(...values, ...refs);
  let hi = Math.max(...values, ...refs);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const ticks = niceTicks(lo, hi);
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
    baseline: isNum(baseline) ? { y: y(baseline), value: baseline } : null,
    target: isNum(target) ? { y: y(target), value: target } : null,
    yTicks: ticks.map((v) => ({ y: y(v), label: formatNumber(v) })),
    xLabels,
  };
}
