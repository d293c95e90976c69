import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchJson, isRefusedAddress, OutboundError, resolveAllowed } from '../src/core/outbound.js';
import type { Doc } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import {
  asMetric,
  atPointer,
  failureText,
  leadingKeyword,
  MAX_ERROR_CHARS,
  readConnector,
  requestHeaders,
  withoutSecret,
} from '../src/modules/okr/connector-read.js';
import { connectorSyncJob, connectors } from '../src/modules/okr/connectors.js';
import { keyResults as kr } from '../src/modules/okr/key-results.js';
import {
  byName,
  countRows,
  injectAs,
  PG_URL,
  storedRow,
  storeKinds,
  type TestApp,
  testApp,
  testConfig,
} from './helpers.js';

/** A metrics API on loopback whose answer each test sets. */
function metricsServer() {
  const state = {
    status: 200,
    body: '{"data":{"value":42}}' as string,
    headers: {} as Record<string, string>,
    requests: [] as { url: string; authorization: string | undefined }[],
    /** Every request's headers, as they arrived. */
    seen: [] as Record<string, string | string[] | undefined>[],
    /** Requests that arrive while it is set answer only once it resolves (a slow feed); set back to null after use. */
    hold: null as Promise<void> | null,
    /** While set, each request waits for a release of its own, in `releases` (in order of arrival). */
    holdEach: false,
    releases: [] as (() => void)[],
  };
  const server: Server = createServer(async (req, res) => {
    state.requests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    state.seen.push(req.headers);
    // The answer as of the request's arrival, sent when the hold lets it.
    const { status, headers, body } = state;
    if (state.hold) await state.hold;
    if (state.holdEach) await new Promise<void>((release) => state.releases.push(release));
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body);
  });
  return {
    state,
    start: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
      ),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.each(storeKinds)('connectors on %s', (kind) => {
  let t: TestApp;
  let token: string;
  let objectiveId: string;
  const api = metricsServer();
  let base: string;
  beforeAll(async () => {
    base = await api.start();
    t = await testApp(kind, { connectorAllowHosts: ['127.0.0.1'] });
    token = await t.token();
    objectiveId = (await t.create(byName('Objective'), token)).id as string;
  });
  afterAll(async () => {
    await t.close();
    await api.stop();
  });

  const call = (method: string, url: string, body?: unknown) => t.call(method, url, { token, body });
  const connector = async (body: Doc = {}) => {
    const res = await call('POST', connectors.basePath, {
      name: 'MRR',
      kind: 'http_json',
      config: { url: `${base}/metrics`, pointer: '/data/value' },
      secret: 's3cret-token',
      ...body,
    });
    expect(res.status, res.raw).toBe(201);
    return res.body;
  };
  const fed = async (connectorId: string, body: Doc = {}) => {
    const res = await call('POST', kr.basePath, {
      objective_id: objectiveId,
      title: 'fed',
      target: 100,
      data_source: 'connector',
      connector_id: connectorId,
      ...body,
    });
    expect(res.status, res.raw).toBe(201);
    return res.body;
  };
  const sync = (id: string) => call('POST', `${connectors.basePath}/${id}/sync`);
  const get = async (path: string) => (await call('GET', path)).body;

  it('keeps its secret sealed at rest and never answers it', async () => {
    const c = await connector();
    expect(c).not.toHaveProperty('secret');
    expect(c).toMatchObject({ kind: 'http_json', interval_seconds: 3600, last_sync_status: null });
    const stored = (await storedRow(t, connectors, c.id as string)) as Doc;
    expect(String(stored.secret)).toMatch(/^sealed:v1:/);
    expect(JSON.stringify(stored)).not.toContain('s3cret-token');
    expect(await get(`${connectors.basePath}/${c.id}`)).not.toHaveProperty('secret');
  });

  it('sync now: reads the number, records it on every key result it feeds (and the queries reading them)', async () => {
    api.state.body = '{"data":{"value":42}}';
    const c = await connector();
    const a = await fed(c.id as string, { baseline: 10 });
    const b = await fed(c.id as string);
    expect(a).toMatchObject({ current: 10, data_source: 'connector' });
    const q = await call('POST', kr.basePath, {
      objective_id: objectiveId,
      title: 'double',
      target: 200,
      data_source: 'query',
      query: `kr("${a.id}") * 2`,
    });
    api.state.requests.length = 0;
    t.clock.advance(1000);
    const res = await sync(c.id as string);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      last_sync_status: 'ok',
      last_value: 42,
      last_error: null,
      last_sync_at: new Date(t.clock.now()).toISOString(),
    });
    expect(api.state.requests).toEqual([{ url: '/metrics', authorization: 'Bearer s3cret-token' }]);
    const after = await get(`${kr.basePath}/${a.id}`);
    expect(after).toMatchObject({ current: 42, progress_pct: 35.56, version: 2 });
    expect((after.history as Doc[]).at(-1)).toMatchObject({ value: 42, source_type: 'system', by: 'system' });
    expect((await get(`${kr.basePath}/${b.id}`)).current).toBe(42);
    expect((await get(`${kr.basePath}/${q.body.id}`)).current).toBe(84);

    // The same value again: no snapshot, no new version.
    expect((await sync(c.id as string)).status).toBe(200);
    expect(await get(`${kr.basePath}/${a.id}`)).toMatchObject({ current: 42, version: 2 });
    // A key result it starts to feed takes the last value it read; none takes a value from a client.
    expect((await fed(c.id as string)).current).toBe(42);
    const own = await call('POST', kr.basePath, {
      objective_id: objectiveId,
      title: 'x',
      target: 1,
      data_source: 'connector',
      connector_id: c.id,
      current: 3,
    });
    expect([own.status, (own.body.errors as Doc[])[0].path]).toEqual([400, '/current']);
    // A manual key result switched to a connector that has read nothing yet reads its baseline
    // until the first read: the value a person entered is not the connector's.
    const fresh = await connector();
    const manual = await call('POST', kr.basePath, {
      objective_id: objectiveId,
      title: 'was manual',
      baseline: 10,
      target: 100,
      current: 50,
    });
    const switched = await call('PATCH', `${kr.basePath}/${manual.body.id}`, {
      data_source: 'connector',
      connector_id: fresh.id,
    });
    expect([switched.status, switched.body.current, switched.body.progress_pct]).toEqual([200, 10, 0]);
    expect((switched.body.history as Doc[]).map((h) => h.value)).toEqual([50, 10]);
    // Until that read, a moved baseline moves it: no value is the connector's yet.
    const moved = await call('PATCH', `${kr.basePath}/${manual.body.id}`, { baseline: 30 });
    expect([moved.status, moved.body.current, moved.body.progress_pct]).toEqual([200, 30, 0]);
    // Once read, the baseline moves alone.
    const read = await call('PATCH', `${kr.basePath}/${manual.body.id}`, { connector_id: c.id });
    expect(read.body.current).toBe(42);
    const rebased = await call('PATCH', `${kr.basePath}/${manual.body.id}`, { baseline: 20 });
    expect([rebased.body.current, rebased.body.baseline]).toEqual([42, 20]);
    // Filterable by its connector (the one switched to it above too).
    const list = await get(`${kr.basePath}?connector_id=${c.id}`);
    expect(list.data as Doc[]).toHaveLength(4);
    expect((list.data as Doc[]).map((d) => d.id)).toEqual(expect.arrayContaining([a.id, b.id]));
  });

  it('a query reading several key results of one connector records one value per sync, never a halfway one', async () => {
    api.state.body = '{"data":{"value":20}}';
    const c = await connector();
    const a = await fed(c.id as string);
    const b = await fed(c.id as string);
    const query = async (q: string) => {
      const res = await call('POST', kr.basePath, {
        objective_id: objectiveId,
        title: 'sum',
        target: 1000,
        data_source: 'query',
        query: q,
      });
      expect(res.status, res.raw).toBe(201);
      return res.body.id as string;
    };
    const sum = await query(`kr("${a.id}") + kr("${b.id}")`);
    const scaled = await query(`kr("${sum}") * 10`);
    expect((await sync(c.id as string)).status).toBe(200);
    api.state.body = '{"data":{"value":30}}';
    t.clock.advance(1);
    expect((await sync(c.id as string)).status).toBe(200);
    const values = async (id: string) => ((await get(`${kr.basePath}/${id}`)).history as Doc[]).map((h) => h.value);
    expect(await values(sum)).toEqual([0, 40, 60]);
    expect(await values(scaled)).toEqual([0, 400, 600]);
    // A webhook's push is a sync too.
    const hook = await connector({ kind: 'webhook', config: {}, secret: null });
    const [x, y] = [await fed(hook.id as string), await fed(hook.id as string)];
    const both = await query(`kr("${x.id}") + kr("${y.id}")`);
    for (const value of [5, 7]) {
      const push = await t.app.inject({ method: 'POST', url: hook.webhook_url as string, payload: { value } });
      expect(push.statusCode, push.body).toBe(200);
    }
    expect(await values(both)).toEqual([0, 10, 14]);
  });

  // RFC 9110 §13.1: a server evaluates the preconditions a request sends, a signed push's too.
  it('evaluates If-Match and If-None-Match on a webhook push: 412 and nothing recorded, else the push', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'conditional' });
    const a = await fed(hook.id as string);
    const url = hook.webhook_url as string;
    const push = (value: number, headers: Record<string, string>) =>
      t.app.inject({ method: 'POST', url, payload: { value }, headers });
    const conditions: Record<string, string>[] = [
      { 'if-match': '"99"' },
      { 'if-none-match': '*' },
      { 'if-none-match': '"1"' },
    ];
    for (const headers of conditions) {
      const refused = await push(3, headers);
      expect([refused.statusCode, refused.json().code], JSON.stringify(headers)).toEqual([412, 'precondition_failed']);
    }
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(a.current);
    expect((await get(`${connectors.basePath}/${hook.id}`)).version).toBe(hook.version);
    const taken = await push(4, { 'if-match': `"${hook.version}"` });
    expect([taken.statusCode, taken.json().last_value, taken.headers.etag]).toEqual([
      200,
      4,
      `"${(hook.version as number) + 1}"`,
    ]);
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(4);
  });

  const failures: [string, Partial<typeof api.state>, Doc, RegExp][] = [
    ['an error status', { status: 500, body: '{}' }, {}, /answered 500$/],
    [
      'a redirect',
      { status: 302, body: '', headers: { location: 'http://169.254.169.254/' } },
      {},
      /redirects are not followed/,
    ],
    ['an answer that is not JSON', { body: '<html>' }, {}, /not JSON/],
    ['a pointer to nothing', { body: '{"data":{}}' }, {}, /the value at "\/data\/value" is nothing, not a number/],
    ['a value that is not a number', { body: '{"data":{"value":"lots"}}' }, {}, /is "lots", not a number/],
    [
      'a long text of emoji (cut between characters, never inside one)',
      { body: JSON.stringify({ data: { value: '😀'.repeat(60) } }) },
      {},
      new RegExp(`is "${'😀'.repeat(40)}…", not a number$`, 'u'),
    ],
    [
      'a value nested 5,000 deep',
      { body: `{"data":{"value":${'['.repeat(5000)}${']'.repeat(5000)}}}` },
      {},
      /the value at "\/data\/value" is an array, not a number/,
    ],
    ['an object', { body: '{"data":{"value":{"secret":"x"}}}' }, {}, /is an object, not a number/],
    ['a host that does not resolve', {}, { config: { url: 'http://no-such-host.invalid/x' } }, /does not resolve/],
  ];
  it.each(failures)(
    'a sync that meets %s records the error and changes no key result',
    async (_n, answer, body, error) => {
      Object.assign(api.state, { status: 200, headers: {} }, answer);
      const c = await connector(body);
      const a = await fed(c.id as string, { baseline: 5 });
      const res = await sync(c.id as string);
      expect(res.status).toBe(200);
      expect(res.body.last_sync_status).toBe('error');
      expect(res.body.last_error).toMatch(error);
      expect(await get(`${kr.basePath}/${a.id}`)).toMatchObject({ current: 5, version: 1 });
      Object.assign(api.state, { status: 200, headers: {}, body: '{"data":{"value":42}}' });
    },
  );

  it('sync takes no body: a member sent is 400 (after 404 and a stale If-Match 412), and nothing is read', async () => {
    api.state.body = '{"data":{"value":7}}';
    const c = await connector();
    api.state.requests.length = 0;
    const missing = await call('POST', `${connectors.basePath}/con_01ARZ3NDEKTSV4RRFFQ69G5FAV/sync`, { bogus: 1 });
    expect(missing.status).toBe(404);
    const url = `${connectors.basePath}/${c.id}/sync`;
    const stale = await t.call('POST', url, { token, body: { bogus: 1 }, headers: { 'if-match': '"9"' } });
    expect(stale.status).toBe(412);
    const res = await call('POST', url, { bogus: 1, 'a/b~': 2 });
    expect([res.status, res.body.code, res.body.errors]).toEqual([
      400,
      'unknown_field',
      [
        { path: '/bogus', code: 'unknown_field', message: '"bogus" is not accepted here' },
        { path: '/a~1b~0', code: 'unknown_field', message: '"a/b~" is not accepted here' },
      ],
    ]);
    expect((await get(`${connectors.basePath}/${c.id}`)).version).toBe(c.version);
    expect(api.state.requests).toEqual([]); // refused before its read of the outside world
    expect((await call('POST', url, {})).status).toBe(200);
    expect(api.state.requests.length).toBe(1);
    // No query parameters either: 400 naming one, before the outside world is read.
    const reads = api.state.requests.length;
    const param = await call('POST', `${url}?force=1`);
    expect([param.status, param.body.code, api.state.requests.length]).toEqual([400, 'unknown_parameter', reads]);
    // An empty body is no body, whatever its Content-Type (as on DELETE and restore); text that is not JSON is 400.
    const json = { 'content-type': 'application/json' };
    expect((await t.call('POST', url, { token, payload: '', headers: json })).status).toBe(200);
    const broken = await t.call('POST', url, { token, payload: '{', headers: json });
    expect([broken.status, broken.body.code]).toEqual([400, 'invalid_json']);
    // A body of JSON null is no object, as on DELETE and restore: refused, nothing read or changed.
    const reads2 = api.state.requests.length;
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Null body' });
    for (const target of [url, `${connectors.basePath}/${hook.id}/rotate-webhook-url`]) {
      const nulled = await t.call('POST', target, { token, payload: 'null', headers: json });
      expect([target, nulled.status, nulled.body.code]).toEqual([target, 400, 'invalid_body']);
    }
    expect(api.state.requests.length).toBe(reads2);
    expect((await get(`${connectors.basePath}/${hook.id}`)).webhook_url).toBe(hook.webhook_url);
  });

  it('a sync retried with its Idempotency-Key and If-Match is replayed, without reading the outside world again', async () => {
    api.state.body = '{"data":{"value":11}}';
    const c = await connector();
    api.state.requests.length = 0;
    const url = `${connectors.basePath}/${c.id}/sync`;
    const headers = { 'idempotency-key': `sync-${c.id}`, 'if-match': `"${c.version}"` };
    const first = await t.call('POST', url, { token, headers });
    expect([first.status, first.body.last_value]).toEqual([200, 11]);
    api.state.body = '{"data":{"value":12}}';
    // The SDK's retry of a lost answer sends the same key and the same If-Match, now stale.
    const again = await t.call('POST', url, { token, headers });
    expect([again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([200, 'true', first.raw]);
    expect(api.state.requests.length).toBe(1);
    // Concurrent retries of one key: one read at the most, the others replayed or told it is running.
    const key = { 'idempotency-key': `sync-burst-${c.id}` };
    const burst = await Promise.all(Array.from({ length: 5 }, () => t.call('POST', url, { token, headers: key })));
    expect(burst.every((r) => r.status === 200 || (r.status === 409 && r.body.code === 'idempotency_in_flight'))).toBe(
      true,
    );
    expect(api.state.requests.length).toBe(2);
  });

  it.each<[string, Doc, string]>([
    ['a header name with a space', { headers: { 'x a': 'v' } }, '/config/headers/x a'],
    ['a header value with a line break', { headers: { 'x-a': 'a\nb' } }, '/config/headers/x-a'],
    ['a header value past U+00FF', { headers: { 'x-a': 'tok€n' } }, '/config/headers/x-a'],
    ['the Host header', { headers: { Host: 'intranet' } }, '/config/headers/Host'],
    ['a forwarding header', { headers: { 'X-Forwarded-Host': 'intranet' } }, '/config/headers/X-Forwarded-Host'],
    // A client address a feed behind a proxy may trust to let its own network in.
    ['a client address header', { headers: { 'X-Real-IP': '10.0.0.1' } }, '/config/headers/X-Real-IP'],
    ['a Via header', { headers: { via: '1.1 gateway' } }, '/config/headers/via'],
    // Every forwarding and client-address header a proxy in front of a feed may act on, by name.
    ...[
      'Forwarded',
      'X-Forwarded-For',
      'X-Forwarded-Proto',
      'X-Forwarded-Port',
      'X-Forwarded-Prefix',
      'X-Original-URL',
      'X-Rewrite-URL',
      'X-Client-IP',
      'True-Client-IP',
      'CF-Connecting-IP',
    ].map((name): [string, Doc, string] => [
      `the ${name} header`,
      { headers: { [name]: '10.0.0.1' } },
      `/config/headers/${name}`,
    ]),
    // Stored, then failing every sync with "… is not a URL" (a port past 65535, a space in the host).
    ['a URL that does not parse', { url: 'http://x:99999/' }, '/config/url'],
    ['a URL with a space in its host', { url: 'http://ex ample.com/v' }, '/config/url'],
    // Sent as Basic credentials, and shown in config to every reader, okr:read tokens too.
    ['a URL with a user and password', { url: 'http://alice:s3cr3t@127.0.0.1/m' }, '/config/url'],
    ['a URL with a user', { url: 'http://alice@127.0.0.1/m' }, '/config/url'],
    ['a pointer with an escape RFC 6901 has not', { pointer: '/data/a~2' }, '/config/pointer'],
    // As the config's schema declares: names of 100 characters at most, 50 headers at most.
    [
      'a header name of 101 characters',
      { headers: { [`x-${'a'.repeat(99)}`]: 'v' } },
      `/config/headers/x-${'a'.repeat(99)}`,
    ],
    [
      '51 headers',
      { headers: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`x-h${i}`, 'v'])) },
      '/config/headers',
    ],
    // A credential in config would show to every reader of the connector, okr:read tokens too.
    [
      'an Authorization header',
      { headers: { Authorization: 'Basic cmVwb3J0OnN1bW1lcg==' } },
      '/config/headers/Authorization',
    ],
    ['an API key header', { headers: { 'X-Api-Key': 'sk_live_abc123' } }, '/config/headers/X-Api-Key'],
    ['a token header', { headers: { 'Private-Token': 'glpat-1' } }, '/config/headers/Private-Token'],
    ['a Cookie header', { headers: { cookie: 'session=1' } }, '/config/headers/cookie'],
    // Aliases and compounds of those names, and a credential by its value whatever the name.
    ...[
      'X-Authorization',
      'Authentication',
      'X-ApiToken',
      'X-AccessToken',
      'X-SessionId',
      'X-Jwt',
      'X-Bearer',
      'Cookie2',
      'Set-Cookie',
      'X-Auth',
      'XAuthKey',
      // Header names are case-insensitive: the same name in any case.
      'X-AUTHKEY',
      'x-authkey',
      'x-accesskey',
      'X-Key',
      'X-Client-Secret',
    ].map((name): [string, Doc, string] => [
      `a ${name} header`,
      { headers: { [name]: 'v' } },
      `/config/headers/${name}`,
    ]),
    ['a Bearer value in any header', { headers: { 'X-Upstream': 'Bearer leaked-1' } }, '/config/headers/X-Upstream'],
    ['a Basic value in any header', { headers: { 'X-Upstream': 'basic dTpw' } }, '/config/headers/X-Upstream'],
    ['an auth the platform does not know', { auth: 'digest' }, '/config/auth'],
    ['auth "header" without the header', { auth: 'header' }, '/config/secret_header'],
    ['a secret header with auth "bearer"', { secret_header: 'X-Feed-Key' }, '/config/secret_header'],
    ['a secret header that is reserved', { auth: 'header', secret_header: 'Host' }, '/config/secret_header'],
    [
      'a secret header config.headers sends too',
      { auth: 'header', secret_header: 'X-Feed', headers: { 'x-feed': '1' } },
      '/config/secret_header',
    ],
    ...['api_key', 'apiKey', 'access_token', 'key', 'token', 'client-secret', 'sig', 'password'].map(
      (name): [string, Doc, string] => [
        `a ${name} query parameter in the URL`,
        { url: `/metrics?region=eu&${name}=v` }, // after the feed's base (known once it listens)
        '/config/url',
      ],
    ),
    ['auth "query" without the parameter', { auth: 'query' }, '/config/secret_param'],
    [
      'a secret parameter with auth "header"',
      { auth: 'header', secret_header: 'X-K', secret_param: 'k' },
      '/config/secret_param',
    ],
    ['a secret parameter that is no name', { auth: 'query', secret_param: 'a key' }, '/config/secret_param'],
    [
      'a secret parameter the URL sends too',
      { url: '/metrics?appid=1', auth: 'query', secret_param: 'appid' },
      '/config/secret_param',
    ],
  ])('refuses %s (Node would not send it, or the schema bounds it), naming it', async (_n, extra, path) => {
    const url = `${base}${typeof extra.url === 'string' ? extra.url : '/metrics'}`;
    const res = await call('POST', connectors.basePath, {
      name: 'bad header',
      kind: 'http_json',
      config: { pointer: '/data/value', ...extra, url },
    });
    expect([res.status, (res.body.errors as { path: string }[])?.[0]?.path]).toEqual([400, path]);
    const secret = await call('POST', connectors.basePath, {
      name: 'bad secret',
      kind: 'http_json',
      config: { url: `${base}/metrics` },
      secret: 'tok\r\nX-Evil: 1',
    });
    expect([secret.status, (secret.body.errors as { path: string }[])?.[0]?.path]).toEqual([400, '/secret']);
  });

  it('names the credential a URL of config carries in its query, and where it goes instead; keeps the connector as it was', async () => {
    const res = await call('POST', connectors.basePath, {
      name: 'keyed url',
      kind: 'http_json',
      config: { url: `${base}/metrics?region=eu&api_key=sk_live_abc123`, pointer: '/data/value' },
    });
    expect([res.status, res.body.errors]).toEqual([
      400,
      [
        {
          path: '/config/url',
          code: 'credential_in_config',
          message:
            'config.url\'s query parameter "api_key" carries a credential, and every reader of the connector sees config: send its value as the secret, with config.auth "query" and config.secret_param "api_key"',
        },
      ],
    ]);
    expect(res.raw).not.toContain('sk_live_abc123');
    // Parameters that carry none are taken; a PATCH that adds one is refused and changes nothing.
    const plain = `${base}/metrics?region=eu&monkey=1&author=ops&keys=3`;
    const c = await connector({ config: { url: plain, pointer: '/data/value' } });
    expect((c.config as Doc).url).toBe(plain);
    const url = `${connectors.basePath}/${c.id}`;
    const patched = await call('PATCH', url, { config: { url: `${plain}&token=t0k3n`, pointer: '/data/value' } });
    expect([patched.status, (patched.body.errors as { path: string; code: string }[])?.[0]]).toMatchObject([
      400,
      { path: '/config/url', code: 'credential_in_config' },
    ]);
    const after = (await call('GET', url)).body;
    expect([after.version, (after.config as Doc).url]).toEqual([c.version, plain]);
  });

  it('names the credential a header of config carries, and where it goes instead', async () => {
    const res = await call('POST', connectors.basePath, {
      name: 'keyed',
      kind: 'http_json',
      config: { url: `${base}/metrics`, headers: { 'X-Api-Key': 'sk_live_abc123', Accept: 'application/json' } },
    });
    expect([res.status, res.body.errors]).toEqual([
      400,
      [
        {
          path: '/config/headers/X-Api-Key',
          code: 'credential_in_config',
          message:
            '"X-Api-Key" carries a credential, and every reader of the connector sees config: send its value as the secret, with config.auth "header" and config.secret_header "X-Api-Key"',
        },
      ],
    ]);
    // Headers that carry none are taken.
    const plain = {
      Accept: 'application/json',
      'X-Api-Version': '2',
      'User-Agent': 'edm',
      'X-Request-Id': 'r1',
      'X-Author': 'ops',
      'X-Authority': 'eu',
    };
    const taken = await call('POST', connectors.basePath, {
      name: 'plain headers',
      kind: 'http_json',
      config: { url: `${base}/metrics`, headers: { ...plain, 'X-Monkey': 'Basically fine' } },
    });
    expect([taken.status, (taken.body.config as Doc)?.headers]).toEqual([
      201,
      { ...plain, 'X-Monkey': 'Basically fine' },
    ]);
    const basic = await call('POST', connectors.basePath, {
      name: 'basic',
      kind: 'http_json',
      config: { url: `${base}/metrics`, auth: 'basic' },
      secret: 'no-colon',
    });
    expect([basic.status, basic.body.errors]).toEqual([
      400,
      [{ path: '/secret', code: 'invalid_format', message: 'with config.auth "basic" the secret is user:password' }],
    ]);
    const auth = await call('POST', connectors.basePath, {
      name: 'digest',
      kind: 'http_json',
      config: { url: `${base}/metrics`, auth: 'digest' },
    });
    expect([auth.status, auth.body.errors]).toEqual([
      400,
      [
        {
          path: '/config/auth',
          code: 'invalid_enum',
          message: 'config/auth must be one of: bearer, basic, header, query',
        },
      ],
    ]);
    // Settings of http_json only.
    const pg = await call('POST', connectors.basePath, {
      name: 'warehouse',
      kind: 'postgres',
      config: { query: 'select 1', auth: 'basic' },
    });
    expect([pg.status, (pg.body.errors as { path: string; code: string }[])?.[0]]).toMatchObject([
      400,
      { path: '/config/auth', code: 'not_allowed' },
    ]);
  });

  it.each<[string, Doc, string, Record<string, string>]>([
    ['bearer, the default', {}, 'tok-123', { authorization: 'Bearer tok-123' }],
    [
      'basic',
      { auth: 'basic' },
      'report:sümmer:2026',
      { authorization: `Basic ${Buffer.from('report:sümmer:2026').toString('base64')}` },
    ],
    ['header', { auth: 'header', secret_header: 'X-Api-Key' }, 'sk_live_abc123', { 'x-api-key': 'sk_live_abc123' }],
    [
      'header Authorization, as it is',
      { auth: 'header', secret_header: 'Authorization' },
      'Token abc',
      { authorization: 'Token abc' },
    ],
    ['query', { auth: 'query', secret_param: 'api_key' }, 'sk_live_q&1', {}],
  ])('sends the secret as config.auth says (%s), and shows it to no reader', async (_n, settings, secret, sent) => {
    api.state.body = '{"data":{"value":5}}';
    const c = await connector({ config: { url: `${base}/metrics`, pointer: '/data/value', ...settings }, secret });
    api.state.seen.length = 0;
    expect((await sync(c.id as string)).body).toMatchObject({ last_sync_status: 'ok', last_value: 5 });
    expect(api.state.seen).toHaveLength(1);
    expect(api.state.seen[0]).toMatchObject(sent);
    // The secret goes in that header alone (or, for "query", in the URL alone, percent-encoded).
    if (!('authorization' in sent)) expect(api.state.seen[0]?.authorization).toBeUndefined();
    const url = api.state.requests.at(-1)?.url;
    expect(url).toBe(settings.auth === 'query' ? '/metrics?api_key=sk_live_q%261' : '/metrics');
    if (settings.auth === 'query') expect(JSON.stringify(api.state.seen[0])).not.toContain('sk_live_q');
    const readOnly = await t.token({ scope: 'okr:read' });
    const read = await t.call('GET', `${connectors.basePath}/${c.id}`, { token: readOnly });
    expect(read.status).toBe(200);
    expect(read.raw).not.toContain(secret);
    expect(read.body.config).toEqual({ url: `${base}/metrics`, pointer: '/data/value', ...settings });
  });

  it('refuses a postgres secret whose sslmode libpq does not know, and reads one stored so as a failed read', async () => {
    // Read as TLS with no certificate check, a misspelt verify_full would drop the check unsaid.
    for (const sslmode of ['verify_full', 'disabled', 'VERIFY-FULL', '']) {
      const res = await call('POST', connectors.basePath, {
        name: 'warehouse',
        kind: 'postgres',
        config: { query: 'select 1' },
        secret: `postgres://u:pw@db.example.com/app?sslmode=${sslmode}`,
      });
      expect([res.status, res.body.errors], sslmode).toEqual([
        400,
        [
          {
            path: '/secret',
            code: 'invalid_url',
            message: `the secret's sslmode=${sslmode} is none of disable, allow, prefer, require, verify-ca, verify-full`,
          },
        ],
      ]);
    }
    for (const sslmode of ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']) {
      const res = await call('POST', connectors.basePath, {
        name: `warehouse ${sslmode}`,
        kind: 'postgres',
        config: { query: 'select 1' },
        secret: `postgres://u:pw@db.example.com/app?sslmode=${sslmode}`,
      });
      expect(res.status, `${sslmode}: ${JSON.stringify(res.body)}`).toBe(201);
    }
    // Nothing else of the query is read: a parameter there would be dropped unsaid.
    for (const [query, named] of [
      ['?port=6432', '?port'],
      ['?host=/var/run/postgresql&sslmode=disable', '?host'],
      ['?sslrootcert=/etc/ca.pem&sslmode=verify-full&application_name=x', '?sslrootcert, ?application_name'],
    ]) {
      const res = await call('POST', connectors.basePath, {
        name: 'warehouse',
        kind: 'postgres',
        config: { query: 'select 1' },
        secret: `postgres://u:pw@db.example.com/app${query}`,
      });
      expect([res.status, (res.body.errors as { message: string }[])?.[0]?.message], query).toEqual([
        400,
        `the secret's ${named} is not read: a postgres connector takes its host, port, user, password and database from the URL's parts, and sslmode alone from its query`,
      ]);
    }
    const twice = await call('POST', connectors.basePath, {
      name: 'warehouse',
      kind: 'postgres',
      config: { query: 'select 1' },
      secret: 'postgres://u:pw@db.example.com/app?sslmode=require&sslmode=disable',
    });
    expect([twice.status, (twice.body.errors as { message: string }[])?.[0]?.message]).toEqual([
      400,
      "the secret's ?sslmode is given more than once",
    ]);
    // One stored by an earlier build, which did not check it: its read fails, saying why, before any connection.
    const err = await readConnector(
      { kind: 'postgres', config: { query: 'select 1' }, secret: 'postgres://u:pw@127.0.0.1/app?sslmode=verify_full' },
      { allowHosts: ['127.0.0.1'], timeoutMs: 1000 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect((err as Error).message).toBe(
      "the secret's sslmode=verify_full is none of disable, allow, prefer, require, verify-ca, verify-full",
    );
  });

  it('refuses a postgres secret whose %-escapes do not decode, and reads one stored so as a failed read', async () => {
    const bad = await call('POST', connectors.basePath, {
      name: 'warehouse',
      kind: 'postgres',
      config: { query: 'select 1' },
      secret: 'postgres://u:%ZZ@1.1.1.1/db',
    });
    expect([bad.status, (bad.body.errors as { path: string }[])?.[0]?.path]).toEqual([400, '/secret']);
    // It says which part, and how to write a literal %, never the secret itself.
    for (const [secret, part] of [
      ['postgres://a:%zz@h/db', 'password'],
      ['postgres://%zz:pw@h/db', 'user'],
      ['postgres://a:b@h/%zz', 'database name'],
      // A URL of this scheme keeps its host's escapes as written: decoded as libpq does, checked too.
      ['postgres://db%zz.example.com/app', 'host'],
      ['postgres://%zz', 'host'],
    ]) {
      const res = await call('POST', connectors.basePath, {
        name: 'warehouse',
        kind: 'postgres',
        config: { query: 'select 1' },
        secret,
      });
      expect([res.status, res.body.errors]).toEqual([
        400,
        [
          {
            path: '/secret',
            code: 'invalid_url',
            message: `the secret's ${part} has a malformed percent-escape: write a literal % as %25`,
          },
        ],
      ]);
    }
    // A change of the secret alone is checked the same way, and leaves the stored one.
    const good = await call('POST', connectors.basePath, {
      name: 'warehouse',
      kind: 'postgres',
      config: { query: 'select 1' },
      secret: 'postgres://u@db.example.com/app',
    });
    expect(good.status, JSON.stringify(good.body)).toBe(201);
    const patched = await call('PATCH', `${connectors.basePath}/${good.body.id}`, {
      secret: 'postgres://exa%zzmple.com/db',
    });
    expect([patched.status, (patched.body.errors as { path: string }[])?.[0]?.path]).toEqual([400, '/secret']);
    const kept = await call('GET', `${connectors.basePath}/${good.body.id}`);
    expect(kept.body.version).toBe(good.body.version);
    const err = await readConnector(
      { kind: 'postgres', config: { query: 'select 1' }, secret: 'postgres://1.1.1.1/%E0%A4%A' },
      { allowHosts: [], timeoutMs: 1000 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
  });

  it('takes a rename of a connector stored under earlier rules (a header now refused, left as it is)', async () => {
    const c = await connector();
    const row = (await storedRow(t, connectors, c.id as string)) as Record<string, unknown>;
    const config = { url: `${base}/metrics`, pointer: '/data/value', headers: { Connection: 'close' } };
    const doc = JSON.parse(String(row._doc));
    doc.config = config;
    await t.store.db
      .updateTable(connectors.table)
      .set({ config: t.store.encode(connectors.allFields.config, config) as string, _doc: JSON.stringify(doc) })
      .where('id', '=', c.id as string)
      .execute();
    const renamed = await call('PATCH', `${connectors.basePath}/${c.id}`, { name: 'renamed' });
    expect([renamed.status, renamed.body.name]).toEqual([200, 'renamed']);
    const headers = await call('PATCH', `${connectors.basePath}/${c.id}`, { config: { headers: { Upgrade: 'x' } } });
    expect(headers.status).toBe(400);
  });

  it('records no value read under settings changed meanwhile: the sync is 409, the change syncs on its own', async () => {
    api.state.body = '{"data":{"value":77}}';
    const c = await connector();
    const before = (await get(`${connectors.basePath}/${c.id}`)) as Doc;
    let release: () => void = () => {};
    api.state.hold = new Promise((r) => {
      release = r;
    });
    api.state.requests.length = 0;
    const syncing = sync(c.id as string);
    for (let i = 0; i < 500 && api.state.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const moved = await call('PATCH', `${connectors.basePath}/${c.id}`, { config: { url: `${base}/elsewhere` } });
    expect(moved.status).toBe(200);
    release();
    api.state.hold = null;
    const res = await syncing;
    expect([res.status, res.body.code]).toEqual([409, 'version_conflict']);
    const now = (await get(`${connectors.basePath}/${c.id}`)) as Doc;
    expect([now.last_value, now.last_sync_at]).toEqual([before.last_value, before.last_sync_at]);
  });

  it('of two syncs that overlap, the later read stands: an earlier read that commits last records nothing', async () => {
    api.state.body = '{"data":{"value":10}}';
    const c = await connector();
    const k = await fed(c.id as string);
    let release: () => void = () => {};
    api.state.hold = new Promise((r) => {
      release = r;
    });
    api.state.requests.length = 0;
    const earlier = sync(c.id as string); // reads 10, answered late
    for (let i = 0; i < 500 && api.state.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(api.state.requests).toHaveLength(1);
    api.state.hold = null;
    api.state.body = '{"data":{"value":20}}';
    t.clock.advance(1000);
    const later = await sync(c.id as string); // reads 20, records first
    expect([later.status, later.body.last_value]).toEqual([200, 20]);
    release();
    const stale = await earlier;
    // Answered with the connector as the later sync left it: 10 is older news.
    expect([stale.status, stale.body.last_value, stale.body.version]).toEqual([200, 20, later.body.version]);
    const now = (await get(`${kr.basePath}/${k.id}`)) as Doc;
    expect(now.current).toBe(20);
    const log = (await get(`${kr.basePath}/${k.id}/check-ins?limit=10`)) as { data: Doc[] };
    expect(log.data.map((s) => s.value)).toEqual([20, 0]); // newest first: the sync's, then the create's
    expect((await get(`${connectors.basePath}/${c.id}`)) as Doc).toMatchObject({
      last_value: 20,
      last_sync_status: 'ok',
      version: later.body.version,
    });
  });

  // Read times are milliseconds: two reads of one millisecond cannot be told apart, so the one
  // that commits second records nothing (it could be the older one: a value never goes back).
  it('of two syncs that read in the same millisecond, the one that commits first stands', async () => {
    api.state.body = '{"data":{"value":10}}';
    const c = await connector();
    const k = await fed(c.id as string);
    t.clock.advance(1000);
    let release: () => void = () => {};
    api.state.hold = new Promise((r) => {
      release = r;
    });
    api.state.requests.length = 0;
    const first = sync(c.id as string); // reads 10, answered late
    for (let i = 0; i < 500 && api.state.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(api.state.requests).toHaveLength(1);
    api.state.hold = null;
    api.state.body = '{"data":{"value":20}}';
    const second = await sync(c.id as string); // same millisecond, reads 20, records first
    expect([second.status, second.body.last_value]).toEqual([200, 20]);
    release();
    const tied = await first;
    expect([tied.status, tied.body.last_value, tied.body.version]).toEqual([200, 20, second.body.version]);
    expect(((await get(`${kr.basePath}/${k.id}`)) as Doc).current).toBe(20);
  });

  it("a scheduled sync whose read came before a sync now's records nothing when it commits after it", async () => {
    api.state.body = '{"data":{"value":10}}';
    await t.app.engine.runJob(connectorSyncJob); // the connectors of other tests that are due: read now, not held
    const c = await connector({ config: { url: `${base}/metrics?scheduled`, pointer: '/data/value' } });
    const k = await fed(c.id as string);
    let release: () => void = () => {};
    api.state.hold = new Promise((r) => {
      release = r;
    });
    api.state.requests.length = 0;
    const scheduled = t.app.engine.runJob(connectorSyncJob); // due at once after create: reads 10
    const read = () => api.state.requests.some((r) => r.url === '/metrics?scheduled');
    for (let i = 0; i < 300 && !read(); i++) await new Promise((r) => setTimeout(r, 10));
    api.state.hold = null;
    if (!read()) release();
    expect(read()).toBe(true);
    api.state.body = '{"data":{"value":20}}';
    t.clock.advance(1000);
    const now = await sync(c.id as string);
    expect([now.status, now.body.last_value]).toEqual([200, 20]);
    release();
    await scheduled;
    expect(((await get(`${kr.basePath}/${k.id}`)) as Doc).current).toBe(20);
    expect((await get(`${connectors.basePath}/${c.id}`)) as Doc).toMatchObject({
      last_value: 20,
      version: now.body.version,
    });
  });

  it('answers a PATCH naming a connector id with U+0000 as any bad body: after 404 and 412, naming the field', async () => {
    const body = { data_source: 'connector', connector_id: 'con_\u0000' };
    const missing = await call('PATCH', `${kr.basePath}/kr_01ARZ3NDEKTSV4RRFFQ69G5FAV`, body);
    expect(missing.status).toBe(404);
    const k = await fed((await connector()).id as string);
    const stale = await t.call('PATCH', `${kr.basePath}/${k.id}`, { token, body, headers: { 'if-match': '"9"' } });
    expect(stale.status).toBe(412);
    const bad = await call('PATCH', `${kr.basePath}/${k.id}`, body);
    expect([bad.status, (bad.body.errors as { path: string }[])?.[0]?.path]).toEqual([400, '/connector_id']);
  });

  it('keeps the secret out of last_error where the feed echoes it at the pointer', async () => {
    // A feed that answers its request's Authorization header where the value should be.
    // Its text is cut to 40 characters in a failure: masked first, no part of the secret stays.
    api.state.body = '{"data":{"value":"as the feed saw it: Bearer hunter2-topsecret"}}';
    const c = await connector({ secret: 'hunter2-topsecret' });
    const res = await sync(c.id as string);
    expect(res.body.last_sync_status).toBe('error');
    expect(res.body.last_error).not.toContain('hunter2');
    expect(res.body.last_error).toContain('as the feed saw it: Bearer [secret]');
    // A reader sees what a writer sees.
    const reader = await t.token({ scope: 'okr:read' });
    const read = await t.call('GET', `${connectors.basePath}/${c.id}`, { token: reader });
    expect(read.raw).not.toContain('hunter2');
  });

  it('keeps a basic secret out of last_error where the feed echoes its header, base64-encoded', async () => {
    const sent = `Basic ${Buffer.from('alice:Sup3rS3cret').toString('base64')}`;
    api.state.body = JSON.stringify({ data: { value: sent } });
    const c = await connector({
      config: { url: `${base}/metrics`, pointer: '/data/value', auth: 'basic' },
      secret: 'alice:Sup3rS3cret',
    });
    const res = await sync(c.id as string);
    expect(res.body.last_error).toBe('the value at "/data/value" is "Basic [secret]", not a number');
    expect(res.raw).not.toContain(sent.slice(6, 14));
  });

  it.each([
    ['a token', 'Bearer tok-12345 refused', 'tok-12345', 'Bearer [secret] refused'],
    [
      'a postgres URL, whole',
      'no server at postgres://u:pw%40x1@db/x',
      'postgres://u:pw%40x1@db/x',
      'no server at [secret]',
    ],
    ['its password, as sent', 'password "pw@x1" rejected', 'postgres://u:pw%40x1@db/x', 'password "[secret]" rejected'],
    ['its password, escaped', 'saw pw%40x1', 'postgres://u:pw%40x1@db/x', 'saw [secret]'],
    // config.auth "basic" sends user:password base64-encoded: echoed so, or decoded, or the password alone.
    [
      'a basic secret, as sent',
      `is "Basic ${Buffer.from('alice:Sup3rS3cret').toString('base64')}"`,
      'alice:Sup3rS3cret',
      'is "Basic [secret]"',
    ],
    ['a basic secret, whole', 'saw alice:Sup3rS3cret', 'alice:Sup3rS3cret', 'saw [secret]'],
    ['a basic secret, its password', 'password Sup3rS3cret refused', 'alice:Sup3rS3cret', 'password [secret] refused'],
    // config.auth "query" sends it percent-encoded in the URL: echoed so.
    ['a query secret, as sent', 'no such key: sk%2Bq%26+1', 'sk+q& 1', 'no such key: [secret]'],
    ['no secret', 'Bearer tok-12345 refused', null, 'Bearer tok-12345 refused'],
    ['a part under 4 characters', 'a b c', 'postgres://u:b@db/x', 'a b c'],
  ])('takes %s out of a failure', (_, message, secret, expected) => {
    expect(withoutSecret(message, secret)).toBe(expected);
  });

  it('drops the secret when the kind or any setting changes, unless the same write sends one', async () => {
    api.state.body = '{"data":{"value":3}}';
    const c = await connector({ secret: 'first-token' });
    api.state.requests.length = 0;
    await sync(c.id as string);
    expect(api.state.requests.map((r) => r.authorization)).toEqual(['Bearer first-token']);
    // Another URL (here the same server under another path): the secret stays behind.
    const moved = await call('PATCH', `${connectors.basePath}/${c.id}`, { config: { url: `${base}/elsewhere` } });
    expect(moved.status).toBe(200);
    await sync(c.id as string);
    expect(api.state.requests.at(-1)?.authorization).toBeUndefined();
    // A new URL with a new secret: that one is sent; a rename keeps it.
    await call('PATCH', `${connectors.basePath}/${c.id}`, { config: { url: `${base}/metrics` }, secret: 'second' });
    await call('PATCH', `${connectors.basePath}/${c.id}`, { name: 'renamed' });
    await sync(c.id as string);
    expect(api.state.requests.at(-1)?.authorization).toBe('Bearer second');
    // Another pointer or another header drops it too: else an editor could have the feed's
    // answer (one that shows the request's headers) echo the secret into last_error.
    for (const config of [{ pointer: '/headers/authorization' }, { headers: { 'x-probe': '1' } }]) {
      await call('PATCH', `${connectors.basePath}/${c.id}`, { secret: 'third' });
      const changed = await call('PATCH', `${connectors.basePath}/${c.id}`, { config });
      expect(changed.status, changed.raw).toBe(200);
      await sync(c.id as string);
      expect(api.state.requests.at(-1)?.authorization).toBeUndefined();
    }
    // A webhook connector uses none: one sent is 400 naming it, on create and on a change of kind.
    const hook = await call('POST', connectors.basePath, { name: 'w', kind: 'webhook', config: {}, secret: 'x' });
    expect([hook.status, (hook.body.errors as Doc[])?.map((e) => e.path)]).toEqual([400, ['/secret']]);
    const turned = await call('PATCH', `${connectors.basePath}/${c.id}`, {
      kind: 'webhook',
      config: null,
      interval_seconds: null,
      secret: 'x',
    });
    expect([turned.status, (turned.body.errors as Doc[])?.map((e) => e.path)]).toEqual([400, ['/secret']]);
    const plain = await call('PATCH', `${connectors.basePath}/${c.id}`, {
      kind: 'webhook',
      config: null,
      interval_seconds: null,
    });
    expect([plain.status, plain.body.kind]).toEqual([200, 'webhook']);
  });

  it('refuses loopback and private addresses unless EDM_CONNECTOR_ALLOW_HOSTS names them', async () => {
    const strict = await testApp(kind);
    try {
      const tok = await strict.token();
      const c = await strict.call('POST', connectors.basePath, {
        token: tok,
        body: { name: 'x', kind: 'http_json', config: { url: `${base}/metrics` } },
      });
      api.state.requests.length = 0;
      const res = await strict.call('POST', `${connectors.basePath}/${c.body.id}/sync`, { token: tok });
      expect(res.body.last_sync_status).toBe('error');
      // Which address is not said: every reader of the tenant sees last_error.
      expect(res.body.last_error).toMatch(
        /^127\.0\.0\.1 resolves to a private, loopback, link-local or metadata address/,
      );
      expect(api.state.requests).toEqual([]);
    } finally {
      await strict.close();
    }
  });

  it('syncs on its schedule: at once after create, then every interval_seconds', async () => {
    api.state.body = '{"data":{"value":7}}';
    const c = await connector({ interval_seconds: 600 });
    const a = await fed(c.id as string);
    expect(await t.app.engine.runJob(connectorSyncJob)).toBeGreaterThanOrEqual(1);
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(7);
    api.state.body = '{"data":{"value":8}}';
    t.clock.advance(599_000);
    await t.app.engine.runJob(connectorSyncJob);
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(7);
    t.clock.advance(2_000);
    await t.app.engine.runJob(connectorSyncJob);
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(8);
  });

  it('keeps to its interval: a run that reads it late does not push the syncs after it later', async () => {
    api.state.body = '{"data":{"value":1}}';
    const c = await connector({ interval_seconds: 600 });
    const a = await fed(c.id as string);
    await t.app.engine.runJob(connectorSyncJob); // at create: the count starts here
    const current = async () => (await get(`${kr.basePath}/${a.id}`)).current;
    const syncAt = async (advanceMs: number, value: number) => {
      api.state.body = `{"data":{"value":${value}}}`;
      t.clock.advance(advanceMs);
      await t.app.engine.runJob(connectorSyncJob);
      return current();
    };
    // Read 14 s late (the job runs every 15 s): the next is due 600 s after the slot, not after the read.
    expect(await syncAt(614_000, 2)).toBe(2);
    expect(await syncAt(585_000, 3)).toBe(2);
    expect(await syncAt(1_000, 3)).toBe(3);
    // Down for three intervals and a half: one read, then the count goes on from the missed slots.
    expect(await syncAt(2_100_000, 4)).toBe(4);
    expect(await syncAt(299_000, 5)).toBe(4);
    expect(await syncAt(1_000, 5)).toBe(5);
  });

  // A client that sends back what it read (a form's whole object) changed nothing: no read now.
  it('reads again after a change of settings, not after a rename that sends config back as it was', async () => {
    api.state.body = '{"data":{"value":7}}';
    const c = await connector({
      interval_seconds: 600,
      config: { url: `${base}/metrics?resend`, pointer: '/data/value' },
    });
    await t.app.engine.runJob(connectorSyncJob);
    const reads = () => api.state.requests.filter((r) => r.url === '/metrics?resend').length;
    expect(reads()).toBe(1);
    const url = `${connectors.basePath}/${c.id}`;
    const read = (await call('GET', url)).body;
    const renamed = await call('PATCH', url, { name: 'resent', config: read.config, interval_seconds: 600 });
    expect([renamed.status, renamed.body.version]).toEqual([200, (read.version as number) + 1]);
    await t.app.engine.runJob(connectorSyncJob);
    expect(reads()).toBe(1);
    expect((await call('GET', url)).body.version).toBe(renamed.body.version);
    // Another setting: read at once.
    await call('PATCH', url, { config: { ...(read.config as Doc), pointer: '/data' } });
    await t.app.engine.runJob(connectorSyncJob);
    expect(reads()).toBe(2);
  });

  it('claims each due row once: of two runs of the schedule at the same time, one reads each connector', async () => {
    api.state.body = '{"data":{"value":4}}';
    const c = await connector({ name: 'claimed once' });
    api.state.requests.length = 0;
    const [first, second] = await Promise.all([
      t.app.engine.runJob(connectorSyncJob),
      t.app.engine.runJob(connectorSyncJob),
    ]);
    expect(first + second).toBeGreaterThanOrEqual(1);
    expect(api.state.requests.filter((r) => r.url === '/metrics')).toHaveLength(1);
    expect(await get(`${connectors.basePath}/${c.id}`)).toMatchObject({ last_value: 4, version: 2 });
  });

  it("leases a claimed connector from its claim, not from the run's start: a long run leaves no claim already out", async () => {
    await t.app.engine.runJob(connectorSyncJob); // the connectors of other tests that are due: read now
    const feeds: Doc[] = [];
    for (let i = 0; i < 5; i++) {
      feeds.push(
        await connector({ name: `lease ${i}`, config: { url: `${base}/metrics?lease${i}`, pointer: '/data/value' } }),
      );
    }
    const release: (() => void)[] = [];
    const hold = () => {
      api.state.hold = new Promise<void>((r) => release.push(r));
    };
    const arrived = () => api.state.requests.filter((r) => r.url.startsWith('/metrics?lease')).length;
    const until = async (n: number) => {
      for (let i = 0; i < 500 && arrived() < n; i++) await new Promise((r) => setTimeout(r, 10));
      expect(arrived()).toBe(n);
    };
    api.state.requests.length = 0;
    hold();
    const run = t.app.engine.runJob(connectorSyncJob); // four at a time: the fifth is claimed after them
    const leaseOf = async (id: string) => {
      const [row] = await t.store.db
        .selectFrom('okr_connector_schedule')
        .select('due_at')
        .where('connector_id', '=', id)
        .execute();
      return Date.parse(String(row.due_at));
    };
    const read = (n: number) =>
      feeds.filter((f) =>
        api.state.requests.slice(0, n).some((r) => ((f.config as Doc).url as string).endsWith(r.url)),
      );
    try {
      await until(4);
      const first = await leaseOf(read(4)[0]?.id as string);
      t.clock.advance(14_000); // the first four reads took long, within the run's 15 s of new reads
      hold();
      release[0]();
      await until(5);
      const fifth = feeds.find((f) => !read(4).includes(f));
      expect(fifth).toBeDefined();
      // Its lease runs from its claim: another process's run would not read it a second time
      // before the lease the first four took runs out, 14 s earlier.
      expect((await leaseOf(fifth?.id as string)) - first).toBe(14_000);
    } finally {
      api.state.hold = null;
      for (const r of release) r();
      await run;
    }
  });

  it('takes new reads for one interval of the job (15 s): what is left is due still, and read by the next run', async () => {
    await t.app.engine.runJob(connectorSyncJob); // the connectors of other tests that are due: read now
    for (let i = 0; i < 6; i++) {
      await connector({ name: `budget ${i}`, config: { url: `${base}/metrics?budget${i}`, pointer: '/data/value' } });
    }
    const arrived = () => api.state.requests.filter((r) => r.url.startsWith('/metrics?budget')).length;
    let release: () => void = () => {};
    api.state.hold = new Promise<void>((r) => {
      release = r;
    });
    api.state.requests.length = 0;
    const run = t.app.engine.runJob(connectorSyncJob);
    try {
      for (let i = 0; i < 500 && arrived() < 4; i++) await new Promise((r) => setTimeout(r, 10));
      expect(arrived()).toBe(4);
      t.clock.advance(15_000); // the four reads took the run's whole interval
    } finally {
      api.state.hold = null;
      release();
    }
    expect(await run).toBe(4);
    expect(arrived()).toBe(4);
    expect(await t.app.engine.runJob(connectorSyncJob)).toBe(2);
    expect(arrived()).toBe(6);
  });

  it("shares a run out by tenant: another tenant's due connector is read among the first, not after one tenant's backlog", async () => {
    await t.app.engine.runJob(connectorSyncJob); // the connectors of other tests that are due: read now
    for (let i = 0; i < 6; i++) {
      await connector({ name: `backlog ${i}`, config: { url: `${base}/metrics?backlog${i}`, pointer: '/data/value' } });
      t.clock.advance(1); // due one after the other
    }
    const other = await t.call('POST', connectors.basePath, {
      token: await t.token({ tenant: 'fair-share' }),
      body: { name: 'theirs', kind: 'http_json', config: { url: `${base}/metrics?theirs`, pointer: '/data/value' } },
    });
    expect(other.status, other.raw).toBe(201);
    const arrived = () =>
      api.state.requests.filter((r) => /^\/metrics\?(backlog|theirs)/.test(r.url)).map((r) => r.url);
    let release: () => void = () => {};
    api.state.hold = new Promise<void>((r) => {
      release = r;
    });
    api.state.requests.length = 0;
    const run = t.app.engine.runJob(connectorSyncJob); // four at a time
    try {
      for (let i = 0; i < 500 && arrived().length < 4; i++) await new Promise((r) => setTimeout(r, 10));
      expect(arrived()).toHaveLength(4);
      expect(arrived()).toContain('/metrics?theirs');
    } finally {
      api.state.hold = null;
      release();
    }
    expect(await run).toBe(7);
  });

  it('reads a connector that comes due during a run in that run, before the backlog of a tenant it is reading', async () => {
    await t.app.engine.runJob(connectorSyncJob); // the connectors of other tests that are due: read now
    for (let i = 0; i < 8; i++) {
      await connector({ name: `queue ${i}`, config: { url: `${base}/metrics?queue${i}`, pointer: '/data/value' } });
    }
    const arrived = () => api.state.requests.filter((r) => /^\/metrics\?(queue|late)/.test(r.url)).map((r) => r.url);
    const until = async (n: number) => {
      for (let i = 0; i < 500 && arrived().length < n; i++) await new Promise((r) => setTimeout(r, 10));
      expect(arrived()).toHaveLength(n);
    };
    api.state.holdEach = true;
    api.state.releases.length = 0;
    api.state.requests.length = 0;
    const run = t.app.engine.runJob(connectorSyncJob); // four at a time
    try {
      await until(4);
      t.clock.advance(1000); // the run looks for rows that came due once a second
      const late = await t.call('POST', connectors.basePath, {
        token: await t.token({ tenant: 'came-due' }),
        body: { name: 'late', kind: 'http_json', config: { url: `${base}/metrics?late`, pointer: '/data/value' } },
      });
      expect(late.status, late.raw).toBe(201);
      // One reader is free: of the due rows (that tenant's fifth, due first, and the late one), it
      // takes the one of the tenant with no read under way.
      api.state.releases.shift()?.();
      await until(5);
      expect(arrived()[4]).toBe('/metrics?late');
    } finally {
      api.state.holdEach = false;
      for (const release of api.state.releases.splice(0)) release();
    }
    // The rest, released as they come.
    for (let i = 0; i < 100 && arrived().length < 9; i++) {
      for (const release of api.state.releases.splice(0)) release();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await run).toBe(9);
  });

  it('reads several due connectors per run, a few at a time, and records each', async () => {
    api.state.body = '{"data":{"value":3}}';
    const many = await Promise.all(Array.from({ length: 6 }, (_, i) => connector({ name: `feed ${i}` })));
    expect(await t.app.engine.runJob(connectorSyncJob)).toBeGreaterThanOrEqual(6);
    for (const c of many) {
      expect(await get(`${connectors.basePath}/${c.id}`)).toMatchObject({ last_sync_status: 'ok', last_value: 3 });
    }
  });

  it('guards the key results it feeds: a live connector (422), no values from clients (409), no delete under them (409)', async () => {
    const c = await connector();
    const missing = await call('POST', kr.basePath, {
      objective_id: objectiveId,
      title: 'x',
      target: 1,
      data_source: 'connector',
      connector_id: 'con_01ARZ3NDEKTSV4RRFFQ69G5FAV',
    });
    expect(missing.status).toBe(422);
    expect(missing.body.errors).toEqual([expect.objectContaining({ path: '/connector_id' })]);
    const a = await fed(c.id as string);
    expect((await call('PATCH', `${kr.basePath}/${a.id}`, { current: 3 })).status).toBe(409);
    // Its current sent back as it was read (a read-modify-write) is no value of the caller's.
    const renamed = await call('PATCH', `${kr.basePath}/${a.id}`, { title: 'renamed', current: a.current });
    expect([renamed.status, renamed.body.current]).toEqual([200, a.current]);
    // A manual key result turned into a fed one is given no current, as on a create (400, not 409).
    const plain = await call('POST', kr.basePath, { objective_id: objectiveId, title: 'plain', target: 1 });
    const turned = await call('PATCH', `${kr.basePath}/${plain.body.id}`, {
      data_source: 'connector',
      connector_id: c.id,
      current: 5,
    });
    expect([turned.status, turned.body.errors]).toEqual([
      400,
      [{ path: '/current', code: 'not_allowed', message: 'current comes from the connector' }],
    ]);
    // The state's 409 comes before a reference's 422 (PRODUCT.md's check order).
    const both = await call('PATCH', `${kr.basePath}/${a.id}`, {
      current: 3,
      objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV',
    });
    expect([both.status, both.body.code]).toEqual([409, 'not_manual']);
    expect((await call('POST', `${kr.basePath}/${a.id}/check-ins`, { value: 3 })).status).toBe(409);

    const refused = await call('DELETE', `${connectors.basePath}/${c.id}`);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'has_dependents', dependents: { 'key-results': 1 } });
    // It does not own them: ?cascade=true deletes nothing of theirs, and is refused the same.
    expect((await call('DELETE', `${connectors.basePath}/${c.id}?cascade=true`)).body.code).toBe('has_dependents');
    expect((await get(`${connectors.basePath}/${c.id}`)).is_deleted).toBe(false);
    expect((await get(`${kr.basePath}/${a.id}`)).is_deleted).toBe(false);
    const manual = await call('PATCH', `${kr.basePath}/${a.id}`, { data_source: 'manual', connector_id: null });
    expect(manual.status).toBe(200);
    expect((await call('DELETE', `${connectors.basePath}/${c.id}`)).status).toBe(200);
    expect((await sync(c.id as string)).status).toBe(409);
    // A key result deleted while fed, its connector deleted since: restoring it is 409 until the connector is back.
    const c2 = await connector();
    const b = await fed(c2.id as string);
    expect((await call('DELETE', `${kr.basePath}/${b.id}`)).status).toBe(200);
    expect((await call('DELETE', `${connectors.basePath}/${c2.id}`)).status).toBe(200);
    const refusedRestore = await call('POST', `${kr.basePath}/${b.id}/restore`);
    expect([refusedRestore.status, refusedRestore.body.code]).toEqual([409, 'parent_deleted']);
    expect((await get(`${kr.basePath}/${b.id}`)).is_deleted).toBe(true);
    expect((await call('POST', `${connectors.basePath}/${c2.id}/restore`)).status).toBe(200);
    expect((await call('POST', `${kr.basePath}/${b.id}/restore`)).status).toBe(200);
  });

  it('a restored key result that a connector feeds takes the value the connector read while it was deleted', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Pushed while deleted' });
    const push = (value: number) =>
      t.app.inject({ method: 'POST', url: hook.webhook_url as string, payload: { value } });
    expect((await push(10)).statusCode).toBe(200);
    const a = await fed(hook.id as string);
    expect(a.current).toBe(10);
    expect((await call('DELETE', `${kr.basePath}/${a.id}`)).status).toBe(200);
    expect((await push(50)).statusCode).toBe(200);
    const back = await call('POST', `${kr.basePath}/${a.id}/restore`);
    expect(back.status, back.raw).toBe(200);
    expect(back.body).toMatchObject({ current: 50, progress_pct: 50 });
    // The connector's reading, as a sync records one: the platform's, not the restorer's.
    expect((back.body.history as Doc[]).at(-1)).toMatchObject({ value: 50, by: 'system', source_type: 'system' });
    expect(await get(`${kr.basePath}/${a.id}`)).toEqual(back.body);
  });

  // Changing EDM_SECRET_KEY leaves secrets sealed under the old one: they read as never given, so
  // the connector can still be edited, be given a new secret or be deleted (each was a 500).
  it('reads a secret sealed under another server secret as none, and its next write clears it', async () => {
    const c = await connector({ name: 'Sealed under the old key' });
    const url = `${connectors.basePath}/${c.id}`;
    const rekeyed = await buildApp({
      config: testConfig({
        secretKey: new TextEncoder().encode('another-server-secret-0123456789abcdef'),
        connectorAllowHosts: ['127.0.0.1'],
      }),
      store: t.store,
      clock: t.clock,
      migrate: false,
      runJobs: false,
    });
    try {
      const as = (method: string, path: string, body?: unknown) => injectAs(rekeyed, token, method, path, { body });
      expect((await as('GET', url)).status).toBe(200);
      api.state.requests.length = 0;
      const sync = await as('POST', `${url}/sync`);
      expect([sync.status, sync.body.last_sync_status]).toEqual([200, 'ok']);
      expect(api.state.requests).toEqual([{ url: '/metrics', authorization: undefined }]);
      // The platform's own write (the sync's) erases nothing: a server with the wrong key running
      // its background syncs would otherwise wipe every secret it cannot read.
      expect((await storedRow(t, connectors, c.id as string))?.secret).toMatch(/^sealed:v1:/);
      const renamed = await as('PATCH', url, { name: 'Renamed' });
      expect([renamed.status, renamed.body.name]).toEqual([200, 'Renamed']);
      expect((await storedRow(t, connectors, c.id as string))?.secret).toBeNull();
      expect((await as('PATCH', url, { secret: 'new-token' })).status).toBe(200);
      api.state.requests.length = 0;
      expect((await as('POST', `${url}/sync`)).status).toBe(200);
      expect(api.state.requests).toEqual([{ url: '/metrics', authorization: 'Bearer new-token' }]);
      expect((await as('DELETE', url)).status).toBe(200);
    } finally {
      await rekeyed.close();
    }
  });

  it('webhook: rotating its URL answers a new one and refuses the old one (401) from then on', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Rotated' });
    const push = (url: unknown, value: number) =>
      t.app.inject({ method: 'POST', url: url as string, payload: { value } });
    const rotate = () => call('POST', `${connectors.basePath}/${hook.id}/rotate-webhook-url`);
    expect((await push(hook.webhook_url, 1)).statusCode).toBe(200);
    const rotated = await rotate();
    expect(rotated.status, rotated.raw).toBe(200);
    expect(rotated.body.webhook_url).toMatch(/&signature=1\.[A-Za-z0-9_-]{43}$/);
    const old = await push(hook.webhook_url, 2);
    expect([old.statusCode, old.json().code]).toEqual([401, 'invalid_token']);
    expect((await push(rotated.body.webhook_url, 3)).json()).toMatchObject({ last_value: 3 });
    const twice = await rotate();
    expect((await push(rotated.body.webhook_url, 4)).statusCode).toBe(401);
    expect((await push(twice.body.webhook_url, 5)).statusCode).toBe(200);
    // The generation is signed too: another one with the same signature is a forgery.
    const forged = (twice.body.webhook_url as string).replace('signature=2.', 'signature=9.');
    expect((await push(forged, 6)).statusCode).toBe(401);
    // A replaced URL is refused before anything else: its extra parameter is not looked at, and
    // its Idempotency-Key is not taken from the tenant's people (who may use the same key).
    expect((await push(`${rotated.body.webhook_url}&x=1`, 7)).statusCode).toBe(401);
    const keyed = await t.app.inject({
      method: 'POST',
      url: rotated.body.webhook_url as string,
      payload: { value: 8 },
      headers: { 'idempotency-key': `shared-${kind}` },
    });
    expect(keyed.statusCode).toBe(401);
    const person = await t.call('POST', byName('Cycle').basePath, {
      token,
      body: { name: 'Q1', start_date: '2026-01-01', end_date: '2026-03-31' },
      headers: { 'idempotency-key': `shared-${kind}` },
    });
    expect(person.status, person.raw).toBe(201);
    // A signature moved to a tenant or id holding U+0000, which could spell another message: 401.
    const mac = (twice.body.webhook_url as string).split('signature=2.')[1];
    const moved = `${connectors.basePath}/1/webhook?tenant_id=acme%00${hook.id}%002&signature=${mac}`;
    expect((await push(moved, 9)).statusCode).toBe(401);
    expect((await get(`${connectors.basePath}/${hook.id}`)).webhook_url).toBe(twice.body.webhook_url);
    expect(await get(`${connectors.basePath}/${hook.id}`)).toMatchObject({ last_value: 5 });
    // Only a webhook has a URL to replace, and only a caller who may write replaces it.
    const pulled = await connector();
    const other = await call('POST', `${connectors.basePath}/${pulled.id}/rotate-webhook-url`);
    expect([other.status, other.body.code]).toEqual([409, 'not_webhook']);
    expect(await get(`${connectors.basePath}/${pulled.id}`)).toEqual(pulled);
    const reader = await t.token({ scope: 'okr:read' });
    const refused = await t.call('POST', `${connectors.basePath}/${hook.id}/rotate-webhook-url`, { token: reader });
    expect(refused.status).toBe(403);
  });

  it('webhook: each push is recorded in the order pushes take the connector, whenever its transaction began', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Pushed in order' });
    const k = await fed(hook.id as string);
    const push = (value: number) =>
      t.app.inject({ method: 'POST', url: hook.webhook_url as string, payload: { value } });
    expect((await push(1)).json()).toMatchObject({ last_value: 1 });
    // A push whose transaction began before the last one recorded (as one that waited for the
    // connector's lock behind it): news as it arrives, not an older reading.
    t.clock.advance(-1000);
    try {
      expect((await push(2)).json()).toMatchObject({ last_value: 2 });
    } finally {
      t.clock.advance(1000);
    }
    expect(((await get(`${kr.basePath}/${k.id}`)) as Doc).current).toBe(2);
    expect((await push(3)).json()).toMatchObject({ last_value: 3 });
  });

  it('webhook: a connector turned into a webhook again gets a new URL; the one it had before is refused', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Switched' });
    const push = (url: unknown, value: number) =>
      t.app.inject({ method: 'POST', url: url as string, payload: { value } });
    expect((await push(hook.webhook_url, 1)).statusCode).toBe(200);
    const pulled = await call('PATCH', `${connectors.basePath}/${hook.id}`, {
      kind: 'http_json',
      config: { url: `${base}/metrics`, pointer: '/data/value' },
    });
    expect([pulled.status, pulled.body.webhook_url]).toEqual([200, null]);
    expect((await push(hook.webhook_url, 2)).statusCode).toBe(404); // not a webhook now
    const again = await call('PATCH', `${connectors.basePath}/${hook.id}`, {
      kind: 'webhook',
      config: { url: null, pointer: null },
    });
    expect(again.status, again.raw).toBe(200);
    expect(again.body.webhook_url).toMatch(/&signature=1\.[A-Za-z0-9_-]{43}$/);
    const old = await push(hook.webhook_url, 3);
    expect([old.statusCode, old.json().code]).toEqual([401, 'invalid_token']);
    expect((await push(again.body.webhook_url, 4)).json()).toMatchObject({ last_value: 4 });
    // A write that keeps it a webhook keeps its URL.
    const renamed = await call('PATCH', `${connectors.basePath}/${hook.id}`, { name: 'Switched back' });
    expect(renamed.body.webhook_url).toBe(again.body.webhook_url);
  });

  it('webhook: its signed URL (a credential) is answered to callers who may write, null to read-only tokens', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Read-only probe' });
    expect(hook.webhook_url).toMatch(/signature=/);
    const reader = await t.token({ scope: 'okr:read' });
    const writer = await t.token({ scope: 'okr:write' });
    const as = (tok: string, path: string) => t.call('GET', path, { token: tok });
    const one = `${connectors.basePath}/${hook.id}`;
    const list = `${connectors.basePath}?kind=webhook&limit=200`;
    const inList = (res: { body: Doc }) => (res.body.data as Doc[]).find((d) => d.id === hook.id);
    const read = await as(reader, one);
    expect([read.status, read.body.webhook_url, read.body.name]).toEqual([200, null, 'Read-only probe']);
    expect(inList(await as(reader, list))).toMatchObject({ webhook_url: null, name: 'Read-only probe' });
    expect((await as(writer, one)).body.webhook_url).toBe(hook.webhook_url);
    expect(inList(await as(writer, list))?.webhook_url).toBe(hook.webhook_url);
    expect((await as(token, one)).body.webhook_url).toBe(hook.webhook_url); // a person's session
    // One ETag for both copies: the answers say they vary by token, so a browser's cache never
    // revalidates the writer's copy (304) for the reader, from this origin or another.
    expect(read.headers.etag).toBe((await as(writer, one)).headers.etag);
    const vary = (res: { headers: Record<string, unknown> }) => String(res.headers.vary).split(/,\s*/);
    expect(vary(await as(writer, list))).toContain('Authorization');
    const cross = await t.call('GET', one, { token: reader, headers: { origin: 'https://app.example' } });
    expect(vary(cross)).toEqual(['Authorization']);
    expect((await t.call('GET', one, { token: reader })).headers.vary).toBe('Origin, Authorization');
  });

  it('webhook: another system pushes values to its signed URL, without a token; another method is 405, anything else 401', async () => {
    const hook = await connector({ kind: 'webhook', config: {}, secret: null, name: 'Support desk' });
    const url = hook.webhook_url as string;
    expect(url).toMatch(
      new RegExp(`^${connectors.basePath}/${hook.id}/webhook\\?tenant_id=acme&signature=[A-Za-z0-9_-]{43}$`),
    );
    expect(hook).toMatchObject({ interval_seconds: null, last_sync_status: null });
    const a = await fed(hook.id as string);
    const push = (path: string, body: unknown = { value: 118_500 }) =>
      t.app.inject({ method: 'POST', url: path, payload: body as object });

    // Its own two parameters and no other: 400 naming one, after 404 (a connector deleted since).
    const extra = await push(`${url}&x=1`);
    expect([extra.statusCode, extra.json().code]).toEqual([400, 'unknown_parameter']);
    const gone = await connector({ kind: 'webhook', config: {}, secret: null });
    await call('DELETE', `${connectors.basePath}/${gone.id}`);
    expect((await push(`${gone.webhook_url}&x=1`)).statusCode).toBe(404);
    const res = await push(url);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ id: hook.id, last_sync_status: 'ok', last_value: 118_500 });
    expect(await get(`${kr.basePath}/${a.id}`)).toMatchObject({ current: 118_500, version: 2 });
    // Another method at its URL is 405 naming POST, not a 401 asking a caller who signs for a token.
    for (const method of ['GET', 'PUT', 'DELETE'] as const) {
      const wrong = await t.app.inject({ method, url });
      expect([method, wrong.statusCode, wrong.json().code, wrong.headers.allow]).toEqual([
        method,
        405,
        'method_not_allowed',
        'POST, OPTIONS',
      ]);
    }
    expect((await push(url, { value: 'lots' })).statusCode).toBe(400);
    expect((await push(url, {})).json().errors).toEqual([expect.objectContaining({ path: '/value' })]);

    // Another tenant's, another row's, an altered or a missing signature: 401, nothing recorded.
    const other = await connector({ kind: 'webhook', config: {}, secret: null });
    for (const forged of [
      url.replace('tenant_id=acme', 'tenant_id=other'),
      url.replace(hook.id as string, other.id as string),
      // Its first character changed (a random signature may start with any: 1 in 64 with A).
      url.replace(/signature=(.)/, (_, c: string) => `signature=${c === 'A' ? 'B' : 'A'}`),
      url.replace(/&signature=.*/, ''),
    ]) {
      const refused = await push(forged, { value: 1 });
      expect([forged, refused.statusCode, refused.json().code]).toEqual([forged, 401, 'invalid_token']);
    }
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(118_500);
    // A webhook is not pulled; a pulled connector's URL takes no pushes.
    expect((await sync(hook.id as string)).body.code).toBe('not_pulled');
    // A pulled kind needs an interval; a webhook takes none.
    const pulled = await connector();
    const reset = await call('PATCH', `${connectors.basePath}/${pulled.id}`, { interval_seconds: null });
    expect([reset.status, reset.body.interval_seconds]).toEqual([200, 3600]);
    expect((await call('PATCH', `${connectors.basePath}/${hook.id}`, { interval_seconds: 60 })).status).toBe(400);
    expect(
      (await call('PATCH', `${connectors.basePath}/${other.id}`, { kind: 'http_json', config: { url: `${base}/m` } }))
        .body.webhook_url,
    ).toBeNull();
    const stale = other.webhook_url as string;
    expect((await push(stale, { value: 1 })).statusCode).toBe(404);
  });

  const bad: [string, Doc, string][] = [
    ['http_json without a url', { config: {} }, '/config/url'],
    ['a url that is not http', { config: { url: 'file:///etc/passwd' } }, '/config/url'],
    ['a pointer that is not one', { config: { url: 'https://x.example/', pointer: 'data' } }, '/config/pointer'],
    ['a setting of another kind', { config: { url: 'https://x.example/', query: 'select 1' } }, '/config/query'],
    ['an unknown setting', { config: { url: 'https://x.example/', method: 'POST' } }, '/config/method'],
    ['an interval under a minute', { interval_seconds: 5 }, '/interval_seconds'],
    ['postgres without a query', { kind: 'postgres', config: {} }, '/config/query'],
    [
      'a postgres secret that is not a URL',
      { kind: 'postgres', config: { query: 'select 1' }, secret: 'pw' },
      '/secret',
    ],
    ['an unknown kind', { kind: 'ftp' }, '/kind'],
    ['an interval on a webhook', { kind: 'webhook', config: {}, interval_seconds: 600 }, '/interval_seconds'],
  ];
  it('names a member its config does not take as unknown, by its JSON Pointer', async () => {
    const res = await call('POST', connectors.basePath, {
      name: 'x',
      kind: 'http_json',
      config: { url: 'https://x.example/', 'bo/gus': 1 },
    });
    expect([res.status, res.body.code, res.body.errors]).toEqual([
      400,
      'validation_failed',
      [{ path: '/config/bo~1gus', code: 'unknown_field', message: '"bo/gus" is not a member of config' }],
    ]);
  });

  it.each(bad)('refuses %s naming %s, storing nothing', async (_n, body, path) => {
    const before = await countRows(t, connectors);
    const res = await call('POST', connectors.basePath, {
      name: 'x',
      kind: 'http_json',
      config: { url: 'https://x.example/' },
      ...body,
    });
    expect(res.status).toBe(400);
    expect((res.body.errors as Doc[]).map((e) => e.path)).toContain(path);
    expect(await countRows(t, connectors)).toBe(before);
  });

  it.runIf(PG_URL !== undefined)('postgres: one read-only statement, its first column', async () => {
    const pg = (query: string) => connector({ kind: 'postgres', config: { query }, secret: PG_URL, name: 'warehouse' });
    const c = await pg('SELECT 40 + 2 AS n, 7');
    const a = await fed(c.id as string);
    expect((await sync(c.id as string)).body).toMatchObject({ last_sync_status: 'ok', last_value: 42 });
    expect((await get(`${kr.basePath}/${a.id}`)).current).toBe(42);
    const numeric = await pg('SELECT 12.5::numeric');
    expect((await sync(numeric.id as string)).body.last_value).toBe(12.5);
    for (const [query, error] of [
      ['SELECT 1; DROP TABLE nothing_here', /cannot insert multiple commands/],
      // By themselves, only statements that read: no write, no COPY (which writes a file or feeds
      // a program on the database's host), no DO (which runs anything), however it is written.
      ['CREATE TABLE edm_connector_probe (x int)', /^postgres: a connector runs a query .*, not CREATE$/],
      ['DO $$BEGIN END$$', /^postgres: a connector runs a query .*, not DO$/],
      ['-- a note\rCOPY (SELECT 1) TO STDOUT', /^postgres: a connector runs a query .*, not COPY$/],
      ['COPY (SELECT 1) TO STDOUT', /^postgres: a connector runs a query .*, not COPY$/],
      ['/* a /* b */ */ -- c\n copy (select 1) to stdout', /^postgres: a connector runs a query .*, not COPY$/],
      ['SELECT 1 WHERE false', /no row/],
      ['SELECT nope', /postgres: column "nope" does not exist/],
      // An answer over 1 MB (a 3 MB value, an error quoting one) ends the read, as an http_json GET's.
      ["SELECT repeat('7', 3000000)", /^postgres: the server answered more than 1000000 bytes$/],
      ["SELECT repeat('y', 3000000)::int", /^postgres: the server answered more than 1000000 bytes$/],
      // An error quoting less is recorded cut to its first MAX_ERROR_CHARS characters.
      [
        "SELECT repeat('y', 100000)::int",
        new RegExp(`^postgres: invalid input syntax for type integer: "y{${MAX_ERROR_CHARS - 50}}…$`),
      ],
    ] as const) {
      const bad = await pg(query);
      const res = await sync(bad.id as string);
      expect([query, res.body.last_sync_status, res.body.last_error]).toEqual([
        query,
        'error',
        expect.stringMatching(error),
      ]);
    }
  });
});

