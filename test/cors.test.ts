import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byName, type TestApp, testApp } from './helpers.js';

const ORIGIN = 'https://app.example.com';
const EXPOSED =
  'ETag, Location, x-request-id, Retry-After, Idempotent-Replayed, Original-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset';

// CORS does not touch the store: one store is enough.
describe('CORS: browsers on other origins may call the API and read its answers', () => {
  let t: TestApp;
  let url: string;
  beforeAll(async () => {
    t = await testApp('sqlite');
    const kr = await t.create(byName('KeyResult'), await t.token());
    url = `/api/v1/okr/key-results/${kr.id}`;
  });
  afterAll(() => t.close());

  type Call = [string, string, Parameters<TestApp['call']>[2]];
  // The last member: the answer's Vary without Origin (one that needs a token varies by it too).
  const cases: [string, () => Promise<Call>, number, string][] = [
    ['a read', async () => ['GET', url, {}], 200, 'Origin, Authorization'],
    ['a public read (the manifest)', async () => ['GET', '/api/v1/manifest', { token: null }], 200, 'Origin'],
    [
      'a write',
      async () => {
        const kr = await t.create(byName('KeyResult'), await t.token());
        return ['PATCH', `/api/v1/okr/key-results/${kr.id}`, { body: { current: 2 }, headers: { 'if-match': '"1"' } }];
      },
      200,
      'Origin, Authorization',
    ],
    [
      'an error without a token (the page can read the problem)',
      async () => ['GET', url, { token: null }],
      401,
      'Origin, Authorization',
    ],
    ['an unknown route', async () => ['GET', '/api/v1/nope', {}], 404, 'Origin, Authorization'],
  ];

  it.each(cases)(
    '%s with Origin: allowed for any origin, with the headers a client needs exposed',
    async (_, call, status) => {
      const [method, path, o] = await call();
      const res = await t.call(method, path, { ...o, headers: { ...o?.headers, origin: ORIGIN } });
      expect(res.status).toBe(status);
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-expose-headers']).toBe(EXPOSED);
    },
  );

  it.each(cases)(
    '%s without Origin (no browser involved): no CORS headers, and Vary: Origin for caches',
    async (_, call, status, vary) => {
      const [method, path, o] = await call();
      const res = await t.call(method, path, o);
      expect(res.status).toBe(status);
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
      expect(res.headers.vary).toBe(vary);
    },
  );

  it('answers a preflight 204 before authentication, naming the methods and headers a page may send', async () => {
    const res = await t.app.inject({
      method: 'OPTIONS',
      url,
      headers: {
        origin: ORIGIN,
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization, content-type, if-match, idempotency-key',
      },
    });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    expect(res.headers).toMatchObject({
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, POST, PATCH, DELETE, OPTIONS',
      'access-control-allow-headers': 'authorization, content-type, if-match, idempotency-key',
      'access-control-max-age': '600',
      'access-control-expose-headers': EXPOSED,
    });
    // RFC 9110 §8.6: a 204 carries no Content-Length. Its request id, as every answer has.
    expect(res.headers).not.toHaveProperty('content-length');
    expect(res.headers['x-request-id']).toMatch(/^req_[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  // A page's own headers (the SDK's `headers` option, a trace's traceparent) are named back: a
  // browser refused any call that carried one ("not allowed by Access-Control-Allow-Headers").
  it.each([
    ['x-trace-id, traceparent', 'x-trace-id, traceparent'],
    ['Authorization,X-Custom', 'Authorization,X-Custom'],
    // Not a list of names: the usual list, which no browser sends in place of one.
    ['x-a, (bad)', 'Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key'],
    ['', 'Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key'],
  ])('allows the headers a preflight asks for: %j', async (asked, allowed) => {
    const res = await t.app.inject({
      method: 'OPTIONS',
      url,
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
    });
    expect([res.statusCode, res.headers['access-control-allow-headers']]).toEqual([204, allowed]);
    if (asked === allowed) expect(res.headers.vary).toContain('Access-Control-Request-Headers');
  });
});
