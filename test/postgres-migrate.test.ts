import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { buildApp } from '../src/http/app.js';
import { openStore, parsePostgresUrl, type Store } from '../src/store/database.js';
import { MIGRATE_LOCK, migrate, searchPathProblem } from '../src/store/schema.js';
import { PG_URL, resources, testConfig, USER_A } from './helpers.js';

// `edm migrate` creates or upgrades a schema from the declarations; on PostgreSQL it works in
// the schema it is pointed at (and sees no other), is safe twice, and serializes concurrent
// migrators of one schema with an advisory lock.

const BIN = resolve(import.meta.dirname, '../bin/edm.js');

describe('PostgreSQL URLs', () => {
  it('reads schema= and options= and passes everything else through', () => {
    expect(parsePostgresUrl('postgres://u:p@db:6432/edm?schema=okr&sslmode=disable')).toEqual({
      connectionString: 'postgres://u:p@db:6432/edm?sslmode=disable',
      schema: 'okr',
      options: '-c search_path=okr',
    });
    const viaOptions = parsePostgresUrl('postgres://db/edm?options=-c%20search_path%3Dokr%20-c%20work_mem%3D8MB');
    expect(viaOptions).toEqual({
      connectionString: 'postgres://db/edm',
      schema: null,
      options: '-c search_path=okr -c work_mem=8MB',
    });
    expect(parsePostgresUrl('postgres://db/edm?schema=a', 'b').options).toBe('-c search_path=b');
    expect(parsePostgresUrl('postgres://db/edm').options).toBeUndefined();
    expect(() => parsePostgresUrl('postgres://db/edm?schema=a;drop')).toThrow(/plain lower-case identifier/);
    // PostgreSQL reads an unquoted search_path in lower case: `Okr` would name another schema than
    // the one created, so a name with capitals is refused rather than half used.
    expect(() => parsePostgresUrl('postgres://db/edm?schema=Okr')).toThrow(/plain lower-case identifier/);
    // A parameter neither EDM nor the driver reads (a misspelt schema) is refused: the server
    // would otherwise work in `public`, unseen.
    expect(() => parsePostgresUrl('postgres://db/edm?shema=okr')).toThrow(
      /EDM_DATABASE_URL: \?shema is not a parameter EDM or the PostgreSQL driver reads/,
    );
    // One given twice: EDM read the first, silently (`&schema=prod` after `?schema=staging`).
    expect(() => parsePostgresUrl('postgres://db/edm?schema=staging&schema=prod')).toThrow(
      'EDM_DATABASE_URL: ?schema is given more than once; give each parameter once',
    );
    expect(() => parsePostgresUrl('postgres://db/edm?sslmode=require&sslmode=disable')).toThrow(/\?sslmode is given/);
    expect(
      parsePostgresUrl('postgres://db/edm?application_name=x&lock_timeout=5000&sslmode=require&ssl=1').schema,
    ).toBeNull();
  });

  it.each([
    // libpq's form for a Unix socket, a user and no host, is no WHATWG URL: read as the driver reads it.
    ['postgres://u:p@/edm?host=/run/postgresql&schema=okr', 'postgres://u:p@/edm?host=%2Frun%2Fpostgresql'],
    ['postgresql:///edm?host=/run/postgresql&schema=okr', 'postgresql:///edm?host=%2Frun%2Fpostgresql'],
    ['postgres://u@%2Frun%2Fpostgresql/edm?schema=okr', 'postgres://u@%2Frun%2Fpostgresql/edm'],
    // No user either: the URL writes no `@`, and no stand-in host is left in it.
    ['postgres://@/edm?host=/run/postgresql&schema=okr', 'postgres:///edm?host=%2Frun%2Fpostgresql'],
  ])('reads a Unix socket URL, %s', (url, connectionString) => {
    expect(parsePostgresUrl(url)).toEqual({ connectionString, schema: 'okr', options: '-c search_path=okr' });
  });
});

