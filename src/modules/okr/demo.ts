import type { DemoStep } from '../../core/resource.js';

/** The calendar quarter holding `now` (UTC): its name and first and last days. */
export function quarterOf(now: number): { name: string; start_date: string; end_date: string } {
  const d = new Date(now);
  const year = d.getUTCFullYear();
  const q = Math.floor(d.getUTCMonth() / 3);
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  return {
    name: `${year}-Q${q + 1}`,
    start_date: day(Date.UTC(year, q * 3, 1)),
    end_date: day(Date.UTC(year, q * 3 + 3, 0)),
  };
}

interface DemoKeyResult {
  as: string;
  objective: string;
  body: Record<string, unknown>;
  /** Weekly check-ins after the key result was set up six weeks ago: value, then an optional note. */
  checkIns: readonly (readonly [number, string?])[];
  confidence?: number;
}

const keyResults: readonly DemoKeyResult[] = [
  {
    as: 'nps',
    objective: 'customers',
    body: { title: 'Raise NPS from 32 to 50', metric_type: 'number', baseline: 32, target: 50, unit: 'NPS' },
    checkIns: [[33], [36, 'Onboarding emails rewritten'], [38], [41], [43], [44, 'Survey sent to the whole base']],
    confidence: 7,
  },
  {
    as: 'response',
    objective: 'customers',
    body: {
      title: 'Cut median first response to 2 hours',
      metric_type: 'number',
      baseline: 9,
      target: 2,
      unit: 'hours',
    },
    checkIns: [[8.5], [7, 'Support rota now follows the sun'], [6.2], [5], [4.1], [3.6]],
    confidence: 6,
  },
  {
    as: 'sla',
    objective: 'customers',
    body: {
      title: 'Resolve 95% of tickets within SLA',
      metric_type: 'percentage',
      baseline: 78,
      target: 95,
      unit: '%',
    },
    checkIns: [[79], [80], [80, 'Two agents out sick'], [81], [83], [82]],
    confidence: 4,
  },
  {
    as: 'mrr',
    objective: 'revenue',
    body: {
      title: 'Grow MRR to $120k',
      metric_type: 'currency',
      baseline: 80_000,
      target: 120_000,
      unit: 'USD',
      tags: ['revenue'],
    },
    checkIns: [[83_500], [88_000], [91_000], [97_500, 'Annual plans launched'], [101_000], [106_500]],
    confidence: 7,
  },
  {
    as: 'churn',
    objective: 'revenue',
    body: {
      title: 'Keep monthly churn under 2%',
      metric_type: 'threshold',
      baseline: 3.1,
      target: 2,
      direction: 'decrease',
      unit: '%',
      tags: ['revenue'],
    },
    checkIns: [[2.9], [2.6], [2.2], [1.9, 'Below the line for the first time'], [1.8], [1.9]],
    confidence: 8,
  },
  {
    as: 'enterprise',
    objective: 'enterprise',
    body: {
      title: 'Sign 12 enterprise customers',
      metric_type: 'number',
      baseline: 0,
      target: 12,
      unit: 'customers',
      tags: ['revenue', 'sales'],
    },
    checkIns: [[1], [2], [2], [4, 'Two enterprise deals closed'], [5], [6]],
    confidence: 5,
  },
  {
    as: 'latency',
    objective: 'product',
    body: { title: 'p95 API latency under 200 ms', metric_type: 'number', baseline: 480, target: 200, unit: 'ms' },
    checkIns: [[450], [430], [380, 'Query cache shipped'], [340], [300], [290]],
    confidence: 6,
  },
  {
    as: 'mobile',
    objective: 'product',
    body: { title: 'Launch the mobile app', metric_type: 'milestone', baseline: 0, target: 1, tags: ['mobile'] },
    checkIns: [],
  },
];

/**
 * The OKR module's demo data (`edm seed`): a cycle for the current quarter, four objectives (one
 * aligned under another), eight key results of every metric type and one computed from another by a metric query, set
 * up six weeks ago, and weekly check-ins since, so progress, statuses, roll-ups and history charts have something
 * to show. The same every run but for the dates.
 */
export function okrDemo(now: number): DemoStep[] {
  const start = -42;
  const steps: DemoStep[] = [
    { day: start, resource: 'Cycle', as: 'cycle', body: { ...quarterOf(now), state: 'active' } },
    {
      day: start,
      resource: 'Objective',
      as: 'customers',
      body: {
        title: 'Delight our customers',
        description: 'Customers who feel heard stay and tell others.',
        cycle_id: { ref: 'cycle' },
      },
    },
    {
      day: start,
      resource: 'Objective',
      as: 'revenue',
      body: { title: 'Grow recurring revenue', cycle_id: { ref: 'cycle' } },
    },
    {
      day: start,
      resource: 'Objective',
      as: 'enterprise',
      body: {
        title: 'Win the enterprise segment',
        cycle_id: { ref: 'cycle' },
        parent_objective_id: { ref: 'revenue' },
      },
    },
    {
      day: start,
      resource: 'Objective',
      as: 'product',
      body: { title: 'Ship a faster, steadier product', cycle_id: { ref: 'cycle' } },
    },
  ];
  for (const kr of keyResults) {
    steps.push({
      day: start,
      resource: 'KeyResult',
      as: kr.as,
      body: { objective_id: { ref: kr.objective }, current: kr.body.baseline, ...kr.body },
    });
  }
  // A key result whose value is a metric query over another's: recomputed at each MRR check-in.
  steps.push({
    day: start,
    resource: 'KeyResult',
    as: 'run-rate',
    body: {
      objective_id: { ref: 'revenue' },
      title: 'Reach a $1.44M annual run rate',
      metric_type: 'currency',
      baseline: 960_000,
      target: 1_440_000,
      unit: 'USD',
      tags: ['revenue'],
      data_source: 'query',
      query: { text: 'kr("{mrr}") * 12' },
    },
  });
  // Week by week, every key result's check-in of that week (the last one yesterday).
  for (let week = 0; week < 6; week++) {
    for (const kr of keyResults) {
      const entry = kr.checkIns[week];
      if (!entry) continue;
      const [value, note] = entry;
      steps.push({
        day: week === 5 ? -1 : start + 7 * (week + 1),
        resource: 'KeyResult',
        operation: 'checkIns.create',
        on: kr.as,
        body: {
          value,
          ...(note ? { note } : {}),
          ...(kr.confidence !== undefined ? { confidence: kr.confidence } : {}),
        },
      });
    }
  }
  return steps;
}
