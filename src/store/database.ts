import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import type { AnyField, ColumnKind } from '../core/fields.js';

export type StoreKind = 'sqlite' | 'postgres';

// Kysely is used over tables whose shape comes from declarations at run time, so its
// compile-time table typing does not apply; this alias stays inside src/store.
// biome-ignore lint/suspicious/noExplicitAny: dynamic schema, see above
export type DB = Kysely<any>;

export interface Store {
  readonly kind: StoreKind;
  readonly db: DB;
  /** Converts a wire value to what the column holds. */
  encode(field: AnyField, value: unknown): unknown;
  /** Converts a column value back to its wire form. */
  decode(field: AnyField, value: unknown): unknown;
  /** SQL type of a column kind. */
  columnType(kind: ColumnKind): string;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** PostgreSQL pool size. */
  poolSize?: number;
  /** PostgreSQL schema to work in (tests use one per run). */
  schema?: string;
}

/**
 * Opens the store a URL names: `sqlite:<file>` (or `sqlite::memory:`) for the embedded store,
 * `postgres://…` for PostgreSQL.
 */
export function openStore(url: string, options: StoreOptions = {}): Store {
  if (url.startsWith('sqlite:')) return openSqlite(url.slice('sqlite:'.length));
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return openPostgres(url, options);
  throw new Error(`EDM_DATABASE_URL: unsupported scheme in ${url} (use sqlite:<file> or postgres://…)`);
}

function openSqlite(file: string): Store {
  if (file !== ':memory:') mkdirSync(dirname(resolve(file)), { recursive: true });
  const database = new SQLite(file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('busy_timeout = 5000');
  const db = new Kysely({ dialect: new SqliteDialect({ database }) });
  const types: Record<ColumnKind, string> = {
    text: 'TEXT',
    real: 'REAL',
    integer: 'INTEGER',
    boolean: 'INTEGER',
    datetime: 'TEXT',
    date: 'TEXT',
    json: 'TEXT',
  };
  return {
    kind: 'sqlite',
    db,
    columnType: (kind) => types[kind],
    encode(field, value) {
      if (value === null || value === undefined) return null;
      switch (field.column) {
        case 'boolean':
          return value ? 1 : 0;
        case 'json':
          return JSON.stringify(value);
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
    close: () => db.destroy(),
  };
}

const PG_DATE = 1082;
const PG_TIMESTAMPTZ = 1184;
const PG_INT8 = 20;

function openPostgres(url: string, options: StoreOptions): Store {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
        // Dates stay `YYYY-MM-DD`; timestamps become RFC 3339 with milliseconds; counts are numbers.
        if (oid === PG_DATE) return (v: string) => v;
        if (oid === PG_TIMESTAMPTZ) return (v: string) => new Date(v).toISOString();
        if (oid === PG_INT8) return (v: string) => Number(v);
        return pg.types.getTypeParser(oid, format ?? 'text');
      }) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const types: Record<ColumnKind, string> = {
    text: 'text COLLATE "C"',
    real: 'double precision',
    integer: 'integer',
    boolean: 'boolean',
    datetime: 'timestamptz(3)',
    date: 'date',
    json: 'jsonb',
  };
  return {
    kind: 'postgres',
    db,
    columnType: (kind) => types[kind],
    encode(field, value) {
      if (value === null || value === undefined) return null;
      return field.column === 'json' ? JSON.stringify(value) : value;
    },
    decode(_field, value) {
      return value ?? null;
    },
    close: () => db.destroy(),
  };
}
