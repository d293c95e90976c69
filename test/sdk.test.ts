import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { promisify } from 'node:util';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  BadRequestError,
  type Client,
  type ClientOf,
  ConflictError,
  createClient,
  InternalServerError,
  NotFoundError,
  NotModifiedError,
  operationRoute,
  PermissionDeniedError,
  PreconditionFailedError,
  PreconditionRequiredError,
  RateLimitError,
  UnprocessableEntityError,
} from '../src/client/index.js';
import { ManualClock } from '../src/core/clock.js';
import { number, text } from '../src/core/fields.js';
import { defineModule, defineResource } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { modules } from '../src/modules/index.js';
import { freshStore, resources, storeKinds, T0, type TestApp, testApp, testConfig, USER_B } from './helpers.js';

const run = promisify(execFile);
const ROOT = new URL('../', import.meta.url);
const MISSING = '01ARZ3NDEKTSV4RRFFQ69G5FAV';

interface Sent {
  method: string;
  url: string;
  headers: Record<string, string>;
}

/** A fault the test server answers instead of the real response (after the work ran). */
interface Fault {
  method: string;
  path: string;
  status: number;
  retryAfter?: string;
  /** The problem's code (by default the status's own: CODES). */
  code?: string;
  /** Delay the answer instead of replacing it. */
  delayMs?: number;
}

const CODES: Record<number, string> = { 429: 'rate_limited', 500: 'internal_error', 503: 'service_unavailable' };

