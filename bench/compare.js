// Each row of a run beside the committed baseline's. The issue asks later changes to keep the
// ratios within 10% of the baseline's, which holds on the baseline's machine only: sessions run
// on machines whose bare server differs by 2× or more in CPU per request, and the bare server
// gains or loses more from a machine than our code does, so ratios move with the machine.
// The bare server's CPU per request is the yardstick of "the same machine".

/** Bare-server CPU per request within this factor of the baseline's counts as the same machine. */
export const SAME_MACHINE = 1.25;

const sortedBy = (items, key) => [...items].sort((a, b) => key(a) - key(b));

/** The median of numbers (the mean of the two middle ones for an even count). */
export const median = (values) => {
  const sorted = sortedBy(values, (v) => v);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** The item whose key is the median (the lower of the two middle ones for an even count). */
const middle = (items, key) => sortedBy(items, key)[Math.floor((items.length - 1) / 2)];

/**
 * Sets, on each row with a baseline row of the same scenario: `baseline_ratio`, `vs_baseline`
 * (ratio against the baseline's, −0.12 is 12% below), `cpu_vs_baseline` (our CPU per request
 * against the baseline's) and `regressed` (over 10% below, on the same machine only). Answers
 * how this machine compares: the median over rows of the bare server's CPU per request against
 * the baseline's (`bare_cpu_factor`, null without rows to compare) and whether that is the same
 * machine.
 */
export function compareWithBaseline(rows, baselineRows) {
  const factors = [];
  for (const r of rows) {
    const before = baselineRows.find((b) => b.scenario === r.scenario);
    r.baseline_ratio = before ? before.ratio : null;
    r.vs_baseline = before ? r.ratio / before.ratio - 1 : null;
    r.cpu_vs_baseline = before?.cpu_us ? r.cpu_us / before.cpu_us - 1 : null;
    if (before?.bare_cpu_us && r.bare_cpu_us) factors.push(r.bare_cpu_us / before.bare_cpu_us);
  }
  const factor = factors.length ? median(factors) : null;
  const same = factor === null || (factor <= SAME_MACHINE && factor >= 1 / SAME_MACHINE);
  for (const r of rows) r.regressed = r.vs_baseline !== null && same && r.vs_baseline < -0.1;
  return { bare_cpu_factor: factor, same_machine: same };
}

const signed = (x) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}%`;

/** The "vs baseline" cell of a row compared by compareWithBaseline. */
export function formatDelta(r) {
  if (r.vs_baseline === null) return '';
  const flag = r.regressed ? ' (over 10% below)' : '';
  const cpu = r.cpu_vs_baseline === null ? '' : `  (CPU ${signed(r.cpu_vs_baseline)})`;
  return `${signed(r.vs_baseline)}${flag}${cpu}`;
}

/** A line under the table when this is not the baseline's machine; null when it is. */
export function machineNote(machine, baselineFile) {
  if (machine.same_machine) return null;
  const f = machine.bare_cpu_factor;
  return (
    `(not the baseline's machine: the bare server used ${f.toFixed(2)}× the CPU per request it used in ` +
    `${baselineFile}, so ratios against it are not judged; compare CPU µs on a machine like the baseline's, ` +
    'or take one here: npm run bench:baseline [-- --quick])'
  );
}

const COMPARISON_FIELDS = ['baseline_ratio', 'vs_baseline', 'cpu_vs_baseline', 'regressed'];

/**
 * A baseline from one or more runs of the bench on one machine: with several, each scenario's
 * row is the one from the run whose ratio was the median, and each check the one whose value
 * was (quick runs differ from one to the next; the median keeps one run's spell out). The
 * comparison with the baseline before is left out.
 */
/**
 * Sets each row's `met`, and first each PostgreSQL row's target: half the SQLite ratio of the same
 * scenario. A row whose answers were not all 2xx (either server's) measured something else: not met.
 */
export function judge(rows) {
  for (const row of rows) {
    if (row.store === 'postgres') {
      const lite = rows.find(
        (r) => r.store === 'sqlite' && r.scenario.replace('(sqlite)', '') === row.scenario.replace('(postgres)', ''),
      );
      if (lite) row.target = lite.ratio / 2;
    }
    row.met = row.ratio >= row.target && !row.errors && !row.bare_errors;
  }
}

export function baselineOf(runs, note) {
  if (runs.length === 0) throw new Error('no runs to take a baseline from');
  const strip = (row) => Object.fromEntries(Object.entries(row).filter(([k]) => !COMPARISON_FIELDS.includes(k)));
  const [first] = runs;
  const rows = first.rows.map((r) =>
    strip(
      middle(
        runs.map((run) => run.rows.find((x) => x.scenario === r.scenario) ?? r),
        (x) => x.ratio,
      ),
    ),
  );
  // Of the SQLite rows taken here, which may be other runs' than the ones their targets were set against.
  judge(rows);
  const checks = first.checks.map((c) =>
    middle(
      runs.map((run) => run.checks.find((x) => x.check === c.check) ?? c),
      (x) => x.first ?? 0,
    ),
  );
  const { vs_baseline: _compared, ...rest } = first;
  return { ...rest, rows, checks, ...(note ? { note } : {}) };
}
