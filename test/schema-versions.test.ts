import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Doc, Resource } from '../src/core/resource.js';
import { connectors } from '../src/modules/okr/connectors.js';
import { cycles } from '../src/modules/okr/cycles.js';
import { keyResults } from '../src/modules/okr/key-results.js';
import { objectives } from '../src/modules/okr/objectives.js';
import { META_TABLE, migrate } from '../src/store/schema.js';
import { resources, storedRow, storeKinds, type TestApp, testApp } from './helpers.js';

/** How an older build left a row: what its document and columns held that the current build would not. */
interface Older {
  /** Null in their columns and in the stored document (a PATCH to null, before schema 2). */
  nulls?: string[];
  /** Not in the stored document, NULL in their columns (fields that build did not have yet). */
  absent?: string[];
  /** Other values, in the columns and the document alike. */
  values?: Doc;
  /** Further changes to the stored document only. */
  doc?: (doc: Doc) => void;
}

type Name = 'cycle' | 'objective' | 'keyResult' | 'pulled' | 'webhook';

/** The rows each test starts from, as the builds before schema 2 stored them. */
const OLDER: Record<Name, { resource: Resource; older: Older }> = {
  // a149555: a PATCH to null stored null.
  cycle: { resource: cycles, older: { nulls: ['state', 'source', 'source_type'] } },
  objective: { resource: objectives, older: { nulls: ['source', 'source_type'] } },
  keyResult: {
    resource: keyResults,
    older: {
      nulls: ['metric_type', 'baseline', 'weight', 'data_source', 'source', 'source_type'],
      // Its snapshot recorded while source_type was null.
      doc: (doc) => {
        (doc.history as Doc[])[0].source_type = null;
      },
    },
  },
  // 8f9f6fc: connectors before webhook_url (and the generation of its URL); every kind had an interval.
  pulled: {
    resource: connectors,
    older: { nulls: ['interval_seconds', 'source_type'], absent: ['webhook_url', 'webhook_generation'] },
  },
  webhook: {
    resource: connectors,
    older: { absent: ['webhook_url', 'webhook_generation'], values: { interval_seconds: 3600 } },
  },
};

/** What each row answers once upgraded: the defaults of its nulls, and what a write now derives. */
const UPGRADED: Record<Name, Doc> = {
  cycle: { state: 'planning', source: 'edm', source_type: 'api' },
  objective: { source: 'edm', source_type: 'api' },
  keyResult: {
    metric_type: 'number',
    baseline: 0,
    weight: 1,
    data_source: 'manual',
    source: 'edm',
    source_type: 'api',
    direction: 'increase',
    current: 0,
    progress_pct: 0,
  },
  pulled: { webhook_url: null, interval_seconds: 3600, source_type: 'api' },
  webhook: { interval_seconds: null },
};

const NAMES = Object.keys(OLDER) as Name[];

