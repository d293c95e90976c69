import { connect, createServer, type Server } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc } from '../src/core/resource.js';
import { connectors } from '../src/modules/okr/connectors.js';
import { PG_URL, storeKinds, type TestApp, testApp } from './helpers.js';

/** A schema of this file's own, for a sequence a read may not advance. */
const PROBE_SCHEMA = 'edm_connector_read_probe';
const admin = async (text: string) => {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
};

/** The first message of a connection that asks for TLS (PostgreSQL's SSLRequest: length 8, code 80877103). */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

/**
 * A proxy on loopback to the test PostgreSQL that notes how each connection through it began:
 * `tls` where it asked for TLS first, else `plaintext`.
 */
function recordingProxy() {
  const connections: ('tls' | 'plaintext')[] = [];
  const server: Server = createServer((client) => {
    // Read when a connection comes (the suite is collected without EDM_TEST_DATABASE_URL too).
    const target = new URL(PG_URL as string);
    const upstream = connect(Number(target.port || 5432), target.hostname);
    let first = true;
    client.on('data', (chunk) => {
      if (first) connections.push(chunk.subarray(0, 8).equals(SSL_REQUEST) ? 'tls' : 'plaintext');
      first = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('close', close);
      socket.on('error', close);
    }
  });
  return {
    connections,
    start: () => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)),
    /** The test database's URL through the proxy, with an sslmode. */
    url: (sslmode: string) => {
      const url = new URL(PG_URL as string);
      url.hostname = '127.0.0.1';
      url.port = String((server.address() as { port: number }).port);
      url.searchParams.set('sslmode', sslmode);
      return url.toString();
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.runIf(PG_URL !== undefined).each(storeKinds)('a postgres connector read on %s', (kind) => {
  let t: TestApp;
  let token: string;
  const proxy = recordingProxy();
  beforeAll(async () => {
    await proxy.start();
    t = await testApp(kind, { connectorAllowHosts: ['127.0.0.1'] });
    token = await t.token();
    await admin(`CREATE SCHEMA IF NOT EXISTS ${PROBE_SCHEMA}; CREATE SEQUENCE IF NOT EXISTS ${PROBE_SCHEMA}.seq`);
  });
  afterAll(async () => {
    await t.close();
    await proxy.stop();
    await admin(`DROP SCHEMA IF EXISTS ${PROBE_SCHEMA} CASCADE`);
  });

  /** What a sync of a new `postgres` connector running `query` over `secret` answers. */
  const synced = async (query: string, secret = PG_URL as string): Promise<Doc> => {
    const created = await t.call('POST', connectors.basePath, {
      token,
      body: { name: 'warehouse', kind: 'postgres', config: { query }, secret },
    });
    expect(created.status, created.raw).toBe(201);
    const res = await t.call('POST', `${connectors.basePath}/${created.body.id}/sync`, { token });
    expect(res.status, res.raw).toBe(200);
    return res.body;
  };
  const ok = (value: number) => ({ last_sync_status: 'ok', last_value: value, last_error: null });
  const error = (message: RegExp) => ({ last_sync_status: 'error', last_error: expect.stringMatching(message) });

  const queries: [string, string, Doc][] = [
    [
      // Every row after the first divides by zero: a read of the whole result fails.
      'reads the first row only, computing none after it',
      'SELECT CASE WHEN g = 1 THEN 1 ELSE 1 / (g - g) END FROM generate_series(1, 100000) g',
      ok(1),
    ],
    ['reads VALUES', 'VALUES (7, 8)', ok(7)],
    ['reads a query ending in a comment', 'SELECT 5 -- five', ok(5)],
    ['reads a statement no cursor holds (SHOW)', 'SHOW max_identifier_length', ok(63)],
    [
      'refuses a statement that is no query, SHOW, EXPLAIN or CALL, naming its first word',
      'CREATE TABLE edm_probe (x int)',
      error(/^postgres: a connector runs a query \(SELECT, VALUES, TABLE, WITH\), SHOW, EXPLAIN or CALL, not CREATE$/),
    ],
    [
      'refuses SELECT INTO in the read-only transaction’s words',
      'SELECT 1 INTO edm_probe',
      error(/read-only transaction/),
    ],
    [
      'refuses a write inside WITH',
      'WITH gone AS (DELETE FROM pg_class RETURNING 1) SELECT 1',
      error(/^postgres: .*(read-only transaction|data-modifying)/),
    ],
    // A SELECT that writes is a statement a cursor holds: the read-only transaction refuses it too.
    [
      'refuses a SELECT that writes (nextval)',
      `SELECT nextval('${PROBE_SCHEMA}.seq')`,
      error(/cannot execute nextval\(\) in a read-only transaction/),
    ],
    ['refuses a second statement', 'SELECT 1; COMMIT; SELECT 2', error(/cannot insert multiple commands/)],
    ['answers no row as no row', 'SELECT 1 WHERE false', error(/^the query returned no row$/)],
    ['answers a syntax error as the query’s own', 'SELECT 1 +', error(/^postgres: syntax error at end of input$/)],
    ['names a misspelt first word', 'SELEC 1', error(/^postgres: a connector runs a query .*, not SELEC$/)],
  ];
  // Trust authentication takes the URL's password unread: a query can show it back, as a
  // feed might, and its failure names the value without it (no first part of it either).
  it('keeps the URL and its password out of a failure that quotes them', async () => {
    const url = new URL(PG_URL as string);
    url.password = 'hunter2-pw@x';
    const answer = await synced(`SELECT 'saw hunter2-pw@x in ${url.href}'`, url.href);
    // Masked before the text is cut to 40 characters: the whole of it is left, shorter.
    expect(answer.last_error).toBe('the first column of its first row is "saw [secret] in [secret]", not a number');
    expect(answer.last_error).not.toMatch(/hunter2/);
  });
  // libpq decodes a URL's host as it does its other parts: 127.0.0.%31 is 127.0.0.1.
  it("decodes the host's %-escapes, as libpq does", async () => {
    const url = new URL(PG_URL as string);
    expect(url.hostname).toBe('127.0.0.1');
    url.hostname = '127.0.0.%31';
    expect(url.href).toContain('@127.0.0.%31');
    expect(await synced('SELECT 41 + 1', url.href)).toMatchObject(ok(42));
  });
  it.each(queries)('%s', async (_name, query, expected) => {
    expect(await synced(query)).toMatchObject(expected);
  });

  // The test PostgreSQL runs without TLS (ssl = off): it answers an SSLRequest with a refusal.
  const sslmodes: [string, ('tls' | 'plaintext')[], Doc][] = [
    ['disable', ['plaintext'], ok(1)],
    ['allow', ['plaintext'], ok(1)],
    ['prefer', ['tls', 'plaintext'], ok(1)],
    ['require', ['tls'], error(/^postgres: The server does not support SSL connections$/)],
    ['verify-full', ['tls'], error(/^postgres: The server does not support SSL connections$/)],
  ];
  it.each(sslmodes)('sslmode=%s: connects by %j and answers', async (sslmode, connections, expected) => {
    proxy.connections.length = 0;
    expect(await synced('SELECT 1', proxy.url(sslmode))).toMatchObject(expected);
    expect(proxy.connections).toEqual(connections);
  });
});
