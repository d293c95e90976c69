import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import type { Config } from '../src/core/config.js';
import { exampleBody } from '../src/core/examples.js';
import type { Doc, Resource } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { modules } from '../src/modules/index.js';
import { openStore, type Store, type StoreOptions } from '../src/store/database.js';
import { ContractChecker } from './contract.js';

export const PG_URL = process.env.EDM_TEST_DATABASE_URL;

/** The stores every suite runs on: SQLite always, PostgreSQL whenever EDM_TEST_DATABASE_URL is set. */
export const storeKinds: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite'];

export const resources: Resource[] = modules.flatMap((m) => m.resources);
export const byName = (name: string) => resources.find((r) => r.name === name) as Resource;

/**
 * The seed's schema table: the one beside the repository (../shared/seed, the authority) where
 * there is one, else the copy kept in test/fixtures (a clone on its own); manifest.test.ts checks
 * the copy is the seed's, byte for byte, wherever both are there.
 */
export const SEED_SHARED_TSV = new URL('../../shared/seed/keyresult-fields.tsv', import.meta.url);
export const SEED_COPY_TSV = new URL('./fixtures/keyresult-fields.tsv', import.meta.url);
export const SEED_TSV = existsSync(SEED_SHARED_TSV) ? SEED_SHARED_TSV : SEED_COPY_TSV;

export const T0 = Date.parse('2026-11-01T12:00:00.000Z');
export const USER_A = 'usr-0a0a0a0a-0000-4000-8000-00000000000a';
export const USER_B = 'usr-0b0b0b0b-0000-4000-8000-00000000000b';

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    port: 0,
    host: '127.0.0.1',
    databaseUrl: 'sqlite::memory:',
    dataDir: tmpdir(),
    jwtSecret: new TextEncoder().encode('test-jwt-secret-0123456789abcdef0123456789'),
    localMode: false,
    secretKey: new TextEncoder().encode('test-secret-key-0123456789abcdef0123456789'),
    jwtIssuer: undefined,
    jwtAudience: undefined,
    requireIfMatch: false,
    dbPoolSize: 5,
    ...overrides,
  };
}

/** A fresh, empty store: a SQLite file in a temp dir, or a PostgreSQL schema of its own. */
export async function freshStore(
  kind: 'sqlite' | 'postgres',
  poolSize = 5,
  onQuery?: StoreOptions['onQuery'],
): Promise<{ store: Store; url: string; schema?: string; drop: () => Promise<void> }> {
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'edm-test-'));
    const url = `sqlite:${join(dir, 'edm.sqlite')}`;
    return { store: openStore(url, { onQuery }), url, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const schema = `edm_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  return {
    store: openStore(PG_URL as string, { schema, poolSize, onQuery }),
    url: PG_URL as string,
    schema,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA ${schema} CASCADE`);
      await c.end();
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: Doc;
  raw: string;
}

export interface CallOptions {
  token?: string | null;
  body?: unknown;
  headers?: Record<string, string>;
  /** A raw payload (sent as is). */
  payload?: string | Buffer;
}

export interface TestApp {
  app: FastifyInstance;
  store: Store;
  clock: ManualClock;
  config: Config;
  kind: 'sqlite' | 'postgres';
  /** A token for a tenant (default tenant `acme`, sub USER_A, human session). */
  token(o?: { tenant?: string; sub?: string; app?: string; scope?: string; ttl?: string | number }): Promise<string>;
  call(method: string, url: string, o?: CallOptions): Promise<Reply>;
  /** Creates a valid instance of a resource (and its parents), answering the document. */
  create(resource: Resource, token: string, body?: Doc): Promise<Doc>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /**
   * Check every response of `call` against the OpenAPI document the app serves (route, status,
   * headers, body schema). Default: on (EDM_CONTRACT=0 turns it off).
   */
  contract?: boolean;
  /** Told of every statement the store runs (StoreOptions.onQuery). */
  onQuery?: StoreOptions['onQuery'];
}

export async function testApp(
  kind: 'sqlite' | 'postgres',
  overrides: Partial<Config> = {},
  options: TestAppOptions = {},
): Promise<TestApp> {
  const fresh = await freshStore(kind, 5, options.onQuery);
  const clock = new ManualClock(T0);
  const config = testConfig(overrides);
  const app = await buildApp({ config, store: fresh.store, clock });
  let defaultToken: string | null = null;
  let contract: ContractChecker | undefined;
  const t: TestApp = {
    app,
    store: fresh.store,
    clock,
    config,
    kind,
    token: (o = {}) =>
      mintToken({
        secret: config.jwtSecret,
        tenant: o.tenant ?? 'acme',
        sub: o.sub ?? USER_A,
        app: o.app,
        scope: o.scope,
        ttl: o.ttl ?? '1000d',
        now: clock.now(),
      }),
    async call(method, url, o = {}) {
      if (o.token === undefined && defaultToken === null) defaultToken = await t.token();
      const token = o.token === undefined ? defaultToken : o.token;
      const reply = await injectAs(app, token, method, url, o);
      if (options.contract ?? process.env.EDM_CONTRACT !== '0') {
        contract ??= new ContractChecker((await app.inject({ url: '/api/v1/openapi.json' })).json());
        contract.check({ method, url, status: reply.status, headers: reply.headers, body: reply.raw });
      }
      return reply;
    },
    async create(resource, token, body) {
      const refs: Record<string, string> = {};
      for (const [name, field] of Object.entries(resource.allFields)) {
        if (!field.ref || !(field.required || field.parent) || (body && name in body)) continue;
        const parent = resources.find((r) => r.idPrefix === field.ref) as Resource;
        refs[field.ref] = (await t.create(parent, token)).id as string;
      }
      const res = await t.call('POST', resource.basePath, { token, body: { ...exampleBody(resource, refs), ...body } });
      if (res.status !== 201) throw new Error(`create ${resource.name} failed: ${res.status} ${res.raw}`);
      return res.body;
    },
    async close() {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    },
  };
  return t;
}

