import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import SQLite from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import { buildApp } from '../src/http/app.js';
import { openStore, type Store } from '../src/store/database.js';
import { migrate } from '../src/store/schema.js';
import { byName, freshStore, injectAs, resources, T0, testConfig } from './helpers.js';

/**
 * Another process (an `edm import`, a second server) holds the SQLite file's write lock. The
 * server's writes wait for it between turns of the event loop: reads go on being answered
 * meanwhile, and the writes land once the lock is let go. (SQLite's own busy handler waits
 * synchronously, so every request of the process stood still until the write gave up, 503.)
 */
describe('SQLite: a write lock held by another process', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup() {
    const fresh = await freshStore('sqlite');
    const config = testConfig();
    const app = await buildApp({ config, store: fresh.store, clock: new ManualClock(T0) });
    cleanups.push(async () => {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    });
    const token = await mintToken({ secret: config.jwtSecret, tenant: 'acme', sub: 'usr-lock', ttl: '1d', now: T0 });
    const call = (method: string, url: string, o: Parameters<typeof injectAs>[4] = {}) =>
      injectAs(app, token, method, url, o);
    const cycle = await call('POST', '/api/v1/okr/cycles', {
      body: { name: 'Q4', start_date: '2026-10-01', end_date: '2026-12-31' },
    });
    expect(cycle.status).toBe(201);
    const other = new SQLite(fresh.url.slice('sqlite:'.length));
    cleanups.push(() => {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    });
    return { call, cycle: cycle.body, other };
  }

  it('reads are answered while writes wait, and the writes land when the lock is let go', async () => {
    const { call, cycle, other } = await setup();
    other.exec('BEGIN IMMEDIATE');
    const settled: string[] = [];
    const track = <T>(name: string, p: Promise<T>) => p.finally(() => settled.push(name));
    const body = { title: 'Waits for the lock', cycle_id: cycle.id };
    const plain = track('plain', call('POST', '/api/v1/okr/objectives', { body }));
    // An Idempotency-Key's claim is a write too.
    const keyed = track(
      'keyed',
      call('POST', '/api/v1/okr/objectives', { body, headers: { 'idempotency-key': 'lock-1' } }),
    );
    const renamed = track('patch', call('PATCH', `/api/v1/okr/cycles/${cycle.id}`, { body: { name: 'Q4 renamed' } }));
    // Time for the writes to reach the lock (nothing here is timed: before, the first write
    // to reach it froze the process until it gave up, and every write answered 503).
    await sleep(300);
    for (let n = 0; n < 5; n++) {
      const read = await call('GET', `/api/v1/okr/cycles/${cycle.id}`);
      expect(read.status).toBe(200);
      expect(read.body.name).toBe('Q4');
      expect((await call('GET', '/api/v1/okr/objectives')).body.data).toEqual([]);
    }
    expect(settled).toEqual([]); // every write still waiting, none failed
    other.exec('COMMIT');
    const [a, b, c] = await Promise.all([plain, keyed, renamed]);
    expect([a.status, b.status, c.status]).toEqual([201, 201, 200]);
    expect(c.body.name).toBe('Q4 renamed');
    const list = await call('GET', '/api/v1/okr/objectives');
    expect((list.body.data as { id: string }[]).map((o) => o.id).sort()).toEqual([a.body.id, b.body.id].sort());
    // The key was recorded with its answer: a retry is replayed.
    const retry = await call('POST', '/api/v1/okr/objectives', { body, headers: { 'idempotency-key': 'lock-1' } });
    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.body.id).toBe(b.body.id);
  });
});

/**
 * A SQLite file that cannot grow (a full disk; here the connection's max_page_count, which SQLite
 * answers with the same SQLITE_FULL): writes are 503 with Retry-After, as the database being
 * unavailable is, and nothing of them is stored; reads go on; writes land again once it has room.
 */