describe.runIf(PG_URL)('PostgreSQL session names', () => {
  it.each([
    ['', 'edm-test-name'],
    // libpq's rule: the URL's fallback_application_name names a session no application_name names.
    ['fallback_application_name=edm-test-fallback', 'edm-test-fallback'],
    ['application_name=edm-test-given&fallback_application_name=edm-test-fallback', 'edm-test-given'],
  ])('with %j in the URL, sessions are named %s', async (query, name) => {
    const at = new URL(PG_URL as string);
    for (const [key, value] of new URLSearchParams(query)) at.searchParams.set(key, value);
    const store = openStore(at.toString(), { poolSize: 1, applicationName: 'edm-test-name' });
    try {
      const { rows } = await sql<{ name: string }>`select current_setting('application_name') as name`.execute(
        store.db,
      );
      expect(rows[0].name).toBe(name);
    } finally {
      await store.close();
    }
  });
});

/**
 * A TCP proxy to PostgreSQL that drops the named parameters from each session's startup message,
 * as PgBouncer with `ignore_startup_parameters` does. Answers its port and a close.
 */
async function droppingProxy(target: URL, dropped: string[]): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    let head = Buffer.alloc(0);
    const first = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4 || head.length < head.readInt32BE(0)) return;
      client.off('data', first);
      const length = head.readInt32BE(0);
      // int32 length, int32 protocol, then name\0value\0 pairs and a closing \0.
      const fields = head
        .subarray(8, length - 1)
        .toString('utf8')
        .split('\0')
        .slice(0, -1);
      const kept: string[] = [];
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (!dropped.includes(fields[i])) kept.push(fields[i], fields[i + 1]);
      }
      const body = Buffer.from(`${kept.join('\0')}\0\0`, 'utf8');
      const message = Buffer.alloc(8 + body.length);
      message.writeInt32BE(message.length, 0);
      head.copy(message, 4, 4, 8);
      body.copy(message, 8);
      upstream.write(Buffer.concat([message, head.subarray(length)]));
      client.pipe(upstream);
      upstream.pipe(client);
    };
    client.on('data', first);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((done) => server.close(done));
    },
  };
}

describe.runIf(PG_URL)('behind a pooler that drops startup parameters (PgBouncer, ignore_startup_parameters)', () => {
  const direct = new URL(PG_URL ?? 'postgres://x');
  const proxied = (port: number, query = '') => {
    const url = new URL(direct);
    url.port = String(port);
    url.search = query;
    return url.href;
  };

  it('refuses to migrate, serve or read a schema its sessions do not work in, naming the way out', async () => {
    const proxy = await droppingProxy(direct, ['options']);
    const schema = `edm_test_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_URL, application_name: 'edm-test-admin' });
    await admin.connect();
    const publicTables = async () =>
      (
        await admin.query(
          `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'okr%'`,
        )
      ).rows[0].n;
    const before = await publicTables();
    const store = openStore(proxied(proxy.port), { schema, poolSize: 1, applicationName: 'edm-test-dropped' });
    try {
      // Its tables went to public, where another deployment's are: refused, and nothing made there.
      await expect(migrate(store, resources)).rejects.toThrow(
        `this session works in the schema public, not in ${schema} (?schema=): something between EDM and PostgreSQL dropped the startup option that sets its search_path`,
      );
      expect(await publicTables()).toBe(before);
      // Made directly, the schema is there; the sessions through the pooler still do not work in it.
      const made = openStore(PG_URL as string, { schema, poolSize: 1 });
      await migrate(made, resources);
      await made.close();
      expect(await searchPathProblem(store)).toMatch(/works in the schema public, not in/);
      const app = await buildApp({ config: testConfig(), store, migrate: false });
      try {
        expect((await app.inject('/readyz')).statusCode).toBe(503);
      } finally {
        await app.close();
      }
      // Set on the role, as the message says, the search_path holds through the pooler.
      const role = `edm_test_role_${randomBytes(4).toString('hex')}`;
      await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER`);
      try {
        await admin.query(`ALTER ROLE ${role} SET search_path = ${schema}`);
        const url = new URL(proxied(proxy.port));
        url.username = role;
        const byRole = openStore(url.href, { schema, poolSize: 1 });
        try {
          expect(await searchPathProblem(byRole)).toBeNull();
          await migrate(byRole, resources);
        } finally {
          await byRole.close();
        }
      } finally {
        await admin.query(`DROP ROLE ${role}`);
      }
    } finally {
      await store.close();
      await proxy.close();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    }
  });

  it("warns at start when the sessions' statement_timeout is not EDM_DB_STATEMENT_TIMEOUT_MS", async () => {
    const proxy = await droppingProxy(direct, ['statement_timeout']);
    const schema = `edm_test_${randomBytes(6).toString('hex')}`;
    const lines: { level: number; msg: string }[] = [];
    const start = async (port: number) => {
      const app = await buildApp({
        config: testConfig({ databaseUrl: proxied(port, `?schema=${schema}`), dbStatementTimeoutMs: 4321 }),
        logger: 'warn',
        logStream: { write: (line: string) => void lines.push(JSON.parse(line)) },
      });
      await app.close();
    };
    try {
      await start(Number(direct.port || 5432));
      expect(lines.filter((l) => l.msg.includes('statement_timeout'))).toEqual([]);
      await start(proxy.port);
      expect(lines.filter((l) => l.msg.includes('statement_timeout')).map((l) => [l.level, l.msg])).toEqual([
        [
          40,
          expect.stringContaining(
            "PostgreSQL's statement_timeout is 0 ms in this server's sessions, not EDM_DB_STATEMENT_TIMEOUT_MS (4321)",
          ),
        ],
      ]);
    } finally {
      await proxy.close();
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    }
  });
});

