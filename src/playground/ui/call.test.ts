import { describe, expect, it } from 'vitest';
import { sendCall } from './call';
import { buildRequest, emptyForm } from './request';
import { keyResult, opNamed, syncOp, webhookOp } from './test-fixture';

interface Seen {
  method: string;
  url: string;
  headers: Headers;
  body: unknown;
}

/** A fetch that answers from a table and remembers what the SDK sent. */
function server(answer: (seen: Seen) => Response) {
  const seen: Seen[] = [];
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const s = {
      method: init?.method ?? 'GET',
      url: String(input),
      headers: new Headers(init?.headers),
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
    };
    seen.push(s);
    return answer(s);
  }) as typeof fetch;
  return { seen, fetch: f };
}

const json = (status: number, body: unknown, type = 'application/json') =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': type, 'x-request-id': 'req_1' } });

describe('console calls go through the SDK', () => {
  it('sends a check-in with the id, body and token, and shows the raw answer', async () => {
    const api = server(() => json(201, { id: 'kr_1', history: [] }));
    const op = opNamed('checkIns.create');
    const built = buildRequest(op, keyResult, { ...emptyForm(), body: '{"value": 7}' }, { kr: 'kr_1' });
    const result = await sendCall(op, built, 'tok', { baseUrl: 'http://127.0.0.1:9', fetch: api.fetch });
    expect(api.seen).toHaveLength(1);
    expect(api.seen[0]).toMatchObject({
      method: 'POST',
      url: 'http://127.0.0.1:9/api/v1/okr/key-results/kr_1/check-ins',
    });
    expect(api.seen[0].body).toEqual({ value: 7 });
    expect(api.seen[0].headers.get('authorization')).toBe('Bearer tok');
    expect(api.seen[0].headers.get('idempotency-key')).toBeTruthy();
    expect(result).toMatchObject({ status: 201, body: { id: 'kr_1' }, error: null, attempts: 1 });
    expect(result.headers).toContainEqual(['x-request-id', 'req_1']);
  });

  // As the console sends: one attempt, a write's Idempotency-Key made up where none is typed
  // (the SDK makes one only for its retries), and a 429 shown as answered, not retried.
  it('sends once, with an Idempotency-Key made up for a write, and shows a 429 as answered', async () => {
    const api = server(() => json(429, { code: 'rate_limited' }));
    const op = opNamed('checkIns.create');
    const built = buildRequest(op, keyResult, { ...emptyForm(), body: '{"value": 7}' }, { kr: 'kr_1' });
    const result = await sendCall(op, built, 'tok', { baseUrl: 'http://h', fetch: api.fetch, maxRetries: 0 });
    expect(result).toMatchObject({ status: 429, attempts: 1 });
    expect(api.seen).toHaveLength(1);
    expect(api.seen[0].headers.get('idempotency-key')).toMatch(/^[0-9a-f-]{32,36}$/);
    const list = opNamed('list');
    await sendCall(list, buildRequest(list, keyResult, emptyForm(), {}), 'tok', {
      baseUrl: 'http://h',
      fetch: api.fetch,
      maxRetries: 0,
    });
    expect(api.seen[1].headers.get('idempotency-key')).toBeNull();
  });

  it('sends If-Match and the Idempotency-Key typed into the console', async () => {
    const api = server(() => json(200, { id: 'kr_3' }));
    const del = opNamed('delete');
    const built = buildRequest(
      del,
      keyResult,
      { ...emptyForm(), headers: { 'If-Match': '"7"', 'Idempotency-Key': 'console-key-1' } },
      { kr: 'kr_3' },
    );
    await sendCall(del, built, 't', { baseUrl: 'http://h', fetch: api.fetch });
    expect(api.seen[0].headers.get('if-match')).toBe('"7"');
    expect(api.seen[0].headers.get('idempotency-key')).toBe('console-key-1');
  });

  it('passes list filters and delete options as the SDK takes them', async () => {
    const api = server((s) =>
      s.method === 'GET' ? json(200, { object: 'list', data: [] }) : json(200, { id: 'kr_2' }),
    );
    const list = opNamed('list');
    await sendCall(list, buildRequest(list, keyResult, { ...emptyForm(), query: { limit: '5' } }, {}), 't', {
      baseUrl: 'http://h',
      fetch: api.fetch,
    });
    const del = opNamed('delete');
    await sendCall(
      del,
      buildRequest(del, keyResult, { ...emptyForm(), query: { cascade: 'true' } }, { kr: 'kr_2' }),
      't',
      {
        baseUrl: 'http://h',
        fetch: api.fetch,
      },
    );
    expect(api.seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'GET http://h/api/v1/okr/key-results?limit=5',
      'DELETE http://h/api/v1/okr/key-results/kr_2?cascade=true',
    ]);
  });

  it('shows a problem answer instead of throwing, and says when nothing answered', async () => {
    const problem = {
      title: 'Validation failed',
      status: 400,
      code: 'validation_failed',
      request_id: 'req_2',
      errors: [{ path: '/target', code: 'type', message: 'must be a number' }],
    };
    const api = server(() => json(400, problem, 'application/problem+json'));
    const create = opNamed('create');
    const built = buildRequest(create, keyResult, { ...emptyForm(), body: '{"target":"x"}' }, {});
    const result = await sendCall(create, built, '', { baseUrl: 'http://h', fetch: api.fetch });
    expect(result).toMatchObject({ status: 400, body: problem, error: null });
    expect(api.seen[0].headers.get('authorization')).toBeNull();

    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const get = opNamed('get');
    const offline = await sendCall(get, buildRequest(get, keyResult, emptyForm(), { kr: 'kr_3' }), 't', {
      baseUrl: 'http://h',
      fetch: down,
      maxRetries: 0,
    });
    expect(offline.status).toBeNull();
    expect(offline.error).toMatch(/^No answer: .*fetch failed/);
    // A call the SDK refuses to make is not one nothing answered (it read "No answer" before).
    const api2 = server(() => json(200, {}));
    const dotted = await sendCall(
      get,
      buildRequest(get, keyResult, { ...emptyForm(), params: { id: '..' } }, {}),
      't',
      {
        baseUrl: 'http://h',
        fetch: api2.fetch,
      },
    );
    expect([dotted.status, dotted.error, api2.seen.length]).toEqual([
      null,
      'Not sent: An id is a non-empty string other than "." and "..": got ".."',
      0,
    ]);
  });

  it('sends a custom write without a body with its options as headers, not as a body', async () => {
    const api = server(() => json(200, { id: 'kr_4' }));
    const form = { ...emptyForm(), headers: { 'If-Match': '1', 'Idempotency-Key': 'k' } };
    await sendCall(syncOp, buildRequest(syncOp, keyResult, form, { kr: 'kr_4' }), 't', {
      baseUrl: 'http://h',
      fetch: api.fetch,
    });
    expect(api.seen).toHaveLength(1);
    expect(api.seen[0]).toMatchObject({ method: 'POST', url: 'http://h/api/v1/okr/key-results/kr_4/sync' });
    expect(api.seen[0].body).toBeUndefined();
    expect(api.seen[0].headers.get('if-match')).toBe('"1"');
    expect(api.seen[0].headers.get('idempotency-key')).toBe('k');
    expect(api.seen[0].headers.get('authorization')).toBe('Bearer t');
  });

  it('sends a signed operation directly to its signed URL: its query, its body, no token', async () => {
    const api = server(() => json(200, { id: 'kr_5' }));
    const form = {
      ...emptyForm(),
      query: { tenant_id: 'acme', signature: 'abc' },
      headers: { 'Idempotency-Key': 'push-1' },
    };
    const built = buildRequest(webhookOp, keyResult, form, { kr: 'kr_5' });
    const result = await sendCall(webhookOp, built, 'tok', { baseUrl: 'http://h', fetch: api.fetch });
    expect(api.seen).toHaveLength(1);
    expect(api.seen[0]).toMatchObject({
      method: 'POST',
      url: 'http://h/api/v1/okr/key-results/kr_5/webhook?tenant_id=acme&signature=abc',
      body: { value: 5 },
    });
    expect(api.seen[0].headers.get('authorization')).toBeNull();
    expect(api.seen[0].headers.get('content-type')).toBe('application/json');
    expect(api.seen[0].headers.get('idempotency-key')).toBe('push-1');
    expect(result).toMatchObject({ status: 200, body: { id: 'kr_5' }, error: null, attempts: 1 });
  });

  it('sends the If-Match typed into a signed operation\'s console, as the SDK sends one: "4"', async () => {
    const api = server(() => json(200, { id: 'kr_5' }));
    const form = {
      ...emptyForm(),
      query: { tenant_id: 'acme', signature: 'abc' },
      headers: { 'If-Match': '4', 'Idempotency-Key': 'push-2' },
    };
    const built = buildRequest(webhookOp, keyResult, form, { kr: 'kr_5' });
    await sendCall(webhookOp, built, 'tok', { baseUrl: 'http://h', fetch: api.fetch });
    expect(api.seen[0].headers.get('if-match')).toBe('"4"');
    expect(api.seen[0].headers.get('idempotency-key')).toBe('push-2');
    expect(api.seen[0].headers.get('authorization')).toBeNull();
    // Left empty, none is sent.
    const plain = buildRequest(webhookOp, keyResult, { ...form, headers: {} }, { kr: 'kr_5' });
    await sendCall(webhookOp, plain, 'tok', { baseUrl: 'http://h', fetch: api.fetch });
    expect(api.seen[1].headers.get('if-match')).toBeNull();
    // As the console sends it (once), an Idempotency-Key left empty is made up, as for any write.
    await sendCall(webhookOp, plain, 'tok', { baseUrl: 'http://h', fetch: api.fetch, maxRetries: 0 });
    expect(api.seen[2].headers.get('idempotency-key')).toMatch(/^[0-9a-f-]{32,36}$/);
  });
});
