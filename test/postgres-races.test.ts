import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import type { Doc } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { ALIGNMENT } from '../src/modules/okr/objectives.js';
import { QUERY_GRAPH } from '../src/modules/okr/query-source.js';
import { recompute } from '../src/modules/okr/rollup.js';
import { openStore, type Store } from '../src/store/database.js';
import { byName, freshStore, injectAs, PG_URL, storeKinds, T0, testConfig, USER_A } from './helpers.js';

// Several server processes on one database: on PostgreSQL, two buildApp()s, each on its own
// pool (its own openStore) over one schema, race writes against each other. SQLite serves one
// process (one connection), so there the same races run through one app.

const objectives = byName('Objective');
const keyResults = byName('KeyResult');
const config = testConfig();

function send(app: FastifyInstance, token: string, method: string, url: string, body?: unknown, headers = {}) {
  return injectAs(app, token, method, url, { body, headers });
}

describe.each(storeKinds)('racing writers on %s', (kind) => {
  const stores: Store[] = [];
  const apps: FastifyInstance[] = [];
  let drop: () => Promise<void>;
  let token: string;
  let schema: string | undefined;
  /** The application_name of the second process's sessions (PostgreSQL). */
  let secondApp = '';
  const clock = new ManualClock(T0);
  /** Transactions the server processes ran again after a deadlock (see Engine.transaction). */
  const retried = () => apps.reduce((n, app) => n + app.engine.retriedTransactions, 0);
  /** Transactions PostgreSQL aborted as a deadlock's victim. */
  const deadlocks = () => apps.reduce((n, app) => n + app.engine.deadlocks, 0);
  /** The app the i-th request goes to: alternating between the two processes. */
  const via = (i: number) => apps[i % apps.length];
  /** Sessions of the second process waiting for a lock (`event`: of that kind only, e.g. `advisory`). */
  const lockWaiters = async (session: pg.Client, event?: string) =>
    (
      await session.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND ($2::text IS NULL OR wait_event = $2)",
        [secondApp, event ?? null],
      )
    ).rows[0].n as number;
  /** Polls `done` every 10 ms, for up to 10 s; then fails saying `what` never happened. */
  const until = async (what: string, done: () => Promise<boolean>) => {
    for (let i = 0; i < 1000; i++) {
      if (await done()) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`never: ${what}`);
  };

  /** A session of the test's own on the run's schema (it holds rows, or watches the server's). */
  const onSchema = async () => {
    const session = new pg.Client({ connectionString: PG_URL });
    await session.connect();
    try {
      await session.query(`SET search_path TO ${schema}`);
    } catch (err) {
      await session.end();
      throw err;
    }
    return session;
  };
  /** A new objective's id, made through the first process. */
  const objective = async (title: string) =>
    (await send(apps[0], token, 'POST', objectives.basePath, { title })).body.id as string;
  /** How many sessions wait for a lock the session `pid` holds, as `session` sees it. */
  const blockedBy = async (session: pg.Client, pid: number) =>
    (
      await session.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [
        pid,
      ])
    ).rows[0].n as number;

  /** A cycle of the quarter and an objective in it, made through the first process. */
  const objectiveInQuarter = async (name: string, title: string) => {
    const cycle = await send(apps[0], token, 'POST', byName('Cycle').basePath, {
      name,
      start_date: '2026-10-01',
      end_date: '2026-12-31',
    });
    const objective = await send(apps[0], token, 'POST', objectives.basePath, { title, cycle_id: cycle.body.id });
    return { cycle, objective };
  };

  beforeAll(async () => {
    const fresh = await freshStore(kind);
    drop = fresh.drop;
    schema = fresh.schema;
    stores.push(fresh.store);
    if (kind === 'postgres') {
      secondApp = `edm-race-${randomBytes(4).toString('hex')}`;
      stores.push(openStore(fresh.url, { schema: fresh.schema, poolSize: 5, applicationName: secondApp }));
    }
    // Both migrate at start, as two servers booting at once would.
    apps.push(...(await Promise.all(stores.map((store) => buildApp({ config, store, clock })))));
    token = await mintToken({ secret: config.jwtSecret, tenant: 'race', sub: USER_A, ttl: '1000d', now: clock.now() });
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    for (const store of stores) await store.close();
    await drop();
  });

  it('runs two processes on PostgreSQL', () => {
    expect(apps.length).toBe(kind === 'postgres' ? 2 : 1);
  });

  it.runIf(kind === 'postgres')(
    'check-ins only share-lock their cycle: a session reading it (FOR SHARE) holds none of them up',
    async () => {
      const { cycle, objective } = await objectiveInQuarter('Shared quarter', 'in the quarter');
      const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
        objective_id: objective.body.id,
        title: 'checked in while the cycle is read',
        target: 10,
      });
      const reader = await onSchema();
      try {
        await reader.query('BEGIN');
        await reader.query('SELECT id FROM okr_cycles WHERE id = $1 FOR SHARE', [cycle.body.id]);
        const checkIn = send(apps[1], token, 'POST', `${keyResults.basePath}/${kr.body.id}/check-ins`, { value: 4 });
        let answered = false;
        void checkIn.finally(() => {
          answered = true;
        });
        // Until it answers, no session of the second process may be waiting for a lock.
        for (let i = 0; i < 400 && !answered; i++) {
          expect(await lockWaiters(reader), 'a check-in waited for the lock on its cycle').toBe(0);
          await new Promise((r) => setTimeout(r, 25));
        }
        expect((await checkIn).status).toBe(201);
      } finally {
        await reader.query('ROLLBACK').catch(() => {});
        await reader.end();
      }
    },
  );

  it.runIf(kind === 'postgres')(
    'dates a check-in that waited behind a PATCH of current after it: the check-in is the newest, its value current',
    async () => {
      const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: 'queued writes' });
      const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
        objective_id: objective.body.id,
        title: 'patched, then checked in',
        target: 100,
      });
      const url = `${keyResults.basePath}/${kr.body.id}`;
      const holder = await onSchema();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT id FROM okr_key_results WHERE id = $1 FOR UPDATE', [kr.body.id]);
        const patch = send(apps[1], token, 'PATCH', url, { current: 50 });
        await until('the PATCH waits for the row', async () => (await lockWaiters(holder)) >= 1);
        const checkIn = send(apps[1], token, 'POST', `${url}/check-ins`, { value: 70, confidence: 9 });
        // Time for it to start and queue behind the PATCH; nothing here is timed: it is served
        // after the PATCH whenever it got there (before the fix, it was dated when it started).
        await new Promise((r) => setTimeout(r, 300));
        clock.advance(1000); // the time passes while they wait
        await holder.query('COMMIT');
        const [patched, checked] = await Promise.all([patch, checkIn]);
        expect([patched.status, checked.status]).toEqual([200, 201]);
        expect([checked.body.current, checked.body.confidence]).toEqual([70, 9]);
        const history = checked.body.history as Doc[];
        expect(history.slice(-2).map((e) => e.value)).toEqual([50, 70]);
        expect(checked.body.last_update_at).toBe(history.at(-1)?.at);
      } finally {
        await holder.query('ROLLBACK').catch(() => {});
        await holder.end();
      }
    },
  );

  it.runIf(kind === 'postgres')(
    "never leaves a live key result on a deleted connector: a create, a PATCH or a restore that attaches one, beside the connector's DELETE",
    async () => {
      const { cycle, objective } = await objectiveInQuarter('attach', 'fed meanwhile');
      const manual = await send(apps[0], token, 'POST', keyResults.basePath, {
        objective_id: objective.body.id,
        title: 'attached by a PATCH',
        target: 10,
      });
      const fedBody = (connector: string) => ({
        objective_id: objective.body.id,
        title: 'attached on create',
        target: 10,
        data_source: 'connector',
        connector_id: connector,
      });
      // Each readies its write (outside the race), then answers the write that races the DELETE.
      const attachments = [
        async (connector: string) => () => send(apps[1], token, 'POST', keyResults.basePath, fedBody(connector)),
        async (connector: string) => () =>
          send(apps[1], token, 'PATCH', `${keyResults.basePath}/${manual.body.id}`, {
            data_source: 'connector',
            connector_id: connector,
          }),
        async (connector: string) => {
          const fed = await send(apps[0], token, 'POST', keyResults.basePath, fedBody(connector));
          expect((await send(apps[0], token, 'DELETE', `${keyResults.basePath}/${fed.body.id}`)).status).toBe(200);
          return () => send(apps[1], token, 'POST', `${keyResults.basePath}/${fed.body.id}/restore`);
        },
      ];
      for (const ready of attachments) {
        const connector = await send(apps[0], token, 'POST', byName('Connector').basePath, {
          name: 'feed',
          kind: 'webhook',
          config: {},
        });
        const attach = await ready(connector.body.id as string);
        const holder = new pg.Client({ connectionString: PG_URL });
        await holder.connect();
        try {
          // The attaching write pauses on the cycle (its status reads it), after its reference checks.
          await holder.query(`SET search_path TO ${schema}`);
          await holder.query('BEGIN');
          await holder.query('SELECT id FROM okr_cycles WHERE id = $1 FOR UPDATE', [cycle.body.id]);
          const attached = attach();
          await until('the write waits for the cycle', async () => (await lockWaiters(holder)) >= 1);
          let deleted = false;
          const removal = send(
            apps[0],
            token,
            'DELETE',
            `${byName('Connector').basePath}/${connector.body.id}`,
          ).finally(() => {
            deleted = true;
          });
          // Before the fix the DELETE went through at once; now it waits for the attaching write.
          const blocked = async () =>
            (
              await holder.query(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name IN ($1, 'edm') AND cardinality(pg_blocking_pids(pid)) > 0",
                [secondApp],
              )
            ).rows[0].n as number;
          await until('the DELETE answers or waits', async () => deleted || (await blocked()) >= 2);
          await holder.query('COMMIT');
          const [write, del] = await Promise.all([attached, removal]);
          expect(write.status, write.raw).toBeLessThan(300);
          expect([del.status, del.body.code]).toEqual([409, 'has_dependents']);
          const fed = await send(apps[0], token, 'GET', `${keyResults.basePath}?connector_id=${connector.body.id}`);
          expect((fed.body.data as Doc[]).length).toBe(1);
        } finally {
          await holder.query('ROLLBACK').catch(() => {});
          await holder.end();
        }
      }
    },
  );

  it('lets exactly one of 20 PATCHes at one If-Match version win; the rest are 412', async () => {
    const created = await send(apps[0], token, 'POST', objectives.basePath, { title: 'contended' });
    const url = `${objectives.basePath}/${created.body.id}`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        send(via(i), token, 'PATCH', url, { title: `writer ${i}` }, { 'if-match': '"1"' }),
      ),
    );
    const winners = answers.filter((a) => a.status === 200);
    expect(winners.length).toBe(1);
    for (const a of answers.filter((x) => x.status !== 200)) {
      expect([a.status, a.body.code]).toEqual([412, 'precondition_failed']);
    }
    const now = await send(apps[apps.length - 1], token, 'GET', url);
    expect([now.body.version, now.body.title]).toEqual([2, winners[0].body.title]);
  });

  it("never leaves a live objective under a deleted cycle: a create or a restore racing the cycle's DELETE", async () => {
    const cycles = byName('Cycle');
    const cycle = { name: 'Q', start_date: '2026-10-01', end_date: '2026-12-31' };
    for (let trial = 0; trial < 12; trial++) {
      const c = (await send(via(trial), token, 'POST', cycles.basePath, cycle)).body;
      const restoring = trial % 2 === 1;
      let objectiveId: string | undefined;
      if (restoring) {
        const made = await send(via(trial), token, 'POST', objectives.basePath, { title: 'o', cycle_id: c.id });
        objectiveId = made.body.id as string;
        await send(via(trial), token, 'DELETE', `${objectives.basePath}/${objectiveId}`);
      }
      const [child, parent] = await Promise.all([
        restoring
          ? send(via(trial), token, 'POST', `${objectives.basePath}/${objectiveId}/restore`)
          : send(via(trial), token, 'POST', objectives.basePath, { title: 'o', cycle_id: c.id }),
        send(via(trial + 1), token, 'DELETE', `${cycles.basePath}/${c.id}`),
      ]);
      // One of them wins; the other is refused for it (409 has_dependents / parent_deleted, 422).
      const childOk = child.status === 200 || child.status === 201;
      expect([childOk, parent.status === 200], JSON.stringify([child.body, parent.body])).not.toEqual([true, true]);
      const cycleNow = (await send(apps[0], token, 'GET', `${cycles.basePath}/${c.id}`)).body;
      const live = (await send(apps[0], token, 'GET', `${objectives.basePath}?cycle_id=${c.id}&limit=200`)).body
        .data as Doc[];
      expect(cycleNow.is_deleted && live.length > 0).toBe(false);
    }
    expect(retried()).toBe(0);
  });

  it('never leaves a live objective aligned to a deleted one: a create, a realignment or a restore racing its DELETE', async () => {
    for (let trial = 0; trial < 12; trial++) {
      const parent = await objective(`aligned to, ${trial}`);
      const way = (['create', 'realign', 'restore'] as const)[trial % 3];
      const other = way === 'create' ? undefined : await objective(`aligning, ${trial}`);
      if (way === 'restore') {
        await send(apps[0], token, 'PATCH', `${objectives.basePath}/${other}`, { parent_objective_id: parent });
        await send(apps[0], token, 'DELETE', `${objectives.basePath}/${other}`);
      }
      const [child, deleted] = await Promise.all([
        way === 'create'
          ? send(via(trial), token, 'POST', objectives.basePath, { title: 'child', parent_objective_id: parent })
          : way === 'realign'
            ? send(via(trial), token, 'PATCH', `${objectives.basePath}/${other}`, { parent_objective_id: parent })
            : send(via(trial), token, 'POST', `${objectives.basePath}/${other}/restore`),
        send(via(trial + 1), token, 'DELETE', `${objectives.basePath}/${parent}`),
      ]);
      // One of them wins; the other is refused for it (409 has_dependents / parent_deleted, 422).
      const childOk = child.status === 200 || child.status === 201;
      expect([childOk, deleted.status === 200], JSON.stringify([child.body, deleted.body])).not.toEqual([true, true]);
      expect([200, 201, 409, 422]).toContain(child.status);
      expect([200, 409]).toContain(deleted.status);
      const parentNow = (await send(apps[0], token, 'GET', `${objectives.basePath}/${parent}`)).body;
      const live = (await send(apps[0], token, 'GET', `${objectives.basePath}?parent_objective_id=${parent}&limit=200`))
        .body.data as Doc[];
      expect(parentNow.is_deleted && live.length > 0).toBe(false);
    }
    expect(retried()).toBe(0);
  });

  it('lets exactly one of 20 PATCHes naming body version 1 win; the rest are 409 version_conflict', async () => {
    const created = await send(apps[0], token, 'POST', objectives.basePath, { title: 'contended too' });
    const url = `${objectives.basePath}/${created.body.id}`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => send(via(i), token, 'PATCH', url, { title: `writer ${i}`, version: 1 })),
    );
    expect(answers.filter((a) => a.status === 200).length).toBe(1);
    for (const a of answers.filter((x) => x.status !== 200)) {
      expect([a.status, a.body.code, a.body.current_version]).toEqual([409, 'version_conflict', 2]);
    }
  });

  it('creates one resource for 20 POSTs with one Idempotency-Key: identical answers or 409 in flight', async () => {
    const key = `race-${randomBytes(6).toString('hex')}`;
    const body = { title: 'exactly once', tags: ['idem'] };
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        send(via(i), token, 'POST', objectives.basePath, body, { 'idempotency-key': key }),
      ),
    );
    const created = answers.filter((a) => a.status === 201);
    expect(created.length).toBeGreaterThanOrEqual(1);
    for (const a of answers.filter((x) => x.status !== 201)) {
      expect([a.status, a.body.code, a.headers['retry-after']]).toEqual([409, 'idempotency_in_flight', '1']);
    }
    expect(new Set(created.map((a) => a.raw)).size).toBe(1);
    // Once settled, every process replays the one answer.
    for (const app of apps) {
      const again = await send(app, token, 'POST', objectives.basePath, body, { 'idempotency-key': key });
      expect([again.status, again.raw, again.headers['idempotent-replayed']]).toEqual([201, created[0].raw, 'true']);
    }
    const listed = await send(apps[0], token, 'GET', `${objectives.basePath}?tag=idem&include_deleted=true`);
    expect((listed.body.data as Doc[]).map((d) => d.id)).toEqual([created[0].body.id]);
  });

  it('loses no check-in and keeps the objective roll-up equal to a fresh recomputation', async () => {
    const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: 'rolled up' });
    const krs: Doc[] = [];
    for (const [i, weight] of [1, 2, 0, 3].entries()) {
      const kr = await send(via(i), token, 'POST', keyResults.basePath, {
        objective_id: objective.body.id,
        title: `kr ${i}`,
        baseline: 0,
        target: 100,
        weight,
      });
      expect(kr.status, kr.raw).toBe(201);
      krs.push(kr.body);
    }
    const sent = new Map<string, number[]>(krs.map((kr) => [kr.id as string, []]));
    const checkIns = Array.from({ length: 40 }, (_, i) => {
      const kr = krs[i % krs.length];
      const value = (i * 37) % 101;
      sent.get(kr.id as string)?.push(value);
      return send(via(i >> 2), token, 'POST', `${keyResults.basePath}/${kr.id}/check-ins`, {
        value,
        note: `check-in ${i}`,
        confidence: i % 11,
      });
    });
    const answers = await Promise.all(checkIns);
    for (const a of answers) expect([a.status, a.body.code]).toEqual([201, undefined]);

    const fresh: Doc[] = [];
    for (const kr of krs) {
      const got = await send(apps[0], token, 'GET', `${keyResults.basePath}/${kr.id}`);
      fresh.push(got.body);
      const log = await send(
        apps[apps.length - 1],
        token,
        'GET',
        `${keyResults.basePath}/${kr.id}/check-ins?limit=200`,
      );
      const notes = (log.body.data as Doc[]).map((s) => s.note).filter((n) => n !== null);
      const values = sent.get(kr.id as string) ?? [];
      expect(notes.length).toBe(values.length);
      expect(
        (log.body.data as Doc[])
          .filter((s) => s.note !== null)
          .map((s) => s.value)
          .sort(),
      ).toEqual([...values].sort());
      // The newest snapshot is the current value.
      const history = got.body.history as Doc[];
      expect(got.body.current).toBe(history[history.length - 1].value);
    }
    const obj = await send(apps[0], token, 'GET', `${objectives.basePath}/${objective.body.id}`);
    const expected = recompute(fresh);
    expect({
      progress_pct: obj.body.progress_pct,
      status: obj.body.status,
      key_result_count: obj.body.key_result_count,
    }).toEqual({ progress_pct: expected.progress_pct, status: expected.status, key_result_count: 4 });
    // 4 creates + 40 check-ins changed the objective (at most) 44 times; no write was lost or doubled.
    expect(obj.body.version).toBeLessThanOrEqual(45);
  });

  it('never closes a loop of queries from two writes at once, each of whose checks the other would pass', async () => {
    const k = (id: unknown) => `kr("${id}")`;
    const outcomes: string[] = [];
    for (let trial = 0; trial < 8; trial++) {
      const ids: string[] = [];
      for (const name of ['a', 'b', 'c', 'd']) {
        // Objectives of their own: a write locks its key result's objective, and shared ones would queue the two.
        const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: `graph ${name}` });
        const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
          objective_id: objective.body.id,
          title: `${name} ${trial}`,
          target: 100,
        });
        ids.push(kr.body.id as string);
      }
      const [a, b, c, d] = ids;
      const toQuery = (id: string, query: string, app = apps[0]) =>
        send(app, token, 'PATCH', `${keyResults.basePath}/${id}`, { data_source: 'query', query });
      // b reads c and d reads a; then, at once, a reads b and c reads d: together a → b → c → d → a.
      expect((await toQuery(b, k(c))).status).toBe(200);
      expect((await toQuery(d, k(a))).status).toBe(200);
      const [first, second] = await Promise.all([toQuery(a, k(b), via(0)), toQuery(c, k(d), via(1))]);
      const answers = [first, second]
        .map((r) => `${r.status} ${(r.body.errors as Doc[] | undefined)?.[0]?.code ?? ''}`.trim())
        .sort();
      outcomes.push(answers.join(' / '));
    }
    // Each time, one write wins and the other finds the loop it would close.
    expect(outcomes).toEqual(Array(8).fill('200 / 400 query_cycle'));
  });

  it('an edit of a query whose value moves a reader, beside an edit of that reader: both served, no deadlock', async () => {
    const k = (id: unknown) => `kr("${id}")`;
    const outcomes: string[] = [];
    for (let trial = 0; trial < 6; trial++) {
      const make = async (name: string, body: Doc = {}) => {
        const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: `moved ${name}` });
        const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
          objective_id: objective.body.id,
          title: `${name} ${trial}`,
          target: 100,
          ...body,
        });
        expect(kr.status, kr.raw).toBe(201);
        return kr.body.id as string;
      };
      const a = await make('a');
      const x = await make('x', { current: 5 });
      const y = await make('y', { current: 7 });
      const reader = await make('reader', { data_source: 'query', query: k(a) });
      const toQuery = (id: string, query: string, app: FastifyInstance) =>
        send(app, token, 'PATCH', `${keyResults.basePath}/${id}`, { data_source: 'query', query });
      // a starts reading x (its value moves, and with it its reader's), while the reader starts reading y.
      const answers = await Promise.all([toQuery(a, k(x), via(0)), toQuery(reader, k(y), via(1))]);
      outcomes.push(answers.map((r) => r.status).join(' / '));
      const final = await send(apps[0], token, 'GET', `${keyResults.basePath}/${reader}`);
      expect(final.body).toMatchObject({ query: k(y), current: 7 });
    }
    expect(outcomes).toEqual(Array(6).fill('200 / 200'));
  });

  it('check-ins on two key results that queries read crosswise: both served, the queries right', async () => {
    const k = (id: unknown) => `kr("${id}")`;
    const outcomes: string[] = [];
    const retriedBefore = retried();
    for (let trial = 0; trial < 8; trial++) {
      const make = async (name: string, current = 0) => {
        const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: `crosswise ${name}` });
        const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
          objective_id: objective.body.id,
          title: `${name} ${trial}`,
          target: 1000,
          current,
        });
        return kr.body.id as string;
      };
      const x = await make('x', 1);
      const y = await make('y', 2);
      // p < q by id: from y the readers are found p first, from x q first (through q, p).
      const [p, q] = [await make('p'), await make('q')].sort();
      const toQuery = (id: string, query: string) =>
        send(apps[0], token, 'PATCH', `${keyResults.basePath}/${id}`, { data_source: 'query', query });
      expect((await toQuery(q, `${k(x)} + ${k(y)}`)).status).toBe(200);
      expect((await toQuery(p, `${k(q)} * 10 + ${k(y)}`)).status).toBe(200);
      const checkIn = (id: string, value: number, app: FastifyInstance) =>
        send(app, token, 'POST', `${keyResults.basePath}/${id}/check-ins`, { value });
      const answers = await Promise.all([checkIn(x, 30, via(0)), checkIn(y, 40, via(1))]);
      outcomes.push(answers.map((r) => r.status).join(' / '));
      const get = async (id: string) =>
        (await send(apps[0], token, 'GET', `${keyResults.basePath}/${id}`)).body.current;
      expect([await get(q), await get(p)]).toEqual([70, 740]);
    }
    expect(outcomes).toEqual(Array(8).fill('201 / 201'));
    expect(retried() - retriedBefore).toBe(0);
  });

  it('aligns two objectives to each other at once: one wins, the other is refused as a cycle (not a deadlock)', async () => {
    const outcomes: string[] = [];
    for (let trial = 0; trial < 8; trial++) {
      const [a, b, c] = await Promise.all(
        ['a', 'b', 'c'].map(async (name) => {
          const res = await send(apps[0], token, 'POST', objectives.basePath, { title: `aligned ${name} ${trial}` });
          return res.body.id as string;
        }),
      );
      // b already aligns to c; now, at once, a to b and c to a: together a → b → c → a.
      expect(
        (await send(apps[0], token, 'PATCH', `${objectives.basePath}/${b}`, { parent_objective_id: c })).status,
      ).toBe(200);
      const answers = await Promise.all([
        send(via(0), token, 'PATCH', `${objectives.basePath}/${a}`, { parent_objective_id: b }),
        send(via(1), token, 'PATCH', `${objectives.basePath}/${c}`, { parent_objective_id: a }),
      ]);
      outcomes.push(
        answers
          .map((r) => `${r.status} ${(r.body.errors as Doc[] | undefined)?.[0]?.code ?? ''}`.trim())
          .sort()
          .join(' / '),
      );
    }
    expect(outcomes).toEqual(Array(8).fill('200 / 422 alignment_cycle'));
  });

  it('a cascading delete of an objective beside check-ins on its key results: each served or refused, no deadlock', async () => {
    const outcomes = new Map<string, number>();
    const retriedBefore = retried();
    for (let trial = 0; trial < 4; trial++) {
      const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: `doomed ${trial}` });
      const krs: string[] = [];
      for (let i = 0; i < 6; i++) {
        const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
          objective_id: objective.body.id,
          title: `doomed kr ${i}`,
          target: 10,
        });
        krs.push(kr.body.id as string);
      }
      const checkIns = krs.flatMap((id, i) =>
        [0, 1].map((j) => send(via(i + j), token, 'POST', `${keyResults.basePath}/${id}/check-ins`, { value: j + 1 })),
      );
      const deletion = send(via(trial), token, 'DELETE', `${objectives.basePath}/${objective.body.id}?cascade=true`);
      const answers = await Promise.all([deletion, ...checkIns]);
      expect(answers[0].status, answers[0].raw).toBe(200);
      for (const a of answers.slice(1)) {
        const key = `${a.status} ${a.body.code ?? ''}`.trim();
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }
      for (const id of krs) {
        const kr = await send(apps[0], token, 'GET', `${keyResults.basePath}/${id}`);
        expect(kr.body.is_deleted).toBe(true);
      }
    }
    // Check-ins before the delete are 201, after it 409 resource_deleted: never a 503.
    expect([...outcomes.keys()].filter((k) => k !== '201' && k !== '409 resource_deleted')).toEqual([]);
    // The cascade locks key results before their objective, as check-ins do: no deadlock to retry.
    expect(retried() - retriedBefore).toBe(0);
  });

  it.runIf(kind === 'postgres')(
    'runs a transaction PostgreSQL aborted as a deadlock victim again, and answers as if nothing happened',
    async () => {
      const objective = await send(apps[0], token, 'POST', objectives.basePath, { title: 'deadlocked' });
      const kr = await send(apps[0], token, 'POST', keyResults.basePath, {
        objective_id: objective.body.id,
        title: 'deadlocked kr',
        target: 10,
      });
      const other = await onSchema();
      try {
        // This session waits longer before looking for deadlocks: the server's session finds it, and is the victim.
        await other.query("SET deadlock_timeout = '20s'");
        await other.query('BEGIN');
        await other.query('SELECT id FROM okr_key_results WHERE id = $1 FOR UPDATE', [kr.body.id]);
        const before = apps[1].engine.retriedTransactions;
        // The check-in locks the objective, then waits for the key result this session holds...
        const checkIn = send(apps[1], token, 'POST', `${keyResults.basePath}/${kr.body.id}/check-ins`, { value: 4 });
        await until('the check-in waits for the key result', async () => (await lockWaiters(other)) > 0);
        // ...and this session now waits for the objective: a deadlock, whose victim is the check-in.
        await other.query('SELECT id FROM okr_objectives WHERE id = $1 FOR UPDATE', [objective.body.id]);
        await other.query('ROLLBACK');
        const answer = await checkIn;
        expect([answer.status, answer.body.current]).toEqual([201, 4]);
        expect(apps[1].engine.retriedTransactions - before).toBe(1);
        const log = await send(apps[0], token, 'GET', `${keyResults.basePath}/${kr.body.id}/check-ins`);
        expect((log.body.data as Doc[]).filter((s) => s.value === 4)).toHaveLength(1);
      } finally {
        await other.query('ROLLBACK').catch(() => {});
        await other.end();
      }
    },
  );

  // Two teams, each tracking a figure of the other's: o1 holds b and q = kr(a), o2 holds a and
  // r = kr(b). A check-in on a holds o2 and a, then recomputes q (o1); one on b, the reverse.
  // Beside those check-ins: the writes that change who reads a (a query created, deleted, or
  // cascaded away with its objective) hold o1 and then write a's row.
  it.each([
    { beside: 'a check-in on b', write: 'check-in b' },
    { beside: 'a query created in o1 that reads a', write: 'create reader' },
    { beside: 'a delete of the query reading a', write: 'delete q' },
    { beside: 'a cascading delete of o1', write: 'cascade o1' },
  ])(
    'a check-in on a key result a query of another objective reads, beside $beside: no deadlock to retry',
    async ({ write }) => {
      const retriedBefore = retried();
      for (let trial = 0; trial < 6; trial++) {
        const [o1, o2] = [await objective(`team one ${trial}`), await objective(`team two ${trial}`)];
        const make = async (objectiveId: string, body: Doc) =>
          (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: objectiveId, target: 100, ...body }))
            .body.id as string;
        const a = await make(o2, { title: 'a' });
        const b = await make(o1, { title: 'b' });
        const q = await make(o1, { title: 'q', data_source: 'query', query: `kr("${a}")` });
        const r = await make(o2, { title: 'r', data_source: 'query', query: `kr("${b}")` });
        const second = {
          'check-in b': () => send(via(1), token, 'POST', `${keyResults.basePath}/${b}/check-ins`, { value: 20 }),
          'create reader': () =>
            send(via(1), token, 'POST', keyResults.basePath, {
              objective_id: o1,
              title: 'another reader',
              target: 100,
              data_source: 'query',
              query: `kr("${a}") * 2`,
            }),
          'delete q': () => send(via(1), token, 'DELETE', `${keyResults.basePath}/${q}`),
          'cascade o1': () => send(via(1), token, 'DELETE', `${objectives.basePath}/${o1}?cascade=true`),
        }[write as 'check-in b' | 'create reader' | 'delete q' | 'cascade o1'];
        const answers = await Promise.all([
          send(via(0), token, 'POST', `${keyResults.basePath}/${a}/check-ins`, { value: 10 }),
          second(),
        ]);
        expect(answers.map((x) => x.status)).toEqual([
          201,
          write === 'check-in b' || write === 'create reader' ? 201 : 200,
        ]);
        const current = async (id: string) =>
          (await send(apps[0], token, 'GET', `${keyResults.basePath}/${id}`)).body.current;
        if (write !== 'delete q' && write !== 'cascade o1') expect(await current(q)).toBe(10);
        if (write === 'check-in b') expect(await current(r)).toBe(20);
      }
      expect(retried() - retriedBefore).toBe(0);
    },
  );

  // The locking read's guard sees the row as its snapshot does. A session puts a into the query
  // graph without committing (as a query's create reading a would); the check-in on a reads it
  // outside the graph, takes no tenant lock, and waits for a's objective. A third writer takes
  // the tenant lock and will want that objective too. When the first commits, the check-in holds
  // a, now in the graph, without the tenant lock: waiting for it would close a loop with the third.
  it.runIf(kind === 'postgres')(
    'a row that enters the query graph while a write waits for it: the write starts again, no deadlock',
    async () => {
      const [o1, o2] = [await objective('stale guard one'), await objective('stale guard two')];
      const kr = async (body: Doc) =>
        (await send(apps[0], token, 'POST', keyResults.basePath, { target: 100, ...body })).body.id as string;
      const a = await kr({ objective_id: o2, title: 'a' });
      const c = await kr({ objective_id: o1, title: 'c' });
      const q = await kr({ objective_id: o1, title: 'q', data_source: 'query', query: `kr("${c}")` });
      const [first, third] = [new pg.Client({ connectionString: PG_URL }), new pg.Client({ connectionString: PG_URL })];
      try {
        for (const session of [first, third]) {
          await session.connect();
          await session.query(`SET search_path TO ${schema}`);
        }
        // The servers' own count: pg_stat_database's counts every session's deadlocks (another
        // file's, another run's on this database), and up to a second late.
        const [deadlocksBefore, retriedBefore] = [deadlocks(), retried()];
        await first.query('BEGIN');
        await first.query('SELECT 1 FROM okr_objectives WHERE tenant_id = $1 AND id = $2 FOR UPDATE', ['race', o2]);
        await first.query('UPDATE okr_key_results SET query_readers = 1 WHERE tenant_id = $1 AND id = $2', ['race', a]);
        await first.query(
          'INSERT INTO okr_key_result_query_reads (tenant_id, key_result_id, reads_id) VALUES ($1, $2, $3)',
          ['race', q, a],
        );
        const checkIn = send(apps[1], token, 'POST', `${keyResults.basePath}/${a}/check-ins`, { value: 10 });
        await until('the check-in waits for the first session', async () => (await lockWaiters(third)) > 0);
        await third.query('BEGIN');
        await third.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['race\nokr.query-graph']);
        await first.query('COMMIT');
        // The check-in, holding a without the tenant lock, starts again and waits for it.
        await until('the check-in waits for the tenant lock', async () => (await lockWaiters(third, 'advisory')) > 0);
        await third.query('SELECT 1 FROM okr_objectives WHERE tenant_id = $1 AND id = $2 FOR UPDATE', ['race', o2]);
        await third.query('COMMIT');
        expect((await checkIn).status).toBe(201);
        expect(deadlocks()).toBe(deadlocksBefore);
        expect(retried() - retriedBefore).toBe(1);
      } finally {
        await first.query('ROLLBACK').catch(() => {});
        await third.query('ROLLBACK').catch(() => {});
        await first.end();
        await third.end();
      }
    },
  );

  it.runIf(kind === 'postgres')(
    'a webhook push whose key result a query reads, while another write holds the tenant lock: it starts again and waits for it (no 503)',
    async () => {
      const o = (await send(apps[0], token, 'POST', objectives.basePath, { title: 'fed' })).body.id as string;
      const hook = await send(apps[0], token, 'POST', byName('Connector').basePath, {
        name: 'pushed',
        kind: 'webhook',
        config: {},
      });
      const kr = async (body: Doc) =>
        (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: o, target: 100, ...body })).body
          .id as string;
      const fed = await kr({ title: 'fed', data_source: 'connector', connector_id: hook.body.id });
      const q = await kr({ title: 'q', data_source: 'query', query: `kr("${fed}") * 2` });
      const holder = new pg.Client({ connectionString: PG_URL });
      await holder.connect();
      try {
        const retriedBefore = retried();
        await holder.query('BEGIN');
        await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['race\nokr.query-graph']);
        const push = apps[1].inject({ method: 'POST', url: hook.body.webhook_url as string, payload: { value: 21 } });
        // It found the lock held where it held the connector's row, so it starts again, taking it first.
        await until('the push waits for the tenant lock', async () => (await lockWaiters(holder, 'advisory')) > 0);
        await holder.query('COMMIT');
        const answer = await push;
        expect([answer.statusCode, answer.json().last_value]).toEqual([200, 21]);
        expect(retried() - retriedBefore).toBe(1);
        const computed = await send(apps[0], token, 'GET', `${keyResults.basePath}/${q}`);
        expect(computed.body.current).toBe(42);
      } finally {
        await holder.query('ROLLBACK').catch(() => {});
        await holder.end();
      }
    },
  );

  // A push is admitted under the URL current when it arrives, and checked again under the
  // connector's lock: the old URL is refused from the moment its rotation commits.
  it.runIf(kind === 'postgres')(
    "refuses a webhook push (401) whose URL's rotation commits while the push waits for the connector's lock",
    async () => {
      const connectors = byName('Connector');
      const hook = await send(apps[0], token, 'POST', connectors.basePath, {
        name: 'rotated meanwhile',
        kind: 'webhook',
        config: {},
      });
      const [holder, watcher] = [
        new pg.Client({ connectionString: PG_URL }),
        new pg.Client({ connectionString: PG_URL }),
      ];
      await Promise.all([holder.connect(), watcher.connect()]);
      try {
        await holder.query(`SET search_path TO ${schema}`);
        const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        // What a rotation writes (the URL's generation, 0 to 1), held until the push waits for it.
        await holder.query('BEGIN');
        await holder.query(`UPDATE ${connectors.table} SET webhook_generation = 1 WHERE id = $1`, [hook.body.id]);
        const push = apps[1].inject({ method: 'POST', url: hook.body.webhook_url as string, payload: { value: 5 } });
        await until('the push waits for the connector', async () => (await blockedBy(watcher, pid)) > 0);
        await holder.query('COMMIT');
        const answer = await push;
        expect([answer.statusCode, answer.json().code]).toEqual([401, 'invalid_token']);
        const after = await send(apps[0], token, 'GET', `${connectors.basePath}/${hook.body.id}`);
        expect(after.body.last_value ?? null).toBeNull();
      } finally {
        await holder.query('ROLLBACK').catch(() => {});
        await Promise.all([holder.end(), watcher.end()]);
      }
    },
  );

  // Each transaction takes one row and then waits for the other's: PostgreSQL aborts one as the
  // deadlock's victim (40P01), which runs again and is counted as a deadlock.
  it.runIf(kind === 'postgres')(
    'counts a deadlock PostgreSQL broke, whose victim ran again, in edm_transaction_deadlocks_total',
    async () => {
      const engine = apps[0].engine;
      await sql`CREATE TABLE crosswise (id int PRIMARY KEY, n int NOT NULL)`.execute(stores[0].db);
      await sql`INSERT INTO crosswise VALUES (1, 0), (2, 0)`.execute(stores[0].db);
      const [deadlocksBefore, retriedBefore] = [engine.deadlocks, engine.retriedTransactions];
      const taken: (() => void)[] = [];
      const took = [0, 1].map((i) => new Promise<void>((resolve) => (taken[i] = resolve)));
      const ended: (() => void)[] = [];
      const end = [0, 1].map((i) => new Promise<void>((resolve) => (ended[i] = resolve)));
      const attempts = [0, 0];
      const crosswise = (mine: number, theirs: number) =>
        engine
          .transaction(async (trx) => {
            // The victim's next attempt waits for the survivor's commit: run at once, it could
            // take its row back before the survivor and deadlock again, so the counts would vary.
            if (++attempts[mine] > 1) await end[theirs];
            await sql`UPDATE crosswise SET n = n + 1 WHERE id = ${mine + 1}`.execute(trx);
            taken[mine]();
            await took[theirs];
            await sql`UPDATE crosswise SET n = n + 1 WHERE id = ${theirs + 1}`.execute(trx);
          })
          .finally(() => ended[mine]());
      await Promise.all([crosswise(0, 1), crosswise(1, 0)]);
      expect([engine.deadlocks - deadlocksBefore, engine.retriedTransactions - retriedBefore]).toEqual([1, 1]);
      expect(attempts.toSorted()).toEqual([1, 2]);
      const { rows } = await sql<{ n: number }>`SELECT n FROM crosswise ORDER BY id`.execute(stores[0].db);
      expect(rows).toEqual([{ n: 2 }, { n: 2 }]);
      const metrics = await apps[0].inject({ method: 'GET', url: '/metrics' });
      expect(metrics.body).toMatch(new RegExp(`\\nedm_transaction_deadlocks_total ${engine.deadlocks}\\n`));
    },
  );

  // A move takes the query-graph lock before any row lock: a move that also names a connector
  // (a `restrict` reference, share-locked before the row) held it while waiting for the lock,
  // and a holder of the lock that goes on to lock that connector (a sync started again with the
  // lock first) deadlocked with it.
  it.runIf(kind === 'postgres')(
    'a move naming a connector waits for the query-graph lock before it locks the connector',
    async () => {
      const [from, to] = [await objective('moved from'), await objective('moved to')];
      const hook = await send(apps[0], token, 'POST', byName('Connector').basePath, {
        name: 'feeds the moved one',
        kind: 'webhook',
        config: {},
      });
      const moved = (
        await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: from, title: 'moved', target: 10 })
      ).body.id as string;
      const holder = new pg.Client({ connectionString: PG_URL });
      await holder.connect();
      const deadlocksBefore = deadlocks();
      try {
        await holder.query(`SET search_path TO ${schema}`);
        await holder.query("SET lock_timeout = '2s'");
        await holder.query('BEGIN');
        await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['race\nokr.query-graph']);
        const move = send(apps[1], token, 'PATCH', `${keyResults.basePath}/${moved}`, {
          objective_id: to,
          data_source: 'connector',
          connector_id: hook.body.id,
        });
        await until('the move waits for the tenant lock', async () => (await lockWaiters(holder, 'advisory')) > 0);
        // The holder goes on to the connector's row: free, since the move holds nothing yet.
        await holder.query('SELECT id FROM okr_connectors WHERE id = $1 FOR UPDATE', [hook.body.id]);
        await holder.query('COMMIT');
        const answer = await move;
        expect([answer.status, answer.body.objective_id, answer.body.connector_id]).toEqual([200, to, hook.body.id]);
        // Before, the two deadlocked: PostgreSQL aborted the move, which the engine ran again.
        expect(deadlocks() - deadlocksBefore).toBe(0);
      } finally {
        await holder.query('ROLLBACK').catch(() => {});
        await holder.end();
      }
    },
  );

  it.runIf(kind === 'postgres')(
    'a cascading delete of a cycle whose objective is restored while it waits: started again, it locks that one before the cycle',
    async () => {
      const cycles = byName('Cycle');
      const { cycle, objective: stays } = await objectiveInQuarter('Restored beside a cascade', 'live from the start');
      const back = await send(apps[0], token, 'POST', objectives.basePath, {
        title: 'restored meanwhile',
        cycle_id: cycle.body.id,
      });
      expect((await send(apps[0], token, 'DELETE', `${objectives.basePath}/${back.body.id}`)).status).toBe(200);
      const [retriedBefore, deadlocksBefore] = [retried(), deadlocks()];
      const holder = await onSchema();
      try {
        await holder.query('BEGIN');
        // The cascade's first look finds one live objective, and waits to lock it …
        await holder.query('SELECT id FROM okr_objectives WHERE id = $1 FOR UPDATE', [stays.body.id]);
        const cascade = send(apps[1], token, 'DELETE', `${cycles.basePath}/${cycle.body.id}?cascade=true`);
        await until('the cascade waits for the live objective', async () => (await lockWaiters(holder)) === 1);
        // … while the other is restored: the cycle, not locked yet, lets it through. Locked after
        // the cycle, that one was a deadlock with a restore that held it and waited for the cycle.
        const restored = await send(apps[0], token, 'POST', `${objectives.basePath}/${back.body.id}/restore`);
        expect(restored.status, restored.raw).toBe(200);
        await holder.query('ROLLBACK');
        const answer = await cascade;
        expect(answer.status, answer.raw).toBe(200);
      } finally {
        await holder.query('ROLLBACK').catch(() => {});
        await holder.end();
      }
      for (const id of [stays.body.id, back.body.id]) {
        expect((await send(apps[0], token, 'GET', `${objectives.basePath}/${id}`)).body.is_deleted).toBe(true);
      }
      // Started again once, not a deadlock's victim: its second look locked both before the cycle.
      expect([retried() - retriedBefore, deadlocks() - deadlocksBefore]).toEqual([1, 0]);
    },
  );

  it('a cascading delete of a cycle beside check-ins under it: each served or refused, no deadlock to retry', async () => {
    const retriedBefore = retried();
    const outcomes: string[] = [];
    for (let trial = 0; trial < 6; trial++) {
      const cycle = await send(apps[0], token, 'POST', byName('Cycle').basePath, {
        name: `cascaded ${trial}`,
        start_date: '2026-10-01',
        end_date: '2026-12-31',
      });
      const krs: string[] = [];
      for (const title of ['one', 'two']) {
        const o = await send(apps[0], token, 'POST', objectives.basePath, { title, cycle_id: cycle.body.id });
        krs.push(
          (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: o.body.id, title, target: 10 })).body
            .id as string,
        );
      }
      const answers = await Promise.all([
        send(via(0), token, 'POST', `${keyResults.basePath}/${krs[0]}/check-ins`, { value: 3 }),
        send(via(1), token, 'DELETE', `${byName('Cycle').basePath}/${cycle.body.id}?cascade=true`),
        send(via(0), token, 'POST', `${keyResults.basePath}/${krs[1]}/check-ins`, { value: 4 }),
      ]);
      outcomes.push(answers.map((a) => a.status).join(' '));
      expect(answers[1].status).toBe(200);
      for (const a of [answers[0], answers[2]]) expect([201, 409]).toContain(a.status);
    }
    expect(retried() - retriedBefore, outcomes.join(', ')).toBe(0);
  });

  it('two key results moved at once in opposite directions between two objectives: no deadlock to retry', async () => {
    const retriedBefore = retried();
    for (let trial = 0; trial < 6; trial++) {
      const [o1, o2] = [await objective(`from ${trial}`), await objective(`to ${trial}`)];
      const kr = async (objectiveId: string, title: string) =>
        (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: objectiveId, title, target: 10 })).body
          .id as string;
      const [a, b] = [await kr(o1, 'a'), await kr(o2, 'b')];
      const answers = await Promise.all([
        send(via(0), token, 'PATCH', `${keyResults.basePath}/${a}`, { objective_id: o2 }),
        send(via(1), token, 'PATCH', `${keyResults.basePath}/${b}`, { objective_id: o1 }),
      ]);
      expect(answers.map((x) => x.status)).toEqual([200, 200]);
      for (const o of [o1, o2]) {
        expect((await send(apps[0], token, 'GET', `${objectives.basePath}/${o}`)).body.key_result_count).toBe(1);
      }
    }
    expect(retried() - retriedBefore).toBe(0);
  });

  it('a key result moved to another objective beside check-ins on it: all served, no deadlock', async () => {
    const deadlocksBefore = deadlocks();
    const outcomes: string[] = [];
    for (let trial = 0; trial < 10; trial++) {
      const [o1, o2] = [await objective(`leaves ${trial}`), await objective(`joins ${trial}`)];
      const kr = (
        await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: o1, title: 'moved', target: 10 })
      ).body.id as string;
      const answers = await Promise.all([
        send(via(0), token, 'PATCH', `${keyResults.basePath}/${kr}`, { objective_id: o2 }),
        ...Array.from({ length: 9 }, (_, i) =>
          send(via(i + 1), token, 'POST', `${keyResults.basePath}/${kr}/check-ins`, { value: i + 1 }),
        ),
      ]);
      outcomes.push(answers.map((a) => a.status).join(' '));
      expect(answers.map((a) => a.status)).toEqual([200, ...Array(9).fill(201)]);
      const moved = (await send(apps[0], token, 'GET', `${keyResults.basePath}/${kr}`)).body;
      expect([moved.objective_id, moved.version]).toEqual([o2, 11]);
      const [left, joined] = await Promise.all(
        [o1, o2].map(async (o) => (await send(apps[0], token, 'GET', `${objectives.basePath}/${o}`)).body),
      );
      expect([left.key_result_count, left.progress_pct]).toEqual([0, 0]);
      expect([joined.key_result_count, joined.progress_pct]).toEqual([1, moved.progress_pct]);
    }
    // A check-in that waited for o1 behind the move starts again, on o2: a restart, not a deadlock.
    expect(deadlocks() - deadlocksBefore, outcomes.join(', ')).toBe(0);
  });

  /** The statuses of `n` calls made one after another (`call(i)` answers one's status). */
  const inTurn = async (n: number, call: (i: number) => Promise<number>) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(await call(i));
    return out;
  };
  /** Eight check-ins on `id` through the second process, one after another: their statuses. */
  const checkInsOn = (id: string) =>
    inTurn(
      8,
      async (i) =>
        (await send(via(1), token, 'POST', `${keyResults.basePath}/${id}/check-ins`, { value: i + 2 })).status,
    );

  // A check-in on a key result that a query under another objective reads locks its own
  // objective, then the query's; a move between the two objectives (or a sync feeding both)
  // locks them in id order. Unless the move waits for the query graph first, the two deadlock.
  it('moves between two objectives beside check-ins feeding a query across them: no deadlock to retry', async () => {
    const deadlocksBefore = deadlocks();
    for (let trial = 0; trial < 4; trial++) {
      const [low, high] = [await objective(`low ${trial}`), await objective(`high ${trial}`)].sort();
      const make = async (objectiveId: string, body: Doc) =>
        (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: objectiveId, target: 100, ...body }))
          .body.id as string;
      const read = await make(high, { title: 'read', current: 1 });
      const query = await make(low, { title: 'query', data_source: 'query', query: `kr("${read}")` });
      const moved = await make(low, { title: 'moved' });
      const statuses = await Promise.all([
        inTurn(8, async (i) => {
          const to = i % 2 === 0 ? high : low;
          return (await send(via(0), token, 'PATCH', `${keyResults.basePath}/${moved}`, { objective_id: to })).status;
        }),
        checkInsOn(read),
      ]);
      expect(statuses).toEqual([Array(8).fill(200), Array(8).fill(201)]);
      expect((await send(apps[0], token, 'GET', `${keyResults.basePath}/${query}`)).body.current).toBe(9);
    }
    expect(deadlocks() - deadlocksBefore).toBe(0);
  });

  it('pushes to a connector feeding two objectives beside check-ins feeding a query across them: no deadlock to retry', async () => {
    const deadlocksBefore = deadlocks();
    for (let trial = 0; trial < 4; trial++) {
      const [low, high] = [await objective(`low ${trial}`), await objective(`high ${trial}`)].sort();
      const hook = (
        await send(apps[0], token, 'POST', byName('Connector').basePath, {
          name: `feed ${trial}`,
          kind: 'webhook',
          config: {},
        })
      ).body;
      const make = async (objectiveId: string, body: Doc) =>
        (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: objectiveId, target: 100, ...body }))
          .body.id as string;
      const read = await make(high, { title: 'read', current: 1 });
      await make(low, { title: 'query', data_source: 'query', query: `kr("${read}")` });
      for (const o of [low, high]) await make(o, { title: 'fed', data_source: 'connector', connector_id: hook.id });
      const statuses = await Promise.all([
        inTurn(
          8,
          async (i) =>
            (await via(0).inject({ method: 'POST', url: hook.webhook_url as string, payload: { value: i } }))
              .statusCode,
        ),
        checkInsOn(read),
      ]);
      expect(statuses).toEqual([Array(8).fill(200), Array(8).fill(201)]);
    }
    expect(deadlocks() - deadlocksBefore).toBe(0);
  });

  it('check-ins on team key results that a company total in another objective reads: no deadlock to retry', async () => {
    const retriedBefore = retried();
    for (let trial = 0; trial < 8; trial++) {
      const team = await send(apps[0], token, 'POST', objectives.basePath, { title: `team ${trial}` });
      const company = await send(apps[0], token, 'POST', objectives.basePath, { title: `company ${trial}` });
      const make = async (objective: { body: Doc }, body: Doc) =>
        (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: objective.body.id, ...body })).body
          .id as string;
      const x = await make(team, { title: 'team revenue', target: 100 });
      const k = await make(company, { title: 'company-wide revenue', target: 100 });
      const total = await make(company, {
        title: 'total',
        target: 200,
        data_source: 'query',
        query: `kr("${x}") + kr("${k}")`,
      });
      const answers = await Promise.all([
        send(via(0), token, 'POST', `${keyResults.basePath}/${x}/check-ins`, { value: 10 }),
        send(via(1), token, 'POST', `${keyResults.basePath}/${k}/check-ins`, { value: 20 }),
      ]);
      expect(answers.map((a) => a.status)).toEqual([201, 201]);
      expect((await send(apps[0], token, 'GET', `${keyResults.basePath}/${total}`)).body.current).toBe(30);
    }
    // Each check-in holds its own objective from its start: the recomputation takes the total's
    // objective before the total, so the second check-in waits instead of deadlocking.
    expect(retried() - retriedBefore).toBe(0);
  });

  // The move waits for a session of the test that holds the key result; a check-in queues behind
  // the move for the objective it leaves, and a second session for the one it joins. When the
  // move commits, the check-in's join finds its key result under another objective: going on, it
  // would hold the key result while waiting for the second session, which takes the new
  // objective and then the key result, as every write that starts after the move does.
  it.runIf(kind === 'postgres')(
    'a check-in that waited behind a move starts again on the new objective: no deadlock with a writer that started after the move',
    async () => {
      const [o1, o2] = [await objective('the move leaves'), await objective('the move joins')];
      const kr = (
        await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: o1, title: 'moved', target: 10 })
      ).body.id as string;
      const deadlocksBefore = deadlocks();
      const [holder, after] = [
        new pg.Client({ connectionString: PG_URL }),
        new pg.Client({ connectionString: PG_URL }),
      ];
      await Promise.all([holder.connect(), after.connect()]);
      try {
        const pids: number[] = [];
        for (const session of [holder, after]) {
          await session.query(`SET search_path TO ${schema}`);
          pids.push((await session.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
        }
        await holder.query('BEGIN');
        await holder.query('SELECT id FROM okr_key_results WHERE id = $1 FOR UPDATE', [kr]);
        const move = send(apps[0], token, 'PATCH', `${keyResults.basePath}/${kr}`, { objective_id: o2 });
        await until('the move waits for the key result', async () => (await blockedBy(holder, pids[0])) > 0);
        const checkIn = send(apps[1], token, 'POST', `${keyResults.basePath}/${kr}/check-ins`, { value: 5 });
        await until(
          'the check-in waits for the objective the move leaves',
          async () => (await lockWaiters(holder)) > 0,
        );
        await after.query('BEGIN');
        const joined = after.query('SELECT id FROM okr_objectives WHERE id = $1 FOR UPDATE', [o2]);
        const waiting = async (pid: number) =>
          (await holder.query('SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]
            ?.wait_event_type === 'Lock';
        await until('the second session waits for the objective the move joins', () => waiting(pids[1]));
        await holder.query('ROLLBACK');
        await joined;
        expect((await move).status).toBe(200);
        await until('the check-in waits for the second session', async () => (await blockedBy(holder, pids[1])) > 0);
        // A writer that started after the move: the new objective, then the key result.
        await after.query('SELECT id FROM okr_key_results WHERE id = $1 FOR UPDATE', [kr]);
        await after.query('ROLLBACK');
        expect((await checkIn).status).toBe(201);
        expect(deadlocks() - deadlocksBefore).toBe(0);
        const moved = (await send(apps[0], token, 'GET', `${keyResults.basePath}/${kr}`)).body;
        expect([moved.objective_id, moved.current, moved.version]).toEqual([o2, 5, 3]);
        expect((await send(apps[0], token, 'GET', `${objectives.basePath}/${o2}`)).body.progress_pct).toBe(50);
      } finally {
        for (const session of [holder, after]) {
          await session.query('ROLLBACK').catch(() => {});
          await session.end();
        }
      }
    },
  );

  // A session of the test holds a row; a check-in on x queues behind it, and then a second write
  // that the check-in's recomputation of the total will meet. Taking locks child first, the
  // second write would hold what the check-in needs next while waiting behind it: a deadlock.
  it.runIf(kind === 'postgres').each([
    {
      second: 'a rename of the total',
      // The check-in waits to recompute the total.
      hold: (ids: { company: string; x: string }) => ['okr_objectives', ids.company] as const,
      body: { title: 'company total' },
      after: ['company total', 'kr("X") * 2', 20],
    },
    {
      second: "an edit of the total's query",
      // The check-in waits for x, holding x's objective.
      hold: (ids: { company: string; x: string }) => ['okr_key_results', ids.x] as const,
      body: { query: 'kr("X") * 3' },
      after: ['total', 'kr("X") * 3', 30],
    },
  ])('parent first: $second, queued behind a check-in that recomputes the total, does not deadlock', async (c) => {
    const team = await send(apps[0], token, 'POST', objectives.basePath, { title: 'parent-first team' });
    const company = await send(apps[0], token, 'POST', objectives.basePath, { title: 'parent-first company' });
    const make = async (objective: { body: Doc }, body: Doc) =>
      (await send(apps[0], token, 'POST', keyResults.basePath, { objective_id: objective.body.id, ...body })).body
        .id as string;
    const x = await make(team, { title: 'team revenue', target: 100 });
    const total = await make(company, { title: 'total', target: 300, data_source: 'query', query: `kr("${x}") * 2` });
    const withX = (v: unknown) => JSON.parse(JSON.stringify(v).replaceAll('X', x));
    const retriedBefore = retried();
    const other = await onSchema();
    try {
      const pid = (await other.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const [table, id] = c.hold({ company: company.body.id as string, x });
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${table} WHERE id = $1 FOR UPDATE`, [id]);
      const checkIn = send(apps[0], token, 'POST', `${keyResults.basePath}/${x}/check-ins`, { value: 10 });
      await until('the check-in waits for this session', async () => (await blockedBy(other, pid)) > 0);
      const second = send(apps[1], token, 'PATCH', `${keyResults.basePath}/${total}`, withX(c.body));
      await until('the second write waits for a lock', async () => (await lockWaiters(other)) > 0);
      await other.query('ROLLBACK');
      const answers = await Promise.all([checkIn, second]);
      expect(answers.map((a) => a.status)).toEqual([201, 200]);
      const after = (await send(apps[0], token, 'GET', `${keyResults.basePath}/${total}`)).body;
      expect([after.title, after.query, after.current]).toEqual(withX(c.after));
      expect(retried() - retriedBefore).toBe(0);
    } finally {
      await other.query('ROLLBACK').catch(() => {});
      await other.end();
    }
  });
  // The bounds over many rows (a connector's key results, the queries downstream, alignment depth)
  // are counted under a tenant lock: writes that could pass one together, a create or a PATCH
  // that attaches a key result to a connector and a restore that brings one back (or an aligned
  // objective) included, take it first, so each counts what the one before it stored.
  it.runIf(kind === 'postgres').each([
    ['a create attaching a key result to a connector', QUERY_GRAPH, 'create'],
    ['a restore of a key result a connector feeds', QUERY_GRAPH, 'restore fed'],
    ['a restore of an aligned objective', ALIGNMENT, 'restore aligned'],
  ] as const)('%s waits for the tenant lock the bounds are counted under (%s)', async (_what, lock, write) => {
    const hook = (await send(apps[0], token, 'POST', '/api/v1/okr/connectors', { name: 'bounded', kind: 'webhook' }))
      .body.id as string;
    const owner = await objective(`under a lock: ${write}`);
    const fed = { objective_id: owner, title: 'fed', target: 10, data_source: 'connector', connector_id: hook };
    let request: () => Promise<{ status: number }>;
    if (write === 'create') request = () => send(apps[1], token, 'POST', keyResults.basePath, fed);
    else if (write === 'restore fed') {
      const id = (await send(apps[0], token, 'POST', keyResults.basePath, fed)).body.id as string;
      expect((await send(apps[0], token, 'DELETE', `${keyResults.basePath}/${id}`)).status).toBe(200);
      request = () => send(apps[1], token, 'POST', `${keyResults.basePath}/${id}/restore`);
    } else {
      const child = (
        await send(apps[0], token, 'POST', objectives.basePath, { title: 'aligned', parent_objective_id: owner })
      ).body.id as string;
      expect((await send(apps[0], token, 'DELETE', `${objectives.basePath}/${child}`)).status).toBe(200);
      request = () => send(apps[1], token, 'POST', `${objectives.basePath}/${child}/restore`);
    }
    const holder = new pg.Client({ connectionString: PG_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`race\n${lock}`]);
      const answer = request();
      await until('the write waits for the tenant lock', async () => (await lockWaiters(holder, 'advisory')) === 1);
      await holder.query('COMMIT');
      expect([200, 201]).toContain((await answer).status);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
    }
  });
});
