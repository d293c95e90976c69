import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type ErrorCode, errorRegistry } from '../src/core/errors.js';
import { renderErrorsMd } from '../src/http/problem-docs.js';
import { byName, type TestApp, testApp } from './helpers.js';

describe('error registry', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const documented = new Map(
    [...doc.matchAll(/^\| `([a-z_]+)`\s*\| (\d{3})\s*\|/gm)].map((m) => [m[1], Number(m[2])] as const),
  );

  it.each(Object.entries(errorRegistry))('documents %s with its status', (code, entry) => {
    expect(documented.get(code)).toBe(entry.status);
  });

  it('documents no code the registry lacks', () => {
    expect([...documented.keys()].filter((c) => !(c in errorRegistry))).toEqual([]);
  });

  it('is written from the registry (npm run docs:api)', () => {
    expect(doc).toBe(renderErrorsMd());
  });
});

describe('problems as answered, and the pages their types resolve to', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await testApp('sqlite');
  });
  afterAll(async () => {
    await t.close();
  });
  const page = async (path: string) => {
    const res = await t.call('GET', path, { token: null });
    return { ...res, html: res.raw };
  };

  it.each([
    ['a route that is not there', 'GET', '/api/v1/nothing', undefined, 'route_not_found'],
    ['a body that breaks a rule', 'POST', '/api/v1/okr/cycles', { name: '' }, 'validation_failed'],
    ['no token', 'GET', '/api/v1/okr/cycles', null, 'unauthenticated'],
  ] as const)(
    "%s: GET of the answer's type is a page naming its code, status and title",
    async (_, method, url, body, code) => {
      const res = await t.call(method, url, body === null ? { token: null } : { body });
      expect([res.status, res.body.code, res.body.type]).toEqual([
        errorRegistry[code].status,
        code,
        `/problems/${code}`,
      ]);
      const doc = await page(res.body.type as string);
      expect([doc.status, String(doc.headers['content-type'])]).toEqual([200, 'text/html; charset=utf-8']);
      expect(doc.html).toContain(`<h1><code>${code}</code></h1>`);
      expect(doc.html).toContain(`<strong>${errorRegistry[code].status}</strong> · ${errorRegistry[code].title}`);
      expect(doc.headers['content-security-policy']).toBe(
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
      );
    },
  );

  it('every code has its page, with its text marked up and escaped', async () => {
    for (const code of Object.keys(errorRegistry) as ErrorCode[]) {
      const doc = await page(`/problems/${code}`);
      expect(doc.status, code).toBe(200);
      expect(doc.html, code).not.toContain('`');
    }
    // The registry's code spans become <code> elements.
    const validation = await page('/problems/validation_failed');
    expect(validation.html).toContain('(<code>invalid_text</code>)');
    const db = await page('/problems/service_unavailable');
    expect(db.html).toContain('<code>Retry-After: 1</code>');
  });

  it('lists every code at /problems, each linked', async () => {
    const index = await page('/problems');
    expect(index.status).toBe(200);
    for (const code of Object.keys(errorRegistry)) expect(index.html).toContain(`<a href="/problems/${code}">`);
    // The example problem is text in the page, escaped.
    expect(index.html).toContain('&quot;type&quot;: &quot;/problems/validation_failed&quot;');
  });

  it.each(['nothing', '__proto__', 'constructor', 'toString', 'NOT_FOUND'])(
    '/problems/%s is 404, a problem',
    async (code) => {
      const res = await t.call('GET', `/problems/${code}`, { token: null });
      expect([res.status, res.body.code]).toEqual([404, 'not_found']);
    },
  );

  it('a problem lists 100 field errors at most, and says how many more (a body of 1,000 unknown members)', async () => {
    const members = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`m${i}`, 0]));
    const headers = { 'idempotency-key': 'many-members' };
    const res = await t.call('POST', '/api/v1/okr/objectives', { body: members, headers });
    expect([res.status, res.body.code, (res.body.errors as unknown[]).length]).toEqual([400, 'unknown_field', 100]);
    expect(res.body.detail).toMatch(/ \(and 900 more errors: the first 100 are listed\)$/);
    expect(res.raw.length).toBeLessThan(20_000);
    // Stored with its key as answered: the replay is the same small body.
    const again = await t.call('POST', '/api/v1/okr/objectives', { body: members, headers });
    expect([again.headers['idempotent-replayed'], again.raw.length]).toEqual(['true', res.raw.length]);
  });

  // A problem's title is its code's, as the registry and its page say (not the status's reason).
  it('titles a problem as the registry does', async () => {
    const res = await t.call('GET', '/api/v1/okr/cycles/cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV');
    expect([res.status, res.body.title]).toEqual([404, errorRegistry.not_found.title]);
    const none = await t.call('GET', '/api/v1/nothing');
    expect(none.body.title).toBe(errorRegistry.route_not_found.title);
  });

  // A path with a trailing slash is its route's path: another method there is 405 with Allow, not 404.
  it("answers 405 with Allow for a route's path with a trailing slash", async () => {
    const res = await t.call('PUT', '/api/v1/okr/cycles/', { body: {} });
    expect([res.status, res.body.code, res.headers.allow]).toEqual([
      405,
      'method_not_allowed',
      'GET, HEAD, POST, OPTIONS',
    ]);
  });

  // PRODUCT.md's check order holds for a read too: 404, then 412 (If-Match), then 400 (parameters).
  it("refuses a read in the contract's order: 404, then 412, then 400", async () => {
    const cycles = byName('Cycle');
    const cycle = await t.create(cycles, await t.token());
    const get = (id: string, ifMatch: string) =>
      t.call('GET', `${cycles.basePath}/${id}?bogus=1`, { headers: { 'if-match': ifMatch } });
    expect((await get('cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV', '"99"')).status).toBe(404);
    expect((await get(cycle.id as string, '"99"')).body.code).toBe('precondition_failed');
    expect((await get(cycle.id as string, `"${cycle.version}"`)).body.code).toBe('unknown_parameter');
  });

  // DELETE's cascade is true or false: false is no cascade (200), any other value 400 naming it.
  it('takes cascade=false on a DELETE and refuses another value', async () => {
    const cycles = byName('Cycle');
    const cycle = await t.create(cycles, await t.token());
    const bad = await t.call('DELETE', `${cycles.basePath}/${cycle.id}?cascade=yes`);
    expect([bad.status, bad.body.code, bad.body.errors]).toEqual([
      400,
      'invalid_parameter',
      [{ path: 'cascade', code: 'invalid_parameter', message: 'cascade must be true or false' }],
    ]);
    const res = await t.call('DELETE', `${cycles.basePath}/${cycle.id}?cascade=false`);
    expect([res.status, res.body.is_deleted]).toEqual([200, true]);
  });

  it('needs no token, and is cacheable', async () => {
    const res = await t.call('GET', '/problems/not_found', { token: null });
    expect([res.status, res.headers['cache-control']]).toEqual([200, 'public, max-age=3600']);
  });
});