/** One request through `inject` with a bearer token (null: none); a JSON `body` is serialized. */
export async function injectAs(
  app: FastifyInstance,
  token: string | null,
  method: string,
  url: string,
  o: Omit<CallOptions, 'token'> = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...o.headers };
  let payload: string | Buffer | undefined = o.payload;
  if (o.body !== undefined) {
    payload = JSON.stringify(o.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(payload !== undefined ? { payload } : {}),
  });
  let body: Doc = {};
  try {
    body = res.body ? (JSON.parse(res.body) as Doc) : {};
  } catch {
    body = {};
  }
  return { status: res.statusCode, headers: res.headers, body, raw: res.body };
}

/** Reads a row straight from the store (bypassing the API), for "nothing changed" assertions. */
export async function storedRow(
  t: TestApp,
  resource: Resource,
  id: string,
): Promise<Record<string, unknown> | undefined> {
  return t.store.db.selectFrom(resource.table).selectAll().where('id', '=', id).executeTakeFirst();
}

export async function countRows(t: TestApp, resource: Resource): Promise<number> {
  const row = await t.store.db
    .selectFrom(resource.table)
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * Runs `fn` while every `op` on `table` fails inside the database (a real trigger on either
 * store): the way to force a failure half-way through a write.
 */
export async function whileFailing<T>(
  t: TestApp,
  table: string,
  op: 'INSERT' | 'UPDATE' | 'DELETE',
  fn: () => Promise<T>,
  /** PostgreSQL: the SQLSTATE the trigger raises (default P0001, an error of the database's own). */
  sqlstate?: string,
): Promise<T> {
  const name = `fail_${table}_${op.toLowerCase()}`;
  if (t.kind === 'sqlite') {
    await sql`CREATE TRIGGER ${sql.id(name)} BEFORE ${sql.raw(op)} ON ${sql.table(table)} BEGIN SELECT RAISE(ABORT, 'forced failure'); END`.execute(
      t.store.db,
    );
  } else {
    const using = sqlstate ? sql.raw(` USING ERRCODE = '${sqlstate.replace(/[^0-9A-Z]/g, '')}'`) : sql``;
    await sql`CREATE OR REPLACE FUNCTION ${sql.id(name)}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'forced failure'${using}; END $$`.execute(
      t.store.db,
    );
    await sql`CREATE TRIGGER ${sql.id(name)} BEFORE ${sql.raw(op)} ON ${sql.table(table)} FOR EACH ROW EXECUTE FUNCTION ${sql.id(name)}()`.execute(
      t.store.db,
    );
  }
  try {
    return await fn();
  } finally {
    await sql`DROP TRIGGER ${sql.id(name)}${t.kind === 'postgres' ? sql` ON ${sql.table(table)}` : sql``}`.execute(
      t.store.db,
    );
  }
}

/** The statements a SQLite file store ran on its read connection since recording began. */
export interface ReadRecorder {
  reads: { sql: string; parameters: readonly unknown[] }[];
  /** SQLite's query plan of a recorded read (`EXPLAIN QUERY PLAN`), one detail line per step. */
  plan(read: { sql: string; parameters: readonly unknown[] }): string[];
  stop(): void;
}

/** Records the reads a SQLite file store runs on its read connection (see Store.read). */
export function recordReads(store: Store): ReadRecorder {
  const { read, exec } = store;
  if (!read || !exec) throw new Error('a SQLite file store reads on its second connection');
  const reads: ReadRecorder['reads'] = [];
  (store as { read: Store['read'] }).read = (source, parameters) => {
    reads.push({ sql: source, parameters });
    return read(source, parameters);
  };
  return {
    reads,
    plan: (r) => exec(`EXPLAIN QUERY PLAN ${r.sql}`, r.parameters).rows.map((row) => String(row.detail)),
    stop: () => {
      (store as { read: Store['read'] }).read = read;
    },
  };
}

/** Empties a key result's `current` in the store, as rows stored before a field existed have it. */
export async function emptyCurrent(t: TestApp, id: string): Promise<void> {
  const doc =
    t.kind === 'postgres'
      ? sql`jsonb_set(_doc::jsonb, '{current}', 'null')::text`
      : sql`json_set(_doc, '$.current', json('null'))`;
  await sql`UPDATE okr_key_results SET current = NULL, _doc = ${doc} WHERE id = ${id}`.execute(t.store.db);
}

/**
 * Makes a file one this process cannot write: immutable for root (whom file modes do not stop),
 * read-only by its mode for anyone else. Answers the undo, or null where neither can be done.
 */
export function writeProtect(file: string): (() => void) | null {
  if (process.getuid?.() !== 0) {
    chmodSync(file, 0o444);
    return () => chmodSync(file, 0o600);
  }
  try {
    execFileSync('chattr', ['+i', file], { stdio: 'ignore' });
    return () => execFileSync('chattr', ['-i', file], { stdio: 'ignore' });
  } catch {
    return null; // no chattr, or a file system without the flag
  }
}