describe.each(storeKinds)('rows of older schema versions on %s', (kind) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await testApp(kind);
  });
  afterAll(() => t.close());

  /** Writes a row back as an older build stored it, at schema_version 1. */
  async function storeAsOlder(resource: Resource, id: string, older: Older) {
    const row = (await storedRow(t, resource, id)) as Doc;
    const doc = JSON.parse(row._doc as string) as Doc;
    const set: Doc = { schema_version: 1 };
    for (const name of older.nulls ?? []) doc[name] = set[name] = null;
    for (const name of older.absent ?? []) {
      delete doc[name];
      set[name] = null;
    }
    for (const [name, value] of Object.entries(older.values ?? {})) {
      doc[name] = value;
      set[name] = t.store.encode(resource.allFields[name], value);
    }
    older.doc?.(doc);
    doc.schema_version = 1;
    set._doc = JSON.stringify(doc);
    await t.store.db.updateTable(resource.table).set(set).where('id', '=', id).execute();
  }

  /** A fresh tenant with one row of each kind stored as older builds stored them, and a current key result. */
  async function olderRows(tenant: string) {
    const token = await t.token({ tenant });
    const cycle = await t.create(cycles, token);
    const objective = await t.create(objectives, token, { cycle_id: cycle.id });
    const keyResult = await t.create(keyResults, token, {
      objective_id: objective.id,
      title: 'K',
      baseline: 0,
      current: 0,
      target: 200,
    });
    // A key result of the current build beside it: the roll-up averages the two.
    const done = await t.create(keyResults, token, { objective_id: objective.id, title: 'Done', target: 10 });
    expect((await t.call('PATCH', `${keyResults.basePath}/${done.id}`, { token, body: { current: 10 } })).status).toBe(
      200,
    );
    const pulled = await t.create(connectors, token);
    const webhook = await t.create(connectors, token, { kind: 'webhook', config: {}, secret: null, name: 'Pushed' });
    const ids: Record<Name, string> = {
      cycle: cycle.id as string,
      objective: objective.id as string,
      keyResult: keyResult.id as string,
      pulled: pulled.id as string,
      webhook: webhook.id as string,
    };
    for (const name of NAMES) await storeAsOlder(OLDER[name].resource, ids[name], OLDER[name].older);
    const get = async (name: Name) => {
      const res = await t.call('GET', `${OLDER[name].resource.basePath}/${ids[name]}`, { token });
      expect(res.status, res.raw).toBe(200);
      return res.body;
    };
    return { token, ids, get, objective: ids.objective, webhookUrl: webhook.webhook_url as string };
  }

  /** A stored row's columns of the given fields, as the API's values. */
  async function columns(resource: Resource, id: string, names: string[]) {
    const row = (await storedRow(t, resource, id)) as Doc;
    return Object.fromEntries(names.map((name) => [name, t.store.decode(resource.allFields[name], row[name])]));
  }

  it('answers each older row as its upgrade gives it, with nothing changed by edm migrate but its columns', async () => {
    const { ids, get, webhookUrl } = await olderRows('read');
    const before = {} as Record<Name, Doc>;
    for (const name of NAMES) {
      before[name] = await get(name);
      expect(before[name], name).toMatchObject({ ...UPGRADED[name], schema_version: 2 });
    }
    // The URL of a webhook connector stored without one is what a write computes for it.
    expect(before.webhook.webhook_url).toBe(webhookUrl);
    expect(before.keyResult.history).toMatchObject([{ value: 0, source_type: 'api' }]);

    await migrate(t.store, resources);
    for (const name of NAMES) expect(await get(name), name).toEqual(before[name]);
    // The columns lists filter and sort on hold the defaults; the row stays at schema 1 until written.
    expect(await columns(cycles, ids.cycle, ['state', 'source', 'source_type', 'schema_version'])).toEqual({
      state: 'planning',
      source: 'edm',
      source_type: 'api',
      schema_version: 1,
    });
    const krNames = ['metric_type', 'baseline', 'weight', 'data_source', 'source', 'source_type'];
    expect(await columns(keyResults, ids.keyResult, krNames)).toEqual(
      Object.fromEntries(krNames.map((name) => [name, UPGRADED.keyResult[name]])),
    );
    expect(Number((await storedRow(t, keyResults, ids.keyResult))?.schema_version)).toBe(1);
  });

  it('finds older rows by the values they answer once migrated, and lists them as a read answers them', async () => {
    const { token, ids, get, objective } = await olderRows('lists');
    await migrate(t.store, resources);
    const scenarios: { name: Name; query: string }[] = [
      { name: 'keyResult', query: `objective_id=${objective}&metric_type=number` },
      { name: 'keyResult', query: `objective_id=${objective}&data_source=manual` },
      { name: 'keyResult', query: `objective_id=${objective}&direction=increase` },
      { name: 'cycle', query: 'state=planning' },
    ];
    for (const { name, query } of scenarios) {
      const res = await t.call('GET', `${OLDER[name].resource.basePath}?${query}`, { token });
      expect(res.status, res.raw).toBe(200);
      const found = (res.body.data as Doc[]).find((d) => d.id === ids[name]);
      expect(found, query).toEqual(await get(name));
    }
  });

  // The upgrade derives direction again (none kept, or one contradicting linear bounds); the
  // migration left the column as it was, so `direction=` found such rows by a value they do not answer.
  it('finds an older key result by the direction it answers once migrated, derived again from its bounds', async () => {
    const token = await t.token({ tenant: 'directions' });
    const objective = await t.create(objectives, token);
    const up = await t.create(keyResults, token, { objective_id: objective.id, title: 'Up', baseline: 0, target: 50 });
    const down = await t.create(keyResults, token, {
      objective_id: objective.id,
      title: 'Down',
      baseline: 10,
      target: 5,
    });
    // Up: a null metric_type let a contradicting direction be stored; Down: none kept.
    await storeAsOlder(keyResults, up.id as string, { nulls: ['metric_type'], values: { direction: 'decrease' } });
    await storeAsOlder(keyResults, down.id as string, { nulls: ['direction'] });
    await migrate(t.store, resources);
    const listed = async (direction: string) =>
      (
        (await t.call('GET', `${keyResults.basePath}?objective_id=${objective.id}&direction=${direction}`, { token }))
          .body.data as Doc[]
      ).map((d) => d.title);
    expect(await listed('increase')).toEqual(['Up']);
    expect(await listed('decrease')).toEqual(['Down']);
    for (const [kr, direction] of [
      [up, 'increase'],
      [down, 'decrease'],
    ] as const) {
      const res = await t.call('GET', `${keyResults.basePath}/${kr.id}`, { token });
      expect([res.body.direction, res.body.schema_version]).toEqual([direction, keyResults.schemaVersion]);
      // Only the column changed: the row is still the older one, upgraded on read.
      expect((await storedRow(t, keyResults, kr.id as string))?.schema_version).toBe(1);
    }
  });

  it('lists a page of older rows with one read for them all, not one each, as reads answer them', async () => {
    const token = await t.token({ tenant: 'page' });
    const objective = await t.create(objectives, token);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const kr = await t.create(keyResults, token, { objective_id: objective.id, title: `K${i}`, target: 10 });
      ids.push(kr.id as string);
      if (i % 2 === 0) await storeAsOlder(keyResults, kr.id as string, OLDER.keyResult.older);
    }
    const engine = t.app.engine as unknown as Record<'read' | 'execute', (...args: unknown[]) => unknown>;
    const reads = [vi.spyOn(engine, 'read'), vi.spyOn(engine, 'execute')];
    try {
      const res = await t.call('GET', `${keyResults.basePath}?objective_id=${objective.id}&sort=title`, { token });
      expect(res.status, res.raw).toBe(200);
      // The page's query (on SQLite, after its packed form, which holds current rows only), and
      // one for its three older rows.
      expect(reads.reduce((n, spy) => n + spy.mock.calls.length, 0)).toBe(kind === 'sqlite' ? 3 : 2);
      for (const spy of reads) spy.mockRestore();
      const page = res.body.data as Doc[];
      expect(page.map((d) => d.id)).toEqual(ids);
      for (const doc of page) {
        expect(doc).toEqual((await t.call('GET', `${keyResults.basePath}/${doc.id}`, { token })).body);
      }
    } finally {
      for (const spy of reads) spy.mockRestore();
    }
  });

  it('takes a check-in on an older key result, rolled up at the weight it answers', async () => {
    const { token, ids, objective } = await olderRows('check-in');
    await migrate(t.store, resources);
    const res = await t.call('POST', `${keyResults.basePath}/${ids.keyResult}/check-ins`, {
      token,
      body: { value: 100 },
    });
    expect(res.status, res.raw).toBe(201);
    expect(res.body).toMatchObject({ current: 100, progress_pct: 50, weight: 1, schema_version: 2, version: 2 });
    // The objective's progress is the weighted average of what its key results answer.
    const krs = (await t.call('GET', `${keyResults.basePath}?objective_id=${objective}`, { token })).body.data as Doc[];
    const weights = krs.reduce((sum, kr) => sum + (kr.weight as number), 0);
    const average = krs.reduce((sum, kr) => sum + (kr.weight as number) * (kr.progress_pct as number), 0) / weights;
    const rolled = (await t.call('GET', `${objectives.basePath}/${objective}`, { token })).body;
    expect([rolled.progress_pct, average]).toEqual([75, 75]);
  });

  it('writes an older row back whole at the current version on its next write', async () => {
    const { token, ids, get } = await olderRows('write');
    const title: Record<Name, Doc> = {
      cycle: { name: 'C2' },
      objective: { title: 'O2' },
      keyResult: { title: 'K2' },
      pulled: { name: 'P2' },
      webhook: { name: 'W2' },
    };
    for (const name of NAMES) {
      const { resource } = OLDER[name];
      const read = await get(name);
      const res = await t.call('PATCH', `${resource.basePath}/${ids[name]}`, { token, body: title[name] });
      expect(res.status, res.raw).toBe(200);
      expect(res.body, name).toEqual({
        ...read,
        ...title[name],
        updated_at: res.body.updated_at,
        version: (read.version as number) + 1,
      });
      const row = (await storedRow(t, resource, ids[name])) as Doc;
      expect(JSON.parse(row._doc as string), name).toEqual(res.body);
      const names = Object.keys(UPGRADED[name]).filter((n) => resource.allFields[n]?.column && n !== 'history');
      expect(await columns(resource, ids[name], [...names, 'schema_version']), name).toEqual({
        ...Object.fromEntries(names.map((n) => [n, res.body[n]])),
        schema_version: 2,
      });
    }
  });

  it.each([
    {
      name: 'a direction a null metric_type let contradict the bounds of the number it now is',
      older: { nulls: ['metric_type'], values: { direction: 'decrease' } },
      upgraded: { metric_type: 'number', direction: 'increase' },
    },
    {
      name: 'no direction, kept where a null baseline was not a number to derive one from',
      older: { nulls: ['baseline', 'direction'], values: { metric_type: 'threshold' } },
      upgraded: { metric_type: 'threshold', baseline: 0, direction: 'increase' },
    },
  ])('derives a key result’s direction again from its bounds for $name', async ({ older, upgraded }) => {
    const token = await t.token({ tenant: 'direction' });
    const created = await t.create(keyResults, token, { title: 'D', baseline: 0, current: 0, target: 200 });
    const url = `${keyResults.basePath}/${created.id}`;
    await storeAsOlder(keyResults, created.id as string, older);
    expect((await t.call('GET', url, { token })).body).toMatchObject(upgraded);
    const res = await t.call('PATCH', url, { token, body: { title: 'D2' } });
    expect(res.status, res.raw).toBe(200);
    expect(res.body).toMatchObject({ ...upgraded, title: 'D2', schema_version: 2 });
  });

  it('takes pushes at the URL it answers for a webhook connector stored before webhook_url', async () => {
    const { get } = await olderRows('push');
    const url = (await get('webhook')).webhook_url as string;
    const push = await t.app.inject({ method: 'POST', url, payload: { value: 7 } });
    expect(push.statusCode, push.body).toBe(200);
    expect(push.json()).toMatchObject({ last_value: 7, webhook_url: url, interval_seconds: null, schema_version: 2 });
  });
});