describe('SQLite: a disk that is full', () => {
  it('answers writes 503 with Retry-After, stores nothing of them, and takes writes again once there is room', async () => {
    const fresh = await freshStore('sqlite');
    const config = testConfig();
    const lines: { level: number; repeated?: number; err?: { stack?: string } }[] = [];
    const app = await buildApp({
      config,
      store: fresh.store,
      clock: new ManualClock(T0),
      logger: 'error',
      logStream: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    try {
      const token = await mintToken({ secret: config.jwtSecret, tenant: 'acme', sub: 'usr-full', ttl: '1d', now: T0 });
      const call = (method: string, url: string, o: Parameters<typeof injectAs>[4] = {}) =>
        injectAs(app, token, method, url, o);
      const exec = fresh.store.exec as NonNullable<typeof fresh.store.exec>;
      // No page beyond those the file has now.
      exec('PRAGMA max_page_count = 1', []);
      const body = (n: number) => ({ title: `Objective ${n}`, description: 'd'.repeat(1500) });
      // Eight at a time, so they share group commits: when one of a batch fails so, SQLite ends
      // the batch's whole transaction, and the writes before it in the batch are gone too.
      let created = 0;
      let refused: Awaited<ReturnType<typeof call>> | undefined;
      for (let round = 0; round < 40 && !refused; round++) {
        const answers = await Promise.all(
          Array.from({ length: 8 }, (_, i) => call('POST', '/api/v1/okr/objectives', { body: body(round * 8 + i) })),
        );
        for (const res of answers) {
          expect([201, 503]).toContain(res.status);
          if (res.status === 201) created++;
          else refused ??= res;
        }
      }
      expect(refused?.status).toBe(503);
      expect(refused?.headers['retry-after']).toBe('5');
      expect(refused?.body).toMatchObject({ code: 'service_unavailable', status: 503 });
      const listed = await call('GET', '/api/v1/okr/objectives?limit=200');
      expect(listed.status).toBe(200);
      expect((listed.body.data as unknown[]).length).toBe(created);
      // Logged as an error, with its stack, once per 10 s however many writes it refuses; the
      // next line says how many there were meanwhile. (A refused batch frees its pages, so a
      // write can land between refusals: counted by answer.)
      const start = Date.now() + 3_600_000;
      vi.useFakeTimers({ toFake: ['Date'], now: start });
      lines.length = 0;
      const refusals = async (n: number) => {
        let seen = 0;
        for (let i = 0; i < 100 && seen < n; i++) {
          if ((await call('POST', '/api/v1/okr/objectives', { body: body(500 + i) })).status === 503) seen++;
        }
        return seen;
      };
      expect(await refusals(5)).toBe(5);
      const faults = () => lines.filter((l) => l.level === 50);
      expect(faults()).toHaveLength(1);
      expect(faults()[0]?.err?.stack).toMatch(/full/);
      vi.setSystemTime(start + 10_000);
      expect(await refusals(1)).toBe(1);
      // (The first line counts the refusals of the rounds above, in their own 10 s.)
      expect(faults().map((l) => l.repeated)[1]).toBe(4);
      expect(faults()).toHaveLength(2);
      vi.useRealTimers();
      exec('PRAGMA max_page_count = 1073741823', []);
      expect((await call('POST', '/api/v1/okr/objectives', { body: body(999) })).status).toBe(201);
    } finally {
      vi.useRealTimers();
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

/**
 * Storage that refuses writes while the file's access bits say it may be written (a full disk;
 * ext4 turned read-only after errors; here the connection's query_only, which SQLite answers
 * with SQLITE_READONLY as it does a read-only file system): /readyz said 200 while every write
 * was 503. Now not ready from the first such fault until a write is stored again.
 */
describe('SQLite: storage that refuses writes, /readyz', () => {
  type Line = { level: number; msg?: string; cause?: string };
  /**
   * A server on `store` (a fresh one's, unless given), with a token, its log from warnings up, and
   * the store's own connection; the wall clock faked from `start` (its `Date` alone). Closed after `fn`.
   */
  const serving = async (
    options: { store?: Store; storageFreeBytes?: number },
    fn: (s: {
      call: (method: string, url: string, o?: Parameters<typeof injectAs>[4]) => ReturnType<typeof injectAs>;
      create: (title: string) => ReturnType<typeof injectAs>;
      readyz: () => Promise<[number, string | null]>;
      exec: NonNullable<Store['exec']>;
      lines: Line[];
      start: number;
    }) => Promise<void>,
  ) => {
    const fresh = options.store ? null : await freshStore('sqlite');
    const store = options.store ?? (fresh as { store: Store }).store;
    const config = testConfig();
    const lines: Line[] = [];
    const app = await buildApp({
      config,
      store,
      clock: new ManualClock(T0),
      migrate: fresh !== null,
      logger: 'warn',
      logStream: { write: (line: string) => void lines.push(JSON.parse(line)) },
      ...(options.storageFreeBytes === undefined ? {} : { storageFreeBytes: options.storageFreeBytes }),
    });
    try {
      const token = await mintToken({ secret: config.jwtSecret, tenant: 'acme', sub: 'usr-ro', ttl: '1d', now: T0 });
      const start = Date.now();
      vi.useFakeTimers({ toFake: ['Date'], now: start });
      const call = (method: string, url: string, o: Parameters<typeof injectAs>[4] = {}) =>
        injectAs(app, token, method, url, o);
      await fn({
        call,
        create: (title) => call('POST', '/api/v1/okr/objectives', { body: { title } }),
        readyz: async () => {
          const res = await app.inject('/readyz');
          return [res.statusCode, (res.headers['retry-after'] as string | undefined) ?? null];
        },
        exec: store.exec as NonNullable<Store['exec']>,
        lines,
        start,
      });
    } finally {
      vi.useRealTimers();
      await app.close();
      if (fresh) {
        await fresh.store.close();
        await fresh.drop();
      }
    }
  };

  it('is 503 after a write met a storage fault, until a write probe or a request stores one again', () =>
    serving({}, async ({ call, create, readyz, exec, start }) => {
      expect(await readyz()).toEqual([200, null]);
      exec('PRAGMA query_only = 1', []);
      // Not a fault yet: nothing says so before a write meets one.
      expect(await readyz()).toEqual([200, null]);
      expect((await create('Objective 1')).status).toBe(503);
      // Retry-After as the writes' own: it waits for an operator.
      expect(await readyz()).toEqual([503, '5']);
      vi.setSystemTime(start + 9_000);
      expect(await readyz()).toEqual([503, '5']);
      // Past the 10 s, a write probe decides: refused still, and so not ready for another 10 s.
      vi.setSystemTime(start + 10_500);
      expect(await readyz()).toEqual([503, '5']);
      exec('PRAGMA query_only = 0', []);
      vi.setSystemTime(start + 19_000);
      expect(await readyz()).toEqual([503, '5']);
      vi.setSystemTime(start + 21_000);
      expect(await readyz()).toEqual([200, null]);
      // A request's write stored clears it at once.
      exec('PRAGMA query_only = 1', []);
      expect((await create('Objective 2')).status).toBe(503);
      expect(await readyz()).toEqual([503, '5']);
      exec('PRAGMA query_only = 0', []);
      expect((await create('Objective 3')).status).toBe(201);
      expect(await readyz()).toEqual([200, null]);
      const listed = await call('GET', '/api/v1/okr/objectives');
      expect((listed.body.data as { title: string }[]).map((o) => o.title)).toEqual(['Objective 3']);
    }));

  // A fault's time is kept: with the clock set back an hour, the wait lasted that hour, and the
  // fault's error line, logged once per 10 s, was not logged again for as long.
  it('ends the wait, and logs the next fault, when the clock is set back', () =>
    serving({}, async ({ create, readyz, exec, lines, start }) => {
      exec('PRAGMA query_only = 1', []);
      expect((await create('x')).status).toBe(503);
      expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
      vi.setSystemTime(start - 3_600_000);
      expect((await create('x')).status).toBe(503);
      expect(lines.filter((l) => l.level === 50)).toHaveLength(2);
      exec('PRAGMA query_only = 0', []);
      vi.setSystemTime(start - 7_200_000);
      expect(await readyz()).toEqual([200, null]);
    }));

  // A full disk: the probe's one row fits in pages SQLite holds already, and passed with no byte
  // free. Here the file system has less free than the server is told to need.
  it('stays 503 past the 10 s while the file system has less free than it needs, until a request stores a write', () =>
    serving({ storageFreeBytes: Number.MAX_SAFE_INTEGER }, async ({ create, readyz, exec, start }) => {
      expect(await readyz()).toEqual([200, null]);
      exec('PRAGMA query_only = 1', []);
      expect((await create('Objective 1')).status).toBe(503);
      exec('PRAGMA query_only = 0', []);
      for (const at of [5_000, 10_500, 30_000]) {
        vi.setSystemTime(start + at);
        expect(await readyz(), `${at} ms`).toEqual([503, '5']);
      }
      expect((await create('Objective 2')).status).toBe(201);
      expect(await readyz()).toEqual([200, null]);
    }));

  // Reached through a link on another file system, the free space was the link's folder's: a
  // full disk under the file itself read as room, and /readyz said 200 while writes were 503.
  it("counts the free space of the file's own file system, reached through a link", async (context) => {
    const here = mkdtempSync(join(tmpdir(), 'edm-link-'));
    const there = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/edm-target-') : null;
    try {
      const [near, far] = await Promise.all([statfs(here), there ? statfs(there) : null]);
      // The file's free space as the server counts it (root may write the blocks kept for it),
      // and the link's folder's as it might be counted, either way: a threshold between the
      // file's and both of those tells which one the server read.
      const fileFree = far ? (process.geteuid?.() === 0 ? far.bfree : far.bavail) * far.bsize : 0;
      const nearFree = [near.bavail * near.bsize, near.bfree * near.bsize];
      const [low, high] = [Math.min(...nearFree), Math.max(...nearFree)];
      const threshold =
        fileFree < low - 2 ** 21 ? (fileFree + low) / 2 : fileFree > high + 2 ** 21 ? (fileFree + high) / 2 : null;
      if (!there || !far || near.type === far.type || threshold === null) {
        return context.skip('no second file system with another free space here');
      }
      symlinkSync(join(there, 'edm.sqlite'), join(here, 'edm.sqlite'));
      const store = openStore(`sqlite:${join(here, 'edm.sqlite')}`, { checkpointIntervalMs: 0 });
      try {
        await migrate(store, resources);
        await serving({ store, storageFreeBytes: threshold }, async ({ create, readyz, exec, start }) => {
          exec('PRAGMA query_only = 1', []);
          expect((await create('x')).status).toBe(503);
          exec('PRAGMA query_only = 0', []);
          vi.setSystemTime(start + 10_500);
          expect((await readyz())[0]).toBe(fileFree < threshold ? 503 : 200);
        });
      } finally {
        await store.close();
      }
    } finally {
      rmSync(here, { recursive: true, force: true });
      if (there) rmSync(there, { recursive: true, force: true });
    }
  });

  // A role that may not write edm_meta (PostgreSQL's least privilege, say): the probe's failure
  // says nothing of the storage. It kept /readyz 503 until a request's write was stored, saying nothing.
  it('goes by the 10 s alone where the write probe fails for another reason, and logs it', () =>
    serving({}, async ({ create, readyz, exec, lines, start }) => {
      for (const op of ['INSERT', 'UPDATE']) {
        exec(
          `CREATE TRIGGER no_meta_${op} BEFORE ${op} ON edm_meta BEGIN SELECT RAISE(ABORT, 'no write to edm_meta'); END`,
          [],
        );
      }
      exec('PRAGMA query_only = 1', []);
      expect((await create('x')).status).toBe(503);
      exec('PRAGMA query_only = 0', []);
      expect((await readyz())[0]).toBe(503);
      vi.setSystemTime(start + 10_500);
      expect(await readyz()).toEqual([200, null]);
      expect(lines.filter((l) => l.msg === 'the write probe of /readyz failed').map((l) => l.cause)).toEqual([
        expect.stringContaining('no write to edm_meta'),
      ]);
    }));
});

describe('SQLite: two migrations of one file at once', () => {
  it('the second waits for the first and finds the column it added, instead of adding it again', async () => {
    const kr = byName('KeyResult');
    const fresh = await freshStore('sqlite');
    const file = fresh.url.slice('sqlite:'.length);
    try {
      await migrate(fresh.store, resources);
      // A store of a build before the column (one no index covers).
      const other = new SQLite(file);
      try {
        other.exec(`ALTER TABLE ${kr.table} DROP COLUMN unit`);
        // The first migrator, midway: the column added, not yet committed.
        other.exec('BEGIN IMMEDIATE');
        other.exec(`ALTER TABLE ${kr.table} ADD COLUMN unit TEXT`);
        const second = migrate(fresh.store, resources).then(
          () => 'migrated',
          (err: Error) => err.message,
        );
        await sleep(300);
        other.exec('COMMIT');
        expect(await second).toBe('migrated');
      } finally {
        if (other.inTransaction) other.exec('ROLLBACK');
        other.close();
      }
      const columns = (await fresh.store.db.introspection.getTables()).find((t) => t.name === kr.table)?.columns;
      expect(columns?.filter((c) => c.name === 'unit')).toHaveLength(1);
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });
});
