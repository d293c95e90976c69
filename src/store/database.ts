import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, type KyselyConfig, type LogEvent, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import {
  type Config,
  missingStore,
  postgresUrlProblem,
  readPostgresUrl,
  sqliteFileProblem,
  unsupportedStoreUrl,
  writePostgresUrl,
} from '../core/config.js';
import { ApiError } from '../core/errors.js';
import type { AnyField, ColumnKind } from '../core/fields.js';
import { type Checkpointer, startCheckpointer } from './checkpointer.js';
import { EdmPostgresDialect, NAMED_MAX_PARAMETERS } from './pg-batch.js';

export type StoreKind = 'sqlite' | 'postgres';

// Kysely is used over tables whose shape comes from declarations at run time, so its
// compile-time table typing does not apply; this alias stays inside src/store.
// biome-ignore lint/suspicious/noExplicitAny: dynamic schema, see above
export type DB = Kysely<any>;

/** The codec side of a field: only its column kind matters to a store. */
type Column = Pick<AnyField, 'column'>;

export interface Store {
  readonly kind: StoreKind;
  readonly db: DB;
  /**
   * PostgreSQL: the schema named by `StoreOptions.schema` or the URL's `schema=` parameter
   * (migrate creates it when missing); null when the server's `search_path` decides.
   */
  readonly schema: string | null;
  /** Converts a wire value to what the column holds. */
  encode(field: Column, value: unknown): unknown;
  /** Converts a column value back to its wire form. */
  decode(field: Column, value: unknown): unknown;
  /** SQL type of a column kind. */
  columnType(kind: ColumnKind): string;
  /**
   * SQLite file stores: runs a read on a second, read-only connection, synchronously. It sees
   * only committed data (WAL), never a group commit still in progress on the writer.
   */
  readonly read: ((sql: string, parameters: readonly unknown[]) => Record<string, unknown>[]) | null;
  /**
   * SQLite: runs one statement synchronously on the writer connection, without the query
   * builder's asynchronous executor. Only for code that already holds that connection (a group
   * commit's batch, see GroupCommit); null on PostgreSQL.
   */
  readonly exec: ((sql: string, parameters: readonly unknown[]) => ExecResult) | null;
  /** SQLite files: the thread that copies the WAL back into the database (null elsewhere). */
  readonly checkpointer: Checkpointer | null;
  /** SQLite: the database file, as a path from the working folder (null in memory and on PostgreSQL). */
  readonly file: string | null;
  /**
   * Runs `fn` with a store whose reads all see one snapshot, whatever commits meanwhile (an
   * export of a tenant a server is writing to): on PostgreSQL a `repeatable read`, read-only
   * transaction; on a SQLite file a read transaction on a connection of its own. Only reads.
   */
  snapshot<T>(fn: (store: Store) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** What a statement run through `Store.exec` answers. */
export interface ExecResult {
  rows: Record<string, unknown>[];
  /** Rows a write changed (0 for a read). */
  changes: number;
}

export interface StoreOptions {
  /** PostgreSQL pool size. */
  poolSize?: number;
  /** PostgreSQL schema to work in (tests use one per run); overrides the URL's `schema=`. */
  schema?: string;
  /**
   * PostgreSQL `application_name` of the pool's sessions (default `edm`), given as libpq's fallback:
   * the URL's `application_name` or `fallback_application_name`, or `PGAPPNAME`, wins.
   */
  applicationName?: string;
  /** How long to wait for a connection (new or from the pool) before answering 503; default 5000. */
  connectTimeoutMs?: number;
  /** Server-side `statement_timeout` of requests' statements; 0 disables; default 30000. */
  statementTimeoutMs?: number;
  /** PostgreSQL: run statements with parameters as named prepared statements (default true). */
  prepare?: boolean;
  /**
   * PostgreSQL: a transaction's writes whose results nobody reads go to the server together,
   * as one statement, right before the next read or COMMIT, and the sessions pipeline BEGIN and
   * COMMIT with the statements beside them (see pg-batch.ts). Default true.
   */
  batchWrites?: boolean;
  /**
   * SQLite files: how often a worker thread copies the WAL back into the database (see
   * checkpointer.ts); 0 leaves it to the writer's auto-checkpoint alone. Default 100 ms.
   */
  checkpointIntervalMs?: number;
  /**
   * SQLite files: open the file read-only (a command that only reads, `edm export`): nothing is
   * written to it, its journal mode included, and a file that is not there is refused, not created.
   */
  readOnly?: boolean;
  /** Called with every statement run (tests check that tenant data is always addressed by tenant). */
  onQuery?: (sql: string, parameters: readonly unknown[]) => void;
}

function logger(options: StoreOptions): KyselyConfig['log'] {
  const { onQuery } = options;
  if (!onQuery) return undefined;
  return (event: LogEvent) => onQuery(event.query.sql, event.query.parameters);
}

/** The store options a configuration names (EDM_DB_POOL_SIZE, EDM_DB_*_TIMEOUT_MS, EDM_DB_PREPARE, EDM_DB_BATCH_WRITES). */
export function storeOptions(config: Config): StoreOptions {
  return {
    poolSize: config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    prepare: config.dbPrepare,
    batchWrites: config.dbBatchWrites,
  };
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 100;
/** How long a SQLite connection waits for a lock another connection or process holds. */
export const SQLITE_BUSY_TIMEOUT_MS = 5000;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
/** A session that sits in an open transaction this long (a stalled process) loses it and its row locks. */
const IDLE_IN_TRANSACTION_MS = 60_000;

/**
 * Opens the store a URL names: `sqlite:<file>` (or `sqlite::memory:`) for the embedded store,
 * `postgres://…` for PostgreSQL.
 * @example openStore('postgres://edm@db.internal/edm?schema=edm', { poolSize: 20 })
 */
export function openStore(url: string, options: StoreOptions = {}): Store {
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    const problem = sqliteFileProblem(file);
    if (problem) throw new Error(problem);
    return openSqlite(file, options);
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return openPostgres(url, options);
  throw new Error(unsupportedStoreUrl(url));
}

/** PostgreSQL text and jsonb cannot hold U+0000; both stores refuse it so they answer alike. */
function refuseNul(value: unknown): void {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) {
      throw new ApiError('validation_failed', 'Text must not contain the NUL character (U+0000)');
    }
  } else if (Array.isArray(value)) {
    for (const v of value) refuseNul(v);
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      refuseNul(k);
      refuseNul(v);
    }
  }
}

