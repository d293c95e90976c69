import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import type { Doc } from '../src/core/resource.js';
import { defineModule } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { modules as allModules } from '../src/modules/index.js';
import { openStore, type Store } from '../src/store/database.js';
import { byName, injectAs, PG_URL, type Reply, T0, testConfig, USER_A } from './helpers.js';

// When the database goes away, requests answer 503 problem+json with Retry-After (no hang, no
// crash); when it returns, the same process serves again; /readyz follows. The loss is made
// real and contained: the app reaches PostgreSQL through a local TCP proxy the test can cut,
// and pg_terminate_backend ends only the sessions of this test's application_name.

const objectives = byName('Objective');
const config = testConfig();
const clock = new ManualClock(T0);

async function send(app: FastifyInstance, method: string, url: string, body?: unknown, headers = {}): Promise<Reply> {
  const token = await mintToken({
    secret: config.jwtSecret,
    tenant: 'outage',
    sub: USER_A,
    ttl: '1d',
    now: clock.now(),
  });
  return injectAs(app, token, method, url, { body, headers });
}

function expectUnavailable(a: Reply) {
  expect([a.status, a.body.code, a.headers['retry-after']]).toEqual([503, 'service_unavailable', '1']);
  expect(a.headers['content-type']).toMatch(/^application\/problem\+json/);
}

/**
 * A TCP proxy to PostgreSQL that can refuse new connections and cut the ones it carries, or
 * freeze: keep every connection open and pass nothing either way (a database that stopped
 * answering, or a network that drops packets without a reset).
 */
class PgProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private refusing = false;
  private frozen = false;
  private deaf = false;
  port = 0;

  constructor(host: string, port: number) {
    this.server = net.createServer((client) => {
      if (this.refusing) {
        client.destroy();
        return;
      }
      const upstream = net.connect(port, host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      // While frozen, bytes are dropped in both directions; the sockets stay open.
      client.on('data', (chunk) => this.frozen || upstream.write(chunk));
      upstream.on('data', (chunk) => this.frozen || this.deaf || client.write(chunk));
    });
  }

  freeze(): void {
    this.frozen = true;
  }

  thaw(): void {
    this.frozen = false;
    this.deaf = false;
  }

  /** Statements still reach the server, and run; what it answers is dropped (until `thaw`). */
  deafen(): void {
    this.deaf = true;
  }

  listen(): Promise<void> {
    return new Promise((done) =>
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        done();
      }),
    );
  }

  /** New connections are refused from now on; `cut` also drops the ones open. */
  refuse(cut: boolean): void {
    this.refusing = true;
    if (cut) for (const s of this.sockets) s.destroy();
  }

  accept(): void {
    this.refusing = false;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((done) => this.server.close(() => done()));
  }
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((done) => setTimeout(done, 25));
  }
  throw new Error(`gave up waiting: ${what}`);
}

