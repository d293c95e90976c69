import { describe, expect, it } from 'vitest';
import { baselineOf, compareWithBaseline, formatDelta, machineNote, type Row, type Run } from '../bench/compare.js';

const baseline: Row[] = [
  { scenario: 'GET (sqlite)', ratio: 0.5, cpu_us: 60, bare_cpu_us: 30 },
  { scenario: 'LIST (sqlite)', ratio: 0.2, cpu_us: 150, bare_cpu_us: 30 },
  { scenario: 'create (sqlite)', ratio: 0.1, cpu_us: 300, bare_cpu_us: 30 },
];

const run = (bare: number, ratios: [number, number, number], extra: Row[] = []): Row[] => [
  { scenario: 'GET (sqlite)', ratio: ratios[0], cpu_us: 66, bare_cpu_us: bare },
  { scenario: 'LIST (sqlite)', ratio: ratios[1], cpu_us: 150, bare_cpu_us: bare * 1.1 },
  { scenario: 'create (sqlite)', ratio: ratios[2], cpu_us: 240, bare_cpu_us: bare * 0.9 },
  ...extra,
];

describe('bench: a run against the baseline', () => {
  it.each([
    // bare server CPU per request, the run's ratios, same machine?, the rows flagged
    {
      case: 'same machine, one row 12% below',
      bare: 31,
      ratios: [0.44, 0.2, 0.1],
      same: true,
      flagged: [true, false, false],
    },
    {
      case: 'same machine, all within 10%',
      bare: 28,
      ratios: [0.46, 0.19, 0.105],
      same: true,
      flagged: [false, false, false],
    },
    {
      case: 'a machine whose bare server is twice as fast',
      bare: 15,
      ratios: [0.3, 0.11, 0.06],
      same: false,
      flagged: [false, false, false],
    },
    {
      case: 'a machine whose bare server is 1.5× slower',
      bare: 45,
      ratios: [0.7, 0.3, 0.05],
      same: false,
      flagged: [false, false, false],
    },
  ] as const)('$case', ({ bare, ratios, same, flagged }) => {
    const rows = run(bare, [...ratios]);
    const machine = compareWithBaseline(rows, baseline);
    expect(machine.same_machine).toBe(same);
    expect(machine.bare_cpu_factor).toBeCloseTo(bare / 30, 5);
    expect(rows.map((r) => r.regressed)).toEqual(flagged);
    expect(rows[0].vs_baseline).toBeCloseTo(ratios[0] / 0.5 - 1, 5);
    expect(rows[2].cpu_vs_baseline).toBeCloseTo(-0.2, 5);
    expect(rows.map((r) => formatDelta(r).includes('(over 10% below)'))).toEqual(flagged);
    const note = machineNote(machine, 'bench/results/baseline-quick.json');
    if (same) expect(note).toBeNull();
    else expect(note).toContain(`${(bare / 30).toFixed(2)}× the CPU per request`);
  });

  it('leaves rows without a baseline row, and a run with none to compare, unjudged', () => {
    const rows = run(30, [0.1, 0.1, 0.01], [{ scenario: 'new scenario', ratio: 0.01, cpu_us: 1, bare_cpu_us: 30 }]);
    compareWithBaseline(rows, baseline);
    expect(rows[3]).toMatchObject({ baseline_ratio: null, vs_baseline: null, cpu_vs_baseline: null, regressed: false });
    expect(formatDelta(rows[3])).toBe('');
    expect(rows.slice(0, 3).every((r) => r.regressed)).toBe(true);

    const alone = run(30, [0.1, 0.1, 0.01]);
    const machine = compareWithBaseline(alone, []);
    expect(machine).toEqual({ bare_cpu_factor: null, same_machine: true });
    expect(alone.some((r) => r.regressed)).toBe(false);
    expect(machineNote(machine, 'x')).toBeNull();
  });

  it('prints the ratio and the CPU change', () => {
    const rows = run(30, [0.44, 0.2, 0.1]);
    compareWithBaseline(rows, baseline);
    expect(formatDelta(rows[0])).toBe('-12% (over 10% below)  (CPU +10%)');
    expect(formatDelta(rows[1])).toBe('+0%  (CPU +0%)');
  });
});

