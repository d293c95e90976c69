import { type KyselyPlugin, SelectQueryNode } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SeedRefused, seedDemo } from '../src/cli/seed.js';
import type { Doc, Resource } from '../src/core/resource.js';
import { modules } from '../src/modules/index.js';
import { quarterOf } from '../src/modules/okr/demo.js';
import { progressPct } from '../src/modules/okr/progress.js';
import { statusSweepJob } from '../src/modules/okr/sweep.js';
import { openStore, type Store } from '../src/store/database.js';
import { migrate } from '../src/store/schema.js';
import { byName, freshStore, resources, storeKinds, type TestApp, testApp, USER_B } from './helpers.js';

const NOW = Date.parse('2026-11-20T09:00:00.000Z');
const DAY = 86_400_000;
const TENANT = 'demo';

describe.each(storeKinds)('edm seed: demo data (%s)', (kind) => {
  let t: TestApp;
  let token: string;
  const seed = (o: { tenant?: string; force?: boolean } = {}) =>
    seedDemo({
      store: t.store,
      modules,
      tenant: o.tenant ?? TENANT,
      sub: USER_B,
      secretKey: t.config.secretKey,
      now: NOW,
      force: o.force,
    });
  const list = async (path: string, tok = token) => {
    const res = await t.call('GET', `/api/v1/okr/${path}${path.includes('?') ? '&' : '?'}limit=200`, { token: tok });
    expect(res.status).toBe(200);
    return res.body.data as Doc[];
  };

  beforeEach(async () => {
    t = await testApp(kind);
    token = await t.token({ tenant: TENANT });
  });
  afterEach(async () => {
    await t.close();
  });

  it('writes a cycle, objectives and key results with weeks of check-ins, as API writes would', async () => {
    expect(await seed()).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9, 'KeyResult.checkIns.create': 42 });

    const [cycle] = await list('cycles');
    expect(cycle).toMatchObject({ name: '2026-Q4', start_date: '2026-10-01', end_date: '2026-12-31', state: 'active' });
    expect(cycle.created_by).toBe(USER_B);

    const objectives = await list('objectives');
    expect(objectives).toHaveLength(4);
    const revenue = objectives.find((o) => o.title === 'Grow recurring revenue') as Doc;
    const enterprise = objectives.find((o) => o.title === 'Win the enterprise segment') as Doc;
    expect(enterprise.parent_objective_id).toBe(revenue.id);
    expect(objectives.every((o) => o.cycle_id === cycle.id)).toBe(true);

    const krs = await list('key-results');
    expect(krs).toHaveLength(9);
    expect(new Set(krs.map((k) => k.metric_type))).toEqual(
      new Set(['number', 'percentage', 'currency', 'threshold', 'milestone']),
    );
    for (const kr of krs) {
      // Set up six weeks before now; the history is the creation's snapshot and the check-ins.
      expect(Date.parse(kr.created_at as string)).toBeLessThan(NOW - 41 * DAY);
      expect(Date.parse(kr.created_at as string)).toBeGreaterThan(NOW - 43 * DAY);
      const history = kr.history as Doc[];
      expect(history[0].value).toBe(kr.baseline);
      expect(history.at(-1)?.value).toBe(kr.current);
      expect(history.map((h) => h.at)).toEqual([...history.map((h) => h.at as string)].sort());
      // A query's later values are the platform's: recomputed when what it reads changed.
      expect(history.map((h) => h.by)).toEqual(
        history.map((_, i) => (kr.data_source === 'query' && i > 0 ? 'system' : USER_B)),
      );
      expect(kr.progress_pct).toBe(progressPct(kr as never));
      expect(['on_track', 'at_risk', 'off_track', 'not_started']).toContain(kr.status);
    }
    const nps = krs.find((k) => k.title === 'Raise NPS from 32 to 50') as Doc;
    expect(nps).toMatchObject({ current: 44, progress_pct: 66.67, confidence: 7 });
    expect((nps.history as Doc[]).map((h) => h.value)).toEqual([32, 33, 36, 38, 41, 43, 44]);
    // The last check-in was yesterday.
    expect(Date.parse(nps.last_update_at as string)).toBeGreaterThan(NOW - 1 * DAY - 60_000);
    expect(Date.parse(nps.last_update_at as string)).toBeLessThanOrEqual(NOW - 1 * DAY);
    const mobile = krs.find((k) => k.metric_type === 'milestone') as Doc;
    expect(mobile.history).toHaveLength(1);
    // The run rate is MRR × 12, recomputed at each MRR check-in.
    const mrr = krs.find((k) => k.title === 'Grow MRR to $120k') as Doc;
    const runRate = krs.find((k) => k.data_source === 'query') as Doc;
    expect(runRate).toMatchObject({ query: `kr("${mrr.id}") * 12`, current: 1_278_000, progress_pct: 66.25 });
    expect((runRate.history as Doc[]).map((h) => h.value)).toEqual(
      (mrr.history as Doc[]).map((h) => (h.value as number) * 12),
    );
    // Created just after MRR; then at the very time of each of its check-ins.
    expect((runRate.history as Doc[]).slice(1).map((h) => h.at)).toEqual(
      (mrr.history as Doc[]).slice(1).map((h) => h.at),
    );

    // The full check-in log, with its notes, as the API pages it.
    const log = await t.call('GET', `/api/v1/okr/key-results/${nps.id}/check-ins`, { token });
    expect((log.body.data as Doc[]).map((c) => c.value)).toEqual([44, 43, 41, 38, 36, 33, 32]);
    expect((log.body.data as Doc[]).find((c) => c.value === 36)?.note).toBe('Onboarding emails rewritten');

    // Roll-ups: each objective's progress is the mean of its key results' (all weight 1).
    for (const o of objectives) {
      const mine = krs.filter((k) => k.objective_id === o.id);
      expect(o.key_result_count).toBe(mine.length);
      const mean = mine.reduce((sum, k) => sum + (k.progress_pct as number), 0) / mine.length;
      expect(o.progress_pct).toBeCloseTo(mean, 1);
    }
  });

  it("leaves each status as of now, not as of its key result's last step (a server's sweep finds nothing due)", async () => {
    await seed();
    t.clock.set(NOW);
    expect(await t.app.engine.runJob(statusSweepJob)).toBe(0);
    // The launch milestone has made no progress 50 days into the quarter's 91: off track, by
    // now's pace, where it was set at its creation, 42 days ago.
    const mobile = (await list('key-results')).find((k) => k.metric_type === 'milestone') as Doc;
    expect([mobile.progress_pct, mobile.status]).toEqual([0, 'off_track']);
  });

  it('refuses a tenant that already has data and writes nothing; --force adds a second set', async () => {
    await t.create(byName('Cycle'), token, { ...quarterOf(NOW) });
    await expect(seed()).rejects.toBeInstanceOf(SeedRefused);
    expect(await list('cycles')).toHaveLength(1);
    expect(await list('objectives')).toHaveLength(0);
    expect(await list('key-results')).toHaveLength(0);

    expect(await seed({ force: true })).toMatchObject({ KeyResult: 9 });
    expect(await list('cycles')).toHaveLength(2);
    expect(await list('key-results')).toHaveLength(9);
  });

  it('refuses a tenant whose only rows are of a resource the demo does not write (a connector)', async () => {
    await t.create(byName('Connector'), token, { name: 'Feed', kind: 'webhook', config: {} });
    await expect(seed()).rejects.toThrow(/already has Connector rows/);
    expect([(await list('connectors')).length, (await list('key-results')).length]).toEqual([1, 0]);
  });

  it('writes into the tenant it is given and no other', async () => {
    await seed({ tenant: 'other' });
    expect(await list('key-results')).toHaveLength(0);
    expect(await list('key-results', await t.token({ tenant: 'other' }))).toHaveLength(9);
  });
});