const CANONICAL_TIME = /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

/** Whether a timestamp that matches CANONICAL_TIME names a day its month has (the pattern lets 29–31 through). */
function dayExists(value: string): boolean {
  const day = (value.charCodeAt(8) - 48) * 10 + (value.charCodeAt(9) - 48);
  if (day <= 28) return true;
  const month = (value.charCodeAt(5) - 48) * 10 + (value.charCodeAt(6) - 48);
  if (month !== 2) return day <= (month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31);
  const year = Number(value.slice(0, 4));
  return day === 29 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/**
 * Timestamps are kept as RFC 3339 UTC with milliseconds on both stores: SQLite compares them
 * as text and PostgreSQL's timestamptz(3) would round sub-millisecond digits, so any other
 * spelling of an instant is normalized (truncated to the millisecond) before it is stored.
 */
function normalizeTime(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  // Already canonical (every timestamp the server writes): parsing and printing it again would
  // answer the same string. An impossible day (February 30) takes the long way, where the
  // parser rolls it over into the next month. (Days 29–31 took it too until they were checked
  // here: on those days of a month each write parsed every timestamp it stored.)
  if (CANONICAL_TIME.test(value) && dayExists(value)) return value;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? value : new Date(ms).toISOString();
}

const utf8 = new TextEncoder();
/** Any character outside printable ASCII (those keys take the byte-wise path). */
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/;

function compareJsonbKeys(a: string, b: string): number {
  // Printable ASCII keys (nearly all): byte length is string length and byte order is code-unit order.
  if (!NOT_PRINTABLE_ASCII.test(a) && !NOT_PRINTABLE_ASCII.test(b))
    return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  const ab = utf8.encode(a);
  const bb = utf8.encode(b);
  if (ab.length !== bb.length) return ab.length - bb.length;
  for (let i = 0; i < ab.length; i++) if (ab[i] !== bb[i]) return ab[i] - bb[i];
  return 0;
}

/**
 * Sorted key lists by object shape: documents of one kind share a handful of shapes. Bounded by
 * count and by the shape's text: a connector's `config.headers` names are the client's (50 of up
 * to 100 characters each), and kept, 10,000 such shapes held ~100 MB; a long shape is sorted
 * each time instead.
 */
const keyOrders = new Map<string, string[]>();
const KEY_ORDERS = 2000;
const KEY_ORDER_TEXT = 1024;
/** How many object shapes have their key order kept (for tests). */
export const keptKeyOrders = () => keyOrders.size;

/**
 * Orders object keys the way PostgreSQL's jsonb keeps them (shorter keys first, then by bytes),
 * so a JSON column reads back identically from either store.
 */
export function jsonbOrder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(jsonbOrder);
  if (value === null || typeof value !== 'object') return value;
  const own = Object.keys(value);
  const shape = own.join('\u0000');
  let keys = keyOrders.get(shape);
  if (!keys) {
    keys = [...own].sort(compareJsonbKeys);
    if (keyOrders.size < KEY_ORDERS && shape.length <= KEY_ORDER_TEXT) keyOrders.set(shape, keys);
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = jsonbOrder((value as Record<string, unknown>)[k]);
  return out;
}

/** The native memory a connection's kept statements may hold, by estimate (see statementBytes). */
export const STATEMENT_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * A prepared statement's native memory, estimated: ~700 bytes per parameter (an `IN` list of
 * them is a program of its own), and the rest. Measured on SQLite 3.53: 500 statements of 224
 * parameters each held 73 MB.
 */
