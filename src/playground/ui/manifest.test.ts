import { describe, expect, it } from 'vitest';
import { recordingFetch, toResult } from './api';
import { fetchManifest, pathParams, resourceSlug } from './manifest';
import { keyResult } from './test-fixture';

const answer = (status: number, body: string, type = 'application/json') =>
  (async () => new Response(body, { status, headers: { 'content-type': type } })) as typeof fetch;

describe('loading the manifest', () => {
  it('answers the manifest the server sends', async () => {
    const manifest = {
      platform: { name: 'EDM', version: '0.1.0', dev_token: false },
      modules: [{ name: 'okr', resources: [keyResult] }],
    };
    await expect(fetchManifest(answer(200, JSON.stringify(manifest)))).resolves.toEqual(manifest);
  });

  it('explains each way it can fail', async () => {
    const problem = JSON.stringify({ title: 'Internal error', detail: 'An unexpected error occurred', status: 500 });
    await expect(fetchManifest(answer(500, problem, 'application/problem+json'))).rejects.toThrow(
      'GET /api/v1/manifest answered 500: An unexpected error occurred',
    );
    await expect(fetchManifest(answer(200, '<html>'))).rejects.toThrow(/did not answer a manifest/);
    const offline = (async () => {
      throw new TypeError('Failed to fetch');
    }) as typeof fetch;
    await expect(fetchManifest(offline)).rejects.toThrow('The server could not be reached (Failed to fetch).');
  });

  it('names resources and path parameters', () => {
    expect(resourceSlug(keyResult)).toBe('key-results');
    expect(pathParams({ path: '/api/v1/okr/key-results/{id}/check-ins' })).toEqual(['id']);
  });
});

describe('recording calls for the console', () => {
  it('keeps status, headers, timing and body of the last attempt', async () => {
    const log: Parameters<typeof toResult>[0] = [];
    let n = 0;
    const f = recordingFetch(log, (async () => {
      n++;
      return n === 1
        ? new Response('{"title":"Unavailable"}', { status: 503, headers: { 'retry-after': '0' } })
        : new Response('{"id":"kr_1"}', { status: 201, headers: { 'content-type': 'application/json', etag: '"1"' } });
    }) as typeof fetch);
    await f('/a');
    const res = await f('/a');
    expect(await res.json()).toEqual({ id: 'kr_1' }); // the caller still reads the body
    const result = toResult(log, null);
    expect(result).toMatchObject({ status: 201, attempts: 2, body: { id: 'kr_1' }, error: null });
    expect(result.headers).toContainEqual(['etag', '"1"']);
    expect(result.ms).toBeGreaterThanOrEqual(0);
  });

  // A browser shows a write's redirect as opaque (status 0, nothing else); the SDK refuses it.
  it("shows a write's redirect, which a browser keeps opaque, as the SDK's refusal", () => {
    const log: Parameters<typeof toResult>[0] = [{ status: 0, statusText: '', headers: [], ms: 3, bodyText: '' }];
    const refused = new Error('POST /x answered a redirect: a write is not sent on');
    expect(toResult(log, refused)).toMatchObject({
      status: null,
      error: 'Not followed: POST /x answered a redirect: a write is not sent on',
      attempts: 1,
    });
  });

  it('reports a call that got no answer', () => {
    expect(toResult([], new TypeError('Failed to fetch'))).toMatchObject({
      status: null,
      error: 'No answer: Failed to fetch',
    });
  });
});
