import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { buildApp } from '../src/http/app.js';
import { modules } from '../src/modules/index.js';
import { openStore } from '../src/store/database.js';
import { migrate } from '../src/store/schema.js';
import { freshStore, storeKinds, type TestApp, testApp, testConfig, USER_A, writeProtect } from './helpers.js';

/** Writes raw bytes to the server, then reads everything it answers until it closes the connection. */
function rawExchange(port: number, chunks: string[], gapMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
      answer += d;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

function parse(answer: string): { status: number; headers: Record<string, string>; body: Record<string, unknown> } {
  const [head, body] = answer.split('\r\n\r\n');
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body) };
}

// Transport behaviour, before any store is read: one store is enough.
describe('connections: requests that are not HTTP, too large, or too slow to arrive', () => {
  let t: TestApp;
  let port: number;
  let token: string;
  beforeAll(async () => {
    t = await testApp('sqlite', { requestTimeoutMs: 1000 });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as { port: number }).port;
    token = await t.token();
  });
  afterAll(() => t.close());

  const post = (length: number) =>
    `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;

  it.each([
    ['a body that stops arriving', () => [post(100), '{"name":'], 408, 'request_timeout'],
    ['headers that stop arriving', () => ['GET /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\n'], 408, 'request_timeout'],
    ['bytes that are not HTTP', () => ['HELLO THERE\r\n\r\n'], 400, 'malformed_request'],
    ['an HTTP/1.1 request without Host', () => ['GET /healthz HTTP/1.1\r\n\r\n'], 400, 'malformed_request'],
    // RFC 9112 §3.2: Node kept the first of two, where a proxy may route by the other; and took
    // a Host that names no host.
    [
      'a request with two Host lines',
      () => [`GET /api/v1/okr/cycles HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer ${token}\r\n\r\n`],
      400,
      'malformed_request',
    ],
    ['a Host that is no host', () => ['GET /healthz HTTP/1.1\r\nHost: x/y\r\n\r\n'], 400, 'malformed_request'],
    [
      'a CORS preflight without Host',
      () => [
        'OPTIONS /api/v1/okr/cycles HTTP/1.1\r\nOrigin: https://example.com\r\nAccess-Control-Request-Method: POST\r\n\r\n',
      ],
      400,
      'malformed_request',
    ],
    [
      'an Expect the server cannot meet',
      () => ['POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 2\r\n\r\n{}'],
      417,
      'expectation_failed',
    ],
    [
      'headers over 16 KiB',
      () => [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
      431,
      'headers_too_large',
    ],
    // RFC 9112 §3: a request-target longer than the server parses is 414 (it was 431).
    [
      'a URL over 16 KiB',
      () => [`GET /healthz?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
      414,
      'uri_too_long',
    ],
    // Node drops header lines past its count (~1,000): the second Host past them went unseen.
    [
      'a second Host past a thousand other header lines',
      () => [`GET /healthz HTTP/1.1\r\nHost: x\r\n${'a:b\r\n'.repeat(1100)}Host: evil.example\r\n\r\n`],
      400,
      'malformed_request',
    ],
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; a coding besides chunked
    // (gzip, chunked) was read as plain chunked, the body still compressed.
    [
      'Transfer-Encoding on HTTP/1.0',
      () => [
        'POST /api/v1/okr/cycles HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n' +
          'Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      ],
      400,
      'malformed_request',
    ],
    [
      'a Transfer-Encoding other than chunked alone',
      () => [
        'POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          'Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      ],
      400,
      'malformed_request',
    ],
    // Node closed the socket without a word.
    ['a CONNECT', () => ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'], 404, 'route_not_found'],
  ] as const)('%s: answered as a problem, then the connection is closed', async (_, chunks, status, code) => {
    const answer = parse(await rawExchange(port, [...chunks()]));
    expect(answer.status).toBe(status);
    expect(answer.headers['content-type']).toMatch(/^application\/problem\+json(;|$)/);
    expect(answer.headers.connection).toBe('close');
    // A Date, as every answer of a server with a clock (RFC 9110 §6.6.1): these lacked one.
    expect(Number.isNaN(Date.parse(answer.headers.date ?? ''))).toBe(false);
    expect(answer.body).toMatchObject({ status, code, type: `/problems/${code}` });
    expect(answer.body.request_id).toBe(answer.headers['x-request-id']);
    expect(answer.body.request_id).toMatch(/^req_[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  // A CONNECT pipelined behind a write: the write's answer first, then the CONNECT's (its 404
  // took the write's place, and the client read the write as refused).
  it('answers a CONNECT pipelined behind a request after that request, in its turn', async () => {
    const body = '{"name":"piped","start_date":"2026-01-01","end_date":"2026-03-31"}';
    const answer = await rawExchange(port, [
      `${post(Buffer.byteLength(body))}${body}CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n`,
    ]);
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([201, 404]);
  });

  // A request the parser refuses, pipelined behind others: their answers first, then the
  // refusal (it took their place: a write that went through read as refused, and was retried).
  it.each([
    ['bytes that are not HTTP', 'GARBAGE\r\n\r\n', 400],
    ['headers over 16 KiB', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
  ])('answers %s pipelined behind a write after the write', async (_, bad, status) => {
    const body = '{"name":"before the refusal","start_date":"2026-01-01","end_date":"2026-03-31"}';
    const answer = await rawExchange(port, [`${post(Buffer.byteLength(body))}${body}${bad}`]);
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([201, status]);
  });

  // RFC 9112 §9.3.2: pipelined requests are worked on side by side only when all are safe. A GET
  // pipelined after a PATCH read the row as it was before it (20 times in 20).
  it('works on a request pipelined behind a write after that write: a GET sees what a PATCH wrote', async () => {
    const created = await t.call('POST', '/api/v1/okr/cycles', {
      token,
      body: { name: 'before', start_date: '2026-01-01', end_date: '2026-03-31' },
    });
    const url = `/api/v1/okr/cycles/${created.body.id}`;
    for (let i = 0; i < 5; i++) {
      const body = JSON.stringify({ name: `after ${i}` });
      const answer = await rawExchange(port, [
        `PATCH ${url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` +
          `GET ${url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      ]);
      const names = [...answer.matchAll(/"name":"([^"]*)"/g)].map((m) => m[1]);
      expect(names).toEqual([`after ${i}`, `after ${i}`]);
    }
  });

  // A Host is required of HTTP/1.1 only (RFC 9112 §3.2), and may be an IP literal with a port.
  it.each([
    ['an HTTP/1.0 request without Host', 'GET /healthz HTTP/1.0\r\n\r\n'],
    [
      'a Host that is an IPv6 literal with a port',
      'GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n',
    ],
  ])('serves %s', async (_, request) => {
    const answer = await rawExchange(port, [request]);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toContain('{"status":"ok"}');
  });

  // Node keeps the first Authorization line: two lines naming two tenants answered as the first,
  // where a proxy reading the last would have let in the other.
  it('refuses a request with two Authorization lines, 400 naming the header, whichever comes first', async () => {
    const other = await t.token({ tenant: 'other' });
    for (const [first, second, between] of [
      [token, other, ''],
      [other, token, ''],
      [token, token, ''],
      // Past the ~1,000 lines Node counted, the second was dropped unseen: answered as the first.
      [token, other, 'a:b\r\n'.repeat(1100)],
    ]) {
      const answer = parse(
        await rawExchange(port, [
          `GET /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${first}\r\n${between}` +
            `authorization: Bearer ${second}\r\nConnection: close\r\n\r\n`,
        ]),
      );
      expect([answer.status, answer.body.code]).toEqual([400, 'invalid_header']);
      expect(answer.body.errors).toEqual([
        {
          path: 'Authorization',
          code: 'invalid_header',
          message: 'must be one header: a request with more names more than one caller',
        },
      ]);
    }
    const one = parse(
      await rawExchange(port, [
        `GET /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      ]),
    );
    expect(one.status).toBe(200);
  });

  it.each([
    ['announced by its Content-Length', (n: number) => post(n)],
    [
      'sent in chunks',
      () =>
        `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
  ] as const)(
    'a body over 1 MiB (%s) is answered 413 while it arrives, and the connection serves on',
    async (_, head) => {
      const size = 3 * 1024 * 1024;
      const chunked = head(size).includes('chunked');
      const piece = (n: number) => (chunked ? `${n.toString(16)}\r\n${'x'.repeat(n)}\r\n` : 'x'.repeat(n));
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (d) => {
        text += d;
      });
      let closed = false;
      socket.on('close', () => {
        closed = true;
      });
      const until = async (done: () => boolean) => {
        for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
      };
      await new Promise((r) => socket.on('connect', r));
      socket.write(head(size));
      // More than the limit, but not all of it: the answer comes now, not after the rest.
      for (let sent = 0; sent < 1.5 * 1024 * 1024; sent += 64 * 1024) socket.write(piece(64 * 1024));
      await until(() => text.endsWith('}'));
      const answer = parse(text);
      expect([answer.status, answer.body.code]).toEqual([413, 'payload_too_large']);
      expect(answer.headers.connection).not.toBe('close');
      // The rest of the body, then another request on the same connection.
      for (let sent = 1.5 * 1024 * 1024; sent < size; sent += 64 * 1024) socket.write(piece(64 * 1024));
      if (chunked) socket.write('0\r\n\r\n');
      text = '';
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(() => text.endsWith('}') || closed);
      socket.destroy();
      expect(text).toMatch(/^HTTP\/1\.1 200 /);
    },
  );

  it('a body over 1 MiB that then stops arriving: the 413 is its one answer, and the connection closes', async () => {
    const answer = await rawExchange(port, [post(2_000_000), 'x'.repeat(1_100_000)]);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1); // no 408 after it
  });

  it.each([
    ['refused from its headers', '/api/v1/okr/cycles', 401],
    ['to a URL the router cannot read', '/api/v1/okr/cycles/%zz', 404],
  ])('a request %s whose body then stops arriving: that answer is its one answer', async (_, path, status) => {
    const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
    const answer = await rawExchange(port, [head, '{"name":']);
    expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(answer.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1); // no 408 after it
  });

  it('counts the answers the connection gives in the metrics (no route, their status)', async () => {
    await rawExchange(port, ['GET /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\n']); // 408
    await rawExchange(port, [
      'POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 0\r\n\r\n',
    ]);
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^edm_http_requests_total\{method="UNKNOWN",route="unmatched",status="408"\} [1-9]/m);
    expect(metrics).toMatch(/^edm_http_requests_total\{method="POST",route="unmatched",status="417"\} [1-9]/m);
  });

  // A request whose headers arrived is counted under its method, though its body never did.
  it('counts a request whose body stops arriving under its method', async () => {
    expect(parse(await rawExchange(port, [post(100), '{"name":'])).status).toBe(408);
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^edm_http_requests_total\{method="POST",route="unmatched",status="408"\} [1-9]/m);
  });

  it('a timed-out create stores nothing', async () => {
    const before = await t.call('GET', '/api/v1/okr/cycles');
    const body = JSON.stringify({ name: 'Slow', start_date: '2026-01-01', end_date: '2026-03-31' });
    const answer = parse(await rawExchange(port, [post(body.length), body.slice(0, 10)]));
    expect(answer.status).toBe(408);
    const after = await t.call('GET', '/api/v1/okr/cycles');
    expect(after.body.data).toEqual(before.body.data);
  });

  it('a body that arrives in pieces within the timeout is served', async () => {
    const body = JSON.stringify({ name: 'In pieces', start_date: '2026-01-01', end_date: '2026-03-31' });
    const pieces = [post(body.length), body.slice(0, 10), body.slice(10, 20), body.slice(20)];
    const socket = connect(port, '127.0.0.1');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (d) => {
        text += d;
        if (text.includes('\r\n\r\n') && text.endsWith('}')) resolve(text);
      });
      socket.on('connect', async () => {
        for (const piece of pieces) {
          socket.write(piece);
          await new Promise((r) => setTimeout(r, 50));
        }
      });
    });
    socket.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(answer).toContain('"name":"In pieces"');
  });
  // A browser page reads a cross-origin answer only with these: the connection's own answers to
  // a request whose headers arrived carry them too (they lacked them).
  it.each([
    [
      'an Expect the server cannot meet',
      () => [`${withOrigin('POST')}Expect: foo\r\nContent-Length: 2\r\n\r\n{}`],
      417,
    ],
    ['a body that stops arriving', () => [`${withOrigin('POST')}Content-Length: 100\r\n\r\n`, '{"name":'], 408],
    [
      'a CONNECT',
      () => ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nOrigin: https://app.example\r\n\r\n'],
      404,
    ],
  ] as const)('%s, from another origin: answered with the CORS headers', async (_, chunks, status) => {
    const answer = parse(await rawExchange(port, [...chunks()]));
    expect(answer.status).toBe(status);
    expect(answer.headers['access-control-allow-origin']).toBe('*');
    expect(answer.headers['access-control-expose-headers']).toContain('x-request-id');
    const plain = parse(
      await rawExchange(port, [
        'POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 2\r\n\r\n{}',
      ]),
    );
    expect([plain.status, plain.headers['access-control-allow-origin'], plain.headers.vary]).toEqual([
      417,
      undefined,
      'Origin',
    ]);
  });
  const withOrigin = (method: string) =>
    `${method} /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n` +
    `Authorization: Bearer ${token}\r\nContent-Type: application/json\r\n`;
});

// Node stops checking the request timeout once the server closes: a client still sending its
// request (or one that sent nothing) held a stopping server up for as long as it kept the
// connection (past a deployment's grace period, SIGKILL). The test's own timeout is the check
// that the close ends.
describe('a server closing while requests still arrive', () => {
  it('answers each 408 once the request timeout has passed, then closes', async () => {
    const t = await testApp('sqlite', { requestTimeoutMs: 1000 });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    /** A connection that sends `first`, then `more` every 100 ms until it is closed; answers what it read. */
    const trickle = (first: string, more: string | null) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.setEncoding('latin1');
      // It stops sending once answered: writes after the server closed the connection would reset it.
      socket.on('data', (d) => {
        text += d;
        clearInterval(timer);
      });
      socket.on('error', () => {});
      const timer = more === null ? undefined : setInterval(() => socket.writable && socket.write(more), 100);
      socket.on('connect', () => first && socket.write(first));
      return {
        connected: new Promise((resolve) => socket.once('connect', resolve)),
        answer: new Promise<string>((resolve) =>
          socket.on('close', () => {
            clearInterval(timer);
            resolve(text);
          }),
        ),
      };
    };
    // The body's request reaches its route once its headers arrived.
    const routed = new Promise((resolve) => t.app.server.once('request', resolve));
    const clients = [
      // Headers, a line at a time, never ending.
      trickle('GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-A: 1\r\n'),
      // A body, a byte at a time, never whole.
      trickle(
        `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await t.token()}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
        ' ',
      ),
      // Nothing at all.
      trickle('', null),
    ];
    await Promise.all(clients.map((c) => c.connected));
    await routed;
    // Accepted by the server (a connection still in its backlog would be refused by the close).
    while ((await new Promise<number>((r, j) => t.app.server.getConnections((e, n) => (e ? j(e) : r(n))))) < 3) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await t.close();
    for (const client of clients) {
      const answer = parse(await client.answer);
      expect([answer.status, answer.body.code, answer.headers.connection]).toEqual([408, 'request_timeout', 'close']);
    }
  });
});

describe('EDM_REQUEST_TIMEOUT_MS', () => {
  it('defaults to 30 s, and 0 turns the limit off', async () => {
    const { loadConfig } = await import('../src/core/config.js');
    const env = { EDM_JWT_SECRET: 'x'.repeat(32), EDM_SECRET_KEY: 'y'.repeat(32) };
    expect(loadConfig(env).requestTimeoutMs).toBe(30_000);
    expect(loadConfig({ ...env, EDM_REQUEST_TIMEOUT_MS: '0' }).requestTimeoutMs).toBe(0);
    expect(() => loadConfig({ ...env, EDM_REQUEST_TIMEOUT_MS: 'soon' })).toThrow(/EDM_REQUEST_TIMEOUT_MS/);
    // The headers' deadline is the request's, longer than Node's own 60 s or none at all.
    for (const [ms, expected] of [
      [undefined, 30_000],
      [0, 0],
      [90_000, 90_000],
    ] as const) {
      const t = await testApp('sqlite', ms === undefined ? {} : { requestTimeoutMs: ms });
      try {
        expect([t.app.server.requestTimeout, t.app.server.headersTimeout]).toEqual([expected, expected]);
      } finally {
        await t.close();
      }
    }
  });
});

/** A cycle created by a user of tenant `acme` with a token of the test secret: the answer. */
async function createCycle(app: Awaited<ReturnType<typeof buildApp>>) {
  const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A });
  return app.inject({
    method: 'POST',
    url: '/api/v1/okr/cycles',
    payload: { name: 'Q1', start_date: '2026-01-01', end_date: '2026-03-31' },
    headers: { authorization: `Bearer ${token}` },
  });
}