export function statementBytes(source: string): number {
  return 2048 + 700 * parametersOf(source);
}

function parametersOf(source: string): number {
  let parameters = 0;
  for (let i = source.indexOf('?'); i !== -1; i = source.indexOf('?', i + 1)) parameters++;
  return parameters;
}

/**
 * Kysely's SQLite driver prepares every statement it runs; preparing costs more than running a
 * point read. Statements are compiled from a bounded set of query shapes, so keep them: at most
 * `max`, and at most `maxBytes` by estimate (statementBytes), the oldest dropped first. A list's
 * shape holds its LIMIT and its any-of filters' widths, so one caller can make thousands, and
 * 1,000 wide ones held ~390 MB.
 *
 * A read of more than NAMED_MAX_PARAMETERS (a list under wide any-of filters) is not kept at all,
 * as PostgreSQL names none: better-sqlite3 frees a statement's native memory only when V8
 * collects its object, and one dropped from here after it had grown old waits for a full
 * collection. Walking 5,600 wide list shapes (a read token, 12 KB URLs) took a server from
 * 109 MB to 1.3 GB of RSS that way; a statement used once and let go is collected young.
 */
export function cachingStatements(
  database: SQLite.Database,
  max = 500,
  beforeWrite?: () => void,
  maxBytes = STATEMENT_CACHE_BYTES,
): {
  close(): void;
  readonly kept: { statements: number; bytes: number };
  prepare(source: string): SQLite.Statement;
} {
  const cache = new Map<string, { statement: SQLite.Statement; bytes: number }>();
  let bytes = 0;
  return {
    close: () => database.close(),
    /** Statements kept, and their estimated bytes (for tests). */
    get kept() {
      return { statements: cache.size, bytes };
    },
    prepare(source: string) {
      let statement = cache.get(source)?.statement;
      if (!statement) {
        statement = database.prepare(source);
        const size = statementBytes(source);
        const wideRead = parametersOf(source) > NAMED_MAX_PARAMETERS && /^\s*select/i.test(source);
        if (size <= maxBytes && !wideRead) {
          while (cache.size > 0 && (cache.size >= max || bytes + size > maxBytes)) {
            const [oldest, kept] = cache.entries().next().value as [string, { bytes: number }];
            cache.delete(oldest);
            bytes -= kept.bytes;
          }
          cache.set(source, { statement, bytes: size });
          bytes += size;
        }
      }
      // Callers prepare a statement right before they run it.
      if (beforeWrite && !statement.reader) beforeWrite();
      return statement;
    },
  };
}