describe.runIf(PG_URL)('least privilege: a schema owner migrates, a role with row privileges alone serves', () => {
  it('migrates without CREATE on the database, serves with auto-migration on, and checks the secret without migrating', async () => {
    const id = randomBytes(4).toString('hex');
    const [schema, owner, app] = [`edm_test_${id}`, `edm_test_owner_${id}`, `edm_test_app_${id}`];
    const admin = new pg.Client({ connectionString: PG_URL, application_name: 'edm-test-admin' });
    await admin.connect();
    const as = (role: string) => {
      const url = new URL(PG_URL as string);
      url.username = role;
      url.password = '';
      url.search = `?schema=${schema}`;
      return url.href;
    };
    const lines: { level: number; msg: string }[] = [];
    const logged = {
      logger: 'warn' as const,
      logStream: { write: (line: string) => void lines.push(JSON.parse(line)) },
    };
    try {
      // Neither role may CREATE in the database (PostgreSQL 15 grants PUBLIC no such right).
      await admin.query(`CREATE ROLE ${owner} LOGIN`);
      await admin.query(`CREATE ROLE ${app} LOGIN`);
      await admin.query(`CREATE SCHEMA ${schema} AUTHORIZATION ${owner}`);
      await admin.query(`GRANT USAGE ON SCHEMA ${schema} TO ${app}`);
      await admin.query(
        `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA ${schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${app}`,
      );
      // CREATE SCHEMA IF NOT EXISTS asked for CREATE on the database although the schema was there.
      const byOwner = openStore(as(owner), { poolSize: 1 });
      try {
        await migrate(byOwner, resources);
        await migrate(byOwner, resources);
      } finally {
        await byOwner.close();
      }
      // A role that may only read and write rows: the migration at start has nothing to do.
      const served = await buildApp({ config: testConfig({ databaseUrl: as(app) }), ...logged });
      try {
        expect((await served.inject('/readyz')).statusCode).toBe(200);
      } finally {
        await served.close();
      }
      // A table it may not read fails the schema probe of a server started without migrating: that
      // is no outage, and requests to the other tables are served, not answered 500 once a second.
      await admin.query(`REVOKE SELECT ON ${schema}.okr_connectors FROM ${app}`);
      const appStore = openStore(as(app), { poolSize: 1 });
      const gated = await buildApp({ config: testConfig(), store: appStore, migrate: false });
      try {
        const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A });
        for (let i = 0; i < 2; i++) {
          const res = await gated.inject({ url: '/api/v1/okr/cycles', headers: { authorization: `Bearer ${token}` } });
          expect(res.statusCode).toBe(200);
        }
      } finally {
        await gated.close();
        await appStore.close();
        await admin.query(`GRANT SELECT ON ${schema}.okr_connectors TO ${app}`);
      }
      // A role without USAGE on the schema is told so, not sent looking for a pooler.
      const outsider = `edm_test_out_${id}`;
      await admin.query(`CREATE ROLE ${outsider} LOGIN`);
      const byOutsider = openStore(as(outsider), { poolSize: 1 });
      try {
        expect(await searchPathProblem(byOutsider)).toBe(
          `this role may not use the schema ${schema} (?schema=): GRANT USAGE ON SCHEMA ${schema} TO <the role EDM logs in as>`,
        );
      } finally {
        await byOutsider.close();
        await admin.query(`DROP ROLE ${outsider}`);
      }
      // With no statement_timeout asked for, EDM sends none: a role's own is no dropped parameter.
      await admin.query(`ALTER ROLE ${app} SET statement_timeout = '60s'`);
      const untimed = await buildApp({
        config: testConfig({ databaseUrl: as(app), dbStatementTimeoutMs: 0 }),
        ...logged,
      });
      await untimed.close();
      expect(lines.filter((l) => l.msg.includes('statement_timeout'))).toEqual([]);
      // Started without migrating, with another server secret: still said, once the database answers.
      const other = testConfig({
        databaseUrl: as(app),
        secretKey: new TextEncoder().encode('another-secret-key-0123456789abcdef012345'),
      });
      const unmigrated = await buildApp({ config: other, migrate: false, ...logged });
      try {
        const deadline = Date.now() + 10_000;
        while (!lines.some((l) => l.msg.startsWith('EDM_SECRET_KEY is not the secret')) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(lines.filter((l) => l.msg.startsWith('EDM_SECRET_KEY is not the secret')).map((l) => l.level)).toEqual([
          40,
        ]);
      } finally {
        await unmigrated.close();
      }
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      for (const role of [app, owner]) {
        await admin.query(`DROP OWNED BY ${role}`).catch(() => {});
        await admin.query(`DROP ROLE IF EXISTS ${role}`);
      }
      await admin.end();
    }
  });
});