describe('a SQLite path as long as SQLite opens', () => {
  it('is served up to 504 bytes from the root; a longer one is refused, naming its length, before any folder is made', async () => {
    const root = mkdtempSync(join(tmpdir(), 'edm-long-'));
    // A path of `bytes` bytes, in folders of at most 200 (a file system takes 255), its file
    // named in two-byte characters: the limit is SQLite's, in bytes, not in characters.
    const pathOf = (bytes: number) => {
      let folder = root;
      while (bytes - Buffer.byteLength(folder) > 250) folder = join(folder, 'f'.repeat(200));
      const left = bytes - Buffer.byteLength(folder) - 1;
      return join(folder, `${'é'.repeat(Math.floor(left / 2))}${left % 2 ? 'x' : ''}`);
    };
    try {
      const fits = pathOf(504);
      expect(Buffer.byteLength(fits)).toBe(504);
      const store = openStore(`sqlite:${fits}`, { checkpointIntervalMs: 0 });
      try {
        await migrate(
          store,
          modules.flatMap((m) => m.resources),
        );
        const app = await buildApp({ config: testConfig(), store, migrate: false });
        try {
          expect((await createCycle(app)).statusCode).toBe(201);
        } finally {
          await app.close();
        }
      } finally {
        await store.close();
      }
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root);
      const long = pathOf(505);
      expect(Buffer.byteLength(long)).toBe(505);
      expect(() => openStore(`sqlite:${long}`)).toThrow(
        `EDM_DATABASE_URL: sqlite:${long} is a path of 505 bytes from the root; SQLite opens at most 504: choose a shorter one`,
      );
      expect(readdirSync(root)).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('/readyz on a SQLite file that takes no writes', () => {
  it('answers 503 where SQLite opened the file read-only, and so does every write', async (context) => {
    const made = await freshStore('sqlite');
    await migrate(
      made.store,
      modules.flatMap((m) => m.resources),
    );
    await made.store.close();
    const file = made.url.slice('sqlite:'.length);
    const undo = writeProtect(file);
    if (!undo) {
      await made.drop();
      return context.skip('nothing here can make a file read-only');
    }
    // SQLite opens a file it may not write read-only, saying nothing until a write fails.
    const store = openStore(made.url, { checkpointIntervalMs: 0 });
    const app = await buildApp({ config: testConfig(), store, migrate: false });
    try {
      const res = await app.inject('/readyz');
      expect([res.statusCode, res.json(), res.headers['retry-after']]).toEqual([
        503,
        { status: 'unavailable', store: 'sqlite' },
        '1',
      ]);
      expect((await createCycle(app)).statusCode).toBe(503);
    } finally {
      await app.close();
      await store.close();
      undo();
      await made.drop();
    }
  });
});

describe.each(storeKinds)('/readyz on %s', (kind) => {
  it('with EDM_DB_CONNECT_TIMEOUT_MS=0 (no limit, as for requests) answers ready, not 503 at once', async () => {
    const t = await testApp(kind, { dbConnectTimeoutMs: 0 });
    try {
      const res = await t.app.inject('/readyz');
      expect([res.statusCode, res.json()]).toEqual([200, { status: 'ready', store: kind }]);
    } finally {
      await t.close();
    }
  });

  it.runIf(kind === 'postgres')(
    'probes the schema once for the requests that arrive while it is not in place',
    async () => {
      const fresh = await freshStore(kind);
      const app = await buildApp({ config: testConfig(), store: fresh.store, migrate: false });
      const query = pg.Client.prototype.query;
      let probes = 0;
      pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
        const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
        if (text?.includes(') AS probe')) probes++;
        return (query as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof query;
      try {
        const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A });
        const burst = () =>
          Promise.all(
            Array.from({ length: 30 }, () =>
              app.inject({ url: '/api/v1/okr/cycles', headers: { authorization: `Bearer ${token}` } }),
            ),
          );
        for (const res of await burst()) expect(res.statusCode).toBe(503);
        expect(probes).toBe(1);
        await new Promise((r) => setTimeout(r, 1000));
        for (const res of await burst()) expect(res.statusCode).toBe(503);
        expect(probes).toBe(2);
      } finally {
        pg.Client.prototype.query = query;
        await app.close();
        await fresh.store.close();
        await fresh.drop();
      }
    },
  );

  // The probe is repeated once its last is a second old: a clock set back an hour made it an
  // hour old only once that hour had passed again, and the schema made meanwhile went unseen.
  it('looks for the schema again after the clock is set back, and serves once it is in place', async () => {
    const fresh = await freshStore(kind);
    const app = await buildApp({ config: testConfig(), store: fresh.store, migrate: false });
    const start = Date.now();
    vi.useFakeTimers({ toFake: ['Date'], now: start });
    try {
      const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A, now: start });
      const list = { method: 'GET', url: '/api/v1/okr/cycles', headers: { authorization: `Bearer ${token}` } } as const;
      expect((await app.inject(list)).statusCode).toBe(503);
      await migrate(
        fresh.store,
        modules.flatMap((m) => m.resources),
      );
      vi.setSystemTime(start - 3_600_000);
      expect((await app.inject(list)).statusCode).toBe(200);
    } finally {
      vi.useRealTimers();
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });

  it('answers 503 while the database has no schema (started with --no-migrate before edm migrate)', async () => {
    const fresh = await freshStore(kind);
    const app = await buildApp({ config: testConfig(), store: fresh.store, migrate: false });
    try {
      const res = await app.inject('/readyz');
      expect([res.statusCode, res.json()]).toEqual([503, { status: 'unavailable', store: kind }]);
      // Retry-After as the requests' (below): the schema waits for an operator.
      expect(res.headers['retry-after']).toBe('5');
      // Requests meanwhile are 503 too, saying what is missing (a 500 before), and write nothing.
      const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A });
      for (const [method, url, payload] of [
        ['GET', '/api/v1/okr/cycles', undefined],
        ['POST', '/api/v1/okr/cycles', { name: 'Q1', start_date: '2026-01-01', end_date: '2026-03-31' }],
      ] as const) {
        const early = await app.inject({ method, url, payload, headers: { authorization: `Bearer ${token}` } });
        expect([early.statusCode, early.json().code, early.headers['retry-after']], method).toEqual([
          503,
          'service_unavailable',
          '5',
        ]);
        expect(early.json().detail).toMatch(/edm migrate/);
      }
      await migrate(
        fresh.store,
        modules.flatMap((m) => m.resources),
      );
      // A schema of an earlier version (a column added since) is not ready, nor are its writes 500s.
      await sql`ALTER TABLE okr_connectors DROP COLUMN webhook_generation`.execute(fresh.store.db);
      // Nor are requests to its complete tables served meanwhile: the server is not ready.
      await new Promise((r) => setTimeout(r, 1000)); // past the last probe's second
      const cycle = {
        method: 'POST',
        url: '/api/v1/okr/cycles',
        payload: { name: 'Q1', start_date: '2026-01-01', end_date: '2026-03-31' },
        headers: { authorization: `Bearer ${token}` },
      } as const;
      const early = await app.inject(cycle);
      expect([early.statusCode, early.json().code, early.headers['retry-after']]).toEqual([
        503,
        'service_unavailable',
        '5',
      ]);
      expect((await app.inject({ ...cycle, method: 'GET' })).statusCode).toBe(503);
      expect(await fresh.store.db.selectFrom('okr_cycles').select('id').execute()).toEqual([]);
      const older = await app.inject('/readyz');
      expect(older.statusCode).toBe(503);
      const create = await app.inject({
        method: 'POST',
        url: '/api/v1/okr/connectors',
        payload: { name: 'x', kind: 'webhook', config: {} },
        headers: { authorization: `Bearer ${token}` },
      });
      expect([create.statusCode, create.json().code]).toEqual([503, 'service_unavailable']);
      await migrate(
        fresh.store,
        modules.flatMap((m) => m.resources),
      );
      await new Promise((r) => setTimeout(r, 1000));
      // Once it is in place, within a second: no restart.
      expect((await app.inject(cycle)).statusCode).toBe(201);
      const ready = await app.inject('/readyz');
      expect([ready.statusCode, ready.json()]).toEqual([200, { status: 'ready', store: kind }]);
    } finally {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

// A list on SQLite may name its filter's index (INDEXED BY, Engine.narrowIndex): a store of a
// build before 2026-12-02 has those indexes under other names, which made such a list a 500
// under a server started with --no-migrate.
describe('/readyz on a SQLite store whose indexes an earlier build made', () => {
  it('answers 503, and so does every request, until edm migrate renames them', async () => {
    const fresh = await freshStore('sqlite');
    const resources = modules.flatMap((m) => m.resources);
    await migrate(fresh.store, resources);
    await sql`DROP INDEX okr_key_results_by_status`.execute(fresh.store.db);
    await sql`CREATE INDEX okr_key_results_filter_status ON okr_key_results (tenant_id, status)`.execute(
      fresh.store.db,
    );
    const app = await buildApp({ config: testConfig(), store: fresh.store, migrate: false });
    try {
      expect((await app.inject('/readyz')).statusCode).toBe(503);
      const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A });
      const list = () =>
        app.inject({
          url: '/api/v1/okr/key-results?status=achieved,off_track',
          headers: { authorization: `Bearer ${token}` },
        });
      const early = await list();
      expect([early.statusCode, early.json().code]).toEqual([503, 'service_unavailable']);
      expect(early.json().detail).toMatch(/edm migrate/);
      await migrate(fresh.store, resources);
      await new Promise((r) => setTimeout(r, 1000)); // past the last probe's second
      expect((await list()).statusCode).toBe(200);
      expect((await app.inject('/readyz')).statusCode).toBe(200);
    } finally {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

// A `tag=` list on SQLite reads a table of the rows' tags (memberTable) that builds before
// 2026-12-02 did not make: until edm migrate makes it, from the rows already stored, the server
// says so rather than answer a 500 (or a list missing rows).
describe('a SQLite store an earlier build made, without the tables of tags', () => {
  it('answers 503 until edm migrate makes them, then finds the rows stored before by their tags', async () => {
    const fresh = await freshStore('sqlite');
    const resources = modules.flatMap((m) => m.resources);
    await migrate(fresh.store, resources);
    const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 'acme', sub: USER_A });
    const headers = { authorization: `Bearer ${token}` };
    const before = await buildApp({ config: testConfig(), store: fresh.store, migrate: false });
    const titles: Record<string, string[]> = { a: ['old', 'red'], b: ['red'], c: [], d: ['blue'] };
    try {
      const objective = await before.inject({
        method: 'POST',
        url: '/api/v1/okr/objectives',
        headers,
        payload: { title: 'o', tags: ['red'] },
      });
      expect(objective.statusCode, objective.body).toBe(201);
      for (const [title, tags] of Object.entries(titles)) {
        const res = await before.inject({
          method: 'POST',
          url: '/api/v1/okr/key-results',
          headers,
          payload: { objective_id: objective.json().id, title, target: 1, tags },
        });
        expect(res.statusCode, res.body).toBe(201);
      }
    } finally {
      await before.close();
    }
    await sql`DROP TABLE okr_key_results_has_tags`.execute(fresh.store.db);
    await sql`DROP TABLE okr_objectives_has_tags`.execute(fresh.store.db);
    const app = await buildApp({ config: testConfig(), store: fresh.store, migrate: false });
    try {
      expect((await app.inject('/readyz')).statusCode).toBe(503);
      const list = async (path: string) => {
        const res = await app.inject({ url: `/api/v1/okr/${path}`, headers });
        return [
          res.statusCode,
          res.statusCode === 200
            ? res
                .json()
                .data.map((d: { title: string }) => d.title)
                .sort()
            : res.json().code,
        ];
      };
      expect(await list('key-results?tag=red')).toEqual([503, 'service_unavailable']);
      await migrate(fresh.store, resources);
      await new Promise((r) => setTimeout(r, 1000)); // past the last probe's second
      expect(await list('key-results?tag=red')).toEqual([200, ['a', 'b']]);
      expect(await list('key-results?tag=old,blue&sort=title')).toEqual([200, ['a', 'd']]);
      expect(await list('objectives?tag=red')).toEqual([200, ['o']]);
      expect((await app.inject('/readyz')).statusCode).toBe(200);
      // What migrate filled the table with: each row's text tags, as the filter's json_each reads them.
      const members = await sql<{ n: number }>`SELECT count(*) AS n FROM okr_key_results_has_tags`.execute(
        fresh.store.db,
      );
      expect(members.rows[0].n).toBe(4);
    } finally {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

describe('a request the connection answers', () => {
  it('keeps the id its log line gave it when its body stops arriving, and is logged with its status', async () => {
    const fresh = await freshStore('sqlite');
    const config = testConfig({ requestTimeoutMs: 500 });
    const lines: Record<string, unknown>[] = [];
    const app = await buildApp({
      config,
      store: fresh.store,
      logger: true,
      logStream: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const port = (app.server.address() as { port: number }).port;
      const token = await mintToken({ secret: config.jwtSecret, tenant: 'acme', sub: USER_A, ttl: '1h' });
      const head =
        `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n';
      const answer = parse(await rawExchange(port, [head, '{"name":']));
      expect([answer.status, answer.body.code]).toEqual([408, 'request_timeout']);
      const id = answer.headers['x-request-id'];
      const incoming = lines.find((l) => l.msg === 'incoming request');
      expect(incoming?.reqId).toBe(id);
      expect(lines.find((l) => l.msg === 'request answered by the connection')).toMatchObject({
        reqId: id,
        res: { statusCode: 408 },
      });
      // Headers that never arrive whole: a request no line named yet, answered under a new id.
      const bare = parse(await rawExchange(port, ['GET /healthz HTTP/1.1\r\nHost: x\r\n']));
      expect(bare.status).toBe(408);
      expect(bare.headers['x-request-id']).not.toBe(id);
    } finally {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});