function openSqlite(file: string, options: StoreOptions): Store {
  const readOnly = options.readOnly === true && file !== ':memory:';
  if (readOnly && !existsSync(file)) throw new Error(missingStore(file));
  if (file !== ':memory:' && !readOnly) {
    // A folder it creates is the owner's only (0700): the store holds every tenant's data.
    const folder = dirname(resolve(file));
    try {
      mkdirSync(folder, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') throw new Error(`${folder}, or a folder above it, is not a folder`);
      throw err;
    }
    // The file itself too, wherever it is (a folder that was there already may be open to others);
    // SQLite gives its WAL and shared-memory files the database file's mode.
    if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
  }
  const database = new SQLite(file, readOnly ? { readonly: true, fileMustExist: true } : undefined);
  // Setting the journal mode writes the file's header: a read-only store keeps the mode it has.
  if (!readOnly) database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  // Each write of a group commit runs in a savepoint, whose journal of the pages it changes is
  // a temporary file by default: three quarters of a write's system calls. In memory it costs
  // a few pages for the length of one write.
  database.pragma('temp_store = MEMORY');
  // A checkpoint copies the WAL's pages back into the database file, a read and a write system
  // call per frame. At 10,000 frames instead of SQLite's 1,000, a page that many writes change
  // (an index's busy leaves, an objective its roll-ups rewrite) is copied once per checkpoint
  // instead of once per 1,000 frames: checkpoints were three quarters of a create's COMMIT time.
  // The WAL file is cut back to 64 MB when a checkpoint lets it start over.
  database.pragma('wal_autocheckpoint = 10000');
  database.pragma('journal_size_limit = 67108864');
  // The copying itself happens on a thread of its own; the auto-checkpoint above is left with a
  // short tail (and is what lets the WAL start over).
  const interval = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  const checkpointer: Checkpointer | null =
    file !== ':memory:' && !readOnly && interval > 0 ? startCheckpointer(resolve(file), interval) : null;
  // Reads on the second connection share one snapshot per turn of the event loop: each read
  // transaction takes and drops file locks (system calls), which cost more than a point read.
  // The snapshot ends when the turn does, and before anything on this store writes (each
  // COMMIT included), so a read that follows a write, in any turn, sees it.
  let reader: ReturnType<typeof cachingStatements> | null = null;
  let snapshot = false;
  const endRead = () => {
    if (!snapshot) return;
    snapshot = false;
    try {
      reader?.prepare('COMMIT').run();
    } catch {
      // A read that failed on a damaged page or an I/O error ended SQLite's transaction with it,
      // so there is none to commit. Thrown here (a timer, or before a write) it would end the
      // process for every tenant; that read already answered 500. The next read opens anew.
      try {
        reader?.close();
      } catch {}
      reader = null;
    }
  };
  const statements = cachingStatements(database, 500, endRead);
  const db = new Kysely({
    dialect: new SqliteDialect({ database: statements }),
    log: logger(options),
  });
  const { onQuery } = options;
  const exec = (source: string, parameters: readonly unknown[]): ExecResult => {
    onQuery?.(source, parameters);
    const statement = statements.prepare(source);
    if (statement.reader) return { rows: statement.all(...parameters) as Record<string, unknown>[], changes: 0 };
    return { rows: [], changes: statement.run(...parameters).changes };
  };
  // Opened lazily: the schema must exist first, and `:memory:` databases have no second connection.
  const read =
    file === ':memory:'
      ? null
      : (source: string, parameters: readonly unknown[]) => {
          if (!reader) {
            const handle = new SQLite(file, { readonly: true });
            handle.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
            reader = cachingStatements(handle);
          }
          if (!snapshot) {
            reader.prepare('BEGIN').run();
            snapshot = true;
            setImmediate(endRead);
          }
          return reader.prepare(source).all(...(parameters as unknown[])) as Record<string, unknown>[];
        };
  const types: Record<ColumnKind, string> = {
    text: 'TEXT',
    real: 'REAL',
    integer: 'INTEGER',
    boolean: 'INTEGER',
    datetime: 'TEXT',
    date: 'TEXT',
    json: 'TEXT',
  };
  const store: Store = {
    kind: 'sqlite',
    db,
    schema: null,
    columnType: (kind) => types[kind],
    encode(field, value) {
      if (value === null || value === undefined) return null;
      switch (field.column) {
        case 'boolean':
          return value ? 1 : 0;
        case 'json':
          refuseNul(value);
          // Stored in jsonb's key order, so reads are a plain parse and both stores answer alike.
          return JSON.stringify(jsonbOrder(value));
        case 'text':
          refuseNul(value);
          return value;
        case 'datetime':
          return normalizeTime(value);
        default:
          return value;
      }
    },
    decode(field, value) {
      if (value === null || value === undefined) return null;
      switch (field.column) {
        case 'boolean':
          return value === 1;
        case 'json':
          return JSON.parse(value as string);
        default:
          return value;
      }
    },
    read,
    exec,
    checkpointer,
    file: file === ':memory:' ? null : file,
    async snapshot(fn) {
      if (file === ':memory:') return fn(store);
      const handle = new SQLite(file, { readonly: true });
      handle.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      const held = cachingStatements(handle);
      try {
        held.prepare('BEGIN').run();
        held.prepare('SELECT count(*) FROM sqlite_schema').get(); // the snapshot starts at a first read
        return await fn({
          ...store,
          read: (source, parameters) =>
            held.prepare(source).all(...(parameters as unknown[])) as Record<string, unknown>[],
        });
      } finally {
        handle.close(); // ends its read transaction
      }
    },
    close: async () => {
      endRead();
      (reader as ReturnType<typeof cachingStatements> | null)?.close();
      // First, so the writer is the last connection: its close checkpoints and removes the WAL.
      await checkpointer?.stop();
      await db.destroy();
    },
  };
  return store;
}

const PG_INT8 = 20;
const PG_DATE = 1082;
const PG_TIMESTAMPTZ = 1184;
const PG_NUMERIC = 1700;
/** A timestamptz(3) as PostgreSQL prints it in a UTC session, at most three fractional digits. */
const PG_UTC_TIME = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,3}))?\+00$/;