describe.runIf(PG_URL)('losing PostgreSQL', () => {
  // (The suite body is collected even when skipped, so it must not need the URL.)
  const url = new URL(PG_URL ?? 'postgres://127.0.0.1:5432/unset');
  const schema = `edm_test_${randomBytes(6).toString('hex')}`;
  const appName = `edm-test-outage-${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL, application_name: 'edm-test-admin' });
  const proxy = new PgProxy(url.hostname, Number(url.port || 5432));
  let store: Store;
  let app: FastifyInstance;

  const sessions = async (extra = '') =>
    (
      await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 ${extra}`, [
        appName,
      ])
    ).rows[0].n as number;
  /** The database's URL through the proxy. */
  const proxiedUrl = () => {
    const proxied = new URL(url);
    proxied.host = `127.0.0.1:${proxy.port}`;
    return proxied.toString();
  };
  /**
   * An app of its own pool through the proxy, with a 1 s statement timeout: a session the server
   * does not answer is cut 2 s after that, client-side (the server's statement_timeout cannot
   * fire there).
   */
  async function quickToGiveUp(): Promise<{ app: FastifyInstance; close: () => Promise<void> }> {
    const quick = openStore(proxiedUrl(), {
      schema,
      poolSize: 2,
      applicationName: appName,
      connectTimeoutMs: 1000,
      statementTimeoutMs: 1000,
    });
    const quickApp = await buildApp({ config: { ...config, dbConnectTimeoutMs: 1000 }, store: quick, clock });
    return {
      app: quickApp,
      close: async () => {
        await quickApp.close();
        await quick.close();
      },
    };
  }
  /** Ends this test's sessions only (never anyone else's). */
  const terminate = () =>
    admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);

  beforeAll(async () => {
    await admin.connect();
    await proxy.listen();
    store = openStore(proxiedUrl(), { schema, poolSize: 4, applicationName: appName, connectTimeoutMs: 2000 });
    app = await buildApp({ config, store, clock });
  });
  afterAll(async () => {
    await app.close();
    await store.close();
    await proxy.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it('answers a request cut off mid-statement with 503, then serves again in the same process', async () => {
    const created = await send(app, 'POST', objectives.basePath, { title: 'before' });
    expect(created.status).toBe(201);
    // Hold the row so the PATCH waits inside its transaction, then end its session.
    const holder = new pg.Client({ connectionString: PG_URL, application_name: 'edm-test-admin' });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM ${schema}.okr_objectives WHERE id = $1 FOR UPDATE`, [created.body.id]);
    try {
      const patch = send(app, 'PATCH', `${objectives.basePath}/${created.body.id}`, { title: 'during' });
      await until(
        'the PATCH waits on the row lock',
        async () => (await sessions("AND wait_event_type = 'Lock'")) === 1,
      );
      await terminate();
      expectUnavailable(await patch);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    // The database is still there: a client that honours Retry-After gets through.
    let answer: Reply | undefined;
    for (let attempt = 0; attempt < 5 && answer?.status !== 200; attempt++) {
      answer = await send(app, 'PATCH', `${objectives.basePath}/${created.body.id}`, { title: 'after' });
      if (answer.status !== 200) expectUnavailable(answer);
    }
    expect([answer?.status, answer?.body.title, answer?.body.version]).toEqual([200, 'after', 2]);
  });

  it('answers 503 while the database is unreachable, and recovers when it returns', async () => {
    const created = await send(app, 'POST', objectives.basePath, { title: 'survivor' });
    expect(created.status).toBe(201);
    expect((await app.inject('/readyz')).statusCode).toBe(200);

    proxy.refuse(false);
    await terminate();
    await until('every session of the app is gone', async () => (await sessions()) === 0);
    for (let i = 0; i < 6; i++) {
      expectUnavailable(await send(app, 'GET', `${objectives.basePath}/${created.body.id}`));
    }
    expectUnavailable(await send(app, 'GET', objectives.basePath));
    expectUnavailable(await send(app, 'PATCH', `${objectives.basePath}/${created.body.id}`, { title: 'x' }));
    expectUnavailable(
      await send(app, 'POST', objectives.basePath, { title: 'retried' }, { 'idempotency-key': 'outage-1' }),
    );
    const notReady = await app.inject('/readyz');
    expect([notReady.statusCode, notReady.headers['retry-after'], notReady.json().status]).toEqual([
      503,
      '1',
      'unavailable',
    ]);
    expect((await app.inject('/healthz')).statusCode).toBe(200);

    proxy.accept();
    expect((await app.inject('/readyz')).statusCode).toBe(200);
    const got = await send(app, 'GET', `${objectives.basePath}/${created.body.id}`);
    expect([got.status, got.body.title]).toEqual([200, 'survivor']);
    // The 503 was not stored: the retry with the same key does the work once.
    const retried = await send(
      app,
      'POST',
      objectives.basePath,
      { title: 'retried' },
      { 'idempotency-key': 'outage-1' },
    );
    expect(retried.status).toBe(201);
    const replay = await send(
      app,
      'POST',
      objectives.basePath,
      { title: 'retried' },
      { 'idempotency-key': 'outage-1' },
    );
    expect([replay.status, replay.body.id]).toEqual([201, retried.body.id]);
  });

  it('answers 503 when the database stops answering mid-session, then serves again in the same process', async () => {
    const { app: frozenApp, close } = await quickToGiveUp();
    try {
      // Both pooled sessions open and idle, as under steady load.
      await Promise.all([1, 2].map(() => send(frozenApp, 'GET', objectives.basePath)));
      const existing = await send(frozenApp, 'POST', objectives.basePath, { title: 'before the freeze' });
      proxy.freeze();
      const started = Date.now();
      const answers = await Promise.all([
        // A write inside a transaction, on an open session: the ROLLBACK that follows the cut
        // has no session to go on, and its failure stood in for the cut's (a 500).
        send(frozenApp, 'PATCH', `${objectives.basePath}/${existing.body.id}`, { title: 'while frozen' }),
        send(frozenApp, 'GET', objectives.basePath),
        send(frozenApp, 'POST', objectives.basePath, { title: 'while frozen' }),
      ]);
      for (const a of answers) expectUnavailable(a);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await frozenApp.inject('/readyz')).statusCode).toBe(503);
      proxy.thaw();
      await until('the same process serves again', async () => {
        return (await send(frozenApp, 'GET', objectives.basePath)).status === 200;
      });
      expect((await frozenApp.inject('/readyz')).statusCode).toBe(200);
      const titles = ((await send(frozenApp, 'GET', `${objectives.basePath}?limit=200`)).body.data as Doc[]).map(
        (o) => o.title,
      );
      expect(titles).not.toContain('while frozen');
    } finally {
      proxy.thaw();
      await close();
    }
  });

  it("runs a keyed write's retry once the database answers again, when its claim ran but the answer was lost", async () => {
    const { app: lostApp, close } = await quickToGiveUp();
    const key = { 'idempotency-key': `lost-answer-${randomBytes(4).toString('hex')}` };
    const title = `claimed while deaf ${randomBytes(4).toString('hex')}`;
    try {
      await send(lostApp, 'GET', objectives.basePath);
      proxy.deafen();
      // The claim's INSERT reaches the database and commits; its answer never comes back.
      expectUnavailable(await send(lostApp, 'POST', objectives.basePath, { title }, key));
      proxy.thaw();
      // The claim is released in the background (a second after its first try failed); until
      // then a retry may meet 409 in-flight, never for the lease's minute.
      const deadline = Date.now() + 15_000;
      let retried: Reply | undefined;
      do {
        retried = await send(lostApp, 'POST', objectives.basePath, { title }, key);
        if (retried.status === 201) break;
        expect([retried.status, retried.body.code]).toEqual([409, 'idempotency_in_flight']);
        await new Promise((r) => setTimeout(r, 250));
      } while (Date.now() < deadline);
      expect(retried.status).toBe(201);
      const listed = (await send(lostApp, 'GET', `${objectives.basePath}?limit=200`)).body.data as Doc[];
      expect(listed.filter((o) => o.title === title)).toHaveLength(1);
    } finally {
      proxy.thaw();
      await close();
    }
  }, 30_000);

  it('answers writes 503 while the database takes none (a standby after a failover), and /readyz says not ready', async () => {
    const created = await send(app, 'POST', objectives.basePath, { title: 'before the failover' });
    expect(created.status).toBe(201);
    // The same schema through sessions that take no writes, as a demoted primary's do.
    const readOnlyUrl = new URL(PG_URL ?? '');
    readOnlyUrl.searchParams.set('options', '-c default_transaction_read_only=on');
    const readOnly = openStore(readOnlyUrl.toString(), { schema, poolSize: 2, applicationName: appName });
    const standbyApp = await buildApp({ config, store: readOnly, clock, migrate: false });
    try {
      const notReady = await standbyApp.inject('/readyz');
      expect([notReady.statusCode, notReady.headers['retry-after'], notReady.json().status]).toEqual([
        503,
        '1',
        'unavailable',
      ]);
      const got = await send(standbyApp, 'GET', `${objectives.basePath}/${created.body.id}`);
      expect([got.status, got.body.title]).toEqual([200, 'before the failover']);
      const key = { 'idempotency-key': `failover-${randomBytes(4).toString('hex')}` };
      expectUnavailable(await send(standbyApp, 'POST', objectives.basePath, { title: 'during' }, key));
      expectUnavailable(await send(standbyApp, 'PATCH', `${objectives.basePath}/${created.body.id}`, { title: 'x' }));
      expectUnavailable(await send(standbyApp, 'DELETE', `${objectives.basePath}/${created.body.id}`));
      // Nothing was written; the database that takes writes (the new primary) does the keyed one once.
      expect((await app.inject('/readyz')).statusCode).toBe(200);
      const after = await send(app, 'GET', `${objectives.basePath}/${created.body.id}`);
      expect([after.body.title, after.body.version, after.body.is_deleted]).toEqual(['before the failover', 1, false]);
      const retried = await send(app, 'POST', objectives.basePath, { title: 'during' }, key);
      expect(retried.status).toBe(201);
    } finally {
      await standbyApp.close();
      await readOnly.close();
    }
  });

  it("logs a job's run that met the database away as a warning naming its cause, a job's own fault as an error", async () => {
    const lines: { level: number; msg: string; job?: string; cause?: string; err?: unknown }[] = [];
    const jobs = defineModule({
      name: 'outagejobs',
      description: 'Jobs of this test',
      resources: [],
      jobs: [
        // A run that needs the database: refused while the proxy refuses.
        { name: 'outagejobs.reads', intervalMs: 20, run: (ctx) => ctx.transaction('outage', async () => 0) },
        {
          name: 'outagejobs.broken',
          intervalMs: 20,
          run: async () => {
            throw new Error('a fault of the job itself');
          },
        },
        // A full disk needs an operator, and writes that kept meeting others' are no outage.
        ...[
          ['full', '53100'],
          ['conflicted', '40P01'],
        ].map(([name, code]) => ({
          name: `outagejobs.${name}`,
          intervalMs: 20,
          run: async () => {
            throw Object.assign(new Error(`the database said ${code}`), { code });
          },
        })),
      ],
    });
    const jobStore = openStore(proxiedUrl(), { schema, poolSize: 2, applicationName: appName, connectTimeoutMs: 1000 });
    const jobApp = await buildApp({
      config,
      store: jobStore,
      modules: [...allModules, jobs],
      runJobs: true,
      logger: 'warn',
      logStream: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    try {
      proxy.refuse(true);
      const of = (job: string) => lines.filter((l) => l.job === job);
      await until('both jobs ran while the database was away', async () => {
        return ['reads', 'broken', 'full', 'conflicted'].every((job) => of(`outagejobs.${job}`).length > 0);
      });
      for (const line of of('outagejobs.reads')) {
        expect([line.level, line.msg]).toEqual([40, 'job put off: the database is unavailable']);
        expect(line.cause).toMatch(/ECONNREFUSED|Connection terminated|timeout/);
        expect(line.err).toBeUndefined();
      }
      for (const [job, said] of [
        ['broken', 'a fault of the job itself'],
        ['full', 'the database said 53100'],
        ['conflicted', 'the database said 40P01'],
      ]) {
        for (const line of of(`outagejobs.${job}`)) {
          expect([line.level, line.msg], job).toEqual([50, 'job failed']);
          expect(JSON.stringify(line.err)).toContain(said);
        }
      }
    } finally {
      proxy.accept();
      await jobApp.close();
      await jobStore.close();
    }
  });

  it('takes over at once, on the retry after the database is back, a claim this process is still releasing', async () => {
    const { app: lostApp, close } = await quickToGiveUp();
    const key = `taken-over-${randomBytes(4).toString('hex')}`;
    const title = `released late ${randomBytes(4).toString('hex')}`;
    const holder = new pg.Client({ connectionString: PG_URL, application_name: 'edm-test-admin' });
    await holder.connect();
    try {
      await send(lostApp, 'GET', objectives.basePath);
      proxy.deafen();
      // The claim commits, its answer is lost (the session is cut 3 s on) …
      const first = send(lostApp, 'POST', objectives.basePath, { title }, { 'idempotency-key': key });
      await until('the claim is stored', async () => {
        const { rowCount } = await admin.query(`SELECT 1 FROM ${schema}.edm_idempotency_keys WHERE key = $1`, [key]);
        return rowCount === 1;
      });
      // … and the release that follows cannot delete it: the row is locked until it gives up.
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM ${schema}.edm_idempotency_keys WHERE key = $1 FOR UPDATE`, [key]);
      expectUnavailable(await first);
      proxy.thaw();
      await until(
        "the release's first attempt gave up",
        async () => (await sessions("AND wait_event_type = 'Lock'")) === 0,
      );
      await holder.query('ROLLBACK');
      clock.advance(1);
      // Its next attempt is a second or more away: the retry does not wait for it.
      const retried = await send(lostApp, 'POST', objectives.basePath, { title }, { 'idempotency-key': key });
      expect([retried.status, retried.body.title]).toEqual([201, title]);
      const replay = await send(lostApp, 'POST', objectives.basePath, { title }, { 'idempotency-key': key });
      expect([replay.status, replay.body.id, replay.headers['idempotent-replayed']]).toEqual([
        201,
        retried.body.id,
        'true',
      ]);
      const listed = (await send(lostApp, 'GET', `${objectives.basePath}?limit=200`)).body.data as Doc[];
      expect(listed.filter((o) => o.title === title)).toHaveLength(1);
    } finally {
      proxy.thaw();
      await holder.end();
      await close();
    }
  }, 30_000);

  it('answers 503 when the network drops every connection at once', async () => {
    const created = await send(app, 'POST', objectives.basePath, { title: 'partition' });
    proxy.refuse(true);
    for (let i = 0; i < 6; i++) expectUnavailable(await send(app, 'GET', `${objectives.basePath}/${created.body.id}`));
    proxy.accept();
    const got = await send(app, 'GET', `${objectives.basePath}/${created.body.id}`);
    expect(got.status).toBe(200);
  });
});

