import SQLite from 'better-sqlite3';
import { CompiledQuery, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc } from '../src/core/resource.js';
import { keyResults as kr } from '../src/modules/okr/key-results.js';
import { RESYNC_EVERY, recompute } from '../src/modules/okr/rollup.js';
import { STATUSES } from '../src/modules/okr/shared.js';
import { statusSweepJob } from '../src/modules/okr/sweep.js';
import { statusSweep } from '../src/modules/okr/tables.js';
import { PROBE_ROWS } from '../src/store/engine.js';
import { filterIndex, migrate, PLANNER_MODEL } from '../src/store/schema.js';
import {
  byName,
  countRows,
  recordReads,
  resources,
  storedRow,
  storeKinds,
  type TestApp,
  testApp,
  USER_B,
  whileFailing,
} from './helpers.js';

const cycles = byName('Cycle');
const objectives = byName('Objective');
const DAY = 86_400_000;
// A 100-day cycle: each day is 1% of it.
const CYCLE = { name: 'Q', start_date: '2027-01-01', end_date: '2027-04-10' };
const cycleAt = (pct: number) => Date.parse('2027-01-01T00:00:00Z') + pct * DAY;

describe.each(storeKinds)('OKR domain on %s', (kind) => {
  let t: TestApp;
  let token: string;
  let cycleId: string;
  beforeAll(async () => {
    t = await testApp(kind);
    token = await t.token();
    t.clock.set(cycleAt(-30));
    cycleId = (await t.create(cycles, token, CYCLE)).id as string;
  });
  afterAll(() => t.close());

  const objective = async (body: Doc = {}) =>
    (await t.create(objectives, token, { cycle_id: cycleId, ...body })).id as string;
  const post = (body: Doc) => t.call('POST', kr.basePath, { token, body });
  const patch = (id: string, body: Doc) => t.call('PATCH', `${kr.basePath}/${id}`, { token, body });
  const checkIn = (id: string, body: Doc) => t.call('POST', `${kr.basePath}/${id}/check-ins`, { token, body });
  const get = async (id: string) => (await t.call('GET', `${kr.basePath}/${id}`, { token })).body;

  /** The objective's figures equal a fresh recomputation from its live key results. */
  async function expectRollupExact(objectiveId: string) {
    const o = (await t.call('GET', `${objectives.basePath}/${objectiveId}`, { token })).body;
    const live = (await t.call('GET', `${kr.basePath}?objective_id=${objectiveId}&limit=200`, { token })).body
      .data as Doc[];
    const fresh = recompute(live);
    expect({ progress_pct: o.progress_pct, status: o.status, key_result_count: o.key_result_count }).toEqual({
      progress_pct: fresh.progress_pct,
      status: fresh.status,
      key_result_count: fresh.key_result_count,
    });
    return o;
  }

  describe('defaults and validation', () => {
    it('fills defaults: number, baseline 0, current = baseline, manual, increase, weight 1, one snapshot', async () => {
      t.clock.set(cycleAt(-20));
      const res = await post({ objective_id: await objective(), title: 'Ship', target: 10 });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        metric_type: 'number',
        baseline: 0,
        current: 0,
        data_source: 'manual',
        direction: 'increase',
        weight: 1,
        progress_pct: 0,
        status: 'not_started',
        confidence: null,
        last_update_at: new Date(t.clock.now()).toISOString(),
      });
      expect(res.body.history).toEqual([
        {
          at: res.body.created_at,
          value: 0,
          progress_pct: 0,
          by: res.body.created_by,
          source_type: 'api',
          note: null,
          confidence: null,
        },
      ]);
    });

    it('derives target 1 for milestones and decrease from baseline > target', async () => {
      const o = await objective();
      expect((await post({ objective_id: o, title: 'M', metric_type: 'milestone' })).body).toMatchObject({
        target: 1,
        current: 0,
      });
      expect((await post({ objective_id: o, title: 'D', baseline: 100, target: 50 })).body).toMatchObject({
        direction: 'decrease',
        current: 100,
      });
      expect(
        (await post({ objective_id: o, title: 'T', metric_type: 'threshold', baseline: 100, target: 50 })).body
          .direction,
      ).toBe('increase');
      expect((await post({ objective_id: o, title: 'E', baseline: 5, target: 5 })).body.direction).toBe('increase');
      // A milestone's too (only a threshold's is increase whatever its bounds), on create and PATCH.
      const m = (await post({ objective_id: o, title: 'M2', metric_type: 'milestone', baseline: 5, target: 1 })).body;
      expect(m).toMatchObject({ direction: 'decrease', progress_pct: 100 });
      expect((await patch(m.id as string, { target: 9 })).body.direction).toBe('increase');
      // A PATCH clearing a milestone's target gives it the default again; another type's is required.
      expect((await patch(m.id as string, { target: null })).body).toMatchObject({ target: 1, direction: 'decrease' });
      const d = (await post({ objective_id: o, title: 'D2', target: 5 })).body;
      expect((await patch(d.id as string, { target: null })).status).toBe(400);
      expect((await post({ objective_id: o, title: 'N', target: null })).status).toBe(400);
      expect((await post({ objective_id: o, title: 'M3', metric_type: 'milestone', target: null })).body.target).toBe(
        1,
      );
    });

    it('takes the default again where a PATCH sends null to a field that has one, as a create does', async () => {
      const created = (
        await post({ objective_id: await objective(), title: 'x', baseline: 5, target: 100, current: 50, weight: 3 })
      ).body;
      const res = await patch(created.id as string, { baseline: null, weight: null, source_type: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        baseline: 0,
        weight: 1,
        source_type: 'api',
        direction: 'increase',
        progress_pct: 50,
      });
      const cycle = await t.create(cycles, token, { ...CYCLE, state: 'active' });
      const reset = await t.call('PATCH', `${cycles.basePath}/${cycle.id}`, { token, body: { state: null } });
      expect([reset.status, reset.body.state]).toEqual([200, 'planning']);
    });

    it('re-derives direction when a PATCH moves baseline or target without one', async () => {
      const created = (await post({ objective_id: await objective(), title: 'x', target: 100 })).body;
      const res = await patch(created.id as string, { baseline: 200, current: 200 });
      expect(res.body).toMatchObject({ direction: 'decrease', baseline: 200, target: 100 });
    });

    it.each([
      ['a threshold whose target moves', { target: 4 }],
      ['a threshold whose baseline moves', { baseline: 1 }],
      ['a linear key result turned into a threshold', { metric_type: 'threshold' }],
    ])('keeps the direction the caller chose for %s (only a linear type follows its bounds)', async (_n, change) => {
      // "at most 5" (decrease), or a number from 8 down to 5 (decrease), stays "at most" when it changes.
      const threshold = 'target' in change || 'baseline' in change;
      const body = threshold
        ? { metric_type: 'threshold', target: 5, current: 3, direction: 'decrease' }
        : { baseline: 8, target: 5, current: 4 };
      const created = (await post({ objective_id: await objective(), title: 'churn', ...body })).body;
      expect(created.direction).toBe('decrease');
      const res = await patch(created.id as string, change);
      expect([res.status, res.body.direction, res.body.progress_pct]).toEqual([200, 'decrease', 100]);
      // Back to a linear type, the direction follows the bounds again (8 → 5 is a decrease; 3 → 5 not).
      const linear = await patch(created.id as string, { metric_type: 'number', baseline: 1, target: 5 });
      expect([linear.status, linear.body.direction]).toEqual([200, 'increase']);
    });

    it('names a bad baseline once, not as the current it would have defaulted to', async () => {
      for (const baseline of ['5', 1e16]) {
        const res = await post({ objective_id: await objective(), title: 'x', target: 100, baseline });
        expect([res.status, (res.body.errors as { path: string }[]).map((e) => e.path)]).toEqual([400, ['/baseline']]);
      }
    });

    it.each([
      ['U+0000 in a title', { title: 'a\u0000b' }, '/title'],
      ['U+0000 in a tag', { tags: ['ok', 'a\u0000'] }, '/tags/1'],
      ['a lone surrogate in a tag', { tags: ['x\udc00'] }, '/tags/0'],
      ['a lone surrogate in a unit', { unit: 'half \ud83c of an emoji' }, '/unit'],
      // Longer than the limit in UTF-16 units only (limits count characters): still checked.
      ['a lone surrogate after 199 emoji in a title', { title: `${'😀'.repeat(199)}\ud83d` }, '/title'],
      ['U+0000 after 63 emoji in a tag', { tags: [`${'😀'.repeat(63)}\u0000`] }, '/tags/0'],
    ])(
      'refuses text neither store can hold (%s) naming the field, before the references are checked',
      async (_n, body, path) => {
        const missingObjective = 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV';
        const before = await countRows(t, kr);
        const res = await post({ objective_id: missingObjective, title: 'x', target: 1, ...body });
        expect([res.status, res.body.code, (res.body.errors as { path: string; code: string }[])[0]]).toMatchObject([
          400,
          'validation_failed',
          { path, code: 'invalid_text' },
        ]);
        expect(await countRows(t, kr)).toBe(before);
        // On a deleted key result too: 400 (body) comes before 409 (state).
        const k = (await post({ objective_id: await objective(), title: 'x', target: 1 })).body;
        await t.call('DELETE', `${kr.basePath}/${k.id}`, { token });
        const refused = await patch(k.id as string, body);
        expect([refused.status, refused.body.code]).toEqual([400, 'validation_failed']);
      },
    );

    // SQLite only: an earlier version stored lone surrogates there; PostgreSQL never held one.
    it.runIf(kind === 'sqlite')(
      'takes a check-in and a rename on a row stored under older rules: what a write leaves as stored is not checked again',
      async () => {
        const k = (await post({ objective_id: await objective(), title: 'old', target: 10, tags: ['ok'] })).body;
        // A tag with a lone surrogate, as an earlier version stored it.
        const legacy = ['a\udc00'];
        const row = (await storedRow(t, kr, k.id as string)) as Record<string, unknown>;
        const doc = JSON.parse(String(row._doc));
        doc.tags = legacy;
        const set: Record<string, unknown> = { _doc: JSON.stringify(doc) };
        if (kind === 'sqlite') set.tags = JSON.stringify(legacy);
        await t.store.db
          .updateTable(kr.table)
          .set(set)
          .where('id', '=', k.id as string)
          .execute();
        const checkedIn = await checkIn(k.id as string, { value: 4 });
        expect([checkedIn.status, checkedIn.body.tags]).toEqual([201, legacy]);
        const renamed = await patch(k.id as string, { title: 'renamed' });
        expect([renamed.status, renamed.body.title]).toEqual([200, 'renamed']);
        // A value the write sets is checked as ever.
        const retagged = await patch(k.id as string, { tags: ['b\udc00'] });
        expect([retagged.status, (retagged.body.errors as { path: string }[])[0].path]).toEqual([400, '/tags/0']);
        expect((await patch(k.id as string, { tags: ['fixed'] })).status).toBe(200);
      },
    );

    it('serves a key result under a cycle that ends on 9999-12-31: its status band never ends', async () => {
      const far = (await t.create(cycles, token, { name: 'Far', start_date: '2026-01-01', end_date: '9999-12-31' })).id;
      const o = await objective({ cycle_id: far });
      const k = await post({
        objective_id: o,
        title: 'stay under',
        metric_type: 'threshold',
        direction: 'decrease',
        target: 5,
        current: 10,
      });
      expect([k.status, k.body.status]).toEqual([201, 'off_track']);
      const met = await checkIn(k.body.id as string, { value: 3 });
      expect([met.status, met.body.status]).toEqual([201, 'on_track']);
    });

    it.each([
      ['equal bounds', { baseline: 10, target: 10, current: 12, direction: 'decrease' }, { target: 10 }],
      [
        'a threshold',
        { metric_type: 'threshold', baseline: 300, target: 200, current: 150, direction: 'decrease' },
        { baseline: 300, metric_type: 'threshold' },
      ],
    ])('keeps the direction of %s when a PATCH sends its bounds back unchanged', async (_name, body, same) => {
      const created = (await post({ objective_id: await objective(), title: 'x', ...body })).body;
      const res = await patch(created.id as string, { ...same, title: 'renamed' });
      expect(res.status).toBe(200);
      for (const k of ['direction', 'progress_pct', 'status']) expect(res.body[k]).toBe(created[k]);
    });

    const bad: [string, Doc, string][] = [
      ['a contradicting direction', { target: 100, direction: 'decrease' }, '/direction'],
      ['no target', {}, '/target'],
      ['no title', { title: null, target: 1 }, '/title'],
      ['an owner that is not usr-<uuid>', { target: 1, owner_id: 'bob' }, '/owner_id'],
      ['duplicate tags', { target: 1, tags: ['a', 'a'] }, '/tags/1'],
      ['33 tags', { target: 1, tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }, '/tags'],
      ['a 65-character tag', { target: 1, tags: ['x'.repeat(65)] }, '/tags/0'],
      ['a tag of 65 emoji', { target: 1, tags: ['🎯'.repeat(65)] }, '/tags/0'],
      ['a title of 201 emoji', { target: 1, title: '🎯'.repeat(201) }, '/title'],
      ['an empty tag', { target: 1, tags: [''] }, '/tags/0'],
      ['a negative weight', { target: 1, weight: -0.5 }, '/weight'],
      // Below it, the objective's weighted sums underflow (33.33 rolled up as 33).
      ['a weight below 0.000001', { target: 1, weight: 5e-324 }, '/weight'],
      ['a blank tag', { target: 1, tags: ['growth', ' \u200b'] }, '/tags/1'],
      ['a tag of Hangul fillers (shows nothing)', { target: 1, tags: ['\u3164\u3164'] }, '/tags/0'],
      // Longer than 64 in UTF-16 units, not in characters (33 invisible tag characters): blank.
      ['a blank tag past 64 UTF-16 units', { target: 1, tags: ['\u{e0020}'.repeat(33)] }, '/tags/0'],
      ['a connector source without a connector', { target: 1, data_source: 'connector' }, '/connector_id'],
      ['a query on a manual key result', { target: 1, query: 'kr("x")' }, '/query'],
      ['an unknown metric type', { target: 1, metric_type: 'vibes' }, '/metric_type'],
      ['confidence (read-only)', { target: 1, confidence: 5 }, '/confidence'],
      ['progress_pct (computed)', { target: 1, progress_pct: 50 }, '/progress_pct'],
    ];
    it.each(bad)('rejects %s naming %s, storing nothing', async (_n, body, path) => {
      const o = await objective();
      const before = await countRows(t, kr);
      const res = await post({ objective_id: o, title: 'x', ...body });
      expect(res.status).toBe(400);
      expect((res.body.errors as { path: string }[]).map((e) => e.path)).toContain(path);
      expect(await countRows(t, kr)).toBe(before);
    });

    it('names a duplicate tag by its index and value, and the item it repeats', async () => {
      const res = await post({ objective_id: await objective(), title: 'x', target: 1, tags: ['a', 'b', 'a'] });
      expect([res.status, res.body.errors]).toEqual([
        400,
        [{ path: '/tags/2', code: 'not_unique', message: 'tags: "a" is listed twice (items 0 and 2)' }],
      ]);
    });

    it('answers a number beyond a double (1e400) as out of range, as 1.0000001e15 is, in a write and a check-in', async () => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const raw = (method: string, url: string, payload: string) =>
        t.call(method, url, { token, payload, headers: { 'content-type': 'application/json' } });
      for (const [res, path] of [
        [await raw('POST', kr.basePath, `{"objective_id":"${k.objective_id}","title":"x","target":1e400}`), '/target'],
        [await raw('PATCH', `${kr.basePath}/${k.id}`, '{"baseline":-1e400}'), '/baseline'],
        [await raw('POST', `${kr.basePath}/${k.id}/check-ins`, '{"value":1e400}'), '/value'],
      ] as const) {
        expect([res.status, res.body.code]).toEqual([400, 'validation_failed']);
        expect(res.body.errors).toEqual([
          { path, code: 'out_of_range', message: `${path.slice(1)}: must be a finite number within ±1e15` },
        ]);
      }
      expect((await get(k.id as string)).version).toBe(k.version);
    });

    it('takes the smallest weight, 0.000001, and rolls a lone key result of it up as its own progress', async () => {
      const o = await objective();
      const res = await post({ objective_id: o, title: 'light', target: 3, current: 1, weight: 0.000001 });
      expect([res.status, res.body.progress_pct]).toEqual([201, 33.33]);
      const parent = await t.call('GET', `/api/v1/okr/objectives/${o}`, { token });
      expect(parent.body.progress_pct).toBe(33.33);
    });

    it('counts lengths in characters, not UTF-16 code units: 64 emoji make a 64-character tag', async () => {
      const body = { objective_id: await objective(), target: 1, title: '🎯'.repeat(200), tags: ['🎯'.repeat(64)] };
      const res = await post(body);
      expect(res.status, res.raw).toBe(201);
      expect([res.body.title, res.body.tags]).toEqual([body.title, body.tags]);
    });

    it('accepts a valid owner and tags', async () => {
      const res = await post({
        objective_id: await objective(),
        title: 'x',
        target: 1,
        owner_id: 'usr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b',
        tags: ['growth', 'q4'],
      });
      expect(res.status).toBe(201);
    });
  });

  describe('current of a key result a query feeds', () => {
    it('takes a current sent back equal to the stored one (a read-modify-write); another is 409 not_manual', async () => {
      const a = (await post({ objective_id: await objective(), title: 'a', target: 10, current: 4 })).body;
      const q = (
        await post({
          objective_id: a.objective_id,
          title: 'q',
          target: 10,
          data_source: 'query',
          query: `kr("${a.id}")`,
        })
      ).body;
      expect(q.current).toBe(4);
      // GET, change the title, PATCH back every writable field.
      const read = await get(q.id as string);
      const writable = Object.fromEntries(
        Object.entries(kr.allFields)
          .filter(([name, field]) => field.access === 'write' && name in read)
          .map(([name]) => [name, read[name]]),
      );
      expect(writable).toHaveProperty('current', 4);
      const renamed = await patch(q.id as string, { ...writable, title: 'renamed' });
      expect([renamed.status, renamed.body.title, renamed.body.current]).toEqual([200, 'renamed', 4]);
      const changed = await patch(q.id as string, { current: 5 });
      expect([changed.status, changed.body.code]).toEqual([409, 'not_manual']);
      expect((await get(q.id as string)).current).toBe(4);
    });

    it('answers a manual key result turned into a query with a current as a create: 400 not_allowed', async () => {
      const a = (await post({ objective_id: await objective(), title: 'a', target: 10, current: 1 })).body;
      const res = await patch(a.id as string, { data_source: 'query', query: '7', current: 3 });
      expect([res.status, res.body.code, res.body.errors]).toEqual([
        400,
        'validation_failed',
        [{ path: '/current', code: 'not_allowed', message: 'current comes from the query' }],
      ]);
      expect(await get(a.id as string)).toMatchObject({ data_source: 'manual', current: 1, version: a.version });
      // Its current sent back as it was read is no value of the caller's: the query gives it one.
      const turned = await patch(a.id as string, { data_source: 'query', query: '7', current: 1 });
      expect([turned.status, turned.body.current]).toEqual([200, 7]);
    });
  });

  describe('status by pace, kept true by the sweep', () => {
    it.each([
      ['number', { target: 100 }, { current: 35 }, ['on_track', 'on_track', 'at_risk', 'off_track', 'off_track']],
      [
        'number at the band edge',
        { target: 100 },
        { current: 40 },
        ['on_track', 'on_track', 'on_track', 'off_track', 'off_track'],
      ],
      [
        'percentage',
        { metric_type: 'percentage', baseline: 0, target: 100 },
        { current: 35 },
        ['on_track', 'on_track', 'at_risk', 'off_track', 'off_track'],
      ],
      [
        'currency',
        { metric_type: 'currency', baseline: 0, target: 1000 },
        { current: 800 },
        ['on_track', 'on_track', 'on_track', 'on_track', 'at_risk'],
      ],
      [
        'milestone',
        { metric_type: 'milestone' },
        {},
        ['not_started', 'off_track', 'off_track', 'off_track', 'off_track'],
      ],
      [
        'threshold',
        { metric_type: 'threshold', target: 99 },
        { current: 99.5 },
        ['on_track', 'on_track', 'on_track', 'on_track', 'achieved'],
      ],
      [
        'decrease',
        { baseline: 100, target: 0 },
        { current: 65 },
        ['on_track', 'on_track', 'at_risk', 'off_track', 'off_track'],
      ],
    ] as [string, Doc, Doc, string[]][])(
      '%s: at start, 30%%, 50%%, 90%% and after the end, with nobody writing',
      async (_n, body, progress, expected) => {
        t.clock.set(cycleAt(0));
        const o = await objective();
        const created = (await post({ objective_id: o, title: 'pace', ...body })).body;
        let doc = Object.keys(progress).length ? (await patch(created.id as string, progress)).body : created;
        const seen: string[] = [];
        for (const pct of [0, 30, 50, 90, 101]) {
          t.clock.set(cycleAt(pct));
          await t.app.engine.runJob(statusSweepJob);
          const now = await get(created.id as string);
          seen.push(now.status as string);
          if (now.status !== doc.status) {
            // A sweep change is a system write: version and updated_at advance, no snapshot, same writer.
            expect(now.version).toBe((doc.version as number) + 1);
            expect(now.updated_at).toBe(new Date(t.clock.now()).toISOString());
            expect(now.updated_by).toBe(doc.updated_by);
            expect(now.history).toEqual(doc.history);
          } else {
            expect(now.version).toBe(doc.version);
          }
          doc = now;
        }
        expect(seen).toEqual(expected);
        await expectRollupExact(o);
      },
    );

    it('touches only rows whose band has expired', async () => {
      t.clock.set(cycleAt(10));
      const o = await objective();
      const steady = (await post({ objective_id: o, title: 'done', target: 10, current: 10 })).body;
      const moving = (await post({ objective_id: o, title: 'slow', target: 100, current: 30 })).body;
      t.clock.set(cycleAt(35));
      expect(await t.app.engine.runJob(statusSweepJob)).toBe(0);
      t.clock.set(cycleAt(40) + 1);
      expect(await t.app.engine.runJob(statusSweepJob)).toBeGreaterThanOrEqual(1);
      expect((await get(moving.id as string)).status).toBe('at_risk');
      expect((await get(steady.id as string)).version).toBe(steady.version);
    });

    it('recomputes the status of a key result it restores: the cycle moved on while it was deleted', async () => {
      t.clock.set(cycleAt(50));
      const cyc = (await t.create(cycles, token, { ...CYCLE, name: 'restore' })).id as string;
      const o = await objective({ cycle_id: cyc });
      const k = (await post({ objective_id: o, title: 'k', target: 100, current: 45 })).body;
      expect(k.status).toBe('on_track');
      await t.call('DELETE', `${kr.basePath}/${k.id}`, { token });
      await t.call('PATCH', `${cycles.basePath}/${cyc}`, { token, body: { start_date: '2026-10-01' } });
      const back = await t.call('POST', `${kr.basePath}/${k.id}/restore`, { token });
      expect([back.status, back.body.status, back.body.version]).toEqual([200, 'off_track', 3]);
      const rolled = await expectRollupExact(o);
      expect(rolled.status).toBe('off_track');
    });

    it('re-checks key results when their cycle moves', async () => {
      t.clock.set(cycleAt(50));
      const cyc = (await t.create(cycles, token, { ...CYCLE, name: 'movable' })).id as string;
      const o = await objective({ cycle_id: cyc });
      const k = (await post({ objective_id: o, title: 'k', target: 100, current: 45 })).body;
      expect(k.status).toBe('on_track');
      await t.call('PATCH', `${cycles.basePath}/${cyc}`, { token, body: { start_date: '2026-10-01' } });
      await t.app.engine.runJob(statusSweepJob);
      expect((await get(k.id as string)).status).toBe('off_track');
    });

    // 45 of 100 at half the cycle is on track; each move below puts it behind its new pace, or
    // leaves it where it was, which is then not rewritten (its version, and ETag, hold).
    it.each([
      ['its cycle ends sooner (only end_date moves)', 'cycle', { end_date: '2027-02-25' }, 'off_track'],
      ['its objective is moved into a cycle nine tenths gone', 'objective', 'late cycle', 'off_track'],
      ['its cycle moves a day, its pace staying on track', 'cycle', { start_date: '2026-12-31' }, 'on_track'],
    ] as const)('re-checks a key result when %s', async (_name, what, change, status) => {
      t.clock.set(cycleAt(-1));
      const cyc = (await t.create(cycles, token, { ...CYCLE, name: 'movable' })).id as string;
      const late = (await t.create(cycles, token, { name: 'late', start_date: '2026-11-12', end_date: '2027-03-01' }))
        .id as string;
      t.clock.set(cycleAt(50));
      const o = await objective({ cycle_id: what === 'objective' ? null : cyc });
      const k = (await post({ objective_id: o, title: 'k', target: 100, current: 45 })).body;
      expect(k.status).toBe('on_track');
      const moved =
        what === 'cycle'
          ? await t.call('PATCH', `${cycles.basePath}/${cyc}`, { token, body: change })
          : await t.call('PATCH', `${objectives.basePath}/${o}`, { token, body: { cycle_id: late } });
      expect(moved.status).toBe(200);
      await t.app.engine.runJob(statusSweepJob);
      const after = await get(k.id as string);
      expect([after.status, after.version === k.version]).toEqual([status, status === k.status]);
    });
  });

  describe('check-ins and history', () => {
    it('records a snapshot per check-in, even at an unchanged value; the newest sets current and confidence', async () => {
      t.clock.set(cycleAt(20));
      const o = await objective();
      const k = (await post({ objective_id: o, title: 'mrr', baseline: 0, target: 200 })).body;
      t.clock.advance(60_000);
      const first = await checkIn(k.id as string, { value: 50, note: 'first deals', confidence: 7 });
      expect(first.status).toBe(201);
      expect(first.headers.etag).toBe('"2"');
      expect(first.body).toMatchObject({ current: 50, confidence: 7, progress_pct: 25, version: 2 });
      t.clock.advance(60_000);
      const same = await checkIn(k.id as string, { value: 50 });
      expect(same.body).toMatchObject({ current: 50, confidence: null, version: 3 });
      expect((same.body.history as Doc[]).map((h) => h.value)).toEqual([0, 50, 50]);
      // a PATCH to the present value records nothing
      const noop = await patch(k.id as string, { current: 50 });
      expect((noop.body.history as Doc[]).length).toBe(3);
      // a past check-in lands in time order and does not move current
      t.clock.advance(60_000);
      const past = await checkIn(k.id as string, { value: 10, at: new Date(t.clock.now() - 150_000).toISOString() });
      expect(past.body.current).toBe(50);
      expect((past.body.history as Doc[]).map((h) => h.value)).toEqual([0, 10, 50, 50]);
      expect((past.body.history as Doc[])[1]).toMatchObject({ value: 10, progress_pct: 5, note: null });
      // A back-dated check-in is history only: current, and when it was last updated, stay.
      expect(past.body.last_update_at).toBe(noop.body.last_update_at);
      // One dated before now but after the newest entry is the newest: current, and
      // last_update_at is its time, the time of the newest entry (not the moment it arrived).
      const newestAt = new Date(t.clock.now() - 30_000).toISOString();
      const late = await checkIn(k.id as string, { value: 60, confidence: 6, at: newestAt });
      expect(late.body).toMatchObject({ current: 60, confidence: 6, last_update_at: newestAt });
      expect((late.body.history as Doc[]).at(-1)).toMatchObject({ value: 60, at: newestAt });
      await expectRollupExact(o);
    });

    it.each([
      [{ value: 'x' }, '/value'],
      [{}, '/value'],
      [{ value: 1, confidence: 11 }, '/confidence'],
      [{ value: 1, confidence: 2.5 }, '/confidence'],
      [{ value: 1, at: '2999-01-01T00:00:00Z' }, '/at'],
      [{ value: 1, at: 'yesterday' }, '/at'],
      [{ value: 1, at: '2026-02-30T00:00:00Z' }, '/at'],
      [{ value: 1, at: '2024-04-31T12:00:00Z' }, '/at'],
      [{ value: 1, at: '2025-06-01T24:00:00Z' }, '/at'],
      [{ value: 1, at: '0000-01-01T00:00:00Z' }, '/at'],
      [{ value: 1, at: '0001-01-01T00:30:00+01:00' }, '/at'],
      [{ value: 1, at: '2025-06-01T12:00:00+24:00' }, '/at'],
      [{ value: 1, mood: 'good' }, '/mood'],
      [{ value: 1, constructor: 'x' }, '/constructor'],
    ])('rejects a check-in %j naming %s and changes nothing', async (body, path) => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const before = await storedRow(t, kr, k.id as string);
      const res = await checkIn(k.id as string, body);
      expect(res.status).toBe(400);
      expect((res.body.errors as { path: string }[]).map((e) => e.path)).toContain(path);
      expect(await storedRow(t, kr, k.id as string)).toEqual(before);
    });

    it('rejects a check-in dated half a minute ahead (in the future) and changes nothing', async () => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const before = await storedRow(t, kr, k.id as string);
      const res = await checkIn(k.id as string, { value: 1, at: new Date(t.clock.now() + 30_000).toISOString() });
      expect([res.status, (res.body.errors as { path: string }[])?.map((e) => e.path)]).toEqual([400, ['/at']]);
      expect(await storedRow(t, kr, k.id as string)).toEqual(before);
    });

    it("keeps the write's source_type in its snapshot", async () => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10, source_type: 'frontend' })).body;
      expect((k.history as Doc[]).map((h) => h.source_type)).toEqual(['frontend']);
    });

    it('takes no query parameters: 400 naming one, after 404 and 412, and nothing recorded', async () => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const missing = `${kr.basePath}/kr_01ARZ3NDEKTSV4RRFFQ69G5FAV/check-ins?foo=1`;
      expect((await t.call('POST', missing, { token, body: { value: 1 } })).status).toBe(404);
      const url = `${kr.basePath}/${k.id}/check-ins?foo=1`;
      const stale = await t.call('POST', url, { token, body: { value: 1 }, headers: { 'if-match': '"9"' } });
      expect(stale.status).toBe(412);
      const before = await storedRow(t, kr, k.id as string);
      const res = await t.call('POST', url, { token, body: { value: 1 } });
      expect([res.status, res.body.code, (res.body.errors as { path: string }[])[0].path]).toEqual([
        400,
        'unknown_parameter',
        'foo',
      ]);
      expect(await storedRow(t, kr, k.id as string)).toEqual(before);
    });

    it.each([
      ['foo=1', 'unknown_parameter', 'foo'],
      ['sort=at', 'unknown_parameter', 'sort'],
      ['limit=2&limit=3', 'invalid_parameter', 'limit'],
      ['limit=0', 'invalid_parameter', 'limit'],
      // Every refused parameter at once.
      ['limit=0&foo=1&bar=2', 'unknown_parameter', 'limit,foo,bar'],
    ])('lists check-ins with %s: 400 %s naming %s', async (query, code, paths) => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const res = await t.call('GET', `${kr.basePath}/${k.id}/check-ins?${query}`, { token });
      const named = (res.body.errors as { path: string }[] | undefined)?.map((e) => e.path).join(',');
      expect([res.status, res.body.code, named]).toEqual([400, code, paths]);
    });

    it('honours If-Match on its key result: 404, then a stale version 412, then the body 400, and nothing recorded', async () => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const url = `${kr.basePath}/${k.id}/check-ins`;
      const missing = `${kr.basePath}/kr_01ARZ3NDEKTSV4RRFFQ69G5FAV/check-ins`;
      const stale = { 'if-match': '"9"' };
      expect((await t.call('POST', missing, { token, body: { value: 'x' }, headers: stale })).status).toBe(404);
      const before = await storedRow(t, kr, k.id as string);
      const refused = await t.call('POST', url, { token, body: { value: 'x' }, headers: stale });
      expect([refused.status, refused.body.code, refused.body.current_version]).toEqual([
        412,
        'precondition_failed',
        1,
      ]);
      expect((await t.call('POST', url, { token, body: { value: 'x' }, headers: { 'if-match': '"1"' } })).status).toBe(
        400,
      );
      expect(await storedRow(t, kr, k.id as string)).toEqual(before);
      const ok = await t.call('POST', url, { token, body: { value: 4 }, headers: { 'if-match': '"1"' } });
      expect([ok.status, ok.headers.etag, ok.body.current]).toEqual([201, '"2"', 4]);
    });

    it('answers 404 for another tenant and 409 on a deleted key result', async () => {
      const k = (await post({ objective_id: await objective(), title: 'x', target: 10 })).body;
      const other = await t.token({ tenant: 'globex' });
      const foreign = await t.call('POST', `${kr.basePath}/${k.id}/check-ins`, { token: other, body: { value: 1 } });
      expect(foreign.status).toBe(404);
      expect((await t.call('GET', `${kr.basePath}/${k.id}/check-ins`, { token: other })).status).toBe(404);
      await t.call('DELETE', `${kr.basePath}/${k.id}`, { token });
      const res = await checkIn(k.id as string, { value: 1 });
      expect([res.status, res.body.code]).toEqual([409, 'resource_deleted']);
    });

    it('lists check-ins while a writer holds the key result: a read takes no lock and waits for none', async () => {
      const k = (await post({ objective_id: await objective(), title: 'held', target: 10 })).body;
      expect((await checkIn(k.id as string, { value: 4 })).status).toBe(201);
      const list = () => t.call('GET', `${kr.basePath}/${k.id}/check-ins`, { token });
      const expectListed = (res: Awaited<ReturnType<typeof list>>) => {
        expect(res.status, res.raw).toBe(200);
        expect((res.body.data as Doc[]).map((c) => c.value)).toEqual([4, 0]);
      };
      if (kind === 'sqlite') {
        // Another connection holds SQLite's write lock: the list reads beside it.
        const exec = t.store.exec;
        if (!exec) throw new Error('a SQLite store runs statements synchronously');
        const file = (exec('PRAGMA database_list', []).rows[0] as { file: string }).file;
        const writer = new SQLite(file);
        writer.prepare('BEGIN IMMEDIATE').run();
        try {
          expectListed(await list());
        } finally {
          writer.prepare('ROLLBACK').run();
          writer.close();
        }
        return;
      }
      // PostgreSQL: a transaction holds the key result FOR UPDATE while the list runs. Were the
      // list to wait on that lock, PostgreSQL would name the holder among its blockers.
      await t.store.db.transaction().execute(async (trx) => {
        await sql`SELECT id FROM okr_key_results WHERE tenant_id = 'acme' AND id = ${k.id} FOR UPDATE`.execute(trx);
        const holder = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0].pid;
        const listed = list();
        let done = false;
        listed.finally(() => {
          done = true;
        });
        while (!done) {
          const waiting = await sql<{ n: number }>`
            SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${holder} = ANY(pg_blocking_pids(pid))`.execute(
            t.store.db,
          );
          expect(waiting.rows[0].n, 'the check-ins list waited on the held row lock').toBe(0);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        expectListed(await listed);
      });
    });

    it('keeps the newest 100 in history and pages through all of them', async () => {
      t.clock.set(cycleAt(30));
      const k = (await post({ objective_id: await objective(), title: 'busy', target: 1000 })).body;
      for (let i = 1; i <= 120; i++) {
        t.clock.advance(1000);
        expect((await checkIn(k.id as string, { value: i })).status).toBe(201);
      }
      const doc = await get(k.id as string);
      const history = doc.history as Doc[];
      expect(history).toHaveLength(100);
      expect(history[0].value).toBe(21);
      expect(history[99].value).toBe(120);
      expect(doc.current).toBe(120);
      const seen: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      // On SQLite, the statements the pages read (on the read connection), to check their plans.
      const recorder = kind === 'sqlite' ? recordReads(t.store) : null;
      try {
        do {
          const url: string = `${kr.basePath}/${k.id}/check-ins?limit=50${cursor ? `&cursor=${cursor}` : ''}`;
          const page = (await t.call('GET', url, { token })).body;
          seen.push(...(page.data as Doc[]).map((s) => s.value as number));
          cursor = page.next_cursor as string | null;
          pages++;
        } while (cursor);
      } finally {
        recorder?.stop();
      }
      expect(pages).toBe(3);
      expect(seen).toEqual([...Array.from({ length: 120 }, (_, i) => 120 - i), 0]);
      if (recorder) {
        // A later page seeks from its cursor: one index range, not the key result's snapshots again.
        const pageReads = recorder.reads.filter((r) => r.sql.includes('okr_key_result_snapshots'));
        expect(recorder.plan(pageReads[pageReads.length - 1])).toContainEqual(
          expect.stringContaining('AND (at,id)<(?,?))'),
        );
      }
    });

    it('keeps notes that look like JSON exact through appends, other writes and a back-dated check-in', async () => {
      t.clock.set(cycleAt(32));
      const k = (await post({ objective_id: await objective(), title: 'text', target: 100 })).body;
      const id = k.id as string;
      // What the stored history's text is searched for, inside notes (escaped there).
      // A note ending in `{` made a `{"` that began no entry: every later check-in was a 500.
      const notes = ['{"at":"x"}', '},{"', 'see {', '],"tags":["x"]', 'a "quote" and \\ back\\slash', 'über — 🎯'];
      for (const [i, note] of notes.entries()) {
        t.clock.advance(1000);
        expect((await checkIn(id, { value: i + 1, note })).status).toBe(201);
      }
      // A write that adds no snapshot keeps the history as it was stored.
      t.clock.advance(1000);
      expect((await patch(id, { title: 'text, renamed', tags: ['x]', '{"'] })).status).toBe(200);
      // Back-dated: between the first two check-ins, so it cannot simply be appended.
      const past = await checkIn(id, {
        value: 42,
        note: '[{"value":1}]',
        at: new Date(t.clock.now() - 5500).toISOString(),
      });
      expect(past.status).toBe(201);
      t.clock.advance(1000);
      expect((await checkIn(id, { value: 9, note: null })).status).toBe(201);
      const doc = await get(id);
      const history = doc.history as Doc[];
      expect(history.map((h) => h.value)).toEqual([0, 1, 42, 2, 3, 4, 5, 6, 9]);
      expect(history.map((h) => h.note)).toEqual([null, notes[0], '[{"value":1}]', ...notes.slice(1), null]);
      expect(doc).toMatchObject({ title: 'text, renamed', tags: ['x]', '{"'], current: 9 });
      const row = (await storedRow(t, kr, id)) as Record<string, unknown>;
      expect(JSON.parse(row._doc as string)).toEqual(doc);
    });

    // A note or a writer (a token's sub) ending in `{`, in the newest entry: every later check-in
    // or PATCH of current answered 500; further back, appends cut the stored history at it.
    it('takes check-ins and PATCHes of current after a note or a writer that ends in `{`', async () => {
      t.clock.set(cycleAt(33));
      const k = (await post({ objective_id: await objective(), title: 'braces', target: 1000 })).body;
      const id = k.id as string;
      t.clock.advance(1000);
      expect((await checkIn(id, { value: 10, note: 'see {' })).status).toBe(201);
      t.clock.advance(1000);
      expect((await patch(id, { current: 20 })).status).toBe(200);
      const odd = await t.token({ sub: 'evil{' });
      t.clock.advance(1000);
      const theirs = await t.call('POST', `${kr.basePath}/${id}/check-ins`, { token: odd, body: { value: 30 } });
      expect(theirs.status).toBe(201);
      t.clock.advance(1000);
      expect((await checkIn(id, { value: 40 })).status).toBe(201);
      // Past 100 entries, with the `{` ones inside: one dropped per entry added, the text whole.
      for (let i = 0; i < 100; i++) {
        t.clock.advance(1000);
        expect((await checkIn(id, { value: 50 + i, note: i % 10 === 0 ? 'x{' : null })).status).toBe(201);
      }
      const history = (await get(id)).history as Doc[];
      expect(history).toHaveLength(100);
      expect(history.map((h) => h.value)).toEqual(Array.from({ length: 100 }, (_, i) => 50 + i));
      const row = (await storedRow(t, kr, id)) as Record<string, unknown>;
      expect(JSON.parse(row._doc as string).history).toEqual(history);
    });

    it("keeps history once per row, in the document; a row stored without one keeps its column's", async () => {
      t.clock.set(cycleAt(31));
      const k = (await post({ objective_id: await objective(), title: 'once', target: 10 })).body;
      t.clock.advance(1000);
      await checkIn(k.id as string, { value: 4, note: 'über — 🚀' });
      const row = (await storedRow(t, kr, k.id as string)) as Record<string, unknown>;
      expect(row.history).toBeNull();
      const answered = await get(k.id as string);
      expect(JSON.parse(row._doc as string).history).toEqual(answered.history);
      expect((answered.history as Doc[]).map((h) => h.value)).toEqual([0, 4]);
      expect((answered.history as Doc[])[1].note).toBe('über — 🚀');
      // A row as an older build stored it: history in its column, no document.
      await sql`UPDATE okr_key_results SET history = ${JSON.stringify(answered.history)}, _doc = NULL WHERE id = ${k.id}`.execute(
        t.store.db,
      );
      expect(((await get(k.id as string)).history as Doc[]).map((h) => h.value)).toEqual([0, 4]);
      // Listed too: a page with such a row is built from its columns, in the page's order.
      const listed = (await t.call('GET', `${kr.basePath}?limit=100&sort=created_at`, { token })).body;
      const rows = listed.data as Doc[];
      expect(rows.map((r) => r.id)).toContain(k.id);
      expect(rows.map((r) => r.created_at)).toEqual(rows.map((r) => r.created_at).sort());
      expect(((rows.find((r) => r.id === k.id) as Doc).history as Doc[]).map((h) => h.value)).toEqual([0, 4]);
      t.clock.advance(1000);
      const next = await checkIn(k.id as string, { value: 6 });
      expect((next.body.history as Doc[]).map((h) => h.value)).toEqual([0, 4, 6]);
      expect(((await get(k.id as string)).history as Doc[]).map((h) => h.value)).toEqual([0, 4, 6]);
    });

    it('stores and answers documents as ASCII JSON: every character past U+007F escaped, the same text to a reader', async () => {
      t.clock.set(cycleAt(33));
      const title = 'Grow — 成長 in Zürich 🎯';
      const note = 'über 🚀 \u2028 "quoted"';
      const created = await post({ objective_id: await objective(), title, target: 10, tags: ['ü', '成長'] });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      t.clock.advance(1000);
      // A check-in appends its snapshot to the stored history's text: that entry is escaped too.
      const checked = await checkIn(id, { value: 4, note });
      const listed = await t.call('GET', `${kr.basePath}?tag=${encodeURIComponent('成長')}`, { token });
      const read = await t.call('GET', `${kr.basePath}/${id}`, { token });
      const row = (await storedRow(t, kr, id)) as Record<string, unknown>;
      for (const text of [created.raw, checked.raw, listed.raw, read.raw, row._doc as string]) {
        expect(text).toMatch(/^[\x20-\x7e]*$/);
      }
      expect(read.raw).toContain('"title":"Grow \\u2014 \\u6210\\u9577 in Z\\u00fcrich \\ud83c\\udfaf"');
      expect(read.body).toMatchObject({ title, tags: ['ü', '成長'], current: 4 });
      expect((read.body.history as Doc[]).map((h) => h.note)).toEqual([null, note]);
      expect((listed.body.data as Doc[]).map((d) => d.id)).toEqual([id]);
      expect(JSON.parse(row._doc as string)).toEqual(read.body);
      // Searching by title still finds the characters themselves.
      const found = await t.call('GET', `${kr.basePath}?q=${encodeURIComponent('zürich')}`, { token });
      expect((found.body.data as Doc[]).map((d) => d.id)).toEqual([id]);
      // A document as an earlier build stored it, characters as they are: the next write (a
      // check-in, which carries the stored history over as text) stores all of it escaped.
      const utf8Doc = JSON.stringify(read.body);
      expect(utf8Doc).toContain('über 🚀');
      await sql`UPDATE okr_key_results SET _doc = ${utf8Doc} WHERE id = ${id}`.execute(t.store.db);
      t.clock.advance(1000);
      const again = await checkIn(id, { value: 5, note: '成長' });
      const rewritten = (await storedRow(t, kr, id)) as Record<string, unknown>;
      for (const text of [again.raw, rewritten._doc as string]) expect(text).toMatch(/^[\x20-\x7e]*$/);
      expect((again.body.history as Doc[]).map((h) => h.note)).toEqual([null, note, '成長']);
      expect(JSON.parse(rewritten._doc as string)).toEqual(again.body);
    });
  });

  describe('objective roll-ups', () => {
    it('counts a key result of weight 0 for the status, not for the progress', async () => {
      t.clock.set(cycleAt(40));
      const o = await objective();
      await post({ objective_id: o, title: 'met', target: 10, current: 10 });
      const unweighted = await post({
        objective_id: o,
        title: 'guard',
        metric_type: 'threshold',
        target: 99,
        current: 50,
        weight: 0,
      });
      expect(unweighted.body.status).toBe('off_track');
      const got = (await t.call('GET', `${objectives.basePath}/${o}`, { token })).body;
      expect([got.progress_pct, got.status]).toEqual([100, 'off_track']);
    });

    it('a cascade delete is one write of each row it deletes: version + 1, not + 1 per child rolled up into it', async () => {
      const cyc = (await t.create(cycles, token, { name: 'Q4', start_date: '2026-10-01', end_date: '2026-12-31' }))
        .id as string;
      const read = async (path: string) => (await t.call('GET', path, { token })).body;
      // An objective's own cascade.
      const o = await objective();
      for (let i = 0; i < 3; i++) await post({ objective_id: o, title: `k${i}`, target: 10, current: i });
      const before = await read(`${objectives.basePath}/${o}`);
      expect(before.version).toBe(4); // its create, and a roll-up per key result
      const gone = await t.call('DELETE', `${objectives.basePath}/${o}?cascade=true`, {
        token,
        headers: { 'if-match': '"4"' },
      });
      expect([gone.status, gone.headers.etag, gone.body.version, gone.body.is_deleted]).toEqual([200, '"5"', 5, true]);
      expect((await read(`${objectives.basePath}/${o}`)).version).toBe(5);
      // A cycle's: the objective it deletes takes + 1 too.
      const held = await objective({ cycle_id: cyc });
      for (let i = 0; i < 2; i++) await post({ objective_id: held, title: `h${i}`, target: 10 });
      expect((await read(`${objectives.basePath}/${held}`)).version).toBe(3);
      const cycle = await t.call('DELETE', `${cycles.basePath}/${cyc}?cascade=true`, { token });
      expect([cycle.status, cycle.body.version]).toEqual([200, 2]);
      const after = await read(`${objectives.basePath}/${held}`);
      expect([after.is_deleted, after.version, after.key_result_count]).toEqual([true, 4, 0]);
    });

    it('a cascade writes each objective it deletes twice and reads its key results a chunk at a time, however many there are', async () => {
      const seen: string[] = [];
      const own = await testApp(kind, {}, { onQuery: (text) => void seen.push(text) });
      try {
        const ownToken = await own.token();
        const count = (from: number, pattern: RegExp) => seen.slice(from).filter((s) => pattern.test(s)).length;
        const readsOfKeyResults = /^select .* from "okr_key_results"/is;
        const objectiveWrites = /^update "okr_objectives"/i;
        const objectiveWith = async (n: number, body: Doc = {}) => {
          const id = (await own.create(objectives, ownToken, { title: `with ${n}`, ...body })).id as string;
          for (let i = 0; i < n; i++) {
            await own.create(kr, ownToken, { objective_id: id, title: `k${i}`, target: 10, current: i % 11 });
          }
          return id;
        };
        const cascade = async (path: string) => {
          const from = seen.length;
          const res = await own.call('DELETE', `${path}?cascade=true`, { token: ownToken });
          expect(res.status).toBe(200);
          return { reads: count(from, readsOfKeyResults), objectiveWrites: count(from, objectiveWrites) };
        };
        const few = await cascade(`${objectives.basePath}/${await objectiveWith(3)}`);
        const many = await cascade(`${objectives.basePath}/${await objectiveWith(40)}`);
        // Its key results' roll-ups once (held back until then), then its delete.
        expect([few.objectiveWrites, many.objectiveWrites]).toEqual([2, 2]);
        expect(many.reads).toBe(few.reads);
        // A cycle's: each objective twice, the key results of all of them read alike.
        const cycle = (
          await own.create(cycles, ownToken, { name: 'C', start_date: '2027-01-01', end_date: '2027-03-31' })
        ).id as string;
        const a = await objectiveWith(4, { cycle_id: cycle });
        const b = await objectiveWith(25, { cycle_id: cycle });
        const both = await cascade(`${cycles.basePath}/${cycle}`);
        expect(both.objectiveWrites).toBe(4);
        expect(both.reads).toBe(few.reads);
        // And what they hold is what one write per key result left: none counted, at + 1.
        for (const id of [a, b]) {
          const o = (await own.call('GET', `${objectives.basePath}/${id}`, { token: ownToken })).body;
          expect([o.is_deleted, o.key_result_count, o.progress_pct, o.status, o.rollup_status_counts]).toEqual([
            true,
            0,
            0,
            'not_started',
            undefined,
          ]);
        }
      } finally {
        await own.close();
      }
    });

    it('equal a fresh recomputation after every kind of key-result write', async () => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      const b = await objective();
      const k1 = (await post({ objective_id: a, title: 'one', target: 3, current: 1 })).body;
      await expectRollupExact(a);
      const k2 = (await post({ objective_id: a, title: 'two', target: 100, weight: 2 })).body;
      await expectRollupExact(a);
      const k3 = (await post({ objective_id: a, title: 'three', metric_type: 'milestone', current: 1, weight: 0.5 }))
        .body;
      expect((await expectRollupExact(a)).key_result_count).toBe(3);
      await patch(k2.id as string, { current: 66.66 });
      await expectRollupExact(a);
      await checkIn(k1.id as string, { value: 2 });
      await expectRollupExact(a);
      await patch(k2.id as string, { weight: 0 });
      await expectRollupExact(a);
      await patch(k3.id as string, { weight: 3 });
      await expectRollupExact(a);
      await t.call('DELETE', `${kr.basePath}/${k1.id}`, { token });
      expect((await expectRollupExact(a)).key_result_count).toBe(2);
      await t.call('POST', `${kr.basePath}/${k1.id}/restore`, { token });
      await expectRollupExact(a);
      await patch(k3.id as string, { objective_id: b });
      await expectRollupExact(a);
      expect((await expectRollupExact(b)).key_result_count).toBe(1);
      t.clock.set(cycleAt(95));
      await t.app.engine.runJob(statusSweepJob);
      await expectRollupExact(a);
      await expectRollupExact(b);
    });

    it('reads 0 once only weight-0 key results are left, whatever rounding the running sums kept', async () => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      await post({ objective_id: a, title: 'unweighted', target: 100, current: 50, weight: 0 });
      const k1 = (await post({ objective_id: a, title: 'w0.1', target: 100, current: 33.33, weight: 0.1 })).body;
      const k2 = (await post({ objective_id: a, title: 'w0.2', target: 100, current: 99.99, weight: 0.2 })).body;
      await t.call('DELETE', `${kr.basePath}/${k1.id}`, { token });
      await t.call('DELETE', `${kr.basePath}/${k2.id}`, { token });
      // 0.1 + 0.2 − 0.1 − 0.2 leaves 2.8e-17 of weight: the running sums alone read 100%.
      expect(await expectRollupExact(a)).toMatchObject({ progress_pct: 0, key_result_count: 1 });
      const k3 = (await post({ objective_id: a, title: 'w0.3', target: 100, current: 40, weight: 0.3 })).body;
      expect((await expectRollupExact(a)).progress_pct).toBe(40);
      await patch(k3.id as string, { weight: 0 });
      expect((await expectRollupExact(a)).progress_pct).toBe(0);
    });

    it('reads 100 only when every weighted key result is at 100, however far apart their weights', async () => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      const heavy = (await post({ objective_id: a, title: 'heavy', target: 100, current: 100, weight: 1000 })).body;
      const light = (await post({ objective_id: a, title: 'light', target: 100, current: 99.99, weight: 0.000001 }))
        .body;
      // The average is 99.99999999999 (to 12 digits, 100): one key result is still short.
      expect((await expectRollupExact(a)).progress_pct).toBe(99.99);
      await checkIn(light.id as string, { value: 100 });
      expect((await expectRollupExact(a)).progress_pct).toBe(100);
      await checkIn(light.id as string, { value: 99.99 });
      expect((await expectRollupExact(a)).progress_pct).toBe(99.99);
      // Unweighted, the short one no longer counts; the heavy one leaving leaves none weighted.
      await patch(light.id as string, { weight: 0 });
      expect((await expectRollupExact(a)).progress_pct).toBe(100);
      await patch(light.id as string, { weight: 0.000001 });
      expect((await expectRollupExact(a)).progress_pct).toBe(99.99);
      expect((await t.call('DELETE', `${kr.basePath}/${heavy.id}`, { token })).status).toBe(200);
      expect((await expectRollupExact(a)).progress_pct).toBe(99.99);
    });

    it('sums its key results again when a change cancels most of a running sum (a dominant key result leaves)', async () => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      const big = (await post({ objective_id: a, title: 'big', target: 3, current: 1, weight: 1e15 })).body;
      const k = (await post({ objective_id: a, title: 'a', target: 100, current: 50 })).body;
      await post({ objective_id: a, title: 'b', target: 100, current: 50 });
      await t.call('DELETE', `${kr.basePath}/${big.id}`, { token });
      // 1e15 × 33.33 taken out of the progress sum left ~48 for an average of 50.
      expect(await expectRollupExact(a)).toMatchObject({ progress_pct: 50, key_result_count: 2 });
      await checkIn(k.id as string, { value: 60 });
      expect((await expectRollupExact(a)).progress_pct).toBe(55);
      // The same through a weight change and a move to another objective.
      const b = await objective();
      const heavy = (await post({ objective_id: b, title: 'heavy', target: 3, current: 1, weight: 1e15 })).body;
      await post({ objective_id: b, title: 'c', target: 100, current: 30 });
      await patch(heavy.id as string, { weight: 0 });
      expect((await expectRollupExact(b)).progress_pct).toBe(30);
      await patch(heavy.id as string, { weight: 1e15 });
      await patch(heavy.id as string, { objective_id: a });
      expect((await expectRollupExact(b)).progress_pct).toBe(30);
      // In steps, each well inside the factor: the error is of the largest weight the sums held.
      const c = await objective();
      const stepped = (await post({ objective_id: c, title: 'A', target: 100, current: 37.53, weight: 1e15 })).body;
      await post({ objective_id: c, title: 'B', target: 100, current: 50 });
      await post({ objective_id: c, title: 'C', target: 100, current: 50 });
      for (const weight of [1e12, 1e9, 1e6, 1e3, 1]) await patch(stepped.id as string, { weight });
      expect((await expectRollupExact(c)).progress_pct).toBe(45.84);
      // Weights summing past 1e15 (three of 1e15) are held, and leave no trace once gone.
      const d = await objective();
      const heavies: Doc[] = [];
      for (const n of [1, 2, 3])
        heavies.push((await post({ objective_id: d, title: `w${n}`, target: 3, current: 1, weight: 1e15 })).body);
      await post({ objective_id: d, title: 'small', target: 100, current: 70 });
      expect((await expectRollupExact(d)).progress_pct).toBe(33.33);
      for (const k of heavies) expect((await t.call('DELETE', `${kr.basePath}/${k.id}`, { token })).status).toBe(200);
      expect((await expectRollupExact(d)).progress_pct).toBe(70);
    });

    it.each([
      // As an older build could leave it: the sums off (a weight lowered in steps), and no peak.
      [
        'at the first write to a row an older build wrote (no peak recorded)',
        { rollup_progress_sum: 86, rollup_weight_peak: null },
        {},
      ],
      [
        'at the first write to a row written before the short count was kept',
        { rollup_progress_sum: 86, rollup_short_count: null },
        {},
      ],
      // As if many writes had left the sums off (99.5 for 90), at the version before a resync.
      [
        `every ${RESYNC_EVERY} versions, whatever drift the running sums gathered`,
        { rollup_progress_sum: 99.5, version: RESYNC_EVERY - 1 },
        { version: RESYNC_EVERY },
      ],
    ] as const)('sums its key results again %s', async (_, stored, expected) => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      const k = (await post({ objective_id: a, title: 'k', target: 100, current: 40 })).body;
      await post({ objective_id: a, title: 'l', target: 100, current: 50 });
      await t.store.db.updateTable(objectives.table).set(stored).where('id', '=', a).execute();
      await checkIn(k.id as string, { value: 42 });
      expect(await expectRollupExact(a)).toMatchObject({ progress_pct: 46, ...expected });
    });

    it('sums its key results again after a write by a server that keeps no short count (a rolling upgrade)', async () => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      const k = (await post({ objective_id: a, title: 'k', target: 100, current: 50 })).body;
      await checkIn(k.id as string, { value: 100 });
      // As an older server leaves it, checking k in at 100 after this build put it at 50: the
      // sums and the version moved on, the short count (1) and its stamp did not.
      const { version } = (await t.call('GET', `${objectives.basePath}/${a}`, { token })).body as { version: number };
      await t.store.db
        .updateTable(objectives.table)
        .set({ rollup_short_count: 1, rollup_version: version - 1 })
        .where('id', '=', a)
        .execute();
      await post({ objective_id: a, title: 'l', target: 100, current: 100 });
      expect(await expectRollupExact(a)).toMatchObject({ progress_pct: 100, key_result_count: 2 });
      // A caller's write to the objective keeps the stamp: the next roll-up trusts its count.
      await t.call('PATCH', `${objectives.basePath}/${a}`, { token, body: { title: 'Renamed' } });
      const row = await t.store.db
        .selectFrom(objectives.table)
        .select(['version', 'rollup_version', 'rollup_short_count'])
        .where('id', '=', a)
        .executeTakeFirstOrThrow();
      expect([Number(row.rollup_version), Number(row.rollup_short_count)]).toEqual([Number(row.version), 0]);
    });

    it('is a system write on the objective: version advances, updated_by stays', async () => {
      t.clock.set(cycleAt(40));
      const a = await objective();
      const o1 = (await t.call('GET', `${objectives.basePath}/${a}`, { token })).body;
      const other = await t.token({ sub: USER_B });
      await t.call('POST', kr.basePath, {
        token: other,
        body: { objective_id: a, title: 'k', target: 10, current: 5 },
      });
      const o2 = (await t.call('GET', `${objectives.basePath}/${a}`, { token })).body;
      expect(o2).toMatchObject({ version: (o1.version as number) + 1, updated_by: o1.updated_by, progress_pct: 50 });
    });

    it('starts empty: 0, not_started, 0', async () => {
      const o = (await t.call('GET', `${objectives.basePath}/${await objective()}`, { token })).body;
      expect(o).toMatchObject({ progress_pct: 0, status: 'not_started', key_result_count: 0 });
    });

    it('refuses an alignment cycle', async () => {
      const a = await objective();
      const b = await objective({ parent_objective_id: a });
      const c = await objective({ parent_objective_id: b });
      const res = await t.call('PATCH', `${objectives.basePath}/${a}`, { token, body: { parent_objective_id: c } });
      expect([res.status, res.body.code]).toEqual([422, 'invalid_reference']);
      const self = await t.call('PATCH', `${objectives.basePath}/${a}`, { token, body: { parent_objective_id: a } });
      expect(self.status).toBe(422);
    });

    describe('alignment holds the objective aligned to (a restrict reference)', () => {
      const del = (id: string, query = '') => t.call('DELETE', `${objectives.basePath}/${id}${query}`, { token });
      const restore = (id: string) => t.call('POST', `${objectives.basePath}/${id}/restore`, { token });
      const read = async (id: string) => (await t.call('GET', `${objectives.basePath}/${id}`, { token })).body;

      it.each(['', '?cascade=true'])(
        'refuses to delete an objective live ones align to (%s), 409 has_dependents naming them; then deletes it once they leave',
        async (query) => {
          const parent = await objective();
          const child = await objective({ parent_objective_id: parent });
          // With cascade, its own key results would go with it, and do not.
          if (query) await post({ objective_id: parent, title: 'its own key result', target: 10 });
          const before = await read(parent);
          const res = await del(parent, query);
          expect([res.status, res.body.code, res.body.dependents]).toEqual([409, 'has_dependents', { objectives: 1 }]);
          expect(res.body.detail).toMatch(/is referred to by live Objective \(1\)/);
          // Nothing changed: neither the objective nor (with cascade) its key results.
          expect(await read(parent)).toEqual(before);
          const krs = await t.call('GET', `${kr.basePath}?objective_id=${parent}`, { token });
          expect(krs.body.data).toHaveLength(query ? 1 : 0);
          // Aligned elsewhere (here: nowhere), the child no longer holds it.
          expect(
            (await t.call('PATCH', `${objectives.basePath}/${child}`, { token, body: { parent_objective_id: null } }))
              .status,
          ).toBe(200);
          expect((await del(parent, '?cascade=true')).status).toBe(200);
        },
      );

      it('names the same held objective on every store when a cascade is refused: the first by id, however the rows were last written', async () => {
        const cyc = (await t.create(cycles, token, { name: 'Q4', start_date: '2026-10-01', end_date: '2026-12-31' }))
          .id as string;
        const a = await objective({ cycle_id: cyc });
        const b = await objective({ cycle_id: cyc });
        await objective({ parent_objective_id: a });
        await objective({ parent_objective_id: b });
        // An update moves a row to the end of PostgreSQL's heap (and of an unordered scan).
        const first = [a, b].sort()[0] as string;
        expect(
          (await t.call('PATCH', `${objectives.basePath}/${first}`, { token, body: { title: 'renamed' } })).status,
        ).toBe(200);
        const res = await t.call('DELETE', `${cycles.basePath}/${cyc}?cascade=true`, { token });
        expect([res.status, res.body.code, res.body.dependents]).toEqual([409, 'has_dependents', { objectives: 1 }]);
        expect(res.body.detail).toMatch(new RegExp(`^Objective ${first} is referred to by live Objective \\(1\\)`));
        expect((await read(a)).is_deleted).toBe(false);
      });

      it('deletes an objective whose aligned objectives are deleted, and restores none aligned to a deleted one', async () => {
        const parent = await objective();
        const child = await objective({ parent_objective_id: parent });
        expect((await del(child)).status).toBe(200);
        expect((await del(parent)).status).toBe(200);
        const res = await restore(child);
        expect([res.status, res.body.code]).toEqual([409, 'parent_deleted']);
        expect((await read(child)).is_deleted).toBe(true);
        expect((await restore(parent)).status).toBe(200);
        expect((await restore(child)).status).toBe(200);
      });

      it("deletes a cycle's objectives aligned among themselves by cascade, in any order they were made", async () => {
        const cycle = (await t.create(cycles, token, { ...CYCLE, name: 'aligned among themselves' })).id as string;
        // Made top-down, and a deeper one made before the one it aligns to is aligned to it later.
        const top = await objective({ cycle_id: cycle });
        const late = await objective({ cycle_id: cycle });
        const middle = await objective({ cycle_id: cycle, parent_objective_id: top });
        await t.call('PATCH', `${objectives.basePath}/${late}`, { token, body: { parent_objective_id: middle } });
        const leaf = await objective({ cycle_id: cycle, parent_objective_id: late });
        await post({ objective_id: middle, title: 'under the middle', target: 5 });
        const res = await t.call('DELETE', `${cycles.basePath}/${cycle}?cascade=true`, { token });
        expect(res.status).toBe(200);
        for (const id of [top, late, middle, leaf]) expect((await read(id)).is_deleted).toBe(true);
      });

      it("refuses a cycle's cascade while an objective of another cycle aligns to one of its objectives, deleting nothing", async () => {
        const cycle = (await t.create(cycles, token, { ...CYCLE, name: 'held from outside' })).id as string;
        const inside = await objective({ cycle_id: cycle });
        const sibling = await objective({ cycle_id: cycle, parent_objective_id: inside });
        const outside = await objective({ parent_objective_id: inside });
        const res = await t.call('DELETE', `${cycles.basePath}/${cycle}?cascade=true`, { token });
        expect([res.status, res.body.code, res.body.dependents]).toEqual([409, 'has_dependents', { objectives: 1 }]);
        for (const id of [inside, sibling, outside]) expect((await read(id)).is_deleted).toBe(false);
        expect((await t.call('GET', `${cycles.basePath}/${cycle}`, { token })).body.is_deleted).toBe(false);
      });
    });
  });

  it('commits a check-in, its snapshot and the roll-up together, or none of them', async () => {
    t.clock.set(cycleAt(40));
    const o = await objective();
    const k = (await post({ objective_id: o, title: 'atomic', target: 10 })).body;
    const krBefore = await storedRow(t, kr, k.id as string);
    const objBefore = await storedRow(t, objectives, o);
    const snapshotsBefore = await t.store.db.selectFrom('okr_key_result_snapshots').select('id').execute();
    // Make the roll-up's write to the objective fail, half-way through the check-in.
    const res = await whileFailing(t, 'okr_objectives', 'UPDATE', () =>
      checkIn(k.id as string, { value: 7, note: 'doomed' }),
    );
    expect(res.status).toBe(500);
    expect(res.body.code).toBe('internal_error');
    expect(res.raw).not.toContain('forced failure');
    expect(await storedRow(t, kr, k.id as string)).toEqual(krBefore);
    expect(await storedRow(t, objectives, o)).toEqual(objBefore);
    expect(await t.store.db.selectFrom('okr_key_result_snapshots').select('id').execute()).toEqual(snapshotsBefore);
    expect((await checkIn(k.id as string, { value: 7 })).status).toBe(201);
  });
});

