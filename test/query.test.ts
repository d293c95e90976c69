import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc } from '../src/core/resource.js';
import { keyResults as kr } from '../src/modules/okr/key-results.js';
import { recompute } from '../src/modules/okr/rollup.js';
import { statusSweepJob } from '../src/modules/okr/sweep.js';
import { queryReads } from '../src/modules/okr/tables.js';
import { byName, countRows, storedRow, storeKinds, type TestApp, testApp } from './helpers.js';

const objectives = byName('Objective');
const MISSING = 'kr_01ARZ3NDEKTSV4RRFFQ69G5FAV';

describe.each(storeKinds)('metric queries (data_source: query) on %s', (kind) => {
  let t: TestApp;
  let token: string;
  let objectiveId: string;
  beforeAll(async () => {
    t = await testApp(kind);
    token = await t.token();
    objectiveId = (await t.create(objectives, token)).id as string;
  });
  afterAll(() => t.close());

  const post = (body: Doc) => t.call('POST', kr.basePath, { token, body: { objective_id: objectiveId, ...body } });
  const patch = (id: string, body: Doc) => t.call('PATCH', `${kr.basePath}/${id}`, { token, body });
  const checkIn = (id: string, value: number) =>
    t.call('POST', `${kr.basePath}/${id}/check-ins`, { token, body: { value } });
  const get = async (id: string) => (await t.call('GET', `${kr.basePath}/${id}`, { token })).body;
  const manual = async (current: number, target = 100) => {
    const res = await post({ title: 'manual', target, current });
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const query = async (q: string, body: Doc = {}) => {
    const res = await post({ title: 'computed', target: 100, data_source: 'query', query: q, ...body });
    expect(res.status, res.raw).toBe(201);
    return res.body;
  };
  const readers = async (id: string) => Number((await storedRow(t, kr, id))?.query_readers ?? 0);
  const k = (id: string) => `kr("${id}")`;

  it('computes current from the query on create, with progress, status and one snapshot', async () => {
    const a = await manual(30);
    const b = await manual(12);
    const doc = await query(`${k(a)} / ${k(b)} * 10 + sum(1, 2)`, { baseline: 0, target: 50 });
    expect(doc).toMatchObject({ current: 28, progress_pct: 56, data_source: 'query', status: 'on_track' });
    expect((doc.history as Doc[]).map((h) => h.value)).toEqual([28]);
    expect(doc).not.toHaveProperty('query_readers');
    expect(await readers(a)).toBe(1);
    expect(await readers(b)).toBe(1);
  });

  it('recomputes it when a key result it reads changes: a system snapshot, rolled up into its objective', async () => {
    const a = await manual(10);
    const d = await query(`${k(a)} * 2`);
    expect(d.current).toBe(20);
    t.clock.advance(60_000);
    expect((await checkIn(a, 15)).status).toBe(201);
    let now = await get(d.id as string);
    expect(now).toMatchObject({ current: 30, progress_pct: 30, version: 2, updated_by: d.created_by });
    expect((now.history as Doc[]).at(-1)).toMatchObject({
      value: 30,
      by: 'system',
      source_type: 'system',
      at: new Date(t.clock.now()).toISOString(),
    });
    expect((await patch(a, { current: 40 })).status).toBe(200);
    now = await get(d.id as string);
    expect(now.current).toBe(80);
    // The full log has the snapshots too.
    const log = await t.call('GET', `${kr.basePath}/${d.id}/check-ins`, { token });
    expect((log.body.data as Doc[]).map((c) => c.value)).toEqual([80, 30, 20]);
    const o = (await t.call('GET', `${objectives.basePath}/${objectiveId}`, { token })).body;
    const live = (await t.call('GET', `${kr.basePath}?objective_id=${objectiveId}&limit=200`, { token })).body
      .data as Doc[];
    expect(o.progress_pct).toBe(recompute(live).progress_pct);
  });

  it('puts a query moved onto a new pace band by what it reads back in the sweep, which moves it on when the band ends', async () => {
    // A 100-day cycle, half gone: 45 of 100 is on track until day 60, then at risk.
    const day0 = Date.parse('2027-01-01T00:00:00Z');
    t.clock.set(day0 - 86_400_000);
    const cycle = await t.create(byName('Cycle'), token, {
      name: 'Q',
      start_date: '2027-01-01',
      end_date: '2027-04-10',
    });
    t.clock.set(day0 + 50 * 86_400_000);
    const paced = (await t.create(objectives, token, { cycle_id: cycle.id })).id;
    const read = await t.call('POST', kr.basePath, {
      token,
      body: { objective_id: paced, title: 'read', target: 100 },
    });
    const q = await t.call('POST', kr.basePath, {
      token,
      body: { objective_id: paced, title: 'q', target: 100, data_source: 'query', query: k(read.body.id as string) },
    });
    expect(q.body.status).toBe('off_track');
    await checkIn(read.body.id as string, 45);
    expect((await get(q.body.id as string)).status).toBe('on_track');
    t.clock.set(day0 + 60 * 86_400_000);
    await t.app.engine.runJob(statusSweepJob);
    expect((await get(q.body.id as string)).status).toBe('at_risk');
  });

  it('follows chains and diamonds: each query downstream recomputed once, after what it reads', async () => {
    const a = await manual(1);
    const b = (await query(`${k(a)} * 2`)).id as string;
    const c = (await query(`${k(a)} + 1`)).id as string;
    const d = (await query(`${k(b)} + ${k(c)}`)).id as string;
    const e = (await query(`max(${k(d)}, 0) - ${k(a)}`)).id as string;
    expect((await get(d)).current).toBe(4);
    expect((await get(e)).current).toBe(3);
    expect((await checkIn(a, 10)).status).toBe(201);
    expect((await get(b)).current).toBe(20);
    expect((await get(c)).current).toBe(11);
    const dNow = await get(d);
    expect(dNow.current).toBe(31);
    // One new snapshot, with the final value: never one from halfway through.
    expect((dNow.history as Doc[]).map((h) => h.value)).toEqual([4, 31]);
    expect(((await get(e)).history as Doc[]).map((h) => h.value)).toEqual([3, 21]);
  });

  it('records no snapshot when the value is unchanged, and holds its value while it divides by zero or overflows', async () => {
    const a = await manual(10);
    const floor = await query(`max(${k(a)}, 50)`);
    expect((await checkIn(a, 20)).status).toBe(201);
    expect(await get(floor.id as string)).toMatchObject({ current: 50, version: 1 });

    const zero = await manual(0);
    const ratio = await query(`${k(a)} / ${k(zero)}`, { baseline: 5 });
    expect(ratio).toMatchObject({ current: 5, progress_pct: 0 });
    expect((await checkIn(zero, 4)).status).toBe(201);
    expect((await get(ratio.id as string)).current).toBe(5);
    expect((await checkIn(zero, 0)).status).toBe(201);
    expect((await get(ratio.id as string)).current).toBe(5);
    // Not finite at a step, whatever the steps after make of it: a capped ratio holds, not 100.
    const capped = await query(`min(${k(a)} / ${k(zero)} * 10, 100)`, { baseline: 3 });
    expect(capped.current).toBe(3);
    expect((await checkIn(zero, 4)).status).toBe(201);
    expect((await get(capped.id as string)).current).toBe(50);
    expect((await checkIn(zero, 0)).status).toBe(201);
    expect(await get(capped.id as string)).toMatchObject({ current: 50, version: 2 });

    // Beyond ±1e15 is no number the API stores: the value holds, and the key result stays writable.
    const scaled = await query(`${k(a)} * 1e14`, { baseline: 7 }); // 20 × 1e14 = 2e15: the baseline
    expect(scaled.current).toBe(7);
    expect((await checkIn(a, 5)).status).toBe(201);
    expect((await get(scaled.id as string)).current).toBe(5e14);
    expect((await checkIn(a, 11)).status).toBe(201);
    expect((await get(scaled.id as string)).current).toBe(5e14);
    expect((await patch(scaled.id as string, { title: 'renamed' })).status).toBe(200);
  });

  const bad: [string, (ids: { a: string }) => Doc, number, string, string][] = [
    ['a syntax error', ({ a }) => ({ query: `${k(a)} +` }), 400, '/query', 'invalid_query'],
    ['an unknown function', () => ({ query: 'median(1, 2)' }), 400, '/query', 'invalid_query'],
    ['JavaScript', () => ({ query: 'process.exit(1)' }), 400, '/query', 'invalid_query'],
    ['no query', () => ({ query: null }), 400, '/query', 'required'],
    ['a current of its own', ({ a }) => ({ query: k(a), current: 3 }), 400, '/current', 'not_allowed'],
    [
      'a connector id',
      ({ a }) => ({ query: k(a), connector_id: 'con_01ARZ3NDEKTSV4RRFFQ69G5FAV' }),
      400,
      '/connector_id',
      'not_allowed',
    ],
    ['a key result that does not exist', () => ({ query: `${k(MISSING)} + 1` }), 422, '/query', 'invalid_reference'],
  ];
  it.each(bad)('refuses %s (%i naming %s), storing nothing', async (_name, body, status, path, code) => {
    const a = await manual(1);
    const [rows, edges] = [await countRows(t, kr), await t.store.db.selectFrom(queryReads.name).selectAll().execute()];
    const res = await post({ title: 'x', target: 10, data_source: 'query', ...body({ a }) });
    expect(res.status).toBe(status);
    expect(res.body.errors).toContainEqual(expect.objectContaining({ path, code }));
    expect(await countRows(t, kr)).toBe(rows);
    expect(await t.store.db.selectFrom(queryReads.name).selectAll().execute()).toEqual(edges);
    expect(await readers(a)).toBe(0);
  });

  it('refuses a deleted key result and another tenant’s (422)', async () => {
    const gone = await manual(1);
    expect((await t.call('DELETE', `${kr.basePath}/${gone}`, { token })).status).toBe(200);
    const res = await post({ title: 'x', target: 10, data_source: 'query', query: k(gone) });
    expect(res.status).toBe(422);
    expect(res.body.errors).toEqual([expect.objectContaining({ path: '/query', code: 'invalid_reference' })]);

    const other = await t.token({ tenant: 'other' });
    const theirs = (await t.create(kr, other)).id as string;
    const res2 = await post({ title: 'x', target: 10, data_source: 'query', query: k(theirs) });
    expect(res2.status).toBe(422);
    expect(res2.body.detail).toContain(theirs);
  });

  it('refuses a query that reads itself, directly or through others (400), and keeps what was stored', async () => {
    const a = await manual(1);
    const b = await query(k(a));
    const c = await query(`${k(b.id as string)} + 1`);
    const self = await patch(b.id as string, { query: `${k(b.id as string)} + 1` });
    expect(self.status).toBe(400);
    expect(self.body.errors).toEqual([expect.objectContaining({ path: '/query', code: 'query_cycle' })]);
    // a → b → c; making a read c closes the loop a → c → b → a.
    const loop = await patch(a, { data_source: 'query', query: `${k(c.id as string)} * 2` });
    expect(loop.status).toBe(400);
    expect((loop.body.errors as Doc[])[0].message).toBe(
      `${a} reads ${c.id} reads ${b.id} reads ${a}: a query cannot read its own key result, directly or through others`,
    );
    expect(await get(a)).toMatchObject({ data_source: 'manual', query: null, version: 1 });
    expect(await readers(c.id as string)).toBe(0);
  });

  it('answers a loop as a body’s 400, before the 409s of state and version and the 422s of references', async () => {
    const gone = (await t.create(objectives, token)).id as string;
    expect((await t.call('DELETE', `${objectives.basePath}/${gone}`, { token })).status).toBe(200);
    const plain = await manual(1);
    const computed = (await query(`${k(plain)} * 2`)).id as string;
    const deleted = (await query(`${k(plain)} + 1`)).id as string;
    expect((await t.call('DELETE', `${kr.basePath}/${deleted}`, { token })).status).toBe(200);
    const cases: [string, string, Doc][] = [
      ['with a current (409 not_manual)', computed, { current: 5, query: k(computed) }],
      ['with a deleted objective (422)', computed, { objective_id: gone, query: k(computed) }],
      [
        'turning manual, with a deleted objective (422)',
        plain,
        { objective_id: gone, data_source: 'query', query: k(computed) },
      ],
      [
        'with a stale body version (409 version_conflict)',
        plain,
        { version: 99, data_source: 'query', query: k(computed) },
      ],
      ['on a deleted key result (409 resource_deleted)', deleted, { query: k(deleted) }],
    ];
    for (const [name, id, body] of cases) {
      const before = await storedRow(t, kr, id);
      const res = await patch(id, body);
      expect([name, res.status, (res.body.errors as Doc[] | undefined)?.map((e) => e.code)]).toEqual([
        name,
        400,
        ['query_cycle'],
      ]);
      expect(await storedRow(t, kr, id)).toEqual(before);
    }
  });

  it('takes no value from a client: PATCH of another current and check-ins are 409, a switch to query with one 400; switching to manual takes one', async () => {
    const a = await manual(1);
    const d = await query(k(a));
    const id = d.id as string;
    expect((await patch(id, { current: 5 })).status).toBe(409);
    const refused = await checkIn(id, 5);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('not_manual');
    // A manual key result switched to a query, with a value of its own: refused as a create is.
    const switching = await patch(a, { data_source: 'query', query: '7', current: 3 });
    expect([switching.status, (switching.body.errors as Doc[])[0]]).toEqual([
      400,
      expect.objectContaining({ path: '/current', code: 'not_allowed' }),
    ]);
    // Other fields change as on any key result.
    expect((await patch(id, { title: 'renamed' })).body).toMatchObject({ title: 'renamed', current: 1 });

    const switched = await patch(id, { data_source: 'manual', query: null, current: 9 });
    expect(switched.status).toBe(200);
    expect(switched.body).toMatchObject({ data_source: 'manual', current: 9 });
    expect(await readers(a)).toBe(0);
    expect((await checkIn(a, 2)).status).toBe(201);
    expect((await get(id)).current).toBe(9);
  });

  it('a PATCH to another query moves its edges and recomputes it', async () => {
    const a = await manual(3);
    const b = await manual(4);
    const d = await query(k(a));
    const res = await patch(d.id as string, { query: `${k(b)} * 10` });
    expect(res.body).toMatchObject({ current: 40, version: 2 });
    expect([await readers(a), await readers(b)]).toEqual([0, 1]);
    expect((await checkIn(a, 100)).status).toBe(201);
    expect((await get(d.id as string)).current).toBe(40);
    expect((await checkIn(b, 5)).status).toBe(201);
    expect((await get(d.id as string)).current).toBe(50);
  });

  it('a deleted query is not recomputed, and catches up when restored; a deleted key result it reads holds', async () => {
    const a = await manual(1);
    const d = await query(`${k(a)} + 100`);
    const id = d.id as string;
    expect((await t.call('DELETE', `${kr.basePath}/${id}`, { token })).status).toBe(200);
    expect(await readers(a)).toBe(0);
    expect((await checkIn(a, 5)).status).toBe(201);
    expect((await storedRow(t, kr, id))?.current).toBe(101);
    const restored = await t.call('POST', `${kr.basePath}/${id}/restore`, { token });
    expect(restored.status).toBe(200);
    // The answer is the row as stored after it caught up (its ETag names that version).
    expect(restored.body).toMatchObject({ current: 105, version: 4 });
    expect(restored.headers.etag).toBe('"4"');
    expect(await readers(a)).toBe(1);

    // The key result it reads is deleted: the query keeps its value, and still answers.
    expect((await t.call('DELETE', `${kr.basePath}/${a}`, { token })).status).toBe(200);
    expect(await get(id)).toMatchObject({ current: 105, data_source: 'query' });
    expect((await patch(id, { title: 'still here' })).status).toBe(200);
  });

  it.runIf(kind === 'postgres')('stays true under concurrent check-ins on what it reads (row locks)', async () => {
    const a = await manual(0, 1000);
    const b = await manual(0, 1000);
    const d = await query(`${k(a)} * 1000 + ${k(b)}`, { target: 1e7 });
    const calls: Promise<unknown>[] = [];
    for (let i = 1; i <= 12; i++) {
      calls.push(checkIn(a, i), checkIn(b, i));
    }
    const answers = (await Promise.all(calls)) as { status: number }[];
    expect(answers.every((r) => r.status === 201 || r.status === 503)).toBe(true);
    const [av, bv] = [(await get(a)).current as number, (await get(b)).current as number];
    expect((await get(d.id as string)).current).toBe(av * 1000 + bv);
  });
});