/** PostgreSQL's Unix socket folder on Debian, where the server beside the tests listens. */
const SOCKET_DIR = '/var/run/postgresql';

describe.runIf(PG_URL && existsSync(join(SOCKET_DIR, `.s.PGSQL.${new URL(PG_URL ?? 'postgres://x').port || 5432}`)))(
  'PostgreSQL over a Unix socket',
  () => {
    it('serves a store whose URL names the socket folder and no host', async () => {
      const tcp = new URL(PG_URL as string);
      const schema = `edm_test_${randomBytes(6).toString('hex')}`;
      const port = tcp.port ? `&port=${tcp.port}` : '';
      const user = tcp.username ? `${tcp.username}${tcp.password ? `:${tcp.password}` : ''}@` : '';
      const store = openStore(
        `postgres://${user}/${tcp.pathname.slice(1)}?host=${SOCKET_DIR}${port}&schema=${schema}`,
        {
          poolSize: 1,
          applicationName: 'edm-test-socket',
        },
      );
      try {
        await migrate(store, resources);
        const { rows } = await sql<{ socket: boolean; path: string }>`
          select inet_client_addr() is null as socket, current_setting('search_path') as path`.execute(store.db);
        expect(rows[0]).toEqual({ socket: true, path: schema });
      } finally {
        await store.close();
        const admin = new pg.Client({ connectionString: PG_URL, application_name: 'edm-test-admin' });
        await admin.connect();
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await admin.end();
      }
    });
  },
);