describe('bench: a baseline taken from runs', () => {
  const run = (n: number, ratios: [number, number], rss: number, p99: number): Run => {
    const rows: Row[] = [
      { scenario: 'GET (sqlite)', ratio: ratios[0], cpu_us: 60 + n, bare_cpu_us: 30 },
      { scenario: 'LIST (sqlite)', ratio: ratios[1], cpu_us: 150 + n, bare_cpu_us: 30 },
    ];
    // As a run writes them: compared with the baseline before.
    compareWithBaseline(rows, [{ scenario: 'GET (sqlite)', ratio: 0.5, cpu_us: 60, bare_cpu_us: 30 }]);
    return {
      date: `run ${n}`,
      rows,
      checks: [
        { check: 'rss', first: rss, met: true },
        { check: 'GET p99', first: p99, second: 1, met: p99 <= 5 },
      ],
      vs_baseline: { bare_cpu_factor: 1, same_machine: true },
    };
  };

  it('takes each row from the run whose ratio is the median, each check from the one whose value is', () => {
    const runs = [run(1, [0.4, 0.12], 160, 4.2), run(2, [0.3, 0.1], 170, 3.9), run(3, [0.35, 0.14], 150, 5.1)];
    const b = baselineOf(runs, 'three quick runs');
    expect(b.rows.map((r) => [r.scenario, r.ratio, r.cpu_us])).toEqual([
      ['GET (sqlite)', 0.35, 63],
      ['LIST (sqlite)', 0.12, 151],
    ]);
    expect(b.checks.map((c) => [c.check, c.first])).toEqual([
      ['rss', 160],
      ['GET p99', 4.2],
    ]);
    expect(b.note).toBe('three quick runs');
    expect(b.date).toBe('run 1');
    // What compared a run with the baseline before does not belong in a baseline.
    expect(b.vs_baseline).toBeUndefined();
    for (const r of b.rows) {
      expect(r).not.toHaveProperty('vs_baseline');
      expect(r).not.toHaveProperty('baseline_ratio');
      expect(r).not.toHaveProperty('cpu_vs_baseline');
      expect(r).not.toHaveProperty('regressed');
    }
  });

  // Each row came from its own median run: a PostgreSQL target kept from its run was half of that
  // run's SQLite ratio, not of the SQLite row taken (0.274 beside a SQLite GET of 0.566).
  it("sets each PostgreSQL row's target again from the SQLite row taken: half its ratio", () => {
    const pgRun = (sqlite: number, postgres: number): Run => ({
      rows: [
        { scenario: 'GET (sqlite)', store: 'sqlite', ratio: sqlite, target: 0.5, met: sqlite >= 0.5 },
        {
          scenario: 'GET (postgres)',
          store: 'postgres',
          ratio: postgres,
          target: sqlite / 2,
          met: postgres >= sqlite / 2,
        },
      ],
      checks: [],
    });
    const b = baselineOf([pgRun(0.6, 0.29), pgRun(0.5, 0.3), pgRun(0.56, 0.27)]);
    expect(b.rows.map((r) => [r.scenario, r.ratio, r.target, r.met])).toEqual([
      ['GET (sqlite)', 0.56, 0.5, true],
      ['GET (postgres)', 0.29, 0.28, true],
    ]);
    const failing = baselineOf([pgRun(0.6, 0.29), pgRun(0.62, 0.3), pgRun(0.64, 0.31)]);
    expect(failing.rows.map((r) => [r.target, r.met])).toEqual([
      [0.5, true],
      [0.31, false],
    ]);
  });

  it('is the run itself when there is one, and refuses none', () => {
    const one = run(1, [0.4, 0.12], 160, 4.2);
    const b = baselineOf([one]);
    expect(b.rows.map((r) => r.ratio)).toEqual([0.4, 0.12]);
    expect(b.checks).toEqual(one.checks);
    expect(b).not.toHaveProperty('note');
    expect(() => baselineOf([])).toThrow('no runs');
  });
});