export interface PostgresTarget {
  /** The URL without the parameters EDM interprets itself. */
  connectionString: string;
  schema: string | null;
  /** The startup `options` (`-c name=value …`), the URL's followed by EDM's. */
  options: string | undefined;
}

/**
 * Reads what EDM interprets in a PostgreSQL URL: `schema=<name>` (work in that schema) and
 * `options=-c search_path=…` (passed to the server, merged with the schema's search_path).
 * @example parsePostgresUrl('postgres://edm@db/edm?schema=okr').schema === 'okr'
 */
export function parsePostgresUrl(url: string, schemaOverride?: string): PostgresTarget {
  const problem = postgresUrlProblem(url, schemaOverride);
  if (problem) throw new Error(problem);
  const parsed = readPostgresUrl(url) as URL; // read: postgresUrlProblem says so
  const schema = schemaOverride ?? parsed.searchParams.get('schema') ?? null;
  const urlOptions = parsed.searchParams.get('options');
  parsed.searchParams.delete('schema');
  parsed.searchParams.delete('options');
  const options = [urlOptions, schema ? `-c search_path=${schema}` : null].filter(Boolean).join(' ');
  return { connectionString: writePostgresUrl(parsed), schema, options: options || undefined };
}

/** How much longer than statement_timeout a session waits for an answer before it is cut. */
const READ_TIMEOUT_MARGIN_MS = 2000;