describe.each(storeKinds)('a job beside requests on %s', (kind) => {
  it('lets the event loop turn before each of its transactions, so requests are read while it runs', async () => {
    const t = await testApp(kind);
    try {
      const token = await t.token();
      const cycle = (await t.create(cycles, token, CYCLE)).id as string;
      const objective = (await t.create(objectives, token, { cycle_id: cycle })).id as string;
      const engine = t.app.engine;
      const principal = { sub: USER_B, tenantId: 'acme', appId: null, scopes: null };
      await engine.transaction(async (db) => {
        for (let i = 0; i < 30; i++)
          await engine.create(db, kr, principal, { objective_id: objective, title: `k${i}`, target: 10 });
      });
      // Its dates moved: every key result under it is due for the sweep now, one transaction each.
      expect(
        (await t.call('PATCH', `${cycles.basePath}/${cycle}`, { token, body: { end_date: '2027-05-10' } })).status,
      ).toBe(200);
      const queued = await sql<{ n: number }>`SELECT count(*) AS n FROM okr_status_sweep`.execute(t.store.db);
      expect(Number(queued.rows[0].n)).toBeGreaterThanOrEqual(30);
      let ticks = 0;
      let running = true;
      const tick = () => {
        ticks++;
        if (running) setImmediate(tick);
      };
      setImmediate(tick);
      await engine.runJob(statusSweepJob);
      running = false;
      // On SQLite a transaction's statements are synchronous: without a turn between them, a
      // sweep of 20,000 key results held requests up to ~120 ms at a time.
      expect(ticks).toBeGreaterThanOrEqual(30);
    } finally {
      await t.close();
    }
  });
});