describe('a database that cannot be reached at all', () => {
  const apps: FastifyInstance[] = [];
  const stores: Store[] = [];
  const servers: net.Server[] = [];
  const closers: (() => void)[] = [];

  async function appAt(port: number): Promise<FastifyInstance> {
    const store = openStore(`postgres://postgres@127.0.0.1:${port}/test`, { poolSize: 2, connectTimeoutMs: 300 });
    stores.push(store);
    const app = await buildApp({ config, store, clock, migrate: false });
    apps.push(app);
    return app;
  }

  afterAll(async () => {
    for (const app of apps) await app.close();
    for (const store of stores) await store.close();
    for (const close of closers) close();
    for (const server of servers) await new Promise((done) => server.close(done));
  });

  it('answers 503 for a closed port', async () => {
    const probe = net.createServer();
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', () => done()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((done) => probe.close(done));
    const app = await appAt(port);
    expectUnavailable(await send(app, 'GET', objectives.basePath));
    expectUnavailable(await send(app, 'POST', objectives.basePath, { title: 'x' }, { 'idempotency-key': 'k' }));
    expect((await app.inject('/readyz')).statusCode).toBe(503);
  });

  // Reached, but refusing this process: a database that is not there (3D000) and a role that is
  // not (28000), as after a rename or a rotated password. They were 500 while /readyz said 503.
  it.runIf(PG_URL).each([
    [
      'a database that does not exist',
      (url: URL) => (url.pathname = `/edm_no_such_db_${randomBytes(4).toString('hex')}`),
    ],
    ['a role that does not exist', (url: URL) => (url.username = `edm_no_such_role_${randomBytes(4).toString('hex')}`)],
    // Not reached at all: a host name that resolves to nothing, a Unix socket that is not there.
    ['a host that does not resolve', (url: URL) => (url.hostname = 'edm-no-such-host.invalid')],
    [
      'a Unix socket that is not there',
      (url: URL) => (url.hostname = encodeURIComponent(`/tmp/edm-no-such-dir-${randomBytes(4).toString('hex')}`)),
    ],
  ])('answers 503 for %s, as /readyz does', async (_name, change) => {
    const url = new URL(PG_URL as string);
    change(url);
    await expectRefusedAt(url);
  });

  /** A server on a store at `url` that refuses this process: reads, writes and /readyz are 503. */
  async function expectRefusedAt(url: URL) {
    const store = openStore(url.href, { poolSize: 2, connectTimeoutMs: 2000 });
    stores.push(store);
    const app = await buildApp({ config, store, clock, migrate: false });
    apps.push(app);
    expectUnavailable(await send(app, 'GET', objectives.basePath));
    expectUnavailable(await send(app, 'POST', objectives.basePath, { title: 'x' }, { 'idempotency-key': 'k' }));
    expect((await app.inject('/readyz')).statusCode).toBe(503);
  }

  // Closed to new sessions for maintenance (ALLOW_CONNECTIONS false: 55000, a generic code). It was 500.
  it.runIf(PG_URL)('answers 503 for a database that does not accept connections, as /readyz does', async () => {
    const name = `edm_closed_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
    try {
      const url = new URL(PG_URL as string);
      url.pathname = `/${name}`;
      await expectRefusedAt(url);
    } finally {
      await admin.query(`DROP DATABASE ${name}`);
      await admin.end();
    }
  });

  it('answers 503 for a server that accepts and never speaks (connect timeout), not a hang', async () => {
    const accepted: net.Socket[] = [];
    const silent = net.createServer((socket) => accepted.push(socket));
    closers.push(() => {
      for (const socket of accepted) socket.destroy();
    });
    servers.push(silent);
    await new Promise<void>((done) => silent.listen(0, '127.0.0.1', () => done()));
    const app = await appAt((silent.address() as net.AddressInfo).port);
    const answers = await Promise.all([1, 2, 3].map(() => send(app, 'GET', objectives.basePath)));
    for (const a of answers) expectUnavailable(a);
    // Started without migrating, the server probes the schema first; the requests that waited for
    // that probe answer its outage, not wait out a connection attempt of their own as well (each
    // waited the connect timeout twice). One probe, one connection attempt, for the three.
    expect(accepted).toHaveLength(1);
    expect((await app.inject('/readyz')).statusCode).toBe(503);
  });
});
