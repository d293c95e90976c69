import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openStore } from './database.js';
import { GroupCommit } from './group-commit.js';

describe('GroupCommit', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function setup() {
    const dir = mkdtempSync(join(tmpdir(), 'edm-gc-'));
    const file = join(dir, 'gc.sqlite');
    const store = openStore(`sqlite:${file}`);
    await sql`CREATE TABLE t (n INTEGER PRIMARY KEY)`.execute(store.db);
    cleanups.push(async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    // A second connection sees only what has been committed.
    const reader = new SQLite(file, { readonly: true });
    cleanups.push(() => {
      reader.close();
    });
    const committed = () => (reader.prepare('SELECT n FROM t ORDER BY n').all() as { n: number }[]).map((r) => r.n);
    return { store, committed, file };
  }

  // Control statements through the query builder, and synchronously on the held connection (as the engine runs it).
  describe.each([
    ['through the query builder', false],
    ['with synchronous statements', true],
  ] as const)('%s', (_name, direct) => {
    it('commits concurrent writes together; a failing one rolls back alone', async () => {
      const { store, committed } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, n) =>
          gc.run(async (db) => {
            await sql`INSERT INTO t (n) VALUES (${n})`.execute(db);
            if (n === 5) throw new Error('write 5 fails after its insert');
            expect(committed()).not.toContain(n); // not visible before the group commits
            return n;
          }),
        ),
      );
      expect(outcomes.map((o) => o.status)).toEqual(
        Array.from({ length: 10 }, (_, n) => (n === 5 ? 'rejected' : 'fulfilled')),
      );
      expect(committed()).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9]);
      expect(gc.batches).toBe(1);
    });

    it('fails every write of a group whose commit fails, and keeps serving', async () => {
      const { store, committed } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null);
      // A deferred constraint fails at COMMIT, after each write's savepoint was released.
      await sql`CREATE TABLE parent (id INTEGER PRIMARY KEY)`.execute(store.db);
      await sql`CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`.execute(store.db);
      await sql`PRAGMA foreign_keys = ON`.execute(store.db);
      const outcomes = await Promise.allSettled([
        gc.run((db) => sql`INSERT INTO t (n) VALUES (1)`.execute(db)),
        gc.run((db) => sql`INSERT INTO child (pid) VALUES (42)`.execute(db)),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
      expect(committed()).toEqual([]);
      await gc.run((db) => sql`INSERT INTO t (n) VALUES (2)`.execute(db));
      expect(committed()).toEqual([2]);
    });

    it('waits for a lock another connection holds up to its busy timeout, then fails that group alone', async () => {
      const { store, committed, file } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null, 64, 50);
      const other = new SQLite(file);
      cleanups.push(() => {
        other.close();
      });
      other.exec('BEGIN IMMEDIATE');
      const outcomes = await Promise.allSettled([
        gc.run((db) => sql`INSERT INTO t (n) VALUES (1)`.execute(db)),
        gc.run((db) => sql`INSERT INTO t (n) VALUES (2)`.execute(db)),
      ]);
      expect(outcomes.map((o) => o.status === 'rejected' && (o.reason as { code?: string }).code)).toEqual([
        'SQLITE_BUSY',
        'SQLITE_BUSY',
      ]);
      other.exec('COMMIT');
      await gc.run((db) => sql`INSERT INTO t (n) VALUES (3)`.execute(db));
      expect(committed()).toEqual([3]);
      // The connection's own busy timeout is as it was, for what runs outside the batches.
      expect((await sql<{ timeout: number }>`PRAGMA busy_timeout`.execute(store.db)).rows).toEqual([{ timeout: 5000 }]);
    });

    // The wait was the batch's: a write that joined a waiting batch late got what was left of its
    // time, and writes past a batch's maximum started a batch of their own with the whole time.
    it('gives each write its own busy timeout from its arrival, however the writes are batched', async () => {
      const { store, committed, file } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null, 2, 2000);
      const other = new SQLite(file);
      cleanups.push(() => {
        other.close();
      });
      other.exec('BEGIN IMMEDIATE');
      // Five at once, more than a batch takes: all fail at their time, in the batch that waited.
      const queued = await Promise.allSettled(
        Array.from({ length: 5 }, (_, n) => gc.run((db) => sql`INSERT INTO t (n) VALUES (${n})`.execute(db))),
      );
      expect(queued.map((o) => o.status === 'rejected' && (o.reason as { code?: string }).code)).toEqual(
        Array.from({ length: 5 }, () => 'SQLITE_BUSY'),
      );
      expect(gc.batches).toBe(1);
      // One that arrives 1,400 ms into another's wait waits its own 2,000 ms: the lock let go at
      // 2,600 ms (after the first one's time), it commits. (600 ms and 800 ms to spare: a timer
      // late on a loaded machine still lands between the two.)
      // Settled as they end (the first fails while the test still waits: no unhandled rejection).
      const outcome = (p: Promise<unknown>) =>
        p.then(
          () => 'fulfilled',
          (err: { code?: string }) => err.code,
        );
      const first = outcome(gc.run((db) => sql`INSERT INTO t (n) VALUES (10)`.execute(db)));
      await new Promise((resolve) => setTimeout(resolve, 1400));
      const late = outcome(gc.run((db) => sql`INSERT INTO t (n) VALUES (11)`.execute(db)));
      await new Promise((resolve) => setTimeout(resolve, 1200));
      other.exec('COMMIT');
      expect(await Promise.all([first, late])).toEqual(['SQLITE_BUSY', 'fulfilled']);
      expect(committed()).toEqual([11]);
    });

    // The busy wait's deadline was on the wall clock: set back an hour, it waited that hour.
    it('ends a busy wait at its time however the wall clock is set meanwhile', async () => {
      const { store, file } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null, 2, 300);
      const other = new SQLite(file);
      cleanups.push(() => {
        other.close();
      });
      other.exec('BEGIN IMMEDIATE');
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
      try {
        const write = gc.run((db) => sql`INSERT INTO t (n) VALUES (1)`.execute(db));
        vi.setSystemTime(Date.now() - 3_600_000);
        await expect(write).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
      } finally {
        vi.useRealTimers();
        other.exec('ROLLBACK');
      }
    });

    it('runs the writes of a batch in the order they arrived', async () => {
      const { store } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null);
      await sql`CREATE TABLE arrivals (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER)`.execute(store.db);
      await Promise.all(
        [1, 2, 3, 4].map((n) => gc.run((db) => sql`INSERT INTO arrivals (n) VALUES (${n})`.execute(db))),
      );
      expect(gc.batches).toBe(1);
      const { rows } = await sql<{ n: number }>`SELECT n FROM arrivals ORDER BY seq`.execute(store.db);
      expect(rows.map((r) => r.n)).toEqual([1, 2, 3, 4]);
    });

    it('lends its connection to the running batch only', async () => {
      const { store } = await setup();
      const gc = new GroupCommit(store.db, direct ? store.exec : null);
      expect(gc.holds(store.db)).toBe(false);
      let held: boolean | null = null;
      await gc.run(async (db) => {
        held = gc.holds(db);
        if (direct && store.exec) store.exec('INSERT INTO t (n) VALUES (?)', [7]);
      });
      expect(held).toBe(true);
      expect(gc.holds(store.db)).toBe(false);
    });
  });
});
