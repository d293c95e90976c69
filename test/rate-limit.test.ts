import type { FastifyReply } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, RateLimitError } from '../src/client/index.js';
import { ManualClock } from '../src/core/clock.js';
import { loadConfig } from '../src/core/config.js';
import type { ApiError } from '../src/core/errors.js';
import { CALLER_BYTES, callerBytes, RateLimiter, rateLimitKey } from '../src/http/rate-limit.js';
import { byName, countRows, recordReads, T0, type TestApp, testApp } from './helpers.js';

const KR = '/api/v1/okr/key-results';

// Limits are counted in the process, before the store is touched: one store is enough.
describe('rate limits: each caller of a tenant has its own budget per window', () => {
  let t: TestApp;
  let objectiveId: string;
  beforeAll(async () => {
    // The server's clock stands still unless a test moves it.
    t = await testApp('sqlite', { rateLimit: { max: 3, windowMs: 60_000 } });
    // Set up as another tenant, so the budgets tested below start full.
    const setup = await t.token({ tenant: 'setup' });
    objectiveId = (await t.create(byName('Objective'), setup)).id as string;
  });
  afterAll(() => t.close());

  it('counts down in X-RateLimit-* headers, then answers 429 rate_limited with Retry-After', async () => {
    const token = await t.token({ tenant: 'countdown' });
    const remaining: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.call('GET', KR, { token });
      expect(res.status).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBe('3');
      remaining.push(res.headers['x-ratelimit-remaining']);
    }
    expect(remaining).toEqual(['2', '1', '0']);
    const refused = await t.call('GET', KR, { token });
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body).toMatchObject({ status: 429, code: 'rate_limited', limit: 3 });
    expect(refused.body.request_id).toBe(refused.headers['x-request-id']);
    // A call's token comes back every 60 s / 3 = 20 s; the bucket is full again after 60.
    expect(refused.headers['retry-after']).toBe('20');
    expect(refused.body.retry_after_seconds).toBe(20);
    expect(refused.headers['x-ratelimit-remaining']).toBe('0');
    expect(refused.headers['x-ratelimit-reset']).toBe('60');
  });

  it('gives a token back every window / max: a steady caller at the limit is never refused', async () => {
    const token = await t.token({ tenant: 'steady' });
    for (let i = 0; i < 3; i++) expect((await t.call('GET', KR, { token })).status).toBe(200);
    t.clock.advance(19_999);
    expect((await t.call('GET', KR, { token })).status).toBe(429);
    t.clock.advance(1);
    const back = await t.call('GET', KR, { token });
    expect([back.status, back.headers['x-ratelimit-remaining']]).toEqual([200, '0']);
    // One call every 20 s, for ten minutes: all answered.
    for (let i = 0; i < 30; i++) {
      t.clock.advance(20_000);
      expect((await t.call('GET', KR, { token })).status).toBe(200);
    }
    // Idle for a window: the whole budget again, and no more.
    t.clock.advance(60_000);
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await t.call('GET', KR, { token })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it('keeps budgets apart: another tenant, each application, and the people of a tenant', async () => {
    const people = await t.token({ tenant: 'apart' });
    for (let i = 0; i < 3; i++) expect((await t.call('GET', KR, { token: people })).status).toBe(200);
    expect((await t.call('GET', KR, { token: people })).status).toBe(429);
    // Another person of the tenant shares the people's budget.
    const colleague = await t.token({ tenant: 'apart', sub: 'usr-0c0c0c0c-0000-4000-8000-00000000000c' });
    expect((await t.call('GET', KR, { token: colleague })).status).toBe(429);
    // An application of the same tenant has its own, and so does another tenant.
    for (const token of [
      await t.token({ tenant: 'apart', app: 'app_crm' }),
      await t.token({ tenant: 'apart', app: 'app_bi' }),
      await t.token({ tenant: 'other' }),
    ]) {
      const res = await t.call('GET', KR, { token });
      expect(res.status).toBe(200);
      expect(res.headers['x-ratelimit-remaining']).toBe('2');
    }
  });

  it('refuses a write over the limit before reading its body, and stores nothing', async () => {
    const token = await t.token({ tenant: 'writer' });
    const before = await countRows(t, byName('KeyResult'));
    for (let i = 0; i < 3; i++) expect((await t.call('GET', KR, { token })).status).toBe(200);
    const body = { objective_id: objectiveId, title: 'Over the limit', target: 10 };
    const refused = await t.call('POST', KR, { token, body, headers: { 'idempotency-key': 'over-1' } });
    expect(refused.status).toBe(429);
    // A body that is not even JSON: the limit answers first.
    const garbage = await t.call('POST', KR, {
      token,
      payload: '{not json',
      headers: { 'content-type': 'application/json' },
    });
    expect(garbage.status).toBe(429);
    expect(await countRows(t, byName('KeyResult'))).toBe(before);
  });

  it('answers 401 and 403 first, without spending the budget', async () => {
    const readOnly = await t.token({ tenant: 'scoped', scope: 'okr:read' });
    // Three refused writes (403) and a call without a token (401) count for nothing.
    for (let i = 0; i < 3; i++) {
      const res = await t.call('POST', KR, { token: readOnly, body: { title: 'x' } });
      expect(res.status).toBe(403);
    }
    expect((await t.call('GET', KR, { token: null })).status).toBe(401);
    const res = await t.call('GET', KR, { token: readOnly });
    expect(res.status).toBe(200);
    expect(res.headers['x-ratelimit-remaining']).toBe('2');
  });

  it("gives a tenant's signed webhook pushes a budget of their own", async () => {
    const token = await t.token({ tenant: 'pushed' });
    const res = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'Support desk', kind: 'webhook', config: {} },
    });
    expect(res.status).toBe(201);
    const url = res.body.webhook_url as string;
    const push = () => t.call('POST', url, { token: null, body: { value: 7 } });
    for (let i = 0; i < 3; i++) expect((await push()).status).toBe(200);
    const refused = await push();
    expect([refused.status, refused.body.code]).toEqual([429, 'rate_limited']);
    // The people of the tenant spent one call (the create) of their own budget.
    const read = await t.call('GET', KR, { token });
    expect([read.status, read.headers['x-ratelimit-remaining']]).toEqual([200, '1']);
  });

  it('spends none of the budget on a webhook URL the connector has replaced (401 first)', async () => {
    const token = await t.token({ tenant: 'rotated' });
    const res = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'Leaked', kind: 'webhook', config: {} },
    });
    const leaked = res.body.webhook_url as string;
    const rotated = await t.call('POST', `/api/v1/okr/connectors/${res.body.id}/rotate-webhook-url`, { token });
    const current = rotated.body.webhook_url as string;
    for (let i = 0; i < 5; i++) {
      const refused = await t.call('POST', leaked, { token: null, body: { value: 1 } });
      expect([refused.status, refused.headers['x-ratelimit-remaining']]).toEqual([401, undefined]);
    }
    const pushed = await t.call('POST', current, { token: null, body: { value: 2 } });
    expect([pushed.status, pushed.headers['x-ratelimit-remaining']]).toEqual([200, '2']);
    // Over the limit, a push is refused before the row's URL generation is read: it costs no read.
    for (let i = 0; i < 2; i++)
      expect((await t.call('POST', current, { token: null, body: { value: 3 } })).status).toBe(200);
    const recorder = recordReads(t.store);
    try {
      const over = await t.call('POST', current, { token: null, body: { value: 4 } });
      expect([over.status, over.body.code]).toEqual([429, 'rate_limited']);
      expect(recorder.reads.filter((r) => r.sql.includes('webhook_generation'))).toEqual([]);
    } finally {
      recorder.stop();
    }
  });

  it('does not limit calls that need no token (manifest, OpenAPI, health)', async () => {
    for (let i = 0; i < 5; i++) {
      for (const url of ['/api/v1/manifest', '/api/v1/openapi.json', '/healthz']) {
        const res = await t.call('GET', url, { token: null });
        expect(res.status).toBe(200);
        expect(res.headers['x-ratelimit-limit']).toBeUndefined();
      }
    }
  });

  it('lets a browser read the headers (CORS exposes them)', async () => {
    const res = await t.call('GET', '/api/v1/manifest', { token: null, headers: { origin: 'https://a.example' } });
    expect(String(res.headers['access-control-expose-headers'])).toContain(
      'X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset',
    );
  });
});

