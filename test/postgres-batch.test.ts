import type { FastifyInstance } from 'fastify';
import { type CompiledQuery, type Kysely, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import { buildApp } from '../src/http/app.js';
import { type DB, openStore, type Store } from '../src/store/database.js';
import { deferWrite } from '../src/store/pg-batch.js';
import { MIGRATE_LOCK, migrate } from '../src/store/schema.js';
import { freshStore, injectAs, PG_URL, T0, testConfig, USER_A } from './helpers.js';

// PostgreSQL only: a transaction's writes whose results nobody reads wait, and go to the server
// as one statement before the next read or COMMIT (src/store/pg-batch.ts).

const verb = (text: string) => /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase();

/**
 * Statements this process sends to PostgreSQL while the spy is on, by round trip: a statement
 * sent while none is waiting for its answer starts a flight, one sent while another is waiting
 * (pipelined) joins it. Tests in a file run one at a time, so what is sent in the window is the
 * test's own.
 */
interface Session {
  prependListener(event: string, listener: () => void): void;
  removeListener(event: string, listener: () => void): void;
}

function wire() {
  const sent: string[] = [];
  const flights: string[][] = [];
  /** The prepared statements' names, in order (statements with parameters are named). */
  const named: string[] = [];
  const waiting = new Map<Session, number>();
  const listeners = new Map<Session, () => void>();
  const query = (pg as unknown as { Query: { prototype: { submit: (...args: unknown[]) => unknown } } }).Query
    .prototype;
  const original = query.submit;
  query.submit = function (this: { text?: string; name?: string }, connection: unknown, ...rest: unknown[]) {
    const session = connection as Session;
    if (!listeners.has(session)) {
      // Before the client's own listener, which may send the next statement from its queue.
      const answered = () => waiting.set(session, (waiting.get(session) ?? 1) - 1);
      session.prependListener('readyForQuery', answered);
      listeners.set(session, answered);
    }
    const inFlight = waiting.get(session) ?? 0;
    if (inFlight === 0) flights.push([]);
    waiting.set(session, inFlight + 1);
    const text = verb(this.text ?? '') ?? '';
    sent.push(text);
    if (this.name) named.push(this.name);
    flights[flights.length - 1].push(text);
    return original.apply(this, [connection, ...rest]);
  };
  return {
    sent,
    flights,
    named,
    restore: () => {
      query.submit = original;
      for (const [session, answered] of listeners) session.removeListener('readyForQuery', answered);
    },
  };
}

describe.runIf(PG_URL)('PostgreSQL write batching', () => {
  let store: Store;
  let schema: string;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const fresh = await freshStore('postgres');
    store = fresh.store;
    drop = fresh.drop;
    schema = fresh.schema as string;
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

  type DBTables = DB extends Kysely<infer T> ? T : never;

  /** Runs `work` in a transaction with the spy on; `read` first makes it send BEGIN. */
  async function inTransaction(read: boolean, work: (trx: Transaction<DBTables>) => Promise<void>) {
    const spy = wire();
    try {
      await store.db.transaction().execute(async (trx) => {
        if (read) await trx.selectFrom('a').select('id').execute();
        await work(trx);
      });
    } finally {
      spy.restore();
    }
    return spy.flights;
  }

  // Without a read first, a transaction sends its writes as one statement and no BEGIN or
  // COMMIT; after a read, BEGIN goes with the read and COMMIT with the writes.
  const openings = [
    { name: 'writes only', read: false, flights: [['with']] },
    {
      name: 'after a read',
      read: true,
      flights: [
        ['begin', 'select'],
        ['with', 'commit'],
      ],
    },
  ];

  describe.each(openings)('a transaction of $name', ({ read, flights }) => {
    it('sends its writes as one statement, each value in its place', async () => {
      await store.db.insertInto('a').values({ id: 1, n: 1, label: 'one' }).execute();
      const sent = await inTransaction(read, async (trx) => {
        await trx.executeQuery(
          deferWrite(trx.updateTable('a').set({ n: 2, label: 'two' }).where('id', '=', 1).compile()),
        );
        await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 7, note: 'seven' }).compile()));
      });
      expect(sent).toEqual(flights);
      expect(await rowsOf('a')).toEqual([{ id: 1, n: 2, label: 'two' }]);
      expect(await rowsOf('b')).toEqual([{ id: 7, note: 'seven' }]);
    });

    it('fails when a held-back write fails its check, keeps none of it, and the next one works', async () => {
      await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
      const work = inTransaction(read, async (trx) => {
        await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 1, note: 'kept?' }).compile()));
        // Expects n = 5, finds n = 1: no row changes.
        await trx.executeQuery(deferWrite(setN(5, 6), { rows: 1, error: conflict }));
      });
      await expect(work).rejects.toThrow('version conflict');
      expect(await rowsOf('b')).toEqual([]);
      expect(await rowsOf('a')).toEqual([{ id: 1, n: 1, label: null }]);
      // The session the failure ran on (the pool hands the last one back) starts clean.
      await inTransaction(read, async (trx) => {
        await trx.executeQuery(deferWrite(setN(1, 2), { rows: 1, error: conflict }));
      });
      expect(await rowsOf('a')).toEqual([{ id: 1, n: 2, label: null }]);
    });

    // A lone write goes out as it is only when nothing checks its count: a check needs the batch's statement.
    it('fails when its one held-back write fails its check', async () => {
      await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
      // Expects n = 5, finds n = 1: no row changes.
      const work = inTransaction(read, async (trx) => {
        await trx.executeQuery(deferWrite(setN(5, 6), { rows: 1, error: conflict }));
      });
      await expect(work).rejects.toThrow('version conflict');
      expect(await rowsOf('a')).toEqual([{ id: 1, n: 1, label: null }]);
    });

    it('sends writes to different rows of one table, each named by its key, in one statement: up to 16 of them', async () => {
      await store.db
        .insertInto('a')
        .values(Array.from({ length: 70 }, (_, i) => ({ id: i + 1, n: 0 })))
        .execute();
      /** `named: false`: the write names no row. */
      const setRow = (trx: Transaction<DBTables>, id: number, n: number, named = true) =>
        trx.executeQuery(
          deferWrite(trx.updateTable('a').set({ n }).where('id', '=', id).where('n', '=', 0).compile(), {
            rows: 1,
            error: conflict,
            row: named ? `a:${id}` : undefined,
          }),
        );
      const sent = await inTransaction(read, async (trx) => {
        for (let id = 1; id <= 70; id++) await setRow(trx, id, id);
      });
      // 16 at a time, then the other 6.
      expect(sent.flat().filter((verb) => verb === 'with')).toHaveLength(5);
      expect((await rowsOf('a')).map((r) => r.n)).toEqual(Array.from({ length: 70 }, (_, i) => i + 1));
      await sql`UPDATE a SET n = 0`.execute(store.db);
      // The same row twice, or a write naming no row, waits for the write before it: each sees
      // what the one before did (the second `n = 0` check fails once the first changed it).
      const twice = inTransaction(read, async (trx) => {
        await setRow(trx, 1, 5);
        await setRow(trx, 1, 6);
      });
      await expect(twice).rejects.toThrow('version conflict');
      expect((await rowsOf('a'))[0]).toMatchObject({ id: 1, n: 0 });
      const unnamed = await inTransaction(read, async (trx) => {
        await setRow(trx, 1, 5);
        await setRow(trx, 2, 6, false);
        await setRow(trx, 3, 7);
      });
      expect(unnamed.flat().filter((verb) => verb === 'with' || verb === 'update')).toHaveLength(3);
    });

    it('sends a batch of a shape it sent before as the same prepared statement, with its own values and checks', async () => {
      await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
      /** The names of the statements a transaction of a checked or unchecked update and an insert prepares. */
      const batch = async (from: number, to: number, note: number, checked: boolean) => {
        const spy = wire();
        try {
          await store.db.transaction().execute(async (trx) => {
            if (read) await trx.selectFrom('a').select('id').execute();
            await trx.executeQuery(deferWrite(setN(from, to), checked ? { rows: 1, error: conflict } : {}));
            await trx.executeQuery(
              deferWrite(
                trx
                  .insertInto('b')
                  .values({ id: note, note: `n${note}` })
                  .compile(),
              ),
            );
          });
        } finally {
          spy.restore();
        }
        return spy.named;
      };
      const first = await batch(1, 2, 1, true);
      expect(first).toHaveLength(1);
      expect(await batch(2, 3, 2, true)).toEqual(first);
      // Without the count check the batch is another statement.
      const unchecked = await batch(3, 4, 3, false);
      expect(unchecked).toHaveLength(1);
      expect(unchecked).not.toEqual(first);
      // The statement sent before still checks this batch's count: n is 4, not 99.
      await expect(batch(99, 5, 4, true)).rejects.toThrow('version conflict');
      expect(await rowsOf('a')).toEqual([{ id: 1, n: 4, label: null }]);
      expect(await rowsOf('b')).toEqual([
        { id: 1, note: 'n1' },
        { id: 2, note: 'n2' },
        { id: 3, note: 'n3' },
      ]);
    });

    it('fails when a held-back write breaks a constraint, and keeps none of it', async () => {
      await store.db.insertInto('b').values({ id: 1, note: 'first' }).execute();
      await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
      const work = inTransaction(read, async (trx) => {
        await trx.executeQuery(deferWrite(setN(1, 2), { rows: 1, error: conflict }));
        await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 1, note: 'again' }).compile()));
      });
      await expect(work).rejects.toMatchObject({ code: '23505' });
      expect(await rowsOf('a')).toEqual([{ id: 1, n: 1, label: null }]);
      expect(await rowsOf('b')).toEqual([{ id: 1, note: 'first' }]);
    });

    it('sends none of its writes when it rolls back', async () => {
      const spy = wire();
      try {
        const work = store.db.transaction().execute(async (trx) => {
          if (read) await trx.selectFrom('a').select('id').execute();
          await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 2, note: 'dropped' }).compile()));
          throw new Error('changed my mind');
        });
        await expect(work).rejects.toThrow('changed my mind');
      } finally {
        spy.restore();
      }
      // After the read, BEGIN went out and ROLLBACK ends it; without one, nothing was sent.
      expect(spy.flights).toEqual(read ? [['begin', 'select'], ['rollback']] : []);
      expect(await rowsOf('b')).toEqual([]);
    });
  });

  it('sends a BEGIN that sets an isolation level at once, so a lone batch of writes runs under it', async () => {
    const spy = wire();
    try {
      await store.db
        .transaction()
        .setIsolationLevel('serializable')
        .execute(async (trx) => {
          await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 11, note: 'eleven' }).compile()));
        });
    } finally {
      spy.restore();
    }
    expect(spy.flights).toEqual([['start'], ['insert', 'commit']]);
    expect(await rowsOf('b')).toEqual([{ id: 11, note: 'eleven' }]);
  });

  it('sends BEGIN and waits for it before a first statement that is not a read', async () => {
    const sent = await inTransaction(false, async (trx) => {
      // Not held back: the caller reads its count.
      await trx.insertInto('b').values({ id: 8, note: 'now' }).execute();
    });
    expect(sent).toEqual([['begin'], ['insert'], ['commit']]);
    expect(await rowsOf('b')).toEqual([{ id: 8, note: 'now' }]);
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

  it('fails a checked write that changes more rows than it expects, and keeps none of the batch', async () => {
    await store.db
      .insertInto('a')
      .values([
        { id: 1, n: 1 },
        { id: 2, n: 1 },
      ])
      .execute();
    const work = store.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 1, note: 'dropped' }).compile()));
      // One row expected, two match: a count check is exact, not a minimum.
      await trx.executeQuery(
        deferWrite(trx.updateTable('a').set({ n: 2 }).where('n', '=', 1).compile(), { rows: 1, error: conflict }),
      );
    });
    await expect(work).rejects.toThrow('version conflict');
    expect(await rowsOf('a')).toEqual([
      { id: 1, n: 1, label: null },
      { id: 2, n: 1, label: null },
    ]);
    expect(await rowsOf('b')).toEqual([]);
  });

  it('fails a transaction PostgreSQL aborted, though the caller caught the statement that failed, and keeps none of it', async () => {
    const work = store.db.transaction().execute(async (trx) => {
      await trx.insertInto('b').values({ id: 1, note: 'dropped' }).execute();
      await sql`SELECT 1 / 0`.execute(trx).catch(() => {});
      // COMMIT of an aborted transaction is answered ROLLBACK, not an error.
    });
    await expect(work).rejects.toThrow();
    expect(await rowsOf('b')).toEqual([]);
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

  it('never sends a held-back write the transaction rolled back to a savepoint before, so its check cannot fail the commit', async () => {
    await store.db.insertInto('a').values({ id: 1, n: 1 }).execute();
    const trx = await store.db.startTransaction().execute();
    try {
      await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 5, note: 'kept' }).compile()));
      const saved = await trx.savepoint('s').execute();
      // Would fail its check (n is 1, not 5) if it were sent.
      await saved.executeQuery(deferWrite(setN(5, 6), { rows: 1, error: conflict }));
      await saved.rollbackToSavepoint('s').execute();
      await trx.commit().execute();
    } catch (err) {
      // The session goes back to the pool.
      await trx
        .rollback()
        .execute()
        .catch(() => {});
      throw err;
    }
    expect(await rowsOf('b')).toEqual([{ id: 5, note: 'kept' }]);
    expect(await rowsOf('a')).toEqual([{ id: 1, n: 1, label: null }]);
  });

  it('hands the session of a snapshot whose reader failed back to the pool outside its read-only transaction', async () => {
    // One session: the write after the snapshot runs on the session the snapshot used.
    const single = openStore(PG_URL as string, { schema, poolSize: 1 });
    try {
      await expect(
        single.snapshot(async (s) => {
          await s.db.selectFrom('a').select('id').execute();
          throw new Error('reader failed');
        }),
      ).rejects.toThrow('reader failed');
      await single.db.insertInto('b').values({ id: 2, note: 'written' }).execute();
    } finally {
      await single.close();
    }
    expect(await rowsOf('b')).toEqual([{ id: 2, note: 'written' }]);
  });

  it("waits for another migrator's lock as long as it takes, past the read deadline of request statements", async () => {
    // statement_timeout 200 ms: a request's statement is given up 2,200 ms after it was sent.
    const applicationName = `edm-migrator-${schema}`;
    const short = openStore(PG_URL as string, { schema, statementTimeoutMs: 200, poolSize: 1, applicationName });
    const other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [MIGRATE_LOCK, schema]);
      const migrating = migrate(short, []);
      // Asked outside the holder's transaction, whose view of pg_stat_activity stays as it first read it.
      const waiting = async () =>
        (
          await sql<{
            n: number;
          }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${applicationName} AND wait_event = 'advisory'`.execute(
            store.db,
          )
        ).rows[0].n > 0;
      for (let i = 0; i < 1000 && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 10));
      expect(await waiting()).toBe(true);
      await new Promise((r) => setTimeout(r, 3000));
      await other.query('COMMIT');
      await expect(migrating).resolves.toBeUndefined();
    } finally {
      await other.query('ROLLBACK').catch(() => {});
      await other.end();
      await short.close();
    }
  });

  it('prepares each statement with parameters once per session, under a name', async () => {
    const spy = wire();
    try {
      for (const id of [1, 2]) await store.db.insertInto('b').values({ id, note: 'x' }).execute();
    } finally {
      spy.restore();
    }
    expect(spy.named).toHaveLength(2);
    expect(spy.named[0]).toMatch(/^edm_\d+$/);
    expect(spy.named[1]).toBe(spy.named[0]);
  });

  it('with batching and preparing off, sends each statement on its own, unnamed, and still rolls back', async () => {
    const plain = openStore(PG_URL as string, { schema, batchWrites: false, prepare: false, poolSize: 1 });
    const spy = wire();
    try {
      await plain.db.insertInto('a').values({ id: 1, n: 1 }).execute();
      await plain.db.transaction().execute(async (trx) => {
        await trx.executeQuery(deferWrite(setN(1, 2), { rows: 1, error: conflict }));
        await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 9, note: 'nine' }).compile()));
        expect((await trx.selectFrom('b').select('note').execute()).map((r) => r.note)).toEqual(['nine']);
      });
      const work = plain.db.transaction().execute(async (trx) => {
        await trx.executeQuery(deferWrite(trx.insertInto('b').values({ id: 10, note: 'dropped' }).compile()));
        throw new Error('changed my mind');
      });
      await expect(work).rejects.toThrow('changed my mind');
    } finally {
      spy.restore();
      await plain.close();
    }
    expect(spy.flights).toEqual([
      ['insert'],
      ['begin'],
      ['update'],
      ['insert'],
      ['select'],
      ['commit'],
      ['begin'],
      ['insert'],
      ['rollback'],
    ]);
    expect(spy.named).toEqual([]);
    expect(await rowsOf('a')).toEqual([{ id: 1, n: 2, label: null }]);
    expect(await rowsOf('b')).toEqual([{ id: 9, note: 'nine' }]);
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

    /** The statements one request sends, by their first word, in round trips. */
    async function roundTrips(method: string, url: string, body: unknown, headers = {}) {
      const spy = wire();
      try {
        const reply = await injectAs(app, token, method, url, { body, headers });
        expect(reply.status).toBeLessThan(300);
        return { flights: spy.flights, body: reply.body };
      } finally {
        spy.restore();
      }
    }

    it('creates a key result in two round trips: BEGIN with its objective locked, its writes with COMMIT', async () => {
      const { flights, body } = await roundTrips('POST', '/api/v1/okr/key-results', {
        objective_id: objectiveId,
        title: 'Ship',
        target: 10,
        current: 4,
      });
      expect(flights).toEqual([
        ['begin', 'select'],
        ['with', 'commit'],
      ]);
      const objective = (await injectAs(app, token, 'GET', `/api/v1/okr/objectives/${objectiveId}`)).body;
      expect(objective).toMatchObject({ key_result_count: 1, progress_pct: 40 });
      const history = await injectAs(app, token, 'GET', `/api/v1/okr/key-results/${body.id}/check-ins`);
      expect(history.body.data).toHaveLength(1);
    });

    it('patches and checks in in two round trips: the key result locked with its objective, the writes with COMMIT, and a stale If-Match still loses', async () => {
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
      const locked = [
        ['begin', 'select'],
        ['with', 'commit'],
      ];
      expect(patch.flights).toEqual(locked);
      expect(patch.body).toMatchObject({ current: 5, progress_pct: 50, version: 2 });
      const checkIn = await roundTrips('POST', `/api/v1/okr/key-results/${kr.id}/check-ins`, { value: 10 });
      expect(checkIn.flights).toEqual(locked);
      const stale = await injectAs(app, token, 'PATCH', `/api/v1/okr/key-results/${kr.id}`, {
        body: { current: 1 },
        headers: { 'if-match': '"1"' },
      });
      expect(stale.status).toBe(412);
      const objective = (await injectAs(app, token, 'GET', `/api/v1/okr/objectives/${objectiveId}`)).body;
      // (40 + 100) / 2: the patch and the check-in rolled up, the stale write did not.
      expect(objective).toMatchObject({ key_result_count: 2, progress_pct: 70 });
    });

    it("deletes an objective's key results by cascade in batches of their writes, not a round trip each", async () => {
      const objective = (await injectAs(app, token, 'POST', '/api/v1/okr/objectives', { body: { title: 'Gone' } })).body
        .id as string;
      for (let i = 0; i < 40; i++) {
        await injectAs(app, token, 'POST', '/api/v1/okr/key-results', {
          body: { objective_id: objective, title: `k${i}`, target: 10, current: i % 10 },
        });
      }
      const { flights, body } = await roundTrips(
        'DELETE',
        `/api/v1/okr/objectives/${objective}?cascade=true`,
        undefined,
      );
      expect(body).toMatchObject({ is_deleted: true, key_result_count: 0, version: 42 });
      // Each key result's update and its sweep-queue delete, 16 writes a statement: 80 in five.
      const writes = flights.flat().filter((verb) => verb === 'with' || verb === 'update' || verb === 'delete');
      expect(writes.length).toBeLessThanOrEqual(7);
      // The reads: the objective locked, its key results found and read, the first roll-up's read
      // of the objective, and its delete's own; 40 or more when each key result was one.
      expect(flights.length).toBeLessThanOrEqual(15);
      const left = await injectAs(app, token, 'GET', `/api/v1/okr/key-results?objective_id=${objective}`);
      expect(left.body.data).toEqual([]);
      const all = await injectAs(
        app,
        token,
        'GET',
        `/api/v1/okr/key-results?objective_id=${objective}&include_deleted=true&limit=100`,
      );
      const deleted = all.body.data as { is_deleted: boolean; version: number }[];
      expect(deleted).toHaveLength(40);
      expect(deleted.every((kr) => kr.is_deleted && kr.version === 2)).toBe(true);
    });

    it('answers the by-id reads of one turn with one statement per scope, each read its own row or 404', async () => {
      const mint = (tenant: string, app?: string) =>
        mintToken({ secret: config.jwtSecret, tenant, sub: USER_A, ttl: '1000d', now: clock.now(), app });
      const other = await mint('batch-other');
      const scoped = await mint('batch', 'app-1');
      const mine = [];
      for (const title of ['a', 'b', 'c']) {
        const created = await injectAs(app, token, 'POST', '/api/v1/okr/key-results', {
          body: { objective_id: objectiveId, title, target: 10 },
        });
        mine.push(created.body.id as string);
      }
      const theirs = (await injectAs(app, other, 'POST', '/api/v1/okr/objectives', { body: { title: 'Theirs' } })).body
        .id as string;
      const missing = 'kr_00000000000000000000000000';
      const reads: [string, string, number, string | null][] = [
        // token, url, status, the title answered
        [token, `/api/v1/okr/key-results/${mine[0]}`, 200, 'a'],
        [token, `/api/v1/okr/key-results/${mine[1]}`, 200, 'b'],
        [token, `/api/v1/okr/key-results/${mine[0]}`, 200, 'a'],
        [token, `/api/v1/okr/key-results/${missing}`, 404, null],
        [token, `/api/v1/okr/objectives/${theirs}`, 404, null],
        [other, `/api/v1/okr/objectives/${theirs}`, 200, 'Theirs'],
        [other, `/api/v1/okr/key-results/${mine[2]}`, 404, null],
        // Rows created without an app are not the app's (the app scope is a scope of its own).
        [scoped, `/api/v1/okr/key-results/${mine[2]}`, 404, null],
        [token, `/api/v1/okr/key-results/${mine[2]}`, 200, 'c'],
      ];
      const spy = wire();
      let replies: Awaited<ReturnType<typeof injectAs>>[];
      try {
        replies = await Promise.all(reads.map(([t, url]) => injectAs(app, t, 'GET', url)));
      } finally {
        spy.restore();
      }
      expect(replies.map((r) => [r.status, r.status === 200 ? r.body.title : null])).toEqual(
        reads.map(([, , status, title]) => [status, title]),
      );
      expect(replies[0].headers.etag).toBe('"1"');
      // Scopes: (key results, batch), (objectives, batch), (objectives, other), (key results,
      // other), (key results, batch in app-1): five statements for nine reads.
      expect(spy.sent).toEqual(['select', 'select', 'select', 'select', 'select']);
    });
  });
});