describe.each(storeKinds)('the sweep queue written in bulk on %s', (kind) => {
  it("re-queues a moved cycle's key results with a few statements however many there are, each due now", async () => {
    const seen: string[] = [];
    const t = await testApp(kind, {}, { onQuery: (text) => void seen.push(text) });
    try {
      const token = await t.token();
      const engine = t.app.engine;
      const principal = { sub: USER_B, tenantId: 'acme', appId: null, scopes: null };
      const queue = async () =>
        new Map(
          (
            await t.store.db
              .selectFrom('okr_status_sweep')
              .select(['key_result_id', 'due_at'])
              .where('tenant_id', '=', 'acme')
              .execute()
          ).map((r) => [r.key_result_id as string, t.store.decode({ column: 'datetime' } as never, r.due_at)]),
        );
      const cycleWith = async (counts: number[]) => {
        const cycle = (await t.create(cycles, token, CYCLE)).id as string;
        const ids: string[] = [];
        for (const n of counts) {
          const objective = (await t.create(objectives, token, { cycle_id: cycle })).id as string;
          await engine.transaction(async (db) => {
            for (let i = 0; i < n; i++)
              ids.push(
                (await engine.create(db, kr, principal, { objective_id: objective, title: `k${i}`, target: 10 }))
                  .id as string,
              );
          });
        }
        return { cycle, ids };
      };
      const move = async (cycle: string, end_date: string) => {
        const from = seen.length;
        t.clock.advance(60_000);
        const res = await t.call('PATCH', `${cycles.basePath}/${cycle}`, { token, body: { end_date } });
        expect(res.status).toBe(200);
        return seen.slice(from).filter((s) => /^insert into "okr_status_sweep"/i.test(s)).length;
      };
      const few = await cycleWith([3]);
      const many = await cycleWith([120, 180]);
      const other = await cycleWith([5]);
      // One deleted: not queued again.
      const gone = many.ids[7] as string;
      expect((await t.call('DELETE', `${kr.basePath}/${gone}`, { token })).status).toBe(200);
      const before = await queue();
      // 3 rows: 2 + 1; 299: 256 + 32 + 8 + 2 + 1 (one statement each before: 3 and 299).
      expect(await move(few.cycle, '2027-05-10')).toBe(2);
      expect(await move(many.cycle, '2027-05-11')).toBe(5);
      const now = new Date(t.clock.now()).toISOString();
      const after = await queue();
      for (const id of many.ids.filter((id) => id !== gone)) expect(after.get(id), id).toBe(now);
      expect(after.has(gone)).toBe(false);
      for (const id of other.ids) expect(after.get(id)).toBe(before.get(id));
      expect(after.size).toBe(before.size);
    } finally {
      await t.close();
    }
  });

  it('upserts many rows of a table: a row named twice takes the last, rows already there are replaced', async () => {
    const t = await testApp(kind);
    try {
      const engine = t.app.engine;
      const principal = { sub: USER_B, tenantId: 'acme', appId: null, scopes: null };
      const at = (i: number) => `2027-01-01T00:00:${String(i % 60).padStart(2, '0')}.000Z`;
      const row = (i: number, due: string) => ({ tenant_id: 'acme', key_result_id: `kr_${1000 + i}`, due_at: due });
      await engine.transaction((db) =>
        engine.tx(db, principal, t.clock.now()).upsertMany(statusSweep, [row(1, at(1)), row(2, at(2))]),
      );
      const rows = Array.from({ length: 300 }, (_, i) => row(i, at(i)));
      await engine.transaction((db) =>
        engine.tx(db, principal, t.clock.now()).upsertMany(statusSweep, [...rows, row(5, at(59)), row(1, at(58))]),
      );
      const stored = await t.store.db.selectFrom('okr_status_sweep').select(['key_result_id', 'due_at']).execute();
      const due = new Map(
        stored.map((r) => [r.key_result_id as string, t.store.decode({ column: 'datetime' } as never, r.due_at)]),
      );
      expect(due.size).toBe(300);
      for (let i = 0; i < 300; i++) expect(due.get(`kr_${1000 + i}`)).toBe(i === 5 ? at(59) : i === 1 ? at(58) : at(i));
    } finally {
      await t.close();
    }
  });
});