describe('rate limits, through the SDK against a listening server', () => {
  let t: TestApp;
  let baseUrl: string;
  beforeAll(async () => {
    t = await testApp('sqlite', { rateLimit: { max: 2, windowMs: 1000 } });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const address = t.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    baseUrl = `http://127.0.0.1:${address.port}`;
  });
  afterAll(() => t.close());

  it('throws RateLimitError without retries, and waits out Retry-After with them', async () => {
    const token = await t.token({ tenant: 'sdk' });
    let attempts = 0;
    // The server's clock moves only when told: by what Retry-After asked the client to wait.
    const counting: typeof fetch = async (input, init) => {
      attempts++;
      const res = await fetch(input, init);
      if (res.status === 429) t.clock.advance(Number(res.headers.get('retry-after')) * 1000);
      return res;
    };
    const eager = createClient({ baseUrl, token, maxRetries: 0 });
    await eager.okr.cycles.list();
    await eager.okr.cycles.list();
    const err = await eager.okr.cycles.list().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).code).toBe('rate_limited');
    expect((err as RateLimitError).headers?.get('x-ratelimit-limit')).toBe('2');
    expect((err as RateLimitError).retryAfter).toBe(1);
    // A client that retries waits for the Retry-After (1 s) and gets through.
    const patient = createClient({ baseUrl, token, maxRetries: 2, fetch: counting });
    const page = await patient.okr.cycles.list();
    expect(page.object).toBe('list');
    expect(attempts).toBe(2);
  });
});

