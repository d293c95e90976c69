import { useEffect, useRef, useState } from 'preact/hooks';
import { chartModel, drawable, formatNumber, type Snapshot, summaryNumbers } from './chart';

const STATUS_LABELS: Record<string, string> = {
  off_track: 'Off track',
  at_risk: 'At risk',
  on_track: 'On track',
  not_started: 'Not started',
  achieved: 'Achieved',
};

export function StatusBadge({ status }: { status: unknown }) {
  if (typeof status !== 'string' || !status) return <span class="badge badge-none">no status</span>;
  return (
    <span class={`badge badge-${status.replace(/[^a-z_]/g, '')}`} data-testid="status-badge">
      {STATUS_LABELS[status] ?? status}
    </span>
  );
}

export function ProgressBar({ pct, label }: { pct: unknown; label: string }) {
  const value = typeof pct === 'number' && Number.isFinite(pct) ? Math.max(0, Math.min(100, pct)) : null;
  return (
    <div class="progress-row">
      <div
        class="progress"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={value ?? undefined}
        data-testid="progress-bar"
      >
        <div class="progress-fill" style={{ width: `${value ?? 0}%` }} />
      </div>
      <span class="progress-text">{value === null ? '—' : `${formatNumber(value)}%`}</span>
    </div>
  );
}

function when(at: string): string {
  return at.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');
}

/** Value over time, with the baseline and target as reference lines. */
export function HistoryChart({
  history,
  baseline,
  target,
  unit,
}: {
  history: Snapshot[];
  baseline: unknown;
  target: unknown;
  unit: string;
}) {
  // Lay the chart out at its real width, so its labels keep their size on a phone.
  const figure = useRef<HTMLElement>(null);
  const [width, setWidth] = useState(640);
  useEffect(() => {
    const el = figure.current;
    if (!el || typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(() => setWidth(Math.max(280, Math.round(el.clientWidth))));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const m = chartModel(history, baseline, target, { width, height: width < 480 ? 200 : 240 });
  const suffix = unit ? ` ${unit}` : '';
  return (
    <figure class="chart" ref={figure} data-testid="history-chart" data-points={history.length}>
      <svg
        viewBox={`0 0 ${m.width} ${m.height}`}
        role="img"
        aria-labelledby="chart-title chart-desc"
        preserveAspectRatio="xMidYMid meet"
      >
        <title id="chart-title">History of the metric</title>
        <desc id="chart-desc">
          {history.length} snapshots from {history[0]?.value ?? '—'} to {history[history.length - 1]?.value ?? '—'}
          {suffix}
          {typeof target === 'number' ? `; target ${target}${suffix}` : ''}
        </desc>
        {m.yTicks.map((t) => (
          <g key={t.value} class="tick">
            <line x1={m.plot.left} x2={m.plot.right} y1={t.y} y2={t.y} />
            <text x={m.plot.left - 8} y={t.y} dy="0.32em" text-anchor="end">
              {t.label}
            </text>
          </g>
        ))}
        {m.baseline && (
          <g class="ref ref-baseline" data-testid="baseline-line">
            <line x1={m.plot.left} x2={m.plot.right} y1={m.baseline.y} y2={m.baseline.y} />
            {m.baseline.caption && (
              <text x={m.plot.right} y={m.baseline.captionY} text-anchor="end">
                {m.baseline.caption}
              </text>
            )}
          </g>
        )}
        {m.target && (
          <g class="ref ref-target" data-testid="target-line">
            <line x1={m.plot.left} x2={m.plot.right} y1={m.target.y} y2={m.target.y} />
            <text x={m.plot.right} y={m.target.captionY} text-anchor="end">
              {m.target.caption}
            </text>
          </g>
        )}
        <polyline class="series" points={m.line} />
        {m.points.map((p) => (
          <circle key={`${p.snapshot.at}-${p.x}`} class="point" cx={p.x} cy={p.y} r={4}>
            <title>
              {when(p.snapshot.at)}: {p.snapshot.value}
              {suffix}
              {typeof p.snapshot.progress_pct === 'number' ? ` (${formatNumber(p.snapshot.progress_pct)}%)` : ''}
              {p.snapshot.note ? ` — ${p.snapshot.note}` : ''}
            </title>
          </circle>
        ))}
        {m.xLabels.map((l) => (
          <text key={l.label + l.anchor} class="x-label" x={l.x} y={m.height - 8} text-anchor={l.anchor}>
            {l.label}
          </text>
        ))}
      </svg>
      <figcaption>
        <details>
          <summary>History ({history.length})</summary>
          {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take the focus. */}
          <section class="table-scroll" tabIndex={0} aria-label="History values">
            <table class="data">
              <thead>
                <tr>
                  <th scope="col">at</th>
                  <th scope="col">value</th>
                  <th scope="col">progress</th>
                  <th scope="col">confidence</th>
                  <th scope="col">source</th>
                  <th scope="col">note</th>
                </tr>
              </thead>
              <tbody>
                {history.map((s, i) => (
                  <tr key={`${s.at}-${i}`}>
                    <td>{when(s.at)}</td>
                    <td>{s.value}</td>
                    <td>{typeof s.progress_pct === 'number' ? `${formatNumber(s.progress_pct)}%` : '—'}</td>
                    <td>{s.confidence ?? '—'}</td>
                    <td>{s.source_type ?? '—'}</td>
                    <td>{s.note ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </details>
      </figcaption>
    </figure>
  );
}

/** True for a document that carries progress or status (key results, objectives). */
export function hasProgress(doc: unknown): doc is Record<string, unknown> {
  return typeof doc === 'object' && doc !== null && ('progress_pct' in doc || 'status' in doc);
}

/** A document's progress bar, status badge and, for a key result, its history chart. */
export function ProgressSummary({ doc, titleField }: { doc: Record<string, unknown>; titleField: string }) {
  const history = drawable(doc.history);
  const unit = typeof doc.unit === 'string' ? doc.unit : '';
  const title = typeof doc[titleField] === 'string' ? (doc[titleField] as string) : String(doc.id ?? '');
  const hasTarget = typeof doc.target === 'number';
  return (
    <section class="summary" aria-label="Progress" data-testid="progress-summary">
      <div class="summary-head">
        <strong class="summary-title">{title}</strong>
        <StatusBadge status={doc.status} />
      </div>
      <ProgressBar pct={doc.progress_pct} label={`Progress of ${title}`} />
      {hasTarget && <p class="summary-numbers">{summaryNumbers(doc, unit)}</p>}
      {Array.isArray(doc.history) &&
        (history.length > 0 ? (
          <HistoryChart history={history} baseline={doc.baseline} target={doc.target} unit={unit} />
        ) : (
          <p class="muted">No check-ins yet: the history chart appears after the first one.</p>
        ))}
    </section>
  );
}