describe.each(storeKinds)('search columns folded by an earlier build on %s', (kind) => {
  // edm migrate folds them again in pages of 2,000 rows: every page, not the first only.
  it('folds again the search column of every row of a table, past its first page', async () => {
    const t = await testApp(kind, {}, { contract: false });
    try {
      const token = await t.token();
      const created = await t.create(objectives, token, { title: 'ΟΔΟΣ' });
      const columns = Object.keys((await storedRow(t, objectives, created.id as string)) as Doc);
      const copied = columns.map((c) => (c === 'id' ? sql`id || '_' || CAST(10000 + i AS text)` : sql.id(c)));
      await sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2100)
        INSERT INTO ${sql.table(objectives.table)} (${sql.join(columns.map((c) => sql.id(c)))})
        SELECT ${sql.join(copied)} FROM ${sql.table(objectives.table)}, n WHERE id = ${created.id}`.execute(t.store.db);
      // As an earlier fold stored them (final sigma kept), before the current one was recorded.
      await sql`UPDATE ${sql.table(objectives.table)} SET _search = 'οδος'`.execute(t.store.db);
      await sql`DELETE FROM ${sql.table(META_TABLE)} WHERE key = 'search_fold'`.execute(t.store.db);
      await migrate(t.store, resources);
      const { rows } = await sql<{ stale: number; all: number }>`
        SELECT count(CASE WHEN _search = 'οδος' THEN 1 END) AS stale, count(*) AS "all" FROM ${sql.table(objectives.table)}`.execute(
        t.store.db,
      );
      expect(rows.map((r) => [Number(r.stale), Number(r.all)])).toEqual([[0, 2101]]);
    } finally {
      await t.close();
    }
  }, 120_000);
});