describe('rateLimitKey', () => {
  it('gives two callers two keys whatever their claims hold (line breaks included)', () => {
    const who = (tenantId: string, appId: string | null) => ({ sub: 'usr-1', tenantId, appId, scopes: null });
    const keys = [
      rateLimitKey(who('t', 'z\npeople'), false),
      rateLimitKey(who('t\napp:z', null), false),
      rateLimitKey(who('t', null), false),
      rateLimitKey(who('t', null), true),
      rateLimitKey(who('t\nsigned', null), false),
      rateLimitKey(who('t', 'signed'), false),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('RateLimiter: a clock set back', () => {
  // The buckets keep times: set back an hour, the clock made a caller who had spent its budget
  // wait an hour (Retry-After: 3600) where it should wait a window's share at most.
  it('refuses a caller for no longer than a window after the clock is set back', () => {
    const reply = { header: () => reply } as unknown as FastifyReply;
    const clock = new ManualClock(T0);
    const limiter = new RateLimiter({ max: 2, windowMs: 1000 }, clock);
    limiter.take('k', reply);
    limiter.take('k', reply);
    const retryAfter = () => {
      try {
        limiter.take('k', reply);
        return 0;
      } catch (err) {
        return (err as ApiError).extra?.retry_after_seconds;
      }
    };
    expect(retryAfter()).toBe(1);
    clock.set(T0 - 3_600_000);
    expect(retryAfter()).toBe(1);
    clock.set(T0 - 3_600_000 + 500);
    expect(retryAfter()).toBe(0);
  });
});

describe('RateLimiter: the callers kept, bounded by memory', () => {
  // Callers of long claims (256 CJK characters of tenant and app each): 100,000 of them held
  // ~110 MB of heap where the bound was a count alone.
  it('keeps callers of long ids within its byte bound, the least recently seen refilled first', () => {
    const reply = { header: () => reply } as unknown as FastifyReply;
    const clock = new ManualClock(T0);
    const limiter = new RateLimiter({ max: 1, windowMs: 60_000, callerBytes: 100_000 }, clock);
    const who = (n: number) => ({
      sub: 'usr-1',
      tenantId: `${'租'.repeat(250)}${n}`,
      appId: `${'応'.repeat(250)}${n}`,
      scopes: null,
    });
    const keys = Array.from({ length: 200 }, (_, n) => rateLimitKey(who(n), false));
    for (const key of keys) limiter.take(key, reply);
    expect(limiter.keptBytes).toBeLessThanOrEqual(100_000);
    expect(limiter.keptBytes).toBeGreaterThan(90_000);
    // The last caller is kept (its one call spent: refused), the first was dropped (refilled).
    expect(() => limiter.take(keys[199] as string, reply)).toThrow(/Over 1 calls/);
    expect(() => limiter.take(keys[0] as string, reply)).not.toThrow();
    // The default bound: 24 MiB, two bytes a character and 64 for the entry (~1 KB for such a caller).
    expect([CALLER_BYTES, callerBytes(keys[0] as string)]).toEqual([
      24 * 1024 * 1024,
      64 + 2 * (keys[0] as string).length,
    ]);
  });
});

describe('RateLimiter: the bucket arithmetic, on fractional intervals at real epochs', () => {
  const headers: Record<string, string> = {};
  const reply = { header: (name: string, value: string) => (headers[name] = value) } as unknown as FastifyReply;
  it.each([
    [3, 1000],
    [7, 1000],
    [1000, 60_000],
    [100, 3_600_000],
  ])('%i per %i ms: exactly that many at once, then one back every window / max', (max, windowMs) => {
    const clock = new ManualClock(Date.parse('2026-11-29T20:00:00.123Z'));
    const limiter = new RateLimiter({ max, windowMs }, clock);
    const spend = () => {
      try {
        limiter.take('k', reply);
        return true;
      } catch (err) {
        expect((err as ApiError).code).toBe('rate_limited');
        return false;
      }
    };
    const remaining: number[] = [];
    for (let i = 0; i < max; i++) {
      expect(spend()).toBe(true);
      remaining.push(Number(headers['x-ratelimit-remaining']));
    }
    expect(remaining).toEqual(Array.from({ length: max }, (_, i) => max - 1 - i));
    expect(spend()).toBe(false);
    // Each interval gives one back, three times over.
    for (let i = 0; i < 3; i++) {
      clock.advance(windowMs / max);
      expect(spend()).toBe(true);
      expect(spend()).toBe(false);
    }
  });
});

describe('EDM_RATE_LIMIT and EDM_RATE_LIMIT_WINDOW_MS', () => {
  const env = { EDM_JWT_SECRET: 'x'.repeat(32), EDM_SECRET_KEY: 'y'.repeat(32) };
  it.each([
    [{}, undefined],
    [{ EDM_RATE_LIMIT: '0' }, undefined],
    [{ EDM_RATE_LIMIT: '100' }, { max: 100, windowMs: 1000 }],
    [
      { EDM_RATE_LIMIT: '6000', EDM_RATE_LIMIT_WINDOW_MS: '60000' },
      { max: 6000, windowMs: 60_000 },
    ],
  ])('%o → %o', (vars, expected) => {
    expect(loadConfig({ ...env, ...vars }).rateLimit).toEqual(expected);
  });
  it.each([
    [{ EDM_RATE_LIMIT: '-1' }, /EDM_RATE_LIMIT must/],
    [{ EDM_RATE_LIMIT: '1.5' }, /EDM_RATE_LIMIT must/],
    [{ EDM_RATE_LIMIT: 'lots' }, /EDM_RATE_LIMIT must/],
    [{ EDM_RATE_LIMIT: '10', EDM_RATE_LIMIT_WINDOW_MS: '0' }, /EDM_RATE_LIMIT_WINDOW_MS must/],
  ])('%o is refused at start', (vars, message) => {
    expect(() => loadConfig({ ...env, ...vars })).toThrow(message);
  });
});
