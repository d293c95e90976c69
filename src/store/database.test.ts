import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  cachingStatements,
  jsonbOrder,
  keptKeyOrders,
  openStore,
  type Store,
  type StoreOptions,
  statementBytes,
} from './database.js';
import { NAMED_MAX_PARAMETERS, NAMED_STATEMENTS, statementName } from './pg-batch.js';

const PG_URL = process.env.EDM_TEST_DATABASE_URL;
/** The stores these tests run on: SQLite always, PostgreSQL whenever EDM_TEST_DATABASE_URL is set. */
const stores = [{ kind: 'SQLite', url: 'sqlite::memory:' }, ...(PG_URL ? [{ kind: 'PostgreSQL', url: PG_URL }] : [])];

const turn = () => new Promise((resolve) => setImmediate(resolve));

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A store on a SQLite file of its own, closed (once) and removed after the test. */
function tempStore(options: StoreOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'edm-store-'));
  const file = join(dir, 'edm.sqlite');
  const store = openStore(`sqlite:${file}`, options);
  let closed: Promise<void> | null = null;
  const close = () => {
    closed ??= store.close();
    return closed;
  };
  cleanups.push(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, file, close };
}

describe('SQLite reads on the second connection', () => {
  async function setup() {
    const { store, file } = tempStore();
    await sql`CREATE TABLE t (n INTEGER PRIMARY KEY)`.execute(store.db);
    const read = store.read as NonNullable<Store['read']>;
    const numbers = () => read('SELECT n FROM t ORDER BY n', []).map((r) => r.n);
    return { store, file, numbers };
  }

  it('see a write made in the same turn, through the query builder or synchronously', async () => {
    const { store, numbers } = await setup();
    expect(numbers()).toEqual([]); // opens the turn's shared snapshot
    await sql`INSERT INTO t (n) VALUES (1)`.execute(store.db);
    expect(numbers()).toEqual([1]);
    store.exec?.('INSERT INTO t (n) VALUES (?)', [2]);
    expect(numbers()).toEqual([1, 2]);
  });

  it('see nothing of a transaction before its COMMIT, and all of it after', async () => {
    const { store, numbers } = await setup();
    const exec = store.exec as NonNullable<Store['exec']>;
    exec('BEGIN IMMEDIATE', []);
    exec('INSERT INTO t (n) VALUES (?)', [3]);
    expect(numbers()).toEqual([]);
    exec('COMMIT', []);
    expect(numbers()).toEqual([3]);
  });

  it("see another process's writes from the next turn on", async () => {
    const { file, numbers } = await setup();
    const other = new SQLite(file);
    cleanups.push(() => {
      other.close();
    });
    expect(numbers()).toEqual([]);
    other.prepare('INSERT INTO t (n) VALUES (4)').run();
    await turn();
    expect(numbers()).toEqual([4]);
  });

  it('see, in a snapshot, what had committed when it was taken, and nothing committed after, even before its first read', async () => {
    const { store, file } = await setup();
    const other = new SQLite(file);
    cleanups.push(() => {
      other.close();
    });
    other.prepare('INSERT INTO t (n) VALUES (5)').run();
    const seen = await store.snapshot(async (s) => {
      other.prepare('INSERT INTO t (n) VALUES (6)').run();
      return (s.read as NonNullable<Store['read']>)('SELECT n FROM t ORDER BY n', []).map((r) => r.n);
    });
    expect(seen).toEqual([5]);
  });
});

describe('a SQLite read that meets a damaged page', () => {
  it('fails alone: the process goes on, and the next read opens a fresh connection', async () => {
    const { store, file } = tempStore();
    const exec = store.exec as NonNullable<Store['exec']>;
    exec('CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT)', []);
    exec('CREATE TABLE u (n INTEGER PRIMARY KEY)', []);
    exec('INSERT INTO u (n) VALUES (7)', []);
    for (let i = 0; i < 400; i++) exec('INSERT INTO t (n, pad) VALUES (?, ?)', [i, 'x'.repeat(100)]);
    // Into the file itself, where the reader's fresh connection reads it.
    exec('PRAGMA wal_checkpoint(TRUNCATE)', []);
    const [{ page_size: pageSize }] = exec('PRAGMA page_size', []).rows as { page_size: number }[];
    const [{ rootpage }] = exec("SELECT rootpage FROM sqlite_master WHERE name = 't'", []).rows as {
      rootpage: number;
    }[];
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(pageSize, 0xff), 0, pageSize, (rootpage - 1) * pageSize);
    closeSync(fd);
    const read = store.read as NonNullable<Store['read']>;
    expect(() => read('SELECT count(*) AS c FROM t', [])).toThrow(/malformed|corrupt/i);
    // The snapshot ends at the end of the turn (a COMMIT that SQLite had made impossible), and
    // before a write: neither throws.
    await turn();
    expect(read('SELECT n FROM u', [])).toEqual([{ n: 7 }]);
    expect(() => read('SELECT count(*) AS c FROM t', [])).toThrow(/malformed|corrupt/i);
    exec('INSERT INTO u (n) VALUES (8)', []);
    expect(read('SELECT n FROM u ORDER BY n', [])).toEqual([{ n: 7 }, { n: 8 }]);
    await turn();
  });
});