describe.runIf(PG_URL !== undefined)('a postgres connector read', () => {
  it('takes at most the connector timeout in all, however its steps share it', async () => {
    // A proxy to the real server that holds each of its answers 200 ms: the connection, BEGIN and
    // the query each answer within a 300 ms timeout, but the three together do not.
    const { createServer, connect } = await import('node:net');
    const target = new URL(PG_URL as string);
    const proxy = createServer((client) => {
      const server = connect(Number(target.port || 5432), target.hostname);
      let chain = Promise.resolve();
      server.on('data', (chunk) => {
        chain = chain
          .then(() => new Promise((r) => setTimeout(r, 200)))
          .then(() => {
            if (!client.destroyed) client.write(chunk);
          });
      });
      client.on('data', (chunk) => server.write(chunk));
      const close = () => {
        client.destroy();
        server.destroy();
      };
      client.on('close', close);
      server.on('close', close);
      client.on('error', close);
      server.on('error', close);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as { port: number }).port;
    const url = new URL(PG_URL as string);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    try {
      const read = readConnector(
        { kind: 'postgres', config: { query: 'SELECT 1' }, secret: url.toString() },
        { allowHosts: ['127.0.0.1'], timeoutMs: 300 },
      );
      // The whole read's deadline, not one step's own timeout (each of which it would pass).
      await expect(read).rejects.toThrow('postgres: no answer within 300 ms');
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });
});

describe('a postgres read of a server that answers too much', () => {
  /** Listens on loopback with `onConnection`, reads a connector there, and says its failure. */
  async function readFailureAt(onConnection: (socket: Socket) => void, params = ''): Promise<string> {
    const { createServer: createTcpServer } = await import('node:net');
    const server = createTcpServer((socket) => {
      socket.on('error', () => {});
      onConnection(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const secret = `postgres://u:pw@127.0.0.1:${(server.address() as AddressInfo).port}/db${params}`;
      const connector = { kind: 'postgres', config: { query: 'SELECT 1' }, secret };
      const err = await readConnector(connector, { allowHosts: ['127.0.0.1'], timeoutMs: 20_000 }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OutboundError);
      return (err as Error).message;
    } finally {
      server.close();
    }
  }
  /** The start of an ErrorResponse whose message is `size` bytes (its end, `\0\0`, sent after them). */
  const errorHead = (size: number) => {
    const length = Buffer.alloc(4);
    // The length itself, the fields before the message (16 bytes), the message, its \0 and the last.
    length.writeInt32BE(4 + 16 + size + 2);
    return Buffer.concat([Buffer.from('E'), length, Buffer.from('SERROR\0C XX000\0M')]);
  };
  const OVER = 'postgres: the server answered more than 1000000 bytes';

  // A server of anyone's choosing (an allowed host) that answers the connection's startup with a
  // 3 MB error: the bound holds from the connection's first byte, not only from its query.
  it('ends the connection past 1 MB from its first byte, at its startup too', async () => {
    const message = await readFailureAt((socket) =>
      socket.once('data', () =>
        socket.end(Buffer.concat([errorHead(3_000_000), Buffer.alloc(3_000_000, 'x'), Buffer.from('\0\0')])),
      ),
    );
    expect(message).toBe(OVER);
  });

  // Over TLS, pg reads a TLS stream put over the socket, whose own data events then stop: the
  // bound follows it there. The server streams its 200 MB error, as a server of anyone's could.
  it('holds over TLS too (sslmode=require)', async () => {
    const { TLSSocket } = await import('node:tls');
    const { readFileSync } = await import('node:fs');
    const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
    const [key, cert] = [fixture('tls-test-key.pem'), fixture('tls-test-cert.pem')];
    const size = 200_000_000;
    let sent = 0;
    const message = await readFailureAt((raw) => {
      raw.once('data', () => {
        raw.write('S'); // the SSLRequest taken
        const socket = new TLSSocket(raw, { isServer: true, key, cert });
        socket.on('error', () => {});
        socket.once('data', () => {
          socket.write(errorHead(size));
          const chunk = Buffer.alloc(1 << 20, 'x');
          const pump = () => {
            while (sent < size && !socket.destroyed) {
              sent += chunk.length;
              if (!socket.write(chunk)) return void socket.once('drain', pump);
            }
            socket.end(Buffer.from('\0\0'));
          };
          pump();
        });
      });
    }, '?sslmode=require');
    expect(message).toBe(OVER);
    // Ended early: the server got a few megabytes out, of 200.
    expect(sent).toBeLessThan(20_000_000);
  });
});

describe('fetchJson', () => {
  it('takes a timeout of 0 as no limit', async () => {
    const slow = createServer((_req, res) => {
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"v":1}'), 50);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/`;
      expect(await fetchJson(url, {}, { allowHosts: ['127.0.0.1'], timeoutMs: 0 })).toEqual({ v: 1 });
    } finally {
      slow.close();
    }
  });

  it('fails a request Node will not send as a read that failed, leaving no timer to fire later', async () => {
    const policy = { allowHosts: ['127.0.0.1'], timeoutMs: 50 };
    const err = await fetchJson('http://127.0.0.1:9/v', { 'x-a': 'a\nb' }, policy).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect(String((err as Error).message)).toMatch(/Invalid character in header content/);
    // Past the timeout, nothing fires (before, its timer threw an uncaught ReferenceError here).
    await new Promise((r) => setTimeout(r, 120));
  });

  // A failure is every reader's (last_error): it names the host, not the address it was reached
  // at (Node's `connect ECONNREFUSED 127.0.0.1:…`), for an allowed internal host too.
  it('says a failed connection by its host, not the address the host resolved to', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const policy = { allowHosts: ['localhost'], timeoutMs: 2000 };
    const http = await fetchJson(`http://localhost:${port}/v`, {}, policy).catch((e: Error) => e.message);
    expect(http).toMatch(new RegExp(`^http://localhost:${port}/v: connect ECONNREFUSED localhost:${port}$`));
    const pg = await readConnector(
      { kind: 'postgres', config: { query: 'select 1' }, secret: `postgres://u:pw@localhost:${port}/db` },
      policy,
    ).catch((e: Error) => e.message);
    expect(pg).toBe(`postgres: connect ECONNREFUSED localhost:${port}`);
  });
});

describe('outbound policy', () => {
  it.each([
    ['127.0.0.1', true],
    ['10.1.2.3', true],
    ['172.20.0.1', true],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['0.0.0.0', true],
    ['224.0.0.1', true],
    ['::1', true],
    ['::', true],
    ['fe80::1', true],
    ['fd00:ec2::254', true],
    ['fec0::1', true],
    ['100::1', true],
    ['::ffff:127.0.0.1', true],
    ['64:ff9b::10.0.0.1', true],
    ['8.8.8.8', false],
    ['93.184.216.34', false],
    ['2606:4700:4700::1111', false],
    ['::ffff:8.8.8.8', false],
    ['not an address', true],
  ])('%s refused: %s', (address, refused) => {
    expect(isRefusedAddress(address)).toBe(refused);
  });

  // IPv4 inside IPv6: the embedded IPv4 address decides, in the hex form (as URL and resolvers
  // write it) and the dotted one alike; public IPv4 addresses stay allowed.
  it.each([
    // NAT64, well-known prefix 64:ff9b::/96
    ['64:ff9b::7f00:1', true],
    ['64:ff9b::127.0.0.1', true],
    ['64:ff9b::a9fe:a9fe', true],
    ['64:ff9b::c0a8:101', true],
    ['0064:ff9b:0000:0000:0000:0000:0a00:0001', true],
    ['64:FF9B::A00:1', true],
    ['64:ff9b::808:808', false],
    ['64:ff9b::8.8.8.8', false],
    // NAT64, local-use prefix 64:ff9b:1::/48: whichever RFC 6052 prefix length the operator chose
    ['64:ff9b:1::7f00:1', true],
    ['64:ff9b:1::10.0.0.1', true],
    ['64:ff9b:1:7f00:1::', true], // /48 layout, 127.0.1.0
    ['64:ff9b:1:a9:fe:a9fe::', true], // /56 layout, 169.254.169.254
    ['64:ff9b:1::808:808', false],
    ['64:ff9b:1:2:3:4:808:808', false],
    // IPv4-mapped, SIIT-translated and IPv4-compatible (deprecated)
    ['::ffff:7f00:1', true],
    ['0:0:0:0:0:ffff:a9fe:a9fe', true],
    ['::ffff:0:7f00:1', true],
    ['::ffff:808:808', false],
    ['::7f00:1', true],
    ['::127.0.0.1', true],
    ['::a9fe:a9fe', true],
    ['::808:808', false],
    ['::8.8.8.8', false],
    // 6to4, 2002:AABB:CCDD::/48
    ['2002:7f00:1::1', true],
    ['2002:a9fe:a9fe::', true],
    ['2002:c0a8:101:1::1', true],
    ['2002:808:808::1', false],
    // Teredo, 2001::/32: the server's IPv4 address, then the client's inverted (~127.0.0.1 = 80ff:fffe)
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', true],
    ['2001:0:a00:1:8000:63bf:f7f7:f7f7', true],
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', false],
  ])('embedded IPv4: %s refused: %s', (address, refused) => {
    expect(isRefusedAddress(address)).toBe(refused);
  });

  it('refuses a URL host that embeds a private IPv4 address in NAT64 form', async () => {
    const policy = { allowHosts: [], timeoutMs: 1000 };
    const host = new URL('http://[64:ff9b::127.0.0.1]/').hostname;
    expect(host).toBe('[64:ff9b::7f00:1]');
    await expect(resolveAllowed(host, policy)).rejects.toThrow(/^\[64:ff9b::7f00:1\] resolves to a private/);
    await expect(resolveAllowed('[2002:a9fe:a9fe::]', policy)).rejects.toThrow(/a private/);
    await expect(resolveAllowed('[64:ff9b::808:808]', policy)).resolves.toEqual({
      address: '64:ff9b::808:808',
      family: 6,
    });
  });

  it('checks literal addresses and names, and lets the operator allow one', async () => {
    const policy = { allowHosts: [], timeoutMs: 1000 };
    await expect(resolveAllowed('[::1]', policy)).rejects.toThrow(/^\[::1\] resolves to a private/);
    await expect(resolveAllowed('localhost', policy)).rejects.toThrow(/a private, loopback/);
    await expect(resolveAllowed('127.0.0.1', { ...policy, allowHosts: ['127.0.0.1'] })).resolves.toEqual({
      address: '127.0.0.1',
      family: 4,
    });
    // A URL's host as the allow list is read (loadConfig): no brackets, no trailing dot.
    await expect(resolveAllowed('[::1]', { ...policy, allowHosts: ['::1'] })).resolves.toMatchObject({
      address: '::1',
    });
    await expect(resolveAllowed('localhost.', { ...policy, allowHosts: ['localhost'] })).resolves.toBeDefined();
  });

  it('reads JSON Pointers and numbers as RFC 6901 and JSON say', () => {
    const doc = { a: { 'b/c': [1, { '~d': 5 }] }, '': 9 };
    expect(atPointer(doc, '/a/b~1c/1/~0d')).toBe(5);
    expect(atPointer(doc, '/')).toBe(9);
    expect(atPointer(doc, '')).toBe(doc);
    expect(atPointer(doc, '/a/b~1c/01')).toBeUndefined();
    // `~01` is the name `~1`, not `/`: `~1` is read before `~0` (RFC 6901 §4).
    expect(atPointer({ 'a~1b': 1, 'a/b': 2 }, '/a~01b')).toBe(1);
    expect(atPointer(doc, '/a/constructor')).toBeUndefined();
    expect(asMetric(' 12.5 ', 'x')).toBe(12.5);
    expect(asMetric(-0, 'x')).toBe(0);
    expect(() => asMetric('1e16', 'x')).toThrow(/beyond/);
    // Numeric text (a bigint PostgreSQL answers) is said as sent, not as the double it rounds to.
    expect(() => asMetric('9999999999999999', 'x')).toThrow('x is "9999999999999999", beyond ±1e15');
    expect(() => asMetric(2e15, 'x')).toThrow('x is 2000000000000000, beyond ±1e15');
    expect(() => asMetric(true, 'x')).toThrow('x is true, not a number');
    expect(() => asMetric(Number.NaN, 'x')).toThrow('x is NaN, not a number');
    expect(() => asMetric(-Infinity, 'x')).toThrow('x is -Infinity, not a number');
    expect(() => asMetric(null, 'x')).toThrow('x is null, not a number');
  });
});

describe('a failed read as last_error records it', () => {
  it('is masked, then cut to MAX_ERROR_CHARS whole characters', () => {
    expect(failureText('short', null)).toBe('short');
    const long = `invalid input: "${'y'.repeat(100_000)}"`;
    expect(failureText(long, null)).toBe(`${long.slice(0, MAX_ERROR_CHARS)}…`);
    // Masked first: a secret straddling the cut is not left half shown.
    const secret = 'tok-'.padEnd(40, 'z');
    const straddling = `${'x'.repeat(MAX_ERROR_CHARS - 10)}${secret}!`;
    expect(failureText(straddling, secret)).toBe(`${'x'.repeat(MAX_ERROR_CHARS - 10)}[secret]!`);
    expect(failureText(`${'x'.repeat(MAX_ERROR_CHARS - 10)}${secret}${'x'.repeat(600)}`, secret)).not.toContain('tok-');
    // A pair of surrogates across the cut is left out whole.
    const emoji = `${'x'.repeat(MAX_ERROR_CHARS - 1)}😀 and more`;
    expect(failureText(emoji, null)).toBe(`${'x'.repeat(MAX_ERROR_CHARS - 1)}…`);
  });
});

describe("a postgres statement's first word", () => {
  it.each([
    ['COPY (SELECT 1) TO STDOUT', 'COPY'],
    ['  copy t to stdout', 'COPY'],
    ['-- a\n/* b /* nested */ still */ (Copy t TO STDOUT)', 'COPY'],
    // A line comment ends at \r too, as PostgreSQL's lexer ends it.
    ['-- a\rCOPY t TO STDOUT', 'COPY'],
    ['DO $$BEGIN END$$', 'DO'],
    ['/* unclosed', ''],
    ['-- only a comment', ''],
    ['copy2', 'COPY2'],
    ['SHOW server_version', 'SHOW'],
    ['(SELECT 1)', 'SELECT'],
  ])('%j reads %j', (text, expected) => {
    expect(leadingKeyword(text)).toBe(expected);
  });
});

// The schedule's job runs every 15 s; a create, a change of settings or a restore wakes it, so
// the connector is read right after its write. A server of its own, with its jobs on timers.
describe.each(storeKinds)('a connector written on %s, with the jobs on their timers', (kind) => {
  const api = metricsServer();
  let t: TestApp;
  let live: FastifyInstance;
  let token: string;
  beforeAll(async () => {
    const base = await api.start();
    api.state.body = '{"data":{"value":7}}';
    t = await testApp(kind, { connectorAllowHosts: ['127.0.0.1'] });
    live = await buildApp({
      config: testConfig({ connectorAllowHosts: ['127.0.0.1'] }),
      store: t.store,
      migrate: false,
      runJobs: true,
    });
    token = await t.token();
    feedUrl = `${base}/metrics`;
  });
  let feedUrl = '';
  afterAll(async () => {
    await live.close();
    await t.close();
    await api.stop();
  });
  const call = (method: string, url: string, body?: unknown) => injectAs(live, token, method, url, { body });
  /** The connector as stored, once `done` holds of it (polled every 20 ms, for up to 10 s: the job's tick is 15 s). */
  const once = async (id: string, done: (c: Doc) => boolean) => {
    for (let i = 0; i < 500; i++) {
      const c = (await call('GET', `${connectors.basePath}/${id}`)).body;
      if (done(c)) return c;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(
      `the connector was not read before the schedule would have read it: ${JSON.stringify((await call('GET', `${connectors.basePath}/${id}`)).body)}`,
    );
  };

  it('reads it right after its create, a change of its settings and its restore', async () => {
    const created = await call('POST', connectors.basePath, {
      name: 'read at once',
      kind: 'http_json',
      config: { url: feedUrl, pointer: '/data/value' },
    });
    expect([created.status, created.body.last_sync_status]).toEqual([201, null]);
    const id = created.body.id as string;
    expect(await once(id, (c) => c.last_sync_status === 'ok')).toMatchObject({ last_value: 7, last_error: null });
    // A change of its settings: read again (here, a pointer to nothing).
    const changed = await call('PATCH', `${connectors.basePath}/${id}`, { config: { url: feedUrl, pointer: '/none' } });
    expect(changed.status).toBe(200);
    expect((await once(id, (c) => c.last_sync_status === 'error')).last_error).toContain('/none');
    // A rename is no new reading; a restore is.
    const reads = api.state.requests.length;
    expect((await call('PATCH', `${connectors.basePath}/${id}`, { name: 'renamed' })).status).toBe(200);
    const deleted = await call('DELETE', `${connectors.basePath}/${id}`);
    expect(deleted.status).toBe(200);
    expect((await call('POST', `${connectors.basePath}/${id}/restore`)).status).toBe(200);
    await once(id, (c) => c.last_sync_at !== deleted.body.last_sync_at);
    expect(api.state.requests.length).toBe(reads + 1);
  });
});

describe('requestHeaders', () => {
  // A row stored before config refused credentials may send its own Authorization: the secret's wins, once.
  it.each<[string, Record<string, unknown>, string | null, Record<string, string>]>([
    [
      'no secret',
      { headers: { Authorization: 'Bearer old', Accept: 'a' } },
      null,
      { Authorization: 'Bearer old', Accept: 'a' },
    ],
    [
      'a bearer secret over a stored Authorization',
      { headers: { Authorization: 'Bearer old' } },
      's',
      { authorization: 'Bearer s' },
    ],
    [
      'a header secret over a stored one of another case',
      { auth: 'header', secret_header: 'X-Api-Key', headers: { 'x-api-key': 'old', Accept: 'a' } },
      's',
      { Accept: 'a', 'X-Api-Key': 's' },
    ],
    ['basic', { auth: 'basic' }, 'u:p', { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }],
  ])('%s', (_n, config, secret, expected) => {
    expect(requestHeaders(config, secret)).toEqual(expected);
  });
});

// With no read timeout (EDM_CONNECTOR_TIMEOUT_MS=0) a feed may never answer: the schedule leaves
// such a read to finish on its own after a while (15 s) and goes on with every other connector.
// On one store: what is tested is the job's own waiting, not storage.
describe('the schedule with no read timeout', () => {
  let t: TestApp;
  const api = metricsServer();
  let base: string;
  let release: () => void = () => {};
  beforeAll(async () => {
    base = await api.start();
    t = await testApp('sqlite', { connectorAllowHosts: ['127.0.0.1'], connectorTimeoutMs: 0 });
  });
  afterAll(async () => {
    release();
    await t.close();
    await api.stop();
  });

  it('is not held by a feed that never answers: other connectors, and new ones, sync meanwhile', async () => {
    const token = await t.token();
    const create = async (name: string) => {
      const res = await t.call('POST', connectors.basePath, {
        token,
        body: { name, kind: 'http_json', config: { url: `${base}/${name}`, pointer: '/data/value' } },
      });
      expect(res.status, res.raw).toBe(201);
      return res.body.id as string;
    };
    const reads = (name: string) => api.state.requests.filter((r) => r.url === `/${name}`).length;
    const shown = async (id: string) => (await t.call('GET', `${connectors.basePath}/${id}`, { token })).body;
    api.state.hold = new Promise<void>((r) => {
      release = r;
    });
    const hung = await create('hung');
    const stuck = await create('stuck');
    const first = await t.app.engine.runJob(connectorSyncJob); // both reads are left after 15 s
    expect([first, reads('hung'), reads('stuck')]).toEqual([0, 1, 1]);
    // While the read goes on, its claim is renewed before its minute runs out: the connector does
    // not come due for another process's schedule to read the feed a second time.
    const dueAt = async (id: string) => {
      const row = await t.store.db
        .selectFrom('okr_connector_schedule')
        .select('due_at')
        .where('connector_id', '=', id)
        .executeTakeFirstOrThrow();
      return new Date(row.due_at as string).getTime();
    };
    const claimedUntil = await dueAt(hung);
    expect(claimedUntil).toBeGreaterThan(t.clock.now());
    t.clock.set(claimedUntil - 20_000); // 20 s left of the claim
    for (let i = 0; i < 300 && (await dueAt(hung)) === claimedUntil; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await dueAt(hung)).toBe(t.clock.now() + 60_000);
    api.state.hold = null;
    const other = await create('other');
    t.clock.advance(120_000); // the hung reads' claims have run out: due again, but still being read
    // A claim that ran out is not renewed any more (another process may have taken it since).
    const ranOut = await dueAt(hung);
    expect(ranOut).toBeLessThan(t.clock.now());
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await dueAt(hung)).toBe(ranOut);
    expect(await t.app.engine.runJob(connectorSyncJob)).toBe(1);
    expect([reads('hung'), reads('stuck'), reads('other')]).toEqual([1, 1, 1]);
    expect(await shown(other)).toMatchObject({ last_sync_status: 'ok', last_value: 42 });
    // Settings changed while a read of the old ones goes on: the new ones are read at once.
    api.state.body = '{"data":{"value":7}}';
    const url = `${connectors.basePath}/${stuck}`;
    const fixed = await t.call('PATCH', url, {
      token,
      body: { config: { url: `${base}/fixed`, pointer: '/data/value' } },
    });
    expect(fixed.status, fixed.raw).toBe(200);
    expect(await t.app.engine.runJob(connectorSyncJob)).toBe(1);
    expect([reads('hung'), reads('fixed')]).toEqual([1, 1]);
    expect(await shown(stuck)).toMatchObject({ last_sync_status: 'ok', last_value: 7 });
    // The feed answers at last: the read of the settings still there records on its own; the one
    // of settings changed since, nothing.
    release();
    for (let i = 0; i < 300 && (await shown(hung)).last_sync_status === null; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await shown(hung)).toMatchObject({ last_sync_status: 'ok', last_value: 42 });
    expect(await shown(stuck)).toMatchObject({ last_sync_status: 'ok', last_value: 7 });
  }, 40_000);
});