/**
 * `store` as a slow machine runs it: its first read of a tenant's rows in the table a seed checks
 * last answers 300 ms late, so two seeds started together have both checked before either writes.
 */
function slowLastCheck(store: Store): Store {
  const table = (resources.at(-1) as Resource).table;
  const late = new WeakSet<object>();
  let first = true;
  const plugin: KyselyPlugin = {
    transformQuery({ node, queryId }) {
      const check =
        SelectQueryNode.is(node) &&
        JSON.stringify(node.from).includes(`"${table}"`) &&
        JSON.stringify(node.where ?? null).includes('"tenant_id"');
      if (first && check) {
        first = false;
        late.add(queryId);
      }
      return node;
    },
    async transformResult({ result, queryId }) {
      if (late.has(queryId)) await new Promise((r) => setTimeout(r, 300));
      return result;
    },
  };
  return Object.create(store, { db: { value: store.db.withPlugin(plugin) } });
}

// The check ran before the transaction: two seeds at once (two `edm seed`, each its own store)
// both found the tenant empty and both wrote a set.
describe.each(storeKinds)('edm seed: two at once (%s)', (kind) => {
  it('one writes the demo set, the other refuses the tenant and writes nothing', async () => {
    const fresh = await freshStore(kind);
    const other = openStore(fresh.url, { schema: fresh.schema, poolSize: 5 });
    try {
      await migrate(fresh.store, resources); // as a server has: the seeds' migrations change nothing
      const seed = (store: Store) =>
        seedDemo({ store, modules, tenant: TENANT, sub: USER_B, secretKey: new Uint8Array(32), now: NOW });
      const results = await Promise.allSettled([seed(slowLastCheck(fresh.store)), seed(slowLastCheck(other))]);
      expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(refused.reason).toBeInstanceOf(SeedRefused);
      expect(refused.reason.message).toMatch(/^tenant demo already has \w+ rows; nothing was written/);
      const count = async (name: string) =>
        (await fresh.store.db.selectFrom(byName(name).table).select('id').where('tenant_id', '=', TENANT).execute())
          .length;
      expect([await count('Cycle'), await count('Objective'), await count('KeyResult')]).toEqual([1, 4, 9]);
    } finally {
      await other.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

describe('quarterOf', () => {
  it.each([
    ['2026-01-01T00:00:00Z', '2026-Q1', '2026-01-01', '2026-03-31'],
    ['2026-05-31T23:59:59Z', '2026-Q2', '2026-04-01', '2026-06-30'],
    ['2024-08-15T12:00:00Z', '2024-Q3', '2024-07-01', '2024-09-30'],
    ['2026-12-31T23:59:59Z', '2026-Q4', '2026-10-01', '2026-12-31'],
  ])('%s is in %s (%s to %s)', (at, name, start, end) => {
    expect(quarterOf(Date.parse(at))).toEqual({ name, start_date: start, end_date: end });
  });
});