describe.each(storeKinds)('SDK against a listening server on %s', (kind) => {
  let t: TestApp;
  let baseUrl: string;
  let token: string;
  let client: Client;
  let sent: Sent[] = [];
  let faults: Fault[] = [];
  /** Throws a connection error instead of sending, this many times. */
  let dropConnections = 0;
  /** Sends, then cuts the answer's body after its first bytes (or stalls it), this many times. */
  let cutBodies = 0;
  let stallBodies = 0;

  const recordingFetch: typeof fetch = async (input, init) => {
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, name) => {
      headers[name] = value;
    });
    sent.push({ method: init?.method ?? 'GET', url: String(input), headers });
    if (dropConnections > 0) {
      dropConnections--;
      throw new TypeError('fetch failed');
    }
    const response = await fetch(input, init);
    if (cutBodies === 0 && stallBodies === 0) return response;
    const cut = cutBodies > 0;
    if (cut) cutBodies--;
    else stallBodies--;
    const bytes = new Uint8Array(await response.arrayBuffer());
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 10));
        if (cut) controller.error(new TypeError('terminated'));
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };

  const take = (request: FastifyRequest) => {
    const path = request.url.split('?')[0];
    const i = faults.findIndex((f) => f.method === request.method && f.path === path);
    return i < 0 ? undefined : faults.splice(i, 1)[0];
  };

  beforeAll(async () => {
    t = await testApp(kind);
    token = await t.token();
    t.app.addHook('onRequest', async (request: FastifyRequest) => {
      const fault = faults.find(
        (f) => f.delayMs && f.method === request.method && f.path === request.url.split('?')[0],
      );
      if (fault) {
        faults.splice(faults.indexOf(fault), 1);
        await new Promise((r) => setTimeout(r, fault.delayMs));
      }
    });
    // Replaces the answer after the work committed: what a client sees when a proxy fails late.
    t.app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const fault = take(request);
      if (!fault) return payload;
      const code = fault.code ?? CODES[fault.status] ?? 'internal_error';
      reply.code(fault.status).header('content-type', 'application/problem+json');
      reply.removeHeader('etag');
      reply.removeHeader('location');
      if (fault.retryAfter !== undefined) reply.header('retry-after', fault.retryAfter);
      return JSON.stringify({
        type: `/problems/${code}`,
        title: 'Injected by the test',
        status: fault.status,
        detail: 'injected',
        code,
        request_id: request.id,
      });
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const address = t.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    baseUrl = `http://127.0.0.1:${address.port}`;
    client = createClient({ baseUrl, token, fetch: recordingFetch });
  });
  afterAll(() => t.close());

  const reset = () => {
    sent = [];
    faults = [];
    dropConnections = 0;
    cutBodies = 0;
    stallBodies = 0;
  };

  it('runs every method of every operation over HTTP', async () => {
    reset();
    const cycle = await client.okr.cycles.create({ name: '2026-Q4', start_date: '2026-10-01', end_date: '2026-12-31' });
    expect(cycle).toMatchObject({ name: '2026-Q4', state: 'planning', version: 1, tenant_id: 'acme' });
    expect(cycle.id).toMatch(/^cyc_[0-9A-Z]{26}$/);
    const objective = await client.okr.objectives.create({ title: 'Delight our customers', cycle_id: cycle.id });
    const kr = await client.okr.keyResults.create(
      { objective_id: objective.id, title: 'Grow MRR', baseline: 80000, target: 120000, unit: 'MRR' },
      { idempotencyKey: 'sdk-every-method-kr' },
    );
    expect(kr).toMatchObject({ objective_id: objective.id, current: 80000, direction: 'increase', version: 1 });
    expect(sent.at(-1)?.headers['idempotency-key']).toBe('sdk-every-method-kr');

    expect(await client.okr.keyResults.get(kr.id)).toEqual(kr);

    const renamed = await client.okr.keyResults.update(kr.id, { title: 'Grow MRR to 120k' }, { ifVersion: kr.version });
    expect(sent.at(-1)).toMatchObject({ method: 'PATCH', headers: { 'if-match': '"1"' } });
    expect(renamed).toMatchObject({ title: 'Grow MRR to 120k', version: 2 });

    const checked = await client.okr.keyResults.checkIns.create(kr.id, {
      value: 90000,
      note: 'Two deals',
      confidence: 7,
    });
    expect(sent.at(-1)).toMatchObject({ method: 'POST', url: `${baseUrl}/api/v1/okr/key-results/${kr.id}/check-ins` });
    expect(checked).toMatchObject({ current: 90000, confidence: 7, version: 3, progress_pct: 25 });
    const log = await client.okr.keyResults.checkIns.list(kr.id, { limit: 10 });
    expect(log.data.map((s) => s.value)).toEqual([90000, 80000]);
    expect(log.data[0]).toMatchObject({ note: 'Two deals', confidence: 7, key_result_id: kr.id });

    const listed = await client.okr.keyResults.list({ objective_id: objective.id, sort: '-progress_pct' });
    expect(listed).toMatchObject({ object: 'list', has_more: false, next_cursor: null });
    expect(listed.data.map((d) => d.id)).toEqual([kr.id]);
    expect(sent.at(-1)?.url).toBe(`${baseUrl}/api/v1/okr/key-results?objective_id=${objective.id}&sort=-progress_pct`);

    const blocked = await client.okr.objectives.delete(objective.id).catch((e: unknown) => e);
    expect(blocked).toBeInstanceOf(ConflictError);
    expect((blocked as ConflictError).code).toBe('has_dependents');
    const deleted = await client.okr.objectives.delete(objective.id, { cascade: true });
    expect(sent.at(-1)?.url).toBe(`${baseUrl}/api/v1/okr/objectives/${objective.id}?cascade=true`);
    expect(deleted).toMatchObject({ is_deleted: true, deleted_by: deleted.created_by });
    expect((await client.okr.keyResults.get(kr.id)).is_deleted).toBe(true);

    const restored = await client.okr.objectives.restore(objective.id);
    expect(restored.is_deleted).toBe(false);
    expect((await client.okr.keyResults.restore(kr.id)).is_deleted).toBe(false);
    const live = await client.okr.keyResults.list({ objective_id: objective.id });
    expect(live.data.map((d) => d.id)).toEqual([kr.id]);
  });

  it('pages: awaitable first page, and for await over every item across 3+ pages', async () => {
    reset();
    const created: string[] = [];
    for (let i = 0; i < 7; i++) {
      t.clock.advance(1000);
      created.push((await client.okr.objectives.create({ title: `paging walk ${i}` })).id);
    }
    sent = [];
    const first = await client.okr.objectives.list({ q: 'paging walk', limit: 3 });
    expect(first.data.map((d) => d.id)).toEqual(created.slice(-3).reverse());
    expect(first.hasNextPage()).toBe(true);
    const second = await first.getNextPage();
    expect(second.data.map((d) => d.id)).toEqual(created.slice(1, 4).reverse());

    sent = [];
    const walked: string[] = [];
    for await (const objective of client.okr.objectives.list({ q: 'paging walk', limit: 3 })) walked.push(objective.id);
    expect(walked).toEqual([...created].reverse());
    expect(sent.map((s) => new URL(s.url).searchParams.get('cursor') === null)).toEqual([true, false, false]);
    expect(sent.every((s) => new URL(s.url).searchParams.get('limit') === '3')).toBe(true);

    const ascending: string[] = [];
    for await (const o of client.okr.objectives.list({ q: 'paging walk', limit: 2, sort: 'created_at' })) {
      ascending.push(o.id);
    }
    expect(ascending).toEqual(created);
  });

  // Awaiting a list and iterating it share the one request of its first page.
  it("requests a list's first page once, however often it is awaited or iterated", async () => {
    reset();
    const list = client.okr.cycles.list({ limit: 200 });
    const page = await list;
    expect(page.hasNextPage()).toBe(false);
    await list;
    const ids: string[] = [];
    for await (const cycle of list) ids.push(cycle.id);
    expect(ids).toEqual(page.data.map((c) => c.id));
    expect(sent).toHaveLength(1);
  });

  it('maps every error status to its class, carrying problem, code and requestId', async () => {
    reset();
    const readOnly = createClient({ baseUrl, token: await t.token({ scope: 'okr:read' }), maxRetries: 0 });
    const noRetry = createClient({ baseUrl, token, maxRetries: 0 });
    const cycle = await client.okr.cycles.create({ name: 'errors', start_date: '2026-01-01', end_date: '2026-03-31' });
    const injected = (fault: Fault, call: () => PromiseLike<unknown>) => () => {
      faults.push(fault);
      return call();
    };
    const cases: [string, () => PromiseLike<unknown>, new (...args: never[]) => APIError, number, string][] = [
      ['bad limit', () => client.okr.cycles.list({ limit: 500 }), BadRequestError, 400, 'invalid_parameter'],
      [
        'bad token',
        () => createClient({ baseUrl, token: 'nope' }).okr.cycles.list(),
        AuthenticationError,
        401,
        'invalid_token',
      ],
      [
        'read-only scope',
        () => readOnly.okr.cycles.create({ name: 'x', start_date: '2026-01-01', end_date: '2026-01-02' }),
        PermissionDeniedError,
        403,
        'insufficient_scope',
      ],
      ['unknown id', () => client.okr.cycles.get(`cyc_${MISSING}`), NotFoundError, 404, 'not_found'],
      [
        'stale body version',
        () => client.okr.cycles.update(cycle.id, { name: 'y', version: 9 }),
        ConflictError,
        409,
        'version_conflict',
      ],
      [
        'stale If-Match',
        () => client.okr.cycles.update(cycle.id, { name: 'y' }, { ifVersion: 9 }),
        PreconditionFailedError,
        412,
        'precondition_failed',
      ],
      [
        'unknown reference',
        () => client.okr.objectives.create({ title: 'x', cycle_id: `cyc_${MISSING}` }),
        UnprocessableEntityError,
        422,
        'invalid_reference',
      ],
      [
        'rate limited',
        injected({ method: 'GET', path: '/api/v1/okr/cycles', status: 429, retryAfter: '0' }, () =>
          noRetry.okr.cycles.list(),
        ),
        RateLimitError,
        429,
        'rate_limited',
      ],
      [
        'server failure',
        injected({ method: 'GET', path: `/api/v1/okr/cycles/${cycle.id}`, status: 500 }, () =>
          noRetry.okr.cycles.get(cycle.id),
        ),
        InternalServerError,
        500,
        'internal_error',
      ],
    ];
    for (const [name, call, Class, status, code] of cases) {
      const err = await call().then(
        () => new Error(`${name}: no error`),
        (e: unknown) => e,
      );
      expect(err, name).toBeInstanceOf(Class);
      expect(err, name).toBeInstanceOf(APIError);
      const e = err as APIError;
      expect([name, e.status, e.code, e.problem?.status]).toEqual([name, status, code, status]);
      expect(e.requestId, name).toMatch(/^req_[0-9A-Z]{26}$/);
      expect(e.requestId).toBe(e.headers?.get('x-request-id'));
      expect(e.message).toContain(code);
    }
    expect(faults).toEqual([]);
  });

  it('throws APIConnectionError when nothing answers, after retrying', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    reset();
    const dead = createClient({ baseUrl: `http://127.0.0.1:${port}`, token, fetch: recordingFetch, maxRetries: 1 });
    const err = await dead.okr.cycles.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIConnectionError);
    expect((err as APIConnectionError).status).toBeUndefined();
    expect(sent).toHaveLength(2);

    faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 0, delayMs: 400 });
    const slow = createClient({ baseUrl, token, timeout: 100, maxRetries: 0 });
    const timedOut = await slow.okr.cycles.list().catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(APIConnectionTimeoutError);
    expect(timedOut).toBeInstanceOf(APIConnectionError);
  });

  it('refuses an impossible timeout or retry count where it is given, and takes Infinity as no time limit', async () => {
    for (const timeout of [0, -1, 1.5, Number.NaN, 2 ** 31, Number.NEGATIVE_INFINITY]) {
      expect(() => createClient({ baseUrl, token, timeout }), String(timeout)).toThrow(RangeError);
      reset();
      const err = await client.okr.cycles.list({}, { timeout }).catch((e: unknown) => e);
      expect(err, String(timeout)).toBeInstanceOf(RangeError);
      expect(sent, 'nothing was sent').toEqual([]);
    }
    for (const maxRetries of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => createClient({ baseUrl, token, maxRetries }), String(maxRetries)).toThrow(RangeError);
    }
    // No limit: a slow answer is waited for (the default of 60 s would also wait; 100 ms would not).
    faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 0, delayMs: 300 });
    const patient = createClient({
      baseUrl,
      token,
      fetch: recordingFetch,
      timeout: Number.POSITIVE_INFINITY,
      maxRetries: 0,
    });
    const page = await patient.okr.cycles.list({}, { timeout: Number.POSITIVE_INFINITY });
    expect(Array.isArray(page.data)).toBe(true);
    expect(await client.okr.cycles.list({}, { timeout: 2 ** 31 - 1 })).toHaveProperty('data');
  });

  it('retries a 503 that came after the work committed: one resource, one idempotency key', async () => {
    reset();
    faults.push({ method: 'POST', path: '/api/v1/okr/objectives', status: 503, retryAfter: '0' });
    const objective = await client.okr.objectives.create({ title: 'retried exactly once' });
    expect(sent.map((s) => s.method)).toEqual(['POST', 'POST']);
    const [first, second] = sent.map((s) => s.headers['idempotency-key']);
    expect(first).toMatch(/^[0-9a-f-]{32,36}$/);
    expect(second).toBe(first);
    const found = await client.okr.objectives.list({ q: 'retried exactly once' });
    expect(found.data.map((o) => o.id)).toEqual([objective.id]);
    expect(objective.version).toBe(1);
  });

  it('retries connection errors with the same idempotency key, and gives up after maxRetries', async () => {
    reset();
    dropConnections = 1;
    const objective = await client.okr.objectives.create({ title: 'after a dropped connection' });
    expect(sent).toHaveLength(2);
    expect(sent[1].headers['idempotency-key']).toBe(sent[0].headers['idempotency-key']);
    expect((await client.okr.objectives.list({ q: 'after a dropped connection' })).data).toHaveLength(1);
    expect(objective.title).toBe('after a dropped connection');

    reset();
    faults.push(
      { method: 'GET', path: '/api/v1/okr/cycles', status: 503, retryAfter: '0' },
      { method: 'GET', path: '/api/v1/okr/cycles', status: 503, retryAfter: '0' },
      { method: 'GET', path: '/api/v1/okr/cycles', status: 503, retryAfter: '0' },
    );
    const err = await client.okr.cycles.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).status).toBe(503);
    expect(sent).toHaveLength(3);
  });

  it('retries an answer whose body is cut or stalls after its headers: the same key, the stored answer', async () => {
    reset();
    cutBodies = 1;
    const objective = await client.okr.objectives.create({ title: 'body cut short' });
    expect(sent).toHaveLength(2);
    expect(sent[1].headers['idempotency-key']).toBe(sent[0].headers['idempotency-key']);
    expect((await client.okr.objectives.list({ q: 'body cut short' })).data.map((o) => o.id)).toEqual([objective.id]);

    reset();
    stallBodies = 1;
    const stalled = createClient({ baseUrl, token, fetch: recordingFetch, timeout: 300 });
    const page = await stalled.okr.objectives.list({ q: 'body cut short' });
    expect([sent.length, page.data.length]).toEqual([2, 1]);

    reset();
    cutBodies = 2;
    const once = createClient({ baseUrl, token, fetch: recordingFetch, maxRetries: 1 });
    const err = await once.okr.objectives.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIConnectionError);
    reset();
    stallBodies = 1;
    const timedOut = await createClient({ baseUrl, token, fetch: recordingFetch, timeout: 200, maxRetries: 0 })
      .okr.objectives.list()
      .catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(APIConnectionTimeoutError);
  });

  it("headers: one given replaces the SDK's own whatever its casing, and its Idempotency-Key is reused by retries", async () => {
    reset();
    faults.push({ method: 'POST', path: '/api/v1/okr/cycles', status: 503, retryAfter: '0' });
    const body = { name: 'own key', start_date: '2027-01-01', end_date: '2027-03-31' };
    const cycle = await client.okr.cycles.create(body, { headers: { 'Idempotency-Key': `order-17-${kind}` } });
    expect(sent.map((s) => [s.method, s.headers['idempotency-key']])).toEqual([
      ['POST', `order-17-${kind}`],
      ['POST', `order-17-${kind}`],
    ]);
    // The same key again replays the first answer: the server saw the key the caller chose.
    const again = await client.okr.cycles.create(body, { headers: { 'idempotency-KEY': `order-17-${kind}` } });
    expect(again.id).toBe(cycle.id);
    expect((await client.okr.cycles.list({ q: 'own key' })).data.map((c) => c.id)).toEqual([cycle.id]);
  });

  it('refuses a body with a number JSON cannot carry, sending nothing (not null, which would clear the field)', async () => {
    reset();
    const cycle = await client.okr.cycles.create({ name: 'finite', start_date: '2027-01-01', end_date: '2027-03-31' });
    const objective = await client.okr.objectives.create({ title: 'finite', cycle_id: cycle.id });
    const kr = await client.okr.keyResults.create({ objective_id: objective.id, title: 'w', target: 1, weight: 3 });
    reset();
    const err = await client.okr.keyResults.update(kr.id, { weight: Infinity }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(/body\.weight is Infinity/);
    expect(sent).toEqual([]);
    expect((await client.okr.keyResults.get(kr.id)).weight).toBe(3);
  });

  it.each([
    ['an empty id', ''],
    ['"."', '.'],
    ['".."', '..'],
  ])('refuses %s before sending anything (a resolved URL would name the list or another path)', async (_, id) => {
    reset();
    const calls: [string, () => PromiseLike<unknown>][] = [
      ['get', () => client.okr.keyResults.get(id)],
      ['update', () => client.okr.keyResults.update(id, { title: 'x' })],
      ['delete', () => client.okr.keyResults.delete(id)],
      ['restore', () => client.okr.keyResults.restore(id)],
      ['check-in', () => client.okr.keyResults.checkIns.create(id, { value: 1 })],
      ['check-ins page', () => client.okr.keyResults.checkIns.list(id)],
    ];
    for (const [name, call] of calls) {
      const err = await Promise.resolve(call()).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(TypeError);
      expect((err as Error).message, name).toMatch(/^An id is a non-empty string/);
    }
    const iterated = await (async () => {
      for await (const _ of client.okr.keyResults.checkIns.list(id)) return 'an item';
      return 'no error';
    })().catch((e: unknown) => e);
    expect(iterated).toBeInstanceOf(TypeError);
    expect(sent).toEqual([]);
  });

  it('sends an empty idempotency key as given: the server refuses it, and nothing is written or retried', async () => {
    reset();
    const before = (await client.okr.cycles.list({ q: 'empty key' })).data.length;
    reset();
    const body = { name: 'empty key', start_date: '2027-01-01', end_date: '2027-03-31' };
    const err = await client.okr.cycles.create(body, { idempotencyKey: '' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).code).toBe('invalid_header');
    expect(sent.map((s) => s.headers['idempotency-key'])).toEqual(['']);
    expect((await client.okr.cycles.list({ q: 'empty key' })).data.length).toBe(before);
  });

  // A key is there for a retry to replay the first attempt's answer: with no retry, none is made up.
  it('with maxRetries 0 a write sends no Idempotency-Key of its own; one given is sent all the same', async () => {
    reset();
    const once = createClient({ baseUrl, token, fetch: recordingFetch, maxRetries: 0 });
    await once.okr.cycles.create({ name: 'no retries 1', start_date: '2027-01-01', end_date: '2027-03-31' });
    await once.okr.cycles.create(
      { name: 'no retries 2', start_date: '2027-01-01', end_date: '2027-03-31' },
      { idempotencyKey: `no-retries-${kind}` },
    );
    expect(sent.map((s) => s.headers['idempotency-key'])).toEqual([undefined, `no-retries-${kind}`]);
  });

  it('writes an array filter value holding a comma or a backslash so the server reads it back whole', async () => {
    reset();
    const objective = await client.okr.objectives.create({ title: 'tags with commas' });
    const tags = ['okr,2026', 'back\\slash', 'end\\'];
    const made = await Promise.all(
      tags.map((tag) =>
        client.okr.keyResults.create({ objective_id: objective.id, title: tag, target: 1, tags: [tag] }),
      ),
    );
    for (const [i, tag] of tags.entries()) {
      const page = await client.okr.keyResults.list({ objective_id: objective.id, tag: [tag] });
      expect(page.data.map((k) => k.id)).toEqual([made[i]?.id]);
    }
    const both = await client.okr.keyResults.list({ objective_id: objective.id, tag: ['end\\', 'okr,2026'] });
    expect(both.data.map((k) => k.title).sort()).toEqual(['end\\', 'okr,2026']);
    // One value given alone is a list of one: the tag "okr,2026", not "okr" or "2026".
    for (const [i, tag] of tags.entries()) {
      const page = await client.okr.keyResults.list({ objective_id: objective.id, tag });
      expect(page.data.map((k) => k.id)).toEqual([made[i]?.id]);
    }
    // A search's text is not a filter: sent as typed.
    const found = await client.okr.keyResults.list({ objective_id: objective.id, q: 'okr,2026' });
    expect(found.data.map((k) => k.id)).toEqual([made[0]?.id]);
  });

  // fetch follows a 301 or 302 of a POST, and a 303 of any method, as a GET without the body:
  // its answer (a list, a live document) read as the write's, nothing written.
  it.each([
    [301, 'POST'],
    [302, 'POST'],
    [303, 'DELETE'],
    [307, 'PATCH'],
  ])('answers a %i to a %s with an APIError naming where it points, sent once', async (status, method) => {
    const seen: string[] = [];
    const proxy = createHttpServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url?.startsWith('/multi')) res.writeHead(300, { location: '/new' }).end('<p>pick one</p>');
      else if (req.url?.startsWith('/old'))
        res.writeHead(status, { location: `/new${req.url.slice(4)}` }).end('x'.repeat(200_000));
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[],"id":"obj_1"}');
    });
    let connections = 0;
    proxy.on('connection', () => connections++);
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const c = createClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/old`, token });
      const call =
        method === 'POST'
          ? c.okr.objectives.create({ title: 'x' })
          : method === 'DELETE'
            ? c.okr.objectives.delete('obj_1', { cascade: true })
            : c.okr.objectives.update('obj_1', { title: 'y' });
      const err = await call.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(APIError);
      expect([(err as APIError).status, (err as Error).message]).toEqual([
        status,
        expect.stringMatching(/answered a redirect to \/new\/api\/v1\/okr\/objectives.*a write is not sent on/),
      ]);
      expect(seen).toHaveLength(1);
      // A read follows it, as a browser would.
      expect((await c.okr.objectives.list()).data).toEqual([]);
      // Refused, its body is not left unread: the connection is reused, not one a write.
      const before = connections;
      for (let i = 0; i < 4; i++) await c.okr.objectives.create({ title: `x${i}` }).catch(() => {});
      expect(connections - before).toBeLessThanOrEqual(1);
      // A read's 3xx that fetch does not follow (300) is an error of its own, not a refused write's.
      const multi = createClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/multi`, token });
      const read = await multi.okr.objectives.list().catch((e: unknown) => e);
      expect([(read as APIError).status, (read as Error).message]).toEqual([300, expect.not.stringMatching(/write/)]);
    } finally {
      proxy.close();
    }
  });

  it('sends a Date in a query as its ISO 8601 text, which the server reads as that time', async () => {
    const cycle = await client.okr.cycles.create({
      name: 'dated query',
      start_date: '2027-01-01',
      end_date: '2027-03-31',
    });
    reset();
    const since = new Date(cycle.created_at);
    const page = await client.okr.cycles.list({ q: 'dated query', 'created_at[gte]': since });
    expect(new URL(sent[0].url).searchParams.get('created_at[gte]')).toBe(since.toISOString());
    expect(page.data.map((c) => c.id)).toEqual([cycle.id]);
  });

  it("headers: a Content-Type given replaces the SDK's application/json (merge-patch on update)", async () => {
    const cycle = await client.okr.cycles.create({
      name: 'merge patch',
      start_date: '2027-04-01',
      end_date: '2027-06-30',
    });
    reset();
    const patched = await client.okr.cycles.update(
      cycle.id,
      { name: 'merge patch (patched)' },
      { ifVersion: cycle.version, headers: { 'Content-Type': 'application/merge-patch+json' } },
    );
    expect(patched.name).toBe('merge patch (patched)');
    expect(sent[0].headers['content-type']).toBe('application/merge-patch+json');
  });

  it("headers: the client's, then the request's, then explicit options (idempotencyKey, ifVersion, token) win", async () => {
    const cycle = await client.okr.cycles.create({
      name: 'precedence',
      start_date: '2027-07-01',
      end_date: '2027-09-30',
    });
    reset();
    const withDefaults = createClient({
      baseUrl,
      token,
      fetch: recordingFetch,
      headers: { 'X-Trace': 'client', 'X-Client': 'kept', ACCEPT: 'application/json, */*', Authorization: 'Bearer no' },
    });
    await withDefaults.okr.cycles.update(
      cycle.id,
      { name: 'precedence (options win)' },
      {
        ifVersion: cycle.version,
        idempotencyKey: `explicit-${kind}`,
        headers: { 'x-trace': 'request', 'Idempotency-Key': 'not-used', 'If-Match': '"999"' },
      },
    );
    expect(sent[0].headers).toMatchObject({
      'x-trace': 'request',
      'x-client': 'kept',
      accept: 'application/json, */*',
      authorization: `Bearer ${token}`,
      'idempotency-key': `explicit-${kind}`,
      'if-match': `"${cycle.version}"`,
      'content-type': 'application/json',
    });
    // A key names one write: a client-wide one would make every later write replay the first.
    expect(() => createClient({ baseUrl, token, headers: { 'idempotency-KEY': 'everything' } })).toThrow(
      /Idempotency-Key names one write/,
    );
  });

  it('honours Retry-After on 429', async () => {
    reset();
    faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 429, retryAfter: '1' });
    const started = Date.now();
    const page = await client.okr.cycles.list();
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(page.object).toBe('list');
    expect(sent).toHaveLength(2);
  });

  it('retries a 409 idempotency_in_flight (a retry that overtook the first attempt) with the same key, not another 409', async () => {
    reset();
    const path = '/api/v1/okr/cycles';
    faults.push({ method: 'POST', path, status: 409, code: 'idempotency_in_flight', retryAfter: '1' });
    const cycle = await client.okr.cycles.create({
      name: 'overtaken',
      start_date: '2027-01-01',
      end_date: '2027-03-31',
    });
    expect(sent.map((r) => r.headers['idempotency-key'])).toEqual([
      expect.any(String),
      sent[0].headers['idempotency-key'],
    ]);
    expect((await client.okr.cycles.get(cycle.id)).name).toBe('overtaken');
    // Another conflict is the caller's to resolve: not retried.
    reset();
    faults.push({ method: 'POST', path, status: 409, code: 'has_dependents' });
    await expect(
      client.okr.cycles.create({ name: 'x', start_date: '2027-01-01', end_date: '2027-03-31' }),
    ).rejects.toBeInstanceOf(ConflictError);
    expect(sent).toHaveLength(1);
  });

  it('backs off after a Retry-After of a date passed (a clock ahead of the server), not at once', async () => {
    reset();
    const passed = new Date(Date.now() - 3_600_000).toUTCString();
    faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 503, retryAfter: passed });
    const started = Date.now();
    expect((await client.okr.cycles.list()).object).toBe('list');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350); // the first backoff: 375–500 ms
    expect(sent).toHaveLength(2);
  });

  // Without Retry-After, each wait doubles: 500 ms, then 1 s (each less up to 25%), up to 8 s.
  it('backs off longer on each retry: the second wait is about twice the first', async () => {
    reset();
    const at: number[] = [];
    const timed: typeof fetch = (input, init) => {
      at.push(Date.now());
      return recordingFetch(input, init);
    };
    for (let i = 0; i < 2; i++) faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 503 });
    expect((await createClient({ baseUrl, token, fetch: timed }).okr.cycles.list()).object).toBe('list');
    expect(sent).toHaveLength(3);
    expect(at[1] - at[0]).toBeGreaterThanOrEqual(350); // 375–500 ms
    expect(at[2] - at[1]).toBeGreaterThanOrEqual(700); // 750–1000 ms: not the first wait again
  });

  it('does not wait out a Retry-After over a minute: the error comes back at once, with its retryAfter', async () => {
    reset();
    faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 429, retryAfter: '120' });
    const err = await client.okr.cycles.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).retryAfter).toBe(120);
    expect(sent).toHaveLength(1);
    // A 503's too, and a Retry-After written as an HTTP-date.
    reset();
    const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
    faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 503, retryAfter: inAnHour });
    const unavailable = await client.okr.cycles.list().catch((e: unknown) => e);
    expect(unavailable).toBeInstanceOf(InternalServerError);
    expect((unavailable as InternalServerError).retryAfter).toBeGreaterThan(3590);
    expect((unavailable as InternalServerError).retryAfter).toBeLessThanOrEqual(3600);
    // Rounded up: waiting retryAfter seconds never brings the caller back before the date.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.parse(inAnHour) - 3_599_500 });
    try {
      expect((unavailable as InternalServerError).retryAfter).toBe(3600);
    } finally {
      vi.useRealTimers();
    }
    expect(sent).toHaveLength(1);
  });

  it('answers a 2xx whose JSON does not parse with an APIError carrying its status and request id', async () => {
    const broken: typeof fetch = async () =>
      new Response('{"id": "obj_', {
        status: 200,
        headers: { 'content-type': 'application/json', 'x-request-id': 'req_x' },
      });
    const err = await createClient({ baseUrl, token, fetch: broken, maxRetries: 0 })
      .okr.objectives.get('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect([(err as APIError).status, (err as APIError).requestId, (err as Error).message]).toEqual([
      200,
      'req_x',
      '200: the answer is not valid JSON',
    ]);
    expect((err as Error).cause).toBeInstanceOf(SyntaxError);
  });

  // A base URL that names a web page (the Playground's), or a captive portal, answers 200 with
  // HTML: resolved as a string (or a Page without data) before, iterating it a bare TypeError.
  it.each([
    [
      'an HTML page',
      'text/html; charset=utf-8',
      '<!doctype html><p>sign in</p>',
      /^200: the answer is not JSON \(Content-Type: text\/html/,
    ],
    ['an empty JSON answer', 'application/json', '', /^200: the answer is empty$/],
    ['JSON that is not an object', 'application/json', '"ok"', /^200: the answer is not a JSON object$/],
  ])(
    'answers a 2xx that is %s with an APIError carrying its status and request id',
    async (_name, type, body, message) => {
      const portal: typeof fetch = async () =>
        new Response(body, { status: 200, headers: { 'content-type': type, 'x-request-id': 'req_y' } });
      const c = createClient({ baseUrl, token, fetch: portal, maxRetries: 0 });
      for (const call of [
        () => c.okr.objectives.get('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV'),
        () => c.okr.objectives.create({ title: 'x' }),
        async () => (await c.okr.objectives.list()).data,
      ]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(APIError);
        expect([(err as APIError).status, (err as APIError).requestId]).toEqual([200, 'req_y']);
        expect((err as Error).message).toMatch(message);
      }
    },
  );

  it("answers a list's 2xx without a data array with an APIError, not a Page that cannot be iterated", async () => {
    const other: typeof fetch = async () =>
      new Response('{"id":"obj_1"}', { status: 200, headers: { 'content-type': 'application/json' } });
    const c = createClient({ baseUrl, token, fetch: other, maxRetries: 0 });
    const err = await c.okr.objectives.list().catch((e: unknown) => e);
    expect([err instanceof APIError, (err as Error).message]).toEqual([
      true,
      '200: the answer is not a list (no data array)',
    ]);
    const iterated = await (async () => {
      for await (const _ of c.okr.objectives.list()) break;
    })().catch((e: unknown) => e);
    expect(iterated).toBeInstanceOf(APIError);
  });

  // `status: []` sent `status=`: refused by some filters (400), read as one empty value by others.
  it('refuses an empty any-of filter before sending anything, saying to leave it out', async () => {
    reset();
    for (const query of [{ status: [] }, { tag: [] }, { cycle_id: [] }] as const) {
      const err = await client.okr.objectives.list(query).catch((e: unknown) => e);
      const name = Object.keys(query)[0];
      expect(err).toBeInstanceOf(TypeError);
      expect((err as Error).message).toBe(
        `${name}: an empty list matches nothing; leave ${name} out to match any value`,
      );
    }
    expect(sent).toHaveLength(0);
  });

  // Each retry's wait left a listener on the caller's signal: a long-lived one piled them up
  // (MaxListenersExceededWarning after 10).
  it("leaves no listener on the caller's AbortSignal once a retried request is answered", async () => {
    const { EventEmitter } = await import('node:events');
    const controller = new AbortController();
    for (let i = 0; i < 3; i++) {
      reset();
      faults.push({ method: 'GET', path: '/api/v1/okr/cycles', status: 429, retryAfter: '0.01' });
      expect((await client.okr.cycles.list({}, { signal: controller.signal })).object).toBe('list');
      expect(sent).toHaveLength(2);
    }
    expect(EventEmitter.getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('a server that requires If-Match answers a write without ifVersion with PreconditionRequiredError', async () => {
    const strict = await testApp(kind, { requireIfMatch: true });
    try {
      await strict.app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = strict.app.server.address() as { port: number };
      const api = createClient({ baseUrl: `http://127.0.0.1:${port}`, token: await strict.token() });
      const objective = await api.okr.objectives.create({ title: 'strict' });
      const err = await api.okr.objectives.update(objective.id, { title: 'no lock' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PreconditionRequiredError);
      expect([(err as APIError).status, (err as APIError).code]).toEqual([428, 'precondition_required']);
      const locked = await api.okr.objectives.update(objective.id, { title: 'locked' }, { ifVersion: 1 });
      expect(locked.version).toBe(2);
    } finally {
      await strict.close();
    }
  });

  // A version the types allow to be null: null is no version to lock on, not If-Match: "null".
  it('If-Match: ifVersion null sends none; a version sends it quoted', async () => {
    const cycle = await client.okr.cycles.create({
      name: 'if version',
      start_date: '2027-01-01',
      end_date: '2027-03-31',
    });
    reset();
    const first = await client.okr.cycles.update(cycle.id, { name: 'if version 2' }, { ifVersion: null });
    await client.okr.cycles.update(cycle.id, { name: 'if version 3' }, { ifVersion: first.version });
    expect(sent.map((s) => s.headers['if-match'])).toEqual([undefined, `"${first.version}"`]);
  });

  it('If-Match: of two writers at the same version, the second gets PreconditionFailedError', async () => {
    reset();
    const kr = await client.okr.keyResults.create({
      objective_id: (await client.okr.objectives.create({ title: 'locking' })).id,
      title: 'Ship v2',
      target: 1,
      metric_type: 'milestone',
    });
    const other = createClient({ baseUrl, token: await t.token({ sub: USER_B }) });
    const first = await client.okr.keyResults.update(kr.id, { title: 'Ship v2 (first)' }, { ifVersion: kr.version });
    const second = await other.okr.keyResults
      .update(kr.id, { title: 'Ship v2 (second)' }, { ifVersion: kr.version })
      .catch((e: unknown) => e);
    expect(second).toBeInstanceOf(PreconditionFailedError);
    expect((second as PreconditionFailedError).problem).toMatchObject({
      code: 'precondition_failed',
      current_version: 2,
    });
    expect(await client.okr.keyResults.get(kr.id)).toMatchObject({ title: 'Ship v2 (first)', version: first.version });
  });

  it('a get whose If-None-Match names the current version is a NotModifiedError (never a Document of undefined), tried once', async () => {
    reset();
    const objective = await client.okr.objectives.create({ title: 'conditional get' });
    const current = { headers: { 'If-None-Match': `"${objective.version}"` } };
    const err = await client.okr.objectives.get(objective.id, current).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotModifiedError);
    expect(err).toBeInstanceOf(APIError);
    const notModified = err as NotModifiedError;
    expect([notModified.status, notModified.etag, notModified.requestId?.startsWith('req_')]).toEqual([
      304,
      `"${objective.version}"`,
      true,
    ]);
    expect(notModified.message).toMatch(/^304 not modified/);
    expect(sent.filter((r) => r.method === 'GET')).toHaveLength(1);
    // Another version: the document, as without the header.
    const changed = await client.okr.objectives.update(objective.id, { title: 'changed' });
    expect(await client.okr.objectives.get(objective.id, current)).toMatchObject({
      id: objective.id,
      title: 'changed',
      version: changed.version,
    });
  });

  it('custom writes take ifVersion: a stale check-in or sync is refused; a sync takes no body, its options third', async () => {
    reset();
    const kr = await client.okr.keyResults.create({
      objective_id: (await client.okr.objectives.create({ title: 'custom locking' })).id,
      title: 'Check in with a version',
      target: 10,
    });
    const krVersion = kr.version as number;
    const stale = await client.okr.keyResults.checkIns
      .create(kr.id, { value: 1 }, { ifVersion: krVersion + 1 })
      .catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(PreconditionFailedError);
    const checked = await client.okr.keyResults.checkIns.create(kr.id, { value: 2 }, { ifVersion: krVersion });
    expect(checked).toMatchObject({ current: 2, version: krVersion + 1 });

    const feed = await client.okr.connectors.create({
      name: 'Locked feed',
      kind: 'http_json',
      config: { url: 'http://127.0.0.1:9/value', pointer: '/value' },
    });
    const version = (await client.okr.connectors.get(feed.id)).version as number;
    sent = [];
    const refused = await client.okr.connectors
      .sync(feed.id, undefined, { ifVersion: version + 1, idempotencyKey: 'sync-stale-1' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PreconditionFailedError);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ method: 'POST', url: `${baseUrl}/api/v1/okr/connectors/${feed.id}/sync` });
    expect(sent[0].headers).toMatchObject({
      'if-match': `"${version + 1}"`,
      'idempotency-key': 'sync-stale-1',
    });
    expect(sent[0].headers).not.toHaveProperty('content-type');
    const synced = await client.okr.connectors.sync(feed.id, undefined, { ifVersion: version });
    expect(synced).toMatchObject({ id: feed.id, version: version + 1 });
  });

  it('works from the built package as `edm/client` (self-reference)', async () => {
    const entry = new URL('dist/client/index.js', ROOT);
    expect(existsSync(entry), 'dist/client/index.js is missing: run `npm run build` first').toBe(true);
    const script = `
      import { createClient, NotFoundError } from 'edm/client';
      const client = createClient({ baseUrl: process.env.BASE, token: process.env.TOKEN });
      const cycle = await client.okr.cycles.create({ name: 'from dist', start_date: '2026-01-01', end_date: '2026-03-31' });
      const missing = await client.okr.cycles.get('cyc_${MISSING}').catch((e) => e);
      console.log(JSON.stringify({ id: cycle.id, notFound: missing instanceof NotFoundError }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, BASE: baseUrl, TOKEN: token },
    });
    const out = JSON.parse(stdout) as { id: string; notFound: boolean };
    expect(out.notFound).toBe(true);
    expect((await client.okr.cycles.get(out.id)).name).toBe('from dist');
  });
});

describe('SDK structure', () => {
  const importsOf = (source: string) =>
    [...source.matchAll(/^\s*(import|export)\s+(type\s+)?[^;]*?from\s+'([^']+)'/gm)].map((m) => ({
      typeOnly: m[2] !== undefined,
      specifier: m[3],
    }));

  it('imports nothing of the server at run time (src/client: only type imports leave the folder)', () => {
    const dir = new URL('src/client/', ROOT);
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    expect(files).toContain('index.ts');
    for (const file of files) {
      for (const { typeOnly, specifier } of importsOf(readFileSync(new URL(file, dir), 'utf8'))) {
        if (!typeOnly) expect(`${file}: ${specifier}`).toMatch(/: \.\/[a-z-]+\.js$/);
      }
    }
  });

  it('packs the built SDK, CLI and server: `npm pack` gives what `edm/client` and `npx edm` load', async () => {
    expect(existsSync(new URL('dist/client/index.js', ROOT)), 'run `npm run build` first').toBe(true);
    // --ignore-scripts: the pack's own build (prepack) is `npm run build`, done before the tests.
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: ROOT,
      env: { ...process.env, npm_config_loglevel: 'silent' },
    });
    const packed = new Set((JSON.parse(stdout) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path));
    const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8'));
    expect(pkg.scripts.prepack).toBe('npm run build');
    for (const path of [
      pkg.bin.edm,
      pkg.exports['./client'].default,
      pkg.exports['./client'].types,
      'dist/cli/edm.js',
    ]) {
      expect(packed, path).toContain(path.replace(/^\.\//, ''));
    }
    expect(packed).toContain('dist/playground/index.html');
    // Sources, tests, benchmarks, a local store and the build's incremental state stay out.
    expect([...packed].filter((p) => /^(src|test|bench|data|scripts)\//.test(p))).toEqual([]);
    expect([...packed].filter((p) => p.endsWith('.tsbuildinfo'))).toEqual([]);
    // Each script's source map is packed beside it and holds its sources: the sources are not packed.
    const scripts = [...packed].filter((p) => p.endsWith('.js') && !p.startsWith('dist/playground/'));
    for (const js of scripts) {
      const mapped = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(new URL(js, ROOT), 'utf8'))?.[1];
      if (mapped === undefined) continue;
      const map = `${js.slice(0, js.lastIndexOf('/') + 1)}${mapped}`;
      expect(packed, map).toContain(map);
      expect(JSON.parse(readFileSync(new URL(map, ROOT), 'utf8')).sourcesContent?.[0], map).toEqual(expect.any(String));
    }
  });

  it('types `edm/client` from the built package for a TypeScript consumer', async () => {
    const dir = new URL(`dist/.types-check-${process.pid}/`, ROOT);
    expect(existsSync(new URL('dist/client/index.d.ts', ROOT)), 'run `npm run build` first').toBe(true);
    mkdirSync(dir, { recursive: true });
    try {
      writeFileSync(
        new URL('check.ts', dir),
        [
          "import { createClient, NotFoundError } from 'edm/client';",
          "const client = createClient({ baseUrl: 'http://127.0.0.1:8080', token: 'jwt' });",
          "const kr = await client.okr.keyResults.checkIns.create('kr_x', { value: 1 });",
          'export const title: string = kr.title;',
          'export const Class = NotFoundError;',
          '// @ts-expect-error a misspelt field',
          "client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', target: 1, targte: 1 });",
        ].join('\n'),
      );
      writeFileSync(
        new URL('tsconfig.json', dir),
        JSON.stringify({
          compilerOptions: {
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            target: 'ES2022',
            lib: ['ES2023', 'DOM'],
            types: [],
            strict: true,
            noEmit: true,
            skipLibCheck: true,
          },
          include: ['check.ts'],
        }),
      );
      const tsc = new URL('node_modules/typescript/bin/tsc', ROOT);
      const result = await run(process.execPath, [tsc.pathname, '-p', new URL('tsconfig.json', dir).pathname]).then(
        () => '',
        (err: { stdout?: string }) => err.stdout ?? String(err),
      );
      expect(result).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the built client loads only its own files', () => {
    const dir = new URL('dist/client/', ROOT);
    expect(existsSync(dir), 'dist/client is missing: run `npm run build` first').toBe(true);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.js'))) {
      for (const { specifier } of importsOf(readFileSync(new URL(file, dir), 'utf8'))) {
        expect(`${file}: ${specifier}`).toMatch(/: \.\/[a-z-]+\.js$/);
      }
    }
  });

  it('routes every declared custom operation where the client conventions put it', () => {
    const declared = resources.flatMap((r) => (r.operations ?? []).map((op) => ({ r, op })));
    expect(declared.map(({ r, op }) => `${r.clientName}.${op.name}`)).toEqual(
      expect.arrayContaining(['keyResults.checkIns.create', 'keyResults.checkIns.list']),
    );
    for (const { op } of declared) {
      expect(operationRoute(op.name), op.name).toEqual({
        method: op.method,
        path: op.path,
        paged: op.response.kind === 'list',
      });
    }
  });
});

/** A module declared here and nowhere else: it must reach the manifest, OpenAPI and the SDK. */
const initiatives = defineResource({
  module: 'portfolio',
  name: 'Initiative',
  path: 'strategic-initiatives',
  idPrefix: 'ini',
  schemaVersion: 1,
  description: 'A body of work that several objectives depend on.',
  titleField: 'name',
  fields: {
    name: text({ required: true, maxLength: 100, example: 'Self-serve onboarding', notes: 'What the initiative is.' }),
    budget: number({ min: 0, notes: 'Approved budget.' }),
  },
  sortable: ['created_at', 'name', 'budget'],
  filterable: ['budget'],
  operations: [
    {
      name: 'approvals.create',
      method: 'POST',
      path: '/{id}/approvals',
      summary: 'Approve the initiative with a budget.',
      body: Type.Object({ budget: Type.Number() }, { additionalProperties: false }),
      response: { kind: 'resource', status: 200 },
      example: { budget: 5000 },
      run: ({ resource, id, body, ops }) => ops.update(resource, id, { budget: (body as { budget: number }).budget }),
    },
  ],
});
const portfolio = defineModule({ name: 'portfolio', description: 'Initiatives.', resources: [initiatives] });
const extended = [...modules, portfolio] as const;

describe.each(storeKinds)('a resource declared once, on %s', (kind) => {
  it('appears in the manifest, the OpenAPI document and the SDK with no other code', async () => {
    const fresh = await freshStore(kind);
    const config = testConfig();
    const app = await buildApp({ config, store: fresh.store, clock: new ManualClock(T0), modules: extended });
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const manifest = (await app.inject({ url: '/api/v1/manifest' })).json();
      const entry = manifest.modules[1].resources[0];
      expect(entry).toMatchObject({ name: 'Initiative', client_namespace: 'client.portfolio.strategicInitiatives' });
      expect(entry.operations.map((o: { client_method: string }) => o.client_method)).toContain(
        'client.portfolio.strategicInitiatives.approvals.create',
      );
      const openapi = (await app.inject({ url: '/api/v1/openapi.json' })).json();
      expect(Object.keys(openapi.paths)).toEqual(
        expect.arrayContaining([
          '/api/v1/portfolio/strategic-initiatives',
          '/api/v1/portfolio/strategic-initiatives/{id}/approvals',
        ]),
      );
      expect(openapi.components.schemas.InitiativeApprovalsCreateBody.required).toEqual(['budget']);

      const { mintToken } = await import('../src/core/auth.js');
      const token = await mintToken({ secret: config.jwtSecret, tenant: 'acme', sub: USER_B, ttl: '1h', now: T0 });
      const client = createClient({ baseUrl: `http://127.0.0.1:${port}`, token }) as unknown as ClientOf<
        typeof extended
      >;
      const created = await client.portfolio.strategicInitiatives.create({ name: 'Self-serve onboarding' });
      const approved = await client.portfolio.strategicInitiatives.approvals.create(created.id, { budget: 5000 });
      expect(approved).toMatchObject({ id: created.id, budget: 5000, version: 2 });
      const page = await client.portfolio.strategicInitiatives.list({ 'budget[gte]': 1000, sort: '-budget' });
      expect(page.data.map((i) => i.name)).toEqual(['Self-serve onboarding']);
      expect(await client.okr.cycles.list()).toMatchObject({ data: [] });
    } finally {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    }
  });
});
