import type { FastifyInstance } from 'fastify';
import { type CompiledQuery, sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import { buildApp } from '../src/http/app.js';
import type { Store } from '../src/store/database.js';
import { deferWrite } from '../src/store/pg-batch.js';
import { freshStore, injectAs, PG_URL, T0, testConfig, USER_A } from './helpers.js';

// PostgreSQL only: a transaction's writes whose results nobody reads wait, and go to the server
// as one statement before the next read or COMMIT (src/store/pg-batch.ts).

/**
 * Statements this process sends to PostgreSQL while the spy is on (queries are submitted to the
 * wire one at a time, each a round trip). Tests in a file run one at a time, so what is sent in
 * the window is the test's own.
 */
function wire() {
  const sent: string[] = [];
  const query = (pg as unknown as { Query: { prototype: { submit: (...args: unknown[]) => unknown } } }).Query
    .prototype;
  const original = query.submit;
  query.submit = function (this: { text?: string }, ...args: unknown[]) {
    sent.push(this.text ?? '');
    return original.apply(this, args);
  };
  return {
    sent,
    restore: () => {
      query.submit = original;
    },
  };
}

const verb = (text: string) => /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase();

describe.runIf(PG_URL)('PostgreSQL write batching', () => {
  let store: Store;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const fresh = await freshStore('postgres');
    store = fresh.store;
    drop = fresh.drop;
    await sql`CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, label text)`.execute(store.db);
    await sql`CREATE TABLE b (id int PRIMARY KEY, note text)`.execute(store.db);
  });
  afterEach(async () => {
    await sql`TRUNCATE a, b`.execute(store.db);
  });
  afterAll(async () => {
    await store.close();
    await drop();
  });

  const rowsOf = async (table: 'a' | 'b') =>
    (await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(table)} ORDER BY id`.execute(store.db)).rows;
  const setN = (from: number, to: number): CompiledQuery =>
    store.db.updateTable('a').set({ n: to }).where('id', '=', 1).where('n', '=', from).compile();
  const conflict = () => new Error('version conflict');

  it('sends the writes of a transaction as one statement, each value in its place', async () => {
    await store.db.insertInto('a').values({ id: 1, n: 1, label: 'one' }).execute();
    const spy = wire();
    try {
      await store.db.transaction().execute(async (trx) => {
        await trx.executeQuery(
          deferWrite(trx.updateTable('a').set({ n: 2, label: 'two' }).where('id', '=', 1).compile()),
        );
        await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 7, note: 'seven' }).compile()));
      });
    } finally {
      spy.restore();
    }
    expect(spy.sent.map(verb)).toEqual(['begin', 'with', 'commit']);
    expect(await rowsOf('a')).toEqual([{ id: 1, n: 2, label: 'two' }]);
    expect(await rowsOf('b')).toEqual([{ id: 7, note: 'seven' }]);
  });

  it('fails the transaction when a held-back write fails its check, and keeps none of it', async () => {
    await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
    const work = store.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 1, note: 'kept?' }).compile()));
      // Expects n = 5, finds n = 1: no row changes.
      await trx.executeQuery(deferWrite(setN(5, 6), { rows: 1, error: conflict }));
    });
    await expect(work).rejects.toThrow('version conflict');
    expect(await rowsOf('b')).toEqual([]);
    expect(await rowsOf('a')).toEqual([{ id: 1, n: 1, label: null }]);
  });

  it('fails the transaction when a held-back write breaks a constraint, and keeps none of it', async () => {
    await store.db.insertInto('b').values({ id: 1, note: 'first' }).execute();
    await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
    const work = store.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferWrite(setN(1, 2), { rows: 1, error: conflict }));
      await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 1, note: 'again' }).compile()));
    });
    await expect(work).rejects.toMatchObject({ code: '23505' });
    expect(await rowsOf('a')).toEqual([{ id: 1, n: 1, label: null }]);
    expect(await rowsOf('b')).toEqual([{ id: 1, note: 'first' }]);
  });

  it('sends a write to a table already waiting after the one before it, so each sees the last', async () => {
    await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
    await store.db.transaction().execute(async (trx) => {
      // In one statement both would see n = 1 and the second would change nothing.
      await trx.executeQuery(deferWrite(setN(1, 2), { rows: 1, error: conflict }));
      await trx.executeQuery(deferWrite(setN(2, 3), { rows: 1, error: conflict }));
    });
    expect(await rowsOf('a')).toEqual([{ id: 1, n: 3, label: null }]);
  });

  it('lets a read in the transaction see the writes before it', async () => {
    const seen = await store.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 3, note: 'three' }).compile()));
      return (await trx.selectFrom('b').select('note').execute()).map((r) => r.note);
    });
    expect(seen).toEqual(['three']);
  });

  it('runs a write outside a transaction at once, with its count', async () => {
    const result = await store.db.executeQuery(
      deferWrite(store.db.insertInto('b').values({ id: 4, note: 'now' }).compile()),
    );
    expect(result.numAffectedRows).toBe(1n);
    expect(await rowsOf('b')).toEqual([{ id: 4, note: 'now' }]);
  });

  it('forgets writes held back after a savepoint the transaction rolls back to', async () => {
    const trx = await store.db.startTransaction().execute();
    await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 5, note: 'kept' }).compile()));
    const saved = await trx.savepoint('s').execute();
    await saved.executeQuery(deferWrite(saved.insertInto('a').values({ id: 5, n: 5 }).compile()));
    await saved.rollbackToSavepoint('s').execute();
    await trx.commit().execute();
    expect(await rowsOf('b')).toEqual([{ id: 5, note: 'kept' }]);
    expect(await rowsOf('a')).toEqual([]);
  });

  describe('key-result writes through the API', () => {
    const clock = new ManualClock(T0);
    const config = testConfig();
    let app: FastifyInstance;
    let token: string;
    let objectiveId: string;

    beforeAll(async () => {
      app = await buildApp({ config, store, clock });
      token = await mintToken({
        secret: config.jwtSecret,
        tenant: 'batch',
        sub: USER_A,
        ttl: '1000d',
        now: clock.now(),
      });
      objectiveId = (await injectAs(app, token, 'POST', '/api/v1/okr/objectives', { body: { title: 'Grow' } })).body
        .id as string;
    });
    afterAll(async () => {
      await app.close();
    });

    /** The statements one request sends, by their first word. */
    async function roundTrips(method: string, url: string, body: unknown, headers = {}) {
      const spy = wire();
      try {
        const reply = await injectAs(app, token, method, url, { body, headers });
        expect(reply.status).toBeLessThan(300);
        return { verbs: spy.sent.map(verb), body: reply.body };
      } finally {
        spy.restore();
      }
    }

    it('creates a key result in four round trips: its objective locked once, its writes one statement', async () => {
      const { verbs, body } = await roundTrips('POST', '/api/v1/okr/key-results', {
        objective_id: objectiveId,
        title: 'Ship',
        target: 10,
        current: 4,
      });
      expect(verbs).toEqual(['begin', 'select', 'with', 'commit']);
      const objective = (await injectAs(app, token, 'GET', `/api/v1/okr/objectives/${objectiveId}`)).body;
      expect(objective).toMatchObject({ key_result_count: 1, progress_pct: 40 });
      const history = await injectAs(app, token, 'GET', `/api/v1/okr/key-results/${body.id}/check-ins`);
      expect(history.body.data).toHaveLength(1);
    });

    it('patches and checks in in five round trips, and a stale If-Match still loses', async () => {
      const kr = (
        await injectAs(app, token, 'POST', '/api/v1/okr/key-results', {
          body: { objective_id: objectiveId, title: 'Hire', target: 10 },
        })
      ).body;
      const patch = await roundTrips(
        'PATCH',
        `/api/v1/okr/key-results/${kr.id}`,
        { current: 5 },
        { 'if-match': '"1"' },
      );
      expect(patch.verbs).toEqual(['begin', 'select', 'select', 'with', 'commit']);
      expect(patch.body).toMatchObject({ current: 5, progress_pct: 50, version: 2 });
      const checkIn = await roundTrips('POST', `/api/v1/okr/key-results/${kr.id}/check-ins`, { value: 10 });
      expect(checkIn.verbs).toEqual(['begin', 'select', 'select', 'with', 'commit']);
      const stale = await injectAs(app, token, 'PATCH', `/api/v1/okr/key-results/${kr.id}`, {
        body: { current: 1 },
        headers: { 'if-match': '"1"' },
      });
      expect(stale.status).toBe(412);
      const objective = (await injectAs(app, token, 'GET', `/api/v1/okr/objectives/${objectiveId}`)).body;
      // (40 + 100) / 2: the patch and the check-in rolled up, the stale write did not.
      expect(objective).toMatchObject({ key_result_count: 2, progress_pct: 70 });
    });
  });
});
