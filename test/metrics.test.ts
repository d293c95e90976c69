import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byName, freshStore, storeKinds, type TestApp, testApp, testConfig } from './helpers.js';

describe('GET /metrics', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await testApp('sqlite');
  });
  afterAll(() => t.close());

  it('counts requests by route and status in the Prometheus text format', async () => {
    const cycles = byName('Cycle');
    await t.call('GET', cycles.basePath);
    await t.call('GET', `${cycles.basePath}/cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV`);
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('edm_http_requests_total{method="GET",route="/api/v1/okr/cycles",status="200"} 1');
    expect(res.body).toContain('edm_http_requests_total{method="GET",route="/api/v1/okr/cycles/:id",status="404"} 1');
    // A URL the router cannot read is a 404 no hook sees: counted all the same, under no route.
    expect((await t.call('GET', `${cycles.basePath}/%zz`)).status).toBe(404);
    const after = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(after.body).toContain('edm_http_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(res.body).toMatch(/edm_token_verifications_total 1\b/);
    expect(res.body).toMatch(/edm_transaction_retries_total 0\b/);
    expect(res.body).toMatch(/edm_transaction_deadlocks_total 0\b/);
    expect(res.body).toContain('edm_http_request_duration_seconds_bucket');
  });

  // A route's duration sum is of every request it answered, not the last one's.
  it("sums a route's request durations", async () => {
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as { port: number };
    const token = await t.token();
    const body = JSON.stringify({ name: 'Slow', start_date: '2026-01-01', end_date: '2026-03-31' });
    // A create whose body takes 300 ms to arrive, then a quick one refused.
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const answered = new Promise((r) => socket.once('data', r));
    socket.write(
      `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    for (const piece of [body.slice(0, 10), body.slice(10, 20), body.slice(20)]) {
      await new Promise((r) => setTimeout(r, 100));
      socket.write(piece);
    }
    await answered;
    socket.destroy();
    expect((await t.call('POST', '/api/v1/okr/cycles', { body: { name: '' } })).status).toBe(400);
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    const sum = /^edm_http_request_duration_seconds_sum\{method="POST",route="\/api\/v1\/okr\/cycles"\} (\S+)$/m.exec(
      metrics,
    );
    expect(Number(sum?.[1])).toBeGreaterThanOrEqual(0.25);
  });
});

/** An app on a fresh SQLite store whose log lines `fn` reads, closed after it. */
async function withLog(
  logger: true | 'warn',
  fn: (app: FastifyInstance, lines: string[]) => Promise<void>,
): Promise<void> {
  const { buildApp } = await import('../src/http/app.js');
  const { freshStore, testConfig } = await import('./helpers.js');
  const fresh = await freshStore('sqlite');
  const lines: string[] = [];
  const app = await buildApp({
    config: testConfig(),
    store: fresh.store,
    logger,
    logStream: { write: (line: string) => void lines.push(line) },
  });
  try {
    await fn(app, lines);
  } finally {
    await app.close();
    await fresh.store.close();
    await fresh.drop();
  }
}

describe('the request log', () => {
  it("leaves a signed URL's signature (its credential) out, and logs the rest of the request", async () => {
    const { loggedUrl } = await import('../src/http/app.js');
    await withLog(true, async (app, lines) => {
      const url =
        '/api/v1/okr/connectors/con_01ARZ3NDEKTSV4RRFFQ69G5FAV/webhook?tenant_id=acme&signature=SeCrEt-sig_123';
      const res = await app.inject({ method: 'POST', url, payload: { value: 1 } });
      expect(res.statusCode).toBe(401);
      const logged = lines.join('');
      expect(logged).toContain('/webhook?tenant_id=acme&signature=[redacted]');
      expect(logged).not.toContain('SeCrEt-sig_123');
    });
    expect(loggedUrl('/x?signature=a&b=1&signature=c')).toBe('/x?signature=[redacted]&b=1&signature=[redacted]');
    // However its name is escaped, as the query parser reads it.
    expect(loggedUrl('/x?tenant_id=t&sig%6Eature=abc')).toBe('/x?tenant_id=t&sig%6Eature=[redacted]');
    expect(loggedUrl('/x?a=%zz&b=1')).toBe('/x?a=%zz&b=1');
    // In any letter case, and a token sent in the query (refused, 401, but a credential all the same).
    expect(loggedUrl('/x?tenant_id=t&SIGNATURE=abc')).toBe('/x?tenant_id=t&SIGNATURE=[redacted]');
    expect(loggedUrl('/x?access_token=eyJ.a.b&limit=5')).toBe('/x?access_token=[redacted]&limit=5');
    expect(loggedUrl('/x?Api_Key=k1&token=t2')).toBe('/x?Api_Key=[redacted]&token=[redacted]');
    // The names a connector's URL may not hold either (one rule): without `-`, `_` and `.` too.
    expect(loggedUrl('/x?Client-Secret=s1&password=p2&q=a&api.key=k3')).toBe(
      '/x?Client-Secret=[redacted]&password=[redacted]&q=a&api.key=[redacted]',
    );
  });
});

describe('the log at warn (EDM_LOG=warn)', () => {
  it('leaves the requests out and keeps what an operator must read', async () => {
    await withLog('warn', async (app, lines) => {
      expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      expect(lines).toEqual([]);
      app.log.warn('the database is unavailable');
      expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['the database is unavailable']);
    });
  });
});

// PRODUCT.md: one server secret for every process of a deployment. A second process started with
// its own generated one broke connector secrets, cursors and webhook URLs without a word.
describe.each(storeKinds)('a server started with another EDM_SECRET_KEY on %s', (kind) => {
  it('logs a warning once, when the secret differs from the one the database was served with', async () => {
    const { buildApp } = await import('../src/http/app.js');
    const fresh = await freshStore(kind);
    const start = async (secret: string) => {
      const lines: string[] = [];
      const app = await buildApp({
        config: testConfig({ secretKey: new TextEncoder().encode(secret) }),
        store: fresh.store,
        logger: 'warn',
        logStream: { write: (line: string) => void lines.push(line) },
        runJobs: false,
      });
      await app.close();
      return lines.map((line) => JSON.parse(line).msg as string);
    };
    try {
      const first = 'first-server-secret-0123456789abcdef';
      expect(await start(first)).toEqual([]); // the first to serve it: recorded
      expect(await start(first)).toEqual([]);
      const other = 'other-server-secret-0123456789abcdef';
      expect(await start(other)).toEqual([expect.stringMatching(/^EDM_SECRET_KEY is not the secret this database/)]);
      expect(await start(other)).toEqual([]); // changed on purpose: said once
      // The fingerprint stored reveals nothing of the secret.
      const stored = await fresh.store.db
        .selectFrom('edm_meta')
        .select('value')
        .where('key', '=', 'secret_fingerprint')
        .executeTakeFirstOrThrow();
      expect(stored.value).toMatch(/^[\w-]{22}$/);
      expect(stored.value).not.toContain(Buffer.from(other).toString('base64url').slice(0, 8));
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });
});