describe('ApiError', () => {
  const frames = (err: Error) => (err.stack ?? '').split('\n').filter((line) => line.trim().startsWith('at ')).length;

  it('captures no stack for a client error (never logged with one), and leaves the limit as it was', () => {
    const limit = Error.stackTraceLimit;
    const err = new ApiError('not_found', 'No KeyResult with id kr_1');
    expect([err.status, err.message, frames(err)]).toEqual([404, 'No KeyResult with id kr_1', 0]);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(frames(new Error('plain'))).toBeGreaterThan(0);
  });

  it('keeps the stack of a server error, for the log', () => {
    expect(frames(new ApiError('internal_error'))).toBeGreaterThan(0);
    expect(frames(new ApiError('service_unavailable'))).toBeGreaterThan(0);
  });
});

describe('a 503 for an outage', () => {
  it('keeps its cause for the log (a warning naming it), and answers none of it', async () => {
    const { asApiError, toProblem } = await import('../src/http/problem.js');
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const err = asApiError(refused);
    expect([err.status, err.code, err.headers?.['retry-after']]).toEqual([503, 'service_unavailable', '1']);
    expect(err.cause).toBe(refused);
    expect(JSON.stringify(toProblem(err, 'req_1'))).not.toContain('ECONNREFUSED');
  });
});

describe('an error from below the routes, as answered', () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

  // A lock another connection holds is retried shortly, as an outage is: 503 with Retry-After: 1.
  it.each(['SQLITE_BUSY', '40P01', '57014'])('%s is 503, retried in 1 s', async (code) => {
    const { asApiError } = await import('../src/http/problem.js');
    const err = asApiError(withCode('busy', code));
    expect([err.status, err.code, err.headers?.['retry-after']]).toEqual([503, 'service_unavailable', '1']);
  });

  // Runs that ran out against other writes (deadlocks, serialization failures) say so: no outage.
  it.each(['40P01', '40001'])('%s says other writes kept it from completing', async (code) => {
    const { asApiError } = await import('../src/http/problem.js');
    const err = asApiError(withCode('could not serialize access', code));
    expect([err.status, err.headers?.['retry-after']]).toEqual([503, '1']);
    expect(err.message).toMatch(/^Other writes to the same rows kept this one from completing/);
    expect(asApiError(withCode('refused', 'ECONNREFUSED')).message).toMatch(/unavailable or busy/);
  });

  // Text PostgreSQL cannot store (U+0000, a character its encoding lacks) is the caller's input: 400.
  it.each(['22021', '22P05'])('%s is 400 validation_failed', async (code) => {
    const { asApiError } = await import('../src/http/problem.js');
    expect(asApiError(withCode('invalid byte sequence', code)).code).toBe('validation_failed');
  });

  // A client error of the framework keeps its 4xx; anything unknown is a 500 that reveals nothing.
  it('keeps a 4xx as 400 and answers an unknown error 500 without its message', async () => {
    const { asApiError, toProblem } = await import('../src/http/problem.js');
    const client = Object.assign(new Error('bad request line'), { statusCode: 400 });
    expect([asApiError(client).status, asApiError(client).code]).toEqual([400, 'validation_failed']);
    const unknown = asApiError(new Error('secret table okr_x is corrupt'));
    expect([unknown.status, unknown.code]).toEqual([500, 'internal_error']);
    expect(JSON.stringify(toProblem(unknown, 'req_1'))).not.toContain('okr_x');
  });
});