// SQLite plans without statistics: an ORDER BY the primary key made it walk a whole tenant's rows
// along that key rather than use a filter's index (a cycle's dates moved on a tenant of 100,000
// key results held the writer for 25 s).
// An equality filter never matches an empty value (an empty one is refused), so its index holds
// only the rows with one: a key result with no owner and no connector writes two index entries
// fewer (on SQLite, a transaction of 12 such creates 105.6 → 99.1 WAL frames).
describe.each(storeKinds)("equality filters' indexes on %s", (kind) => {
  it('hold the rows with a value alone, and are made so again where an earlier build indexed every row', async () => {
    const OWNER = 'usr-00000000-0000-4000-8000-0000000000aa';
    const INDEX = 'okr_key_results_by_owner_id';
    const seen: { sql: string; parameters: readonly unknown[] }[] = [];
    const t = await testApp(kind, {}, { onQuery: (text, parameters) => void seen.push({ sql: text, parameters }) });
    try {
      const token = await t.token();
      const objective = (await t.create(objectives, token)).id as string;
      const owned: string[] = [];
      for (let i = 0; i < 5; i++) {
        const body = i % 2 === 0 ? { objective_id: objective, owner_id: OWNER } : { objective_id: objective };
        const id = (await t.create(kr, token, body)).id as string;
        if (i % 2 === 0) owned.unshift(id);
      }
      // Each index's condition, as the store prints it, in one spelling: `owner_id is not null`.
      const conditions = async () => {
        const { rows } =
          kind === 'postgres'
            ? await sql<{ name: string; condition: string | null }>`
                SELECT c.relname AS name, pg_get_expr(x.indpred, x.indrelid) AS condition
                FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema()`.execute(t.store.db)
            : await sql<{ name: string; condition: string | null }>`
                SELECT m.name AS name, CASE WHEN l.partial THEN substr(m.sql, instr(lower(m.sql), ' where ') + 7) END AS condition
                FROM sqlite_master m, pragma_index_list(m.tbl_name) l WHERE m.type = 'index' AND l.name = m.name`.execute(
                t.store.db,
              );
        return new Map(rows.map((r) => [r.name, r.condition?.replace(/["()]/g, '').toLowerCase() ?? null]));
      };
      // SQLite: the index's entries (its leaves' cells).
      const entries = async () =>
        Number(
          (
            await sql<{
              n: number;
            }>`SELECT sum(ncell) AS n FROM dbstat WHERE name = ${INDEX} AND pagetype = 'leaf'`.execute(t.store.db)
          ).rows[0].n,
        );
      const ownersList = async () => {
        const recorder = kind === 'sqlite' ? recordReads(t.store) : null;
        seen.length = 0;
        const res = await t.call('GET', `${kr.basePath}?owner_id=${OWNER}`, { token });
        recorder?.stop();
        expect(res.status, res.raw).toBe(200);
        expect((res.body.data as Doc[]).map((d) => d.id)).toEqual(owned);
        const reads = (recorder?.reads ?? seen).filter(
          (r) => /^select.* limit /i.test(r.sql) && r.sql.includes('"okr_key_results"'),
        );
        expect(reads).toHaveLength(1);
        // PostgreSQL, on these few rows: with its table scan ruled out, which index it can read.
        const plan = recorder
          ? recorder.plan(reads[0]).join('; ')
          : await t.store.db.transaction().execute(async (trx) => {
              await sql`SET LOCAL enable_seqscan = off`.execute(trx);
              const explained = CompiledQuery.raw(`EXPLAIN ${reads[0].sql}`, [...reads[0].parameters]);
              return JSON.stringify((await trx.executeQuery(explained)).rows);
            });
        expect(plan).toContain(INDEX);
      };

      const expected = resources.flatMap((r) =>
        r.filterable.flatMap((f) => {
          const index = filterIndex(r, f);
          return index?.byCreated ? [[index.name, `${f} is not null`] as const] : [];
        }),
      );
      expect(expected.length).toBeGreaterThanOrEqual(10);
      let found = await conditions();
      for (const [name, condition] of expected) expect(found.get(name), name).toBe(condition);
      // A sort's index and the primary key hold every row.
      expect(found.get('okr_key_results_sort_title')).toBeNull();
      expect(found.get('okr_key_results_by_objective_id')).toBe('objective_id is not null');
      if (kind === 'sqlite') expect(await entries()).toBe(3);
      await ownersList();
      // Ready: the schema's probe names each index a list may read (SQLite), with the condition
      // a read must meet to read one that holds some rows.
      const ready = async () => expect((await t.app.inject({ url: '/readyz' })).statusCode).toBe(200);
      await ready();

      // As an earlier build made it: every row. Made again by `edm migrate`, once.
      await sql`DROP INDEX ${sql.id(INDEX)}`.execute(t.store.db);
      await sql`CREATE INDEX ${sql.id(INDEX)} ON okr_key_results (tenant_id, owner_id, created_at, id)`.execute(
        t.store.db,
      );
      expect((await conditions()).get(INDEX)).toBeNull();
      if (kind === 'sqlite') expect(await entries()).toBe(5);
      await ready();
      seen.length = 0;
      await migrate(t.store, resources);
      expect(seen.filter((r) => /^drop index/i.test(r.sql)).map((r) => r.sql)).toEqual([`drop index "${INDEX}"`]);
      found = await conditions();
      expect(found.get(INDEX)).toBe('owner_id is not null');
      if (kind === 'sqlite') expect(await entries()).toBe(3);
      await ownersList();
      await ready();
      seen.length = 0;
      await migrate(t.store, resources);
      expect(seen.filter((r) => /^(drop|create) index/i.test(r.sql))).toEqual([]);
    } finally {
      await t.close();
    }
  });
});

describe.each(storeKinds)('the check-in log on %s', (kind) => {
  const TABLE = 'okr_key_result_snapshots';
  const KEY = ['tenant_id', 'key_result_id', 'at', 'id'];
  it('is one b-tree (SQLite) or one index (PostgreSQL) under the key its pages read, and an earlier build’s is keyed so at migrate', async () => {
    const seen: string[] = [];
    const t = await testApp(kind, {}, { onQuery: (text) => void seen.push(text) });
    try {
      const db = t.store.db;
      const token = await t.token();
      const objective = (await t.create(objectives, token)).id as string;
      const ids: string[] = [];
      for (let k = 0; k < 2; k++) {
        const id = (await t.create(kr, token, { objective_id: objective, target: 100 })).id as string;
        ids.push(id);
        for (let i = 1; i <= 3; i++) {
          const res = await t.call('POST', `${kr.basePath}/${id}/check-ins`, {
            token,
            body: { value: 10 * i + k, note: `n${i}` },
          });
          expect(res.status, res.raw).toBe(201);
        }
      }
      // What the store holds of the table: its key, whether it is that key's b-tree, its indexes.
      const shape = async () => {
        if (kind === 'postgres') {
          const { rows } = await sql<{ name: string; columns: string[]; primary: boolean }>`
            SELECT c.relname AS name, x.indisprimary AS primary,
              array(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, i)
                JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.i) AS columns
            FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class r ON r.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = r.relnamespace
            WHERE n.nspname = current_schema() AND r.relname = ${TABLE} ORDER BY c.relname`.execute(db);
          return {
            key: rows.find((r) => r.primary)?.columns,
            trees: rows
              .filter((r) => !r.name.startsWith('ops_'))
              .map((r) => (r.primary ? 'key' : r.columns.join()))
              .sort(),
          };
        }
        const key = await sql<{
          name: string;
        }>`SELECT name FROM pragma_table_info(${TABLE}) WHERE pk > 0 ORDER BY pk`.execute(db);
        const list = await sql<{ wr: number }>`SELECT wr FROM pragma_table_list(${TABLE})`.execute(db);
        // Every b-tree of the table: the table's own, and each index's (its key's too).
        const trees = await sql<{ name: string; columns: string }>`
          SELECT m.name AS name, (SELECT group_concat(name) FROM pragma_index_info(m.name)) AS columns
          FROM sqlite_master m WHERE m.tbl_name = ${TABLE} ORDER BY m.type DESC, m.name`.execute(db);
        return {
          key: key.rows.map((r) => r.name),
          withoutRowid: list.rows[0]?.wr === 1,
          trees: trees.rows
            .filter((r) => !r.name.startsWith('ops_'))
            .map((r) => (r.name === TABLE ? 'table' : r.columns))
            .sort(),
        };
      };
      const rows = async () =>
        (await db.selectFrom(TABLE).selectAll().orderBy('key_result_id').orderBy('at').orderBy('id').execute()).map(
          (r) => ({ ...r }),
        );
      const pages = async () =>
        Promise.all(
          ids.map(async (id) => {
            const res = await t.call('GET', `${kr.basePath}/${id}/check-ins?limit=2`, { token });
            expect(res.status, res.raw).toBe(200);
            const next = await t.call('GET', `${kr.basePath}/${id}/check-ins?limit=2&cursor=${res.body.next_cursor}`, {
              token,
            });
            return [...(res.body.data as Doc[]), ...(next.body.data as Doc[])].map((s) => [s.value, s.note]);
          }),
        );
      const want =
        kind === 'postgres' ? { key: KEY, trees: ['key'] } : { key: KEY, withoutRowid: true, trees: ['table'] };
      expect(await shape()).toEqual(want);
      const stored = await rows();
      // Each key result's creation, then its three check-ins.
      expect(stored).toHaveLength(8);
      const listed = await pages();
      expect(listed[1]).toHaveLength(4);
      expect(listed[1].slice(0, 3)).toEqual([
        [31, 'n3'],
        [21, 'n2'],
        [11, 'n1'],
      ]);

      // As builds before 2026-12-03 made it: keyed by (tenant_id, id), with an index on this key.
      await sql.raw(`ALTER TABLE ${TABLE} RENAME TO ${TABLE}_now`).execute(db);
      const columns = Object.keys(stored[0]);
      if (kind === 'postgres') {
        await sql.raw(`ALTER TABLE ${TABLE}_now RENAME CONSTRAINT ${TABLE}_pkey TO ${TABLE}_now_pkey`).execute(db);
        await sql
          .raw(
            `CREATE TABLE ${TABLE} (LIKE ${TABLE}_now INCLUDING DEFAULTS, CONSTRAINT ${TABLE}_pkey PRIMARY KEY (tenant_id, id))`,
          )
          .execute(db);
      } else {
        const defs = (
          await sql<{
            name: string;
            type: string;
            notnull: number;
          }>`SELECT name, type, "notnull" FROM pragma_table_info(${`${TABLE}_now`})`.execute(db)
        ).rows.map((c) => `${c.name} ${c.type}${c.notnull ? ' NOT NULL' : ''}`);
        await sql
          .raw(`CREATE TABLE ${TABLE} (${defs.join(', ')}, CONSTRAINT ${TABLE}_pkey PRIMARY KEY (tenant_id, id))`)
          .execute(db);
      }
      await sql.raw(`INSERT INTO ${TABLE} (${columns}) SELECT ${columns} FROM ${TABLE}_now`).execute(db);
      await sql.raw(`DROP TABLE ${TABLE}_now`).execute(db);
      await sql.raw(`CREATE INDEX ${TABLE}_${KEY.join('_')} ON ${TABLE} (${KEY})`).execute(db);
      const earlier =
        kind === 'postgres'
          ? { key: ['tenant_id', 'id'], trees: ['key', KEY.join()] }
          : { key: ['tenant_id', 'id'], withoutRowid: false, trees: ['table', 'tenant_id,id', KEY.join()] };
      expect(await shape()).toEqual(earlier);
      expect(await rows()).toEqual(stored);
      // What an operator added (named ops_…): a column with values, indexes of their own (one on
      // the new key's columns, newest first), a view reading the log and a trigger on it.
      await sql.raw(`ALTER TABLE ${TABLE} ADD COLUMN ext_ref TEXT`).execute(db);
      await sql.raw(`UPDATE ${TABLE} SET ext_ref = 'ref-' || id WHERE note IS NOT NULL`).execute(db);
      await sql.raw(`CREATE INDEX ops_by_recorded ON ${TABLE} (recorded_at)`).execute(db);
      await sql.raw(`CREATE INDEX ops_newest ON ${TABLE} (tenant_id, key_result_id, at DESC, id DESC)`).execute(db);
      await sql.raw(`CREATE VIEW ops_log AS SELECT key_result_id, value FROM ${TABLE}`).execute(db);
      await sql.raw('CREATE TABLE ops_audit (id TEXT)').execute(db);
      if (kind === 'postgres') {
        await sql
          .raw(`CREATE FUNCTION ops_audit_row() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN INSERT INTO ops_audit VALUES (NEW.id); RETURN NEW; END'`)
          .execute(db);
        await sql
          .raw(`CREATE TRIGGER ops_audit_insert AFTER INSERT ON ${TABLE} FOR EACH ROW EXECUTE FUNCTION ops_audit_row()`)
          .execute(db);
      } else {
        // The table named in other letters' case: SQLite keeps the trigger's table name as written.
        await sql
          .raw(
            `CREATE TRIGGER ops_audit_insert AFTER INSERT ON ${TABLE.toUpperCase()} BEGIN INSERT INTO ops_audit VALUES (new.id); END`,
          )
          .execute(db);
      }
      let kept = await rows();
      expect(kept.filter((r) => r.ext_ref !== null)).toHaveLength(6);
      const operators = async () => {
        const { rows: found } =
          kind === 'postgres'
            ? await sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes
                WHERE schemaname = current_schema() AND indexname LIKE 'ops%' ORDER BY 1`.execute(db)
            : await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE name LIKE 'ops%' ORDER BY 1`.execute(db);
        const view = await sql<{ n: number | string }>`SELECT count(*) AS n FROM ops_log`.execute(db);
        return { names: found.map((r) => r.name), view: Number(view.rows[0].n) };
      };
      const operatorsBefore = await operators();
      // SQLite names every object (the trigger's table, the trigger, the view); PostgreSQL the indexes.
      expect(operatorsBefore).toEqual({
        names:
          kind === 'sqlite'
            ? ['ops_audit', 'ops_audit_insert', 'ops_by_recorded', 'ops_log', 'ops_newest']
            : ['ops_by_recorded', 'ops_newest'],
        view: 8,
      });
      if (kind === 'sqlite') {
        // SQLite makes the table again, and an added column's definition (a default, a check, a
        // generated value) cannot be read back whole: refused, naming it, with nothing changed.
        await expect(migrate(t.store, resources)).rejects.toThrow(/does not declare \(ext_ref\)/);
        expect(await shape()).toEqual(earlier);
        expect(await rows()).toEqual(kept);
        expect(await operators()).toEqual(operatorsBefore);
        await sql.raw(`ALTER TABLE ${TABLE} DROP COLUMN ext_ref`).execute(db);
        kept = await rows();
        expect(kept).toEqual(stored);
      }
      // SQLite: what an operator's ANALYZE measured of that table's b-trees.
      const stats = async () =>
        (
          await sql<{ idx: string }>`SELECT idx FROM sqlite_stat1 WHERE tbl = ${TABLE} ORDER BY idx`.execute(db)
        ).rows.map((r) => r.idx);
      if (kind === 'sqlite') {
        await sql`ANALYZE`.execute(db);
        expect(await stats()).toEqual([
          `${TABLE}_${KEY.join('_')}`,
          'ops_by_recorded',
          'ops_newest',
          `sqlite_autoindex_${TABLE}_1`,
        ]);
      }

      seen.length = 0;
      await migrate(t.store, resources);
      expect(await shape()).toEqual(want);
      expect(await rows()).toEqual(kept);
      if (kind === 'sqlite') expect(await stats()).toEqual([]);
      expect(await pages()).toEqual(listed);
      // The operator's objects are all there, and read the new table.
      expect(await operators()).toEqual(operatorsBefore);
      // Read and written as before: a check-in after it (the operator's trigger sees it too),
      // and the server still ready.
      const res = await t.call('POST', `${kr.basePath}/${ids[0]}/check-ins`, { token, body: { value: 99 } });
      expect(res.status, res.raw).toBe(201);
      expect((await rows()).length).toBe(9);
      expect((await sql<{ id: string }>`SELECT id FROM ops_audit`.execute(db)).rows).toHaveLength(1);
      expect((await t.app.inject({ url: '/readyz' })).statusCode).toBe(200);
      // Once: a second migrate finds the key in place.
      const schemaChanges = () =>
        seen.filter((q) => /^(alter table|create (unique )?(table|index)|drop|insert)/i.test(q));
      expect(seen.some((q) => /^alter table/i.test(q))).toBe(true);
      seen.length = 0;
      await migrate(t.store, resources);
      expect(schemaChanges()).toEqual([]);
      // The old index, as an earlier build's migration (a server of it starting) makes it again
      // beside the new key: the key's twin, dropped at the next migrate.
      await sql.raw(`CREATE INDEX ${TABLE}_${KEY.join('_')} ON ${TABLE} (${KEY})`).execute(db);
      expect((await shape()).trees).toHaveLength(2);
      seen.length = 0;
      await migrate(t.store, resources);
      expect(schemaChanges()).toEqual([`drop index "${TABLE}_${KEY.join('_')}"`]);
      expect(await shape()).toEqual(want);
      // An index of that name on other columns is an operator's own: it stays.
      await sql.raw(`CREATE INDEX ${TABLE}_${KEY.join('_')} ON ${TABLE} (note, recorded_at)`).execute(db);
      seen.length = 0;
      await migrate(t.store, resources);
      expect(schemaChanges()).toEqual([]);
    } finally {
      await t.close();
    }
  });
});

describe('reads by a filter on SQLite', () => {
  it("finds an objective's live key results by its filter index, not by a walk of the tenant's rows", async () => {
    const seen: { sql: string; parameters: readonly unknown[] }[] = [];
    const t = await testApp('sqlite', {}, { onQuery: (text, parameters) => void seen.push({ sql: text, parameters }) });
    try {
      const token = await t.token();
      const cycle = async (name: string, start_date: string, end_date: string) =>
        (await t.call('POST', cycles.basePath, { token, body: { name, start_date, end_date } })).body.id as string;
      const first = await cycle('Q4', '2026-10-01', '2026-12-31');
      const o = (await t.call('POST', objectives.basePath, { token, body: { title: 'o', cycle_id: first } })).body.id;
      for (let i = 0; i < 3; i++)
        await t.call('POST', kr.basePath, { token, body: { objective_id: o, title: `k${i}`, target: 10 } });
      const other = await cycle('Q1', '2027-01-01', '2027-03-31');
      seen.length = 0;
      // A move to another cycle re-queues its key results for the sweep (requeueObjectives).
      const moved = await t.call('PATCH', `${objectives.basePath}/${o}`, { token, body: { cycle_id: other } });
      expect(moved.status).toBe(200);
      const byObjective = seen.filter(
        (r) =>
          /from "okr_key_results"/.test(r.sql) && /"objective_id" (= \?|in \()/.test(r.sql) && !/limit/i.test(r.sql),
      );
      expect(byObjective.length).toBeGreaterThan(0);
      for (const read of byObjective) {
        const explained = CompiledQuery.raw(`EXPLAIN QUERY PLAN ${read.sql}`, [...read.parameters]);
        const plan = (await t.store.db.executeQuery(explained)).rows.map((row) =>
          String((row as { detail: unknown }).detail),
        );
        expect(plan.join('; '), read.sql).toMatch(/USING INDEX okr_key_results_by_objective_id/);
      }
    } finally {
      await t.close();
    }
  });

  // The plans come from the statistics migrate writes (PLANNER_MODEL) and, for a filter on a
  // value of an enum or a range, from a bounded count of its rows (narrowIndex), not from the
  // size of the store, so a small store shows what a large one does with filters that match few
  // rows. Before them, each of these lists but the last two walked the tenant's rows in its
  // sort's index until it had a page: ~50–250 ms on a tenant of 100,000 key results for an
  // objective's, an owner's, a status nobody has, or `progress_pct[gte]=99` by title.
  describe('lists filtered by an id or a value', () => {
    const OWNER = 'usr-00000000-0000-4000-8000-0000000000aa';
    let t: TestApp;
    let ids: Record<string, string>;
    beforeAll(async () => {
      t = await testApp('sqlite');
      const token = await t.token();
      const cycle = (await t.create(cycles, token)).id as string;
      const objective = (await t.create(objectives, token, { cycle_id: cycle })).id as string;
      const child = (await t.create(objectives, token, { cycle_id: cycle, parent_objective_id: objective })).id;
      const k = await t.create(kr, token, { objective_id: objective, owner_id: OWNER });
      ids = { cycle, objective, child: child as string, kr: k.id as string };
    });
    afterAll(() => t.close());

    /**
     * The plan of the list read a GET ran (its one read of `table` under a limit), and how many
     * counts of a filter's rows (narrowIndex) it made first.
     */
    async function planOf(table: string, url: string, token?: string): Promise<{ plan: string; probes: number }> {
      const recorder = recordReads(t.store);
      try {
        const res = await t.call('GET', url, token ? { token } : {});
        expect(res.status, res.raw).toBe(200);
      } finally {
        recorder.stop();
      }
      const reads = recorder.reads.filter((r) => r.sql.includes(`from "${table}"`) && /limit/i.test(r.sql));
      const probes = reads.filter((r) => r.sql.includes('count(*)'));
      const pages = reads.filter((r) => !probes.includes(r));
      expect(pages.length, url).toBe(1);
      return { plan: recorder.plan(pages[0]).join('; '), probes: probes.length };
    }
    const pathOf = (table: string) =>
      table === KR ? kr.basePath : table === OBJ ? objectives.basePath : cycles.basePath;

    const KR = 'okr_key_results';
    const OBJ = 'okr_objectives';
    // [list, table, the index it reads, whether the page is sorted after it (a temporary b-tree), counts made first]
    const cases: [string, string, string, (ids: Record<string, string>) => string, boolean, number][] = [
      ["an objective's key results", KR, 'by_objective_id', (i) => `objective_id=${i.objective}`, false, 0],
      ['… oldest first', KR, 'by_objective_id', (i) => `objective_id=${i.objective}&sort=created_at`, false, 0],
      ['… by title', KR, 'by_objective_id', (i) => `objective_id=${i.objective}&sort=title`, true, 0],
      [
        '… by progress, with a status',
        KR,
        'by_objective_id',
        (i) => `objective_id=${i.objective}&status=on_track,at_risk&sort=-progress_pct`,
        true,
        0,
      ],
      ["an owner's key results", KR, 'by_owner_id', () => `owner_id=${OWNER}`, false, 0],
      [
        "two owners' key results, by last update",
        KR,
        'by_owner_id',
        () => `owner_id=${OWNER},usr-00000000-0000-4000-8000-0000000000bb&sort=-updated_at`,
        true,
        0,
      ],
      [
        "a connector's key results",
        KR,
        'by_connector_id',
        () => 'connector_id=con_01M8V86CS6MJY1R2MNB2B7C7EM',
        false,
        0,
      ],
      ["a cycle's objectives", OBJ, 'by_cycle_id', (i) => `cycle_id=${i.cycle}`, false, 0],
      [
        "an objective's children, by title",
        OBJ,
        'by_parent_objective_id',
        (i) => `parent_objective_id=${i.objective}&sort=title`,
        true,
        0,
      ],
      // Values of an enum, and ranges, matching few rows (all do, in this store): counted, then read by their index.
      ['key results of one status', KR, 'by_status', () => 'status=achieved', false, 0],
      ['key results of two statuses', KR, 'by_status', () => 'status=achieved,off_track', true, 1],
      ['… by title', KR, 'by_status', () => 'status=on_track,at_risk&sort=title', true, 1],
      ['cycles of one state', 'okr_cycles', 'by_state', () => 'state=active', false, 0],
      ['… by name', 'okr_cycles', 'by_state', () => 'state=active&sort=name', true, 1],
      ['key results near done, by title', KR, 'sort_progress_pct', () => 'progress_pct[gte]=99&sort=title', true, 1],
      [
        'key results updated since, of a status, by target',
        KR,
        'sort_updated_at',
        () => 'updated_at[gte]=2026-01-01T00:00:00Z&status=achieved,off_track&sort=target',
        true,
        2,
      ],
      // A range of the sort's own field is a range of its index.
      ['a range of the sort', KR, 'sort_progress_pct', () => 'progress_pct[gte]=99&sort=progress_pct', false, 0],
      ['no filter', KR, 'sort_created_at', () => 'limit=10', false, 0],
    ];
    it.each(cases)('%s: %s reads index …_%s', async (_what, table, index, query, sorted, probes) => {
      const read = await planOf(table, `${pathOf(table)}?${query(ids)}`);
      expect(read.plan).toMatch(new RegExp(`USING (COVERING )?INDEX ${table}_${index} `));
      expect(/TEMP B-TREE FOR ORDER BY/.test(read.plan), read.plan).toBe(sorted);
      expect(read.probes).toBe(probes);
    });

    // The default sort's index carries the search text (resourceTable), so a search under that
    // sort tests each row there and seeks the table's row only for the rows that hold the text:
    // a text no title holds, on a tenant of 100,000 key results, 70–78 → 8–11 ms. An index an
    // earlier build made without it is made again by `edm migrate`.
    it('tests a search in the default sort’s index, reading from the table only the rows that hold the text', async () => {
      const exec = t.store.exec as NonNullable<typeof t.store.exec>;
      const bytecode = async () => {
        const recorder = recordReads(t.store);
        try {
          const res = await t.call('GET', `${kr.basePath}?q=${encodeURIComponent('no such title')}`, {
            token: await t.token(),
          });
          expect(res.status, res.raw).toBe(200);
        } finally {
          recorder.stop();
        }
        const [page] = recorder.reads.filter((r) => r.sql.includes(`from "${KR}"`) && /limit/i.test(r.sql));
        const roots = new Map(
          exec(
            `SELECT name, rootpage FROM sqlite_master WHERE name IN ('${KR}', '${KR}_sort_created_at')`,
            [],
          ).rows.map((r) => [Number(r.rootpage), String(r.name)]),
        );
        const program = exec(`EXPLAIN ${page.sql}`, page.parameters).rows as {
          opcode: string;
          p1: number;
          p2: number;
          p4: unknown;
        }[];
        // Each cursor by what it reads (OpenRead's P2 is the root page), each column read by its cursor.
        const cursors = new Map(
          program.filter((op) => op.opcode === 'OpenRead' && roots.has(op.p2)).map((op) => [op.p1, roots.get(op.p2)]),
        );
        const searchColumn = (
          exec(`SELECT cid FROM pragma_table_info('${KR}') WHERE name = '_search'`, []).rows[0] as {
            cid: number;
          }
        ).cid;
        const reads = (column: (name: string | undefined) => number) =>
          program.filter((op) => op.opcode === 'Column' && op.p2 === column(cursors.get(op.p1))).length;
        return {
          fromIndex: reads((name) => (name === `${KR}_sort_created_at` ? 3 : -1)),
          fromTable: reads((name) => (name === KR ? searchColumn : -1)),
        };
      };
      expect(await bytecode()).toEqual({ fromIndex: 1, fromTable: 0 });
      // As an earlier build made it: without the search text. Read from the table; made again.
      await sql`DROP INDEX ${sql.id(`${KR}_sort_created_at`)}`.execute(t.store.db);
      await sql`CREATE INDEX ${sql.id(`${KR}_sort_created_at`)} ON ${sql.id(KR)} (tenant_id, created_at, id)`.execute(
        t.store.db,
      );
      expect(await bytecode()).toEqual({ fromIndex: 0, fromTable: 1 });
      await migrate(t.store, resources);
      expect(await bytecode()).toEqual({ fromIndex: 1, fromTable: 0 });
      const columns = exec(`SELECT name FROM pragma_index_info('${KR}_sort_created_at') ORDER BY seqno`, []).rows;
      expect(columns.map((c) => c.name)).toEqual(['tenant_id', 'created_at', 'id', '_search']);
    });

    // Where a filter matches PROBE_ROWS rows or more, the sort's index is read until a page is
    // full (within ~limit × rows ÷ PROBE_ROWS rows), as it is for no filter.
    it("reads the sort's index where the filter matches many rows, the filter's where it matches few", async () => {
      const tenant = 'many';
      const token = await t.token({ tenant });
      const engine = t.app.engine;
      const principal = { sub: USER_B, tenantId: tenant, appId: null, scopes: null };
      await engine.transaction(async (db) => {
        const objective = await engine.create(db, objectives, principal, { title: 'o' });
        for (let i = 0; i < PROBE_ROWS + 100; i++) {
          await engine.create(db, kr, principal, {
            objective_id: objective.id,
            title: `k${i}`,
            target: 100,
            current: i % 100,
          });
        }
      });
      const statuses = (
        await sql<{ status: string; n: number }>`SELECT status, count(*) AS n FROM okr_key_results
          WHERE tenant_id = ${tenant} GROUP BY status ORDER BY n DESC`.execute(t.store.db)
      ).rows;
      const common = statuses[0];
      expect(common.n).toBeGreaterThanOrEqual(PROBE_ROWS);
      const absent = STATUSES.find((x) => !statuses.some((r) => r.status === x));
      const wide: [string, string, boolean][] = [
        ['progress_pct[gte]=0&sort=title', 'sort_title', false],
        [`status=${common.status}&sort=title`, 'sort_title', false],
        [`status=${absent}&sort=title`, 'by_status', true],
        ['progress_pct[gte]=99&sort=title', 'sort_progress_pct', true],
        // A value of a sort's field that every row holds: that sort's index holds them all.
        ['target=100&sort=title', 'sort_title', false],
        // One value under the default sort is read in order from its own index, whatever the range beside it.
        [`status=${absent}&progress_pct[gte]=0`, 'by_status', false],
        [`status=${common.status}&progress_pct[gte]=0`, 'by_status', false],
      ];
      for (const [query, index, sorted] of wide) {
        const read = await planOf(KR, `${kr.basePath}?${query}`, token);
        expect(read.plan, query).toMatch(new RegExp(`USING (COVERING )?INDEX ${KR}_${index} `));
        expect(/TEMP B-TREE FOR ORDER BY/.test(read.plan), `${query}: ${read.plan}`).toBe(sorted);
      }
      // Either way the same rows, in order: the 11 of them at 99%, by title.
      const near = await t.call('GET', `${kr.basePath}?progress_pct[gte]=99&sort=title&limit=200`, { token });
      const titles = (near.body.data as Doc[]).map((d) => d.title);
      const expected = Array.from({ length: PROBE_ROWS + 100 }, (_, i) => i)
        .filter((i) => i % 100 === 99)
        .map((i) => `k${i}`)
        .sort();
      expect(titles).toEqual(expected);
    });

    // A search matching few rows under another sort than the default, or beside a filter on a
    // value, is found in the default sort's index (which carries the search text), and its rows
    // read by primary key and sorted; one matching PROBE_ROWS rows or more walks the sort's index
    // as before (Engine.searchedIds). Before, a text no title holds walked the tenant's rows in
    // the sort's index, each read from the table: 95–140 ms on a tenant of 100,000 key results.
    it("reads a search's rows by primary key where they are few, the sort's index where many", async () => {
      const tenant = 'searched';
      const token = await t.token({ tenant });
      const engine = t.app.engine;
      const principal = { sub: USER_B, tenantId: tenant, appId: null, scopes: null };
      const rare: string[] = [];
      let objective = '';
      await engine.transaction(async (db) => {
        objective = (await engine.create(db, objectives, principal, { title: 'o' })).id as string;
        for (let i = 0; i < PROBE_ROWS + 50; i++) {
          const title = i % 100 === 7 ? `k${i} Rare` : `k${i}`;
          await engine.create(db, kr, principal, { objective_id: objective, title, target: 100, current: i % 100 });
          if (title.endsWith('Rare')) rare.push(title);
        }
      });
      expect(rare).toHaveLength(6);
      const gone = (await t.call('GET', `${kr.basePath}?q=k107%20rare`, { token })).body.data as Doc[];
      expect(gone.map((d) => d.title)).toEqual(['k107 Rare']);
      expect((await t.call('DELETE', `${kr.basePath}/${gone[0].id}`, { token })).status).toBe(200);
      const live = rare.filter((x) => x !== 'k107 Rare');
      const status = (
        await sql<{ status: string }>`SELECT status FROM okr_key_results WHERE tenant_id = ${tenant} LIMIT 1`.execute(
          t.store.db,
        )
      ).rows[0].status;
      const BY_ID = 'SEARCH okr_key_results USING INDEX sqlite_autoindex_okr_key_results_1 (tenant_id=? AND id=?)';
      // [query, what the page's plan holds, whether it is sorted after the read, counts made first]
      const cases: [string, string, boolean, number][] = [
        ['q=rare&sort=title', BY_ID, true, 1],
        ['q=rare&sort=-progress_pct', BY_ID, true, 1],
        [`q=rare&status=${status}`, BY_ID, true, 1],
        ['q=nothing&sort=title', BY_ID, true, 1],
        // Under the default sort, that index itself, tested as it is walked.
        ['q=rare', 'USING INDEX okr_key_results_sort_created_at (tenant_id=?)', false, 0],
        // Matching many: the sort's index; an objective's: its own index, no count.
        ['q=k&sort=title', 'USING INDEX okr_key_results_sort_title (tenant_id=?)', false, 1],
        [`q=rare&objective_id=${objective}&sort=title`, 'USING INDEX okr_key_results_by_objective_id', true, 0],
      ];
      for (const [query, holds, sorted, probes] of cases) {
        const read = await planOf(KR, `${kr.basePath}?${query}`, token);
        expect(read.plan, query).toContain(holds);
        expect(/TEMP B-TREE FOR ORDER BY/.test(read.plan), `${query}: ${read.plan}`).toBe(sorted);
        expect(read.probes, query).toBe(probes);
      }
      // The count reads the default sort's index alone, never the table.
      const recorder = recordReads(t.store);
      try {
        await t.call('GET', `${kr.basePath}?q=rare&sort=title`, { token });
      } finally {
        recorder.stop();
      }
      const [probe] = recorder.reads.filter((r) => r.sql.includes('count(*)'));
      expect(recorder.plan(probe).join('; ')).toContain(
        'SEARCH okr_key_results USING COVERING INDEX okr_key_results_sort_created_at (tenant_id=?)',
      );
      // Either way the rows the search names, in the sort's order, the deleted one only when asked for.
      const titles = async (query: string) =>
        ((await t.call('GET', `${kr.basePath}?${query}&limit=200`, { token })).body.data as Doc[]).map(
          (d) => d.title as string,
        );
      expect(await titles('q=rare&sort=title')).toEqual([...live].sort());
      expect(await titles('q=RARE&sort=-title')).toEqual([...live].sort().reverse());
      expect(await titles('q=rare&sort=title&include_deleted=true')).toEqual([...rare].sort());
      expect(await titles(`q=rare&status=${status}&sort=title`)).toEqual(
        (await titles(`status=${status}&sort=title`)).filter((x) => x.endsWith('Rare')),
      );
      expect(await titles('q=nothing&sort=title')).toEqual([]);
      expect((await titles('q=k&sort=title')).length).toBe(200);
      // Pages of two, by title, through the cursor.
      const walked: string[] = [];
      for (let url = `${kr.basePath}?q=rare&sort=title&limit=2`; ; ) {
        const page = await t.call('GET', url, { token });
        walked.push(...(page.body.data as Doc[]).map((d) => d.title as string));
        if (!page.body.has_more) break;
        url = `${kr.basePath}?q=rare&sort=title&limit=2&cursor=${page.body.next_cursor}`;
      }
      expect(walked).toEqual([...live].sort());
    });

    // A JSON list has no index of its own: its values are counted in the member table
    // (memberTable), and where they match few rows, the page reads the rows it names by the
    // primary key. Before it, each of these lists walked the tenant's rows in the sort's index
    // (a tag no row holds: 130–210 ms on a tenant of 100,000 key results).
    it('reads the rows a tag names from its member table where it matches few, the sort index where many', async () => {
      const tenant = 'tagged';
      const token = await t.token({ tenant });
      const engine = t.app.engine;
      const principal = { sub: USER_B, tenantId: tenant, appId: null, scopes: null };
      const rare: string[] = [];
      let objective = '';
      await engine.transaction(async (db) => {
        objective = (await engine.create(db, objectives, principal, { title: 'o', tags: ['rare'] })).id as string;
        for (let i = 0; i < PROBE_ROWS + 50; i++) {
          const tags = i % 200 === 7 ? ['common', 'rare'] : ['common'];
          const doc = await engine.create(db, kr, principal, {
            objective_id: objective,
            title: `k${i}`,
            target: 100,
            tags,
          });
          if (tags.includes('rare')) rare.push(`k${i}`);
        }
      });
      expect(rare).toHaveLength(3);
      const statuses = (
        await sql<{ status: string; n: number }>`SELECT status, count(*) AS n FROM okr_key_results
          WHERE tenant_id = ${tenant} GROUP BY status ORDER BY n DESC`.execute(t.store.db)
      ).rows;
      const absent = STATUSES.find((x) => !statuses.some((r) => r.status === x));
      const MEMBERS = 'SEARCH okr_key_results USING INDEX sqlite_autoindex_okr_key_results_1 (tenant_id=? AND id=?)';
      const TAGS = 'SEARCH okr_key_results_has_tags USING PRIMARY KEY (tenant_id=? AND value=?)';
      // [query, what the plan holds, whether it is sorted after the read]
      const cases: [string, string[], boolean][] = [
        ['tag=rare', [MEMBERS, TAGS], true],
        ['tag=rare&sort=title', [MEMBERS, TAGS], true],
        ['tag=nothing,rare&sort=-progress_pct', [MEMBERS, TAGS], true],
        ['tag=nothing', [MEMBERS, TAGS], true],
        [`tag=rare&status=${statuses[0].status}`, [MEMBERS, TAGS], true],
        ['tag=common&sort=title', ['okr_key_results USING INDEX okr_key_results_sort_title ('], false],
        ['tag=common,rare', ['okr_key_results USING INDEX okr_key_results_sort_created_at ('], false],
        // A narrower filter beside it is read by its own index: a status no row has, an objective.
        [`tag=common&status=${absent}&sort=title`, ['USING INDEX okr_key_results_by_status'], true],
        [`tag=rare&objective_id=${objective}`, ['USING INDEX okr_key_results_by_objective_id'], false],
      ];
      for (const [query, holds, sorted] of cases) {
        const { plan } = await planOf(KR, `${kr.basePath}?${query}`, token);
        for (const step of holds) expect(plan, query).toContain(step);
        if (!holds.includes(TAGS)) expect(plan, query).not.toContain('okr_key_results_has_tags');
        expect(/TEMP B-TREE FOR ORDER BY/.test(plan), `${query}: ${plan}`).toBe(sorted);
      }
      // Either way the rows the filter names, in the sort's order.
      const titles = async (query: string) =>
        ((await t.call('GET', `${kr.basePath}?${query}&limit=200`, { token })).body.data as Doc[]).map((d) => d.title);
      expect(await titles('tag=rare&sort=title')).toEqual([...rare].sort());
      expect(await titles('tag=nothing,rare&sort=-title')).toEqual([...rare].sort().reverse());
      expect(await titles('tag=nothing')).toEqual([]);
      expect((await titles('tag=common&sort=title')).length).toBe(200);
      const { plan } = await planOf(OBJ, `${objectives.basePath}?tag=rare`, token);
      expect(plan).toContain('SEARCH okr_objectives_has_tags USING PRIMARY KEY (tenant_id=? AND value=?)');
      // The member table holds each row's tags, no more and no fewer, after these writes.
      const held = async (query: ReturnType<typeof sql<{ v: string }>>) =>
        (await query.execute(t.store.db)).rows.map((r) => r.v).sort();
      expect(await held(sql`SELECT tenant_id || ' ' || value || ' ' || id AS v FROM okr_key_results_has_tags`)).toEqual(
        await held(
          sql`SELECT r.tenant_id || ' ' || m.value || ' ' || r.id AS v FROM okr_key_results AS r, json_each(r.tags) AS m`,
        ),
      );
    });

    it("reads a later page of an objective's key results by the same index, from the cursor", async () => {
      const token = await t.token();
      for (let i = 0; i < 2; i++) await t.create(kr, token, { objective_id: ids.objective });
      const first = await t.call('GET', `${kr.basePath}?objective_id=${ids.objective}&limit=1`);
      const cursor = first.body.next_cursor as string;
      expect(cursor).toEqual(expect.any(String));
      const { plan } = await planOf(KR, `${kr.basePath}?objective_id=${ids.objective}&limit=1&cursor=${cursor}`);
      expect(plan).toMatch(
        /USING (COVERING )?INDEX okr_key_results_by_objective_id \(tenant_id=\? AND objective_id=\? AND /,
      );
      expect(plan).not.toMatch(/TEMP B-TREE/);
    });

    it("replaces a retired filter index and an operator's ANALYZE with this build's, at the next migrate", async () => {
      const db = t.store.db;
      await sql`DROP INDEX okr_key_results_by_objective_id`.execute(db);
      await sql`CREATE INDEX okr_key_results_filter_objective_id ON okr_key_results (tenant_id, objective_id)`.execute(
        db,
      );
      await sql`ANALYZE`.execute(db);
      const stat = async (idx: string) =>
        (await sql<{ stat: string }>`SELECT stat FROM sqlite_stat1 WHERE idx = ${idx}`.execute(db)).rows.map(
          (r) => r.stat,
        );
      // The check-in log's key, which is its table (WITHOUT ROWID).
      const SNAPSHOTS = 'okr_key_result_snapshots';
      const histograms = async () =>
        (await sql<{ n: number }>`SELECT count(*) AS n FROM sqlite_stat4`.execute(db)).rows[0].n;
      expect(await histograms()).toBeGreaterThan(0);
      const measured = await stat(SNAPSHOTS);
      expect(measured).toHaveLength(1);
      await migrate(t.store, resources);
      const names = (
        await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index'`.execute(db)
      ).rows.map((r) => r.name);
      expect(names).toContain('okr_key_results_by_objective_id');
      expect(names).not.toContain('okr_key_results_filter_objective_id');
      expect(await histograms()).toBe(0);
      const { rows, perTenant, perId, perEnumValue } = PLANNER_MODEL;
      expect(await stat('okr_key_results_by_objective_id')).toEqual([`${rows} ${perTenant} ${perId} 1 1`]);
      expect(await stat('okr_key_results_by_status')).toEqual([`${rows} ${perTenant} ${perEnumValue} 1 1`]);
      expect(await stat('sqlite_autoindex_okr_key_results_1')).toEqual([`${rows} ${perTenant} 1`]);
      // What ANALYZE measured of other tables (a key result's snapshots) stays: the model is the resources'.
      expect(await stat(SNAPSHOTS)).toEqual(measured);
      const { plan } = await planOf(KR, `${kr.basePath}?objective_id=${ids.objective}`);
      expect(plan).toMatch(/INDEX okr_key_results_by_objective_id /);
    });
  });
});