describe.runIf(PG_URL)('edm migrate on PostgreSQL', () => {
  const url = PG_URL as string;
  const admin = new pg.Client({ connectionString: url, application_name: 'edm-test-admin' });
  const schemas: string[] = [];
  const stores: Store[] = [];
  let reference: string;

  const newSchemaName = () => {
    const name = `edm_test_${randomBytes(6).toString('hex')}`;
    schemas.push(name);
    return name;
  };
  const storeFor = (schema: string, applicationName = 'edm-test-migrate', at = url) => {
    const store = openStore(at, { schema, poolSize: 2, applicationName });
    stores.push(store);
    return store;
  };

  /** Tables, columns (type, precision, collation, nullability) and indexes of a schema, comparable across schemas. */
  async function catalog(schema: string) {
    const columns = await admin.query(
      `SELECT table_name, column_name, data_type, datetime_precision, collation_name, is_nullable
         FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, column_name`,
      [schema],
    );
    const indexes = await admin.query(
      `SELECT tablename, indexname, replace(indexdef, $1 || '.', '') AS def
         FROM pg_indexes WHERE schemaname = $1 ORDER BY tablename, indexname`,
      [schema],
    );
    return { columns: columns.rows, indexes: indexes.rows };
  }

  beforeAll(async () => {
    await admin.connect();
    reference = newSchemaName();
    await migrate(storeFor(reference), resources);
  });
  afterAll(async () => {
    for (const store of stores) await store.close();
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it('creates every declared table, and nothing outside its own schema', async () => {
    const { columns, indexes } = await catalog(reference);
    const tables = new Set(columns.map((c) => c.table_name));
    for (const r of resources) {
      expect(tables).toContain(r.table);
      for (const t of r.tables ?? []) expect(tables).toContain(t.name);
    }
    expect(tables).toContain('edm_idempotency_keys');
    expect(indexes.length).toBeGreaterThan(tables.size);
    const elsewhere = await admin.query(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'okr%'`,
    );
    expect(elsewhere.rows[0].n).toBe(0);
  });

  it('builds a fresh schema although another schema already holds the tables (introspection is per schema)', async () => {
    // The reference schema exists with every table: a migrator that listed all schemas would
    // think the tables exist and create none here.
    const fresh = newSchemaName();
    await admin.query(`CREATE SCHEMA ${fresh}`);
    await migrate(storeFor(fresh), resources);
    expect(await catalog(fresh)).toEqual(await catalog(reference));
  });

  it('honours a search_path given in the URL options instead of schema=', async () => {
    const viaOptions = newSchemaName();
    await admin.query(`CREATE SCHEMA ${viaOptions}`);
    const store = openStore(`${url}?options=${encodeURIComponent(`-c search_path=${viaOptions}`)}`, {
      poolSize: 1,
      applicationName: 'edm-test-migrate',
    });
    stores.push(store);
    expect(store.schema).toBeNull();
    await migrate(store, resources);
    expect(await catalog(viaOptions)).toEqual(await catalog(reference));
  });

  it('is safe to run again, and upgrades a schema that lacks a column or an index, or holds a retired one', async () => {
    const before = await catalog(reference);
    await migrate(storeFor(reference), resources);
    expect(await catalog(reference)).toEqual(before);

    const upgraded = newSchemaName();
    await migrate(storeFor(upgraded), resources);
    await admin.query(`ALTER TABLE ${upgraded}.okr_objectives DROP COLUMN description`);
    await admin.query(`DROP INDEX ${upgraded}.okr_objectives_filter_tags`);
    await admin.query(`DROP INDEX ${upgraded}.okr_key_results_sort_title`);
    // A filter's index as builds before 2026-12-02 made it, in place of this build's.
    await admin.query(`DROP INDEX ${upgraded}.okr_key_results_by_objective_id`);
    await admin.query(
      `CREATE INDEX okr_key_results_filter_objective_id ON ${upgraded}.okr_key_results (tenant_id, objective_id)`,
    );
    expect(await catalog(upgraded)).not.toEqual(before);
    await migrate(storeFor(upgraded), resources);
    expect(await catalog(upgraded)).toEqual(before);
  });

  it('waits for the advisory lock another migrator of the schema holds, then finds its work done', async () => {
    const schema = newSchemaName();
    const app = `edm-test-lock-${randomBytes(4).toString('hex')}`;
    await admin.query('BEGIN');
    await admin.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [MIGRATE_LOCK, schema]);
    const running = migrate(storeFor(schema, app), resources);
    // Observed from another session: inside the lock holder's transaction pg_stat_activity is a snapshot.
    const observer = new pg.Client({ connectionString: url, application_name: 'edm-test-admin' });
    await observer.connect();
    let waiting = 0;
    for (let i = 0; i < 400 && waiting === 0; i++) {
      const r = await observer.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
        [app],
      );
      waiting = r.rows[0].n;
      if (waiting === 0) await new Promise((done) => setTimeout(done, 25));
    }
    try {
      expect(waiting).toBe(1);
      // While it waits it has done nothing: not even the schema exists.
      const exists = await observer.query('SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1', [schema]);
      expect(exists.rows[0].n).toBe(0);
    } finally {
      await admin.query('COMMIT');
      await observer.end();
    }
    await running;
    expect(await catalog(schema)).toEqual(await catalog(reference));
  });

  it('with nothing to do, takes no lock on a table: it does not wait for writers, nor they for it', async () => {
    const schema = newSchemaName();
    await migrate(storeFor(schema), resources);
    const app = `edm-test-idle-${randomBytes(4).toString('hex')}`;
    // A writer's open transaction on a table (ROW EXCLUSIVE), as a running server holds one.
    const writer = new pg.Client({ connectionString: url, application_name: 'edm-test-admin' });
    await writer.connect();
    await writer.query('BEGIN');
    await writer.query(`UPDATE ${schema}.okr_cycles SET name = name WHERE false`);
    let done = false;
    const running = migrate(storeFor(schema, app), resources).then(() => {
      done = true;
    });
    let waited = 0;
    try {
      for (let i = 0; i < 400 && !done && waited === 0; i++) {
        const r = await admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
          [app],
        );
        waited = r.rows[0].n;
        if (!done && waited === 0) await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await writer.query('COMMIT');
      await writer.end();
    }
    await running;
    expect(waited).toBe(0);
    expect(done).toBe(true);
  });

  it('does not block migrators of another schema', async () => {
    const held = newSchemaName();
    const other = newSchemaName();
    await admin.query('BEGIN');
    await admin.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [MIGRATE_LOCK, held]);
    try {
      await migrate(storeFor(other), resources);
    } finally {
      await admin.query('COMMIT');
    }
    expect(await catalog(other)).toEqual(await catalog(reference));
  });

  it('leaves one correct schema when two `edm migrate` processes run at once', async () => {
    expect(existsSync(resolve(import.meta.dirname, '../dist/cli/edm.js')), 'run `npm run build` first').toBe(true);
    const schema = newSchemaName();
    const dataDir = mkdtempSync(join(tmpdir(), 'edm-migrate-'));
    const run = () =>
      new Promise<{ code: number | null; out: string }>((done, fail) => {
        const child = spawn(process.execPath, [BIN, 'migrate'], {
          env: {
            ...process.env,
            EDM_DATABASE_URL: `${url}?schema=${schema}`,
            EDM_DATA_DIR: dataDir,
            EDM_JWT_SECRET: 'test-jwt-secret-0123456789abcdef0123456789',
            EDM_SECRET_KEY: 'test-secret-key-0123456789abcdef0123456789',
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (b) => {
          out += b;
        });
        child.stderr.on('data', (b) => {
          out += b;
        });
        child.on('error', fail);
        child.on('close', (code) => done({ code, out }));
      });
    try {
      const results = await Promise.all([run(), run()]);
      for (const r of results) expect(r).toEqual({ code: 0, out: 'schema is up to date (postgres)\n' });
      expect(await catalog(schema)).toEqual(await catalog(reference));
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