function openPostgres(url: string, options: StoreOptions): Store {
  const target = parsePostgresUrl(url, options.schema);
  const statementTimeout = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const batchWrites = options.batchWrites ?? true;
  const pool = new pg.Pool({
    connectionString: target.connectionString,
    // A statement goes on the wire without waiting for the answer to the one before it: the
    // batching sessions send BEGIN and COMMIT in the same flight as a statement (pg-batch.ts).
    pipeline: batchWrites,
    max: options.poolSize ?? 10,
    options: target.options,
    fallback_application_name: options.applicationName ?? 'edm',
    // Bounds both a new connection and the wait for a pooled one: an unreachable server is a quick 503.
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    ...(statementTimeout > 0 ? { statement_timeout: statementTimeout } : {}),
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
        // Dates stay `YYYY-MM-DD`; timestamps become RFC 3339 with milliseconds; counts and
        // sums (int8, numeric) are JSON numbers, as on SQLite.
        if (oid === PG_DATE) return (v: string) => v;
        if (oid === PG_TIMESTAMPTZ) {
          const parse = pg.types.getTypeParser(PG_TIMESTAMPTZ, 'text') as (v: string) => Date;
          return (v: string) => {
            // What a session in UTC prints (`2026-11-28 21:09:01.35+00`) is rearranged, not
            // parsed into a Date and printed again: that was ~14% of a list page's CPU (51
            // sort keys). Other time zones, BC and five-digit years take the general parser.
            const m = PG_UTC_TIME.exec(v);
            return m ? `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(3, '0')}Z` : parse(v).toISOString();
          };
        }
        if (oid === PG_INT8 || oid === PG_NUMERIC) return (v: string) => Number(v);
        return pg.types.getTypeParser(oid, format ?? 'text');
      }) as typeof pg.types.getTypeParser,
    },
  });
  // A session the server ends (restart, pg_terminate_backend, network loss) must not crash the
  // process: idle ones are dropped by the pool, and one checked out by a request fails that
  // request's next statement instead (a 503), then leaves the pool.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const dialect = new EdmPostgresDialect(pool, {
    prepare: options.prepare ?? true,
    batch: batchWrites,
    // The server ends a statement at its statement_timeout; one it does not answer at all (frozen,
    // unreachable mid-session) is given up a little later, client-side (PgSession).
    readTimeoutMs: statementTimeout > 0 ? statementTimeout + READ_TIMEOUT_MARGIN_MS : 0,
  });
  const db = new Kysely({ dialect, log: logger(options) });
  const types: Record<ColumnKind, string> = {
    text: 'text COLLATE "C"',
    real: 'double precision',
    // 64-bit like SQLite's INTEGER, so any integer the API accepts (|x| ≤ 1e15) fits.
    integer: 'bigint',
    boolean: 'boolean',
    datetime: 'timestamptz(3)',
    date: 'date',
    json: 'jsonb',
  };
  const store: Store = {
    kind: 'postgres',
    db,
    schema: target.schema,
    columnType: (kind) => types[kind],
    encode(field, value) {
      if (value === null || value === undefined) return null;
      switch (field.column) {
        case 'json':
          refuseNul(value);
          return JSON.stringify(value);
        case 'text':
          refuseNul(value);
          return value;
        case 'datetime':
          return normalizeTime(value);
        default:
          return value;
      }
    },
    decode(_field, value) {
      return value ?? null;
    },
    read: null,
    exec: null,
    checkpointer: null,
    file: null,
    snapshot(fn) {
      return db
        .transaction()
        .setIsolationLevel('repeatable read')
        .setAccessMode('read only')
        .execute(async (trx) => {
          // Its reader may keep it waiting between statements (an export piped to a slow
          // consumer): a session idle in this transaction is not a stalled one to cut off.
          await sql`SET LOCAL idle_in_transaction_session_timeout = 0`.execute(trx);
          return fn({ ...store, db: trx });
        });
    },
    close: () => db.destroy(),
  };
  return store;
}