describe('the SQLite writer connection', () => {
  it('keeps savepoint journals (one per write of a group commit) in memory, not in temporary files', () => {
    const { store } = tempStore();
    expect(store.exec?.('PRAGMA temp_store', [])?.rows).toEqual([{ temp_store: 2 }]);
  });

  it('checkpoints every 10,000 WAL frames (a busy page is copied back once, not every 1,000) and caps the WAL file at 64 MB', () => {
    const { store } = tempStore();
    expect(store.exec?.('PRAGMA wal_autocheckpoint', [])?.rows).toEqual([{ wal_autocheckpoint: 10_000 }]);
    expect(store.exec?.('PRAGMA journal_size_limit', [])?.rows).toEqual([{ journal_size_limit: 67_108_864 }]);
  });
});

describe('timestamps written to the store', () => {
  it.each([
    ['2026-11-28T20:31:25.123Z', '2026-11-28T20:31:25.123Z'],
    ['2026-11-28T22:31:25.123+02:00', '2026-11-28T20:31:25.123Z'],
    ['2026-11-28T20:31:25Z', '2026-11-28T20:31:25.000Z'],
    ['2026-11-28T20:31:25.123456Z', '2026-11-28T20:31:25.123Z'],
    ['2024-02-29T00:00:00.000Z', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29T12:00:00.000Z', '2000-02-29T12:00:00.000Z'],
    ['2026-01-31T23:59:59.999Z', '2026-01-31T23:59:59.999Z'],
    ['2026-04-30T00:00:00.000Z', '2026-04-30T00:00:00.000Z'],
    ['2026-11-29T08:00:00.000Z', '2026-11-29T08:00:00.000Z'],
    // An impossible day is rolled over by the parser, as it was before the canonical shortcut.
    ['2026-02-30T00:00:00.000Z', '2026-03-02T00:00:00.000Z'],
    ['2026-02-29T00:00:00.000Z', '2026-03-01T00:00:00.000Z'],
    ['1900-02-29T00:00:00.000Z', '1900-03-01T00:00:00.000Z'],
    ['2026-04-31T00:00:00.000Z', '2026-05-01T00:00:00.000Z'],
    ['2026-11-31T00:00:00.000Z', '2026-12-01T00:00:00.000Z'],
    ['2026-12-32T00:00:00.000Z', '2026-12-32T00:00:00.000Z'],
    ['2026-01-01T24:00:00.000Z', '2026-01-02T00:00:00.000Z'],
  ])('%s is stored as %s', async (given, stored) => {
    const store = openStore('sqlite::memory:');
    try {
      expect(store.encode({ column: 'datetime' } as Parameters<Store['encode']>[0], given)).toBe(stored);
    } finally {
      await store.close();
    }
  });
});

// PostgreSQL text and jsonb cannot hold U+0000: both stores refuse it, so they answer alike.
describe.each(stores)('JSON written to the store on $kind', ({ url }) => {
  const json = { column: 'json' } as Parameters<Store['encode']>[0];
  it.each([
    ['a key', { ok: 1, 'a\u0000b': 1 }],
    ['a nested key', { ok: { 'a\u0000b': 1 } }],
    ['an array item', ['ok', 'a\u0000b']],
    ['a value', { ok: 'a\u0000b' }],
  ])('refuses U+0000 in %s', async (_where, value) => {
    const store = openStore(url);
    try {
      expect(() => store.encode(json, value)).toThrow(/U\+0000/);
    } finally {
      await store.close();
    }
  });
});

describe('canonical timestamps', () => {
  // Every write stores several; parsing each again cost ~2% of a create on days 29–31, which
  // took the long way until the day was checked against its month.
  it.each([
    '2026-11-28T20:31:25.123Z',
    '2026-11-29T00:00:00.000Z',
    '2026-12-31T23:59:59.999Z',
    '2028-02-29T01:02:03.004Z',
  ])('%s is stored as given, without being parsed again', async (given) => {
    const store = openStore('sqlite::memory:');
    const parse = vi.spyOn(Date, 'parse');
    try {
      expect(store.encode({ column: 'datetime' } as Parameters<Store['encode']>[0], given)).toBe(given);
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
      await store.close();
    }
  });
});

describe('the SQLite checkpointer thread', () => {
  it('copies committed WAL frames into the database file on its own, then stops with the store, which removes the WAL', async () => {
    const { store, file, close } = tempStore({ checkpointIntervalMs: 20 });
    await sql`CREATE TABLE t (n INTEGER)`.execute(store.db);
    for (let i = 0; i < 50; i++) await sql`INSERT INTO t (n) VALUES (${i})`.execute(store.db);
    // Far fewer frames than the writer's auto-checkpoint waits for (10,000): only the thread copies them.
    const before = (await store.checkpointer?.passes()) ?? 0;
    while (((await store.checkpointer?.passes()) ?? 0) < before + 2) await new Promise((r) => setTimeout(r, 10));
    // A probe from outside: every frame in the WAL is already in the database file.
    const probe = new SQLite(file, { readonly: true });
    const [state] = probe.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    probe.close();
    expect(state.log).toBeGreaterThan(0);
    expect(state.checkpointed).toBe(state.log);
    await close();
    expect(existsSync(`${file}-wal`)).toBe(false);
  });

  it('is not started with an interval of 0, nor for an in-memory store', async () => {
    const { store: off } = tempStore({ checkpointIntervalMs: 0 });
    const memory = openStore('sqlite::memory:');
    cleanups.push(() => memory.close());
    expect(off.checkpointer).toBeNull();
    expect(memory.checkpointer).toBeNull();
  });
});

describe('a SQLite file store in a folder that was there already', () => {
  it("is its owner's only (0600), its WAL too, whatever the folder's mode", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edm-mode-'));
    chmodSync(dir, 0o755);
    const file = join(dir, 'edm.sqlite');
    const store = openStore(`sqlite:${file}`);
    try {
      await sql`CREATE TABLE t (x INTEGER)`.execute(store.db);
      await sql`INSERT INTO t VALUES (1)`.execute(store.db);
      for (const f of [file, `${file}-wal`]) expect((statSync(f).mode & 0o777).toString(8), f).toBe('600');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Shapes a caller chooses (a list's LIMIT and any-of widths, a connector's header names) must not
// hold memory without bound: one caller walking thousands of them held ~390 MB of SQLite
// statements, ~1 GB of PostgreSQL sessions' prepared statements and ~100 MB of key orders.
describe('caches of shapes a caller chooses', () => {
  it('keeps SQLite statements within a count and a memory budget, the oldest dropped first', () => {
    const database = new SQLite(':memory:');
    cleanups.push(() => {
      database.close();
    });
    const budget = 1024 * 1024;
    const cache = cachingStatements(database, 500, undefined, budget);
    const statement = (i: number, parameters = 64) =>
      `SELECT ${i} AS n WHERE 1 IN (${Array.from({ length: parameters }, () => '?').join(', ')})`;
    expect(statementBytes(statement(0))).toBe(2048 + 700 * 64);
    for (let i = 0; i < 1000; i++) cache.prepare(statement(i));
    const { statements, bytes } = cache.kept;
    expect(bytes).toBeLessThanOrEqual(budget);
    expect(statements).toBe(Math.floor(budget / statementBytes(statement(0))));
    expect(statements).toBeLessThan(500);
    // The newest are kept: preparing one again returns the statement kept.
    expect(cache.prepare(statement(999))).toBe(cache.prepare(statement(999)));
    // A read of more parameters than PostgreSQL names is not kept at all (its native memory is
    // freed once V8 collects it, and a kept one dropped later waits for a full collection).
    const wide = cachingStatements(database, 500);
    for (let i = 0; i < 10; i++) expect(wide.prepare(statement(i, 65)).all(...Array(65).fill(1))).toEqual([{ n: i }]);
    expect(wide.kept).toEqual({ statements: 0, bytes: 0 });
    expect(wide.prepare(statement(0, 65))).not.toBe(wide.prepare(statement(0, 65)));
    // A write is kept whatever its count (its shapes are the engine's, bounded).
    database.exec('CREATE TABLE w (a)');
    const insert = `INSERT INTO w (a) VALUES ${Array.from({ length: 65 }, () => '(?)').join(', ')}`;
    expect(wide.prepare(insert)).toBe(wide.prepare(insert));
    expect(wide.kept.statements).toBe(1);
    const small = cachingStatements(database, 3);
    for (let i = 0; i < 5; i++) small.prepare(`SELECT ${i}`);
    expect(small.kept.statements).toBe(3);
    expect(small.prepare('SELECT 4').all()).toEqual([{ 4: 4 }]);
  });

  it('names PostgreSQL reads of many parameters not at all, and writes whatever their count', () => {
    const wide = `select id from t where id in (${Array.from({ length: 65 }, (_, i) => `$${i + 1}`).join(', ')})`;
    expect(statementName(wide, NAMED_MAX_PARAMETERS + 1)).toBeUndefined();
    expect(statementName('select id from t where id = $1 and x = $2', 2)).toMatch(/^edm_\d+$/);
    expect(statementName('with "w0" as (update t set x = $1 returning 1) select 1', 200)).toMatch(/^edm_\d+$/);
  });

  it('keeps the key order of short object shapes only, and orders long ones all the same', () => {
    const before = keptKeyOrders();
    const long = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`x-header-${i}-${'a'.repeat(80)}`, 'v']));
    for (let i = 0; i < 20; i++) {
      const shaped = Object.fromEntries(Object.entries(long).map(([k, v]) => [`${k}${i}`, v]));
      // jsonb's order: shorter keys first, then by bytes.
      const expected = Object.keys(shaped).sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
      expect(Object.keys(jsonbOrder(shaped) as object)).toEqual(expected);
    }
    expect(keptKeyOrders()).toBe(before);
    expect(Object.keys(jsonbOrder({ bb: 1, a: 2, c: 3 }) as object)).toEqual(['a', 'c', 'bb']);
  });

  it('keeps the key order of at most 2,000 object shapes, and orders the ones past them all the same', () => {
    for (let i = 0; i < 2100; i++) jsonbOrder({ [`k${i}`]: 1, a: 2 });
    expect(keptKeyOrders()).toBeLessThanOrEqual(2000);
    expect(Object.keys(jsonbOrder({ zzzz: 1, k3000: 2, y: 3 }) as object)).toEqual(['y', 'zzzz', 'k3000']);
  });

  // Last here: it fills this process's statement names.
  it('names at most 1,000 statement shapes, and keeps the names it gave', () => {
    const first = statementName('select id from shapes where id = $1', 1);
    let named = 0;
    for (let i = 0; i < NAMED_STATEMENTS + 50; i++) {
      if (statementName(`select id from shapes_${i} where id = $1`, 1) !== undefined) named++;
    }
    expect(named).toBeLessThanOrEqual(NAMED_STATEMENTS);
    expect(NAMED_STATEMENTS).toBe(1000);
    expect(statementName('select id from shapes_past where id = $1', 1)).toBeUndefined();
    expect(statementName('select id from shapes where id = $1', 1)).toBe(first);
  });
});

describe('JSON key order', () => {
  // jsonb's: shorter keys first by their UTF-8 bytes, not UTF-16 units ('é' is two bytes, as
  // 'ab'), then by bytes ('a' is 0x61, 'é' starts 0xC3).
  it.each([
    [{ é: 1, ab: 2 }, ['ab', 'é']],
    [{ é: 1, b: 2 }, ['b', 'é']],
    [{ abc: 1, é: 2 }, ['é', 'abc']],
  ])('orders %o as %o', (value, keys) => {
    expect(Object.keys(jsonbOrder(value) as object)).toEqual(keys);
  });
});

// Every pooled PostgreSQL session is opened with these settings.
describe.runIf(PG_URL)('PostgreSQL sessions', () => {
  it('lose an open transaction left idle for a minute (and its row locks)', async () => {
    const store = openStore(PG_URL as string, { poolSize: 1 });
    try {
      const { rows } = await sql<{
        v: string;
      }>`SELECT current_setting('idle_in_transaction_session_timeout') AS v`.execute(store.db);
      expect(rows).toEqual([{ v: '1min' }]);
    } finally {
      await store.close();
    }
  });

  it('have the server cancel a statement past statement_timeout (57014), and serve on', async () => {
    // 300 ms: the client gives up 2,300 ms after sending, the server at 300 ms.
    const store = openStore(PG_URL as string, { statementTimeoutMs: 300, poolSize: 1 });
    try {
      const err = await sql`SELECT pg_sleep(1.5)`.execute(store.db).then(
        () => null,
        (e: { code?: string }) => e,
      );
      expect(err?.code).toBe('57014');
      expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(store.db)).rows).toEqual([{ one: 1 }]);
    } finally {
      await store.close();
    }
  });
});
