import { createHash, createHmac } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { KyselyPlugin } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiError } from '../src/core/errors.js';
import type { Doc, Resource } from '../src/core/resource.js';
import { ServerKeys } from '../src/core/secrets.js';
import { Idempotency } from '../src/http/idempotency.js';
import {
  byName,
  countRows,
  PG_URL,
  resources,
  storedRow,
  storeKinds,
  type TestApp,
  testApp,
  testConfig,
  USER_A,
  USER_B,
  whileFailing,
} from './helpers.js';

/** The paths a problem's `errors` names. */
const errorPaths = (reply: { body: Doc }) => ((reply.body.errors ?? []) as { path: string }[]).map((e) => e.path);

const cycles = byName('Cycle');
const objectives = byName('Objective');
const kr = byName('KeyResult');
const connectors = byName('Connector');
/** The key the test app's fingerprints are keyed with (its server secret's). */
const REQUEST_KEY = new ServerKeys(testConfig().secretKey).requestKey;

describe.each(storeKinds)('writes on %s', (kind) => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await testApp(kind);
    token = await t.token();
  });
  afterAll(() => t.close());

  describe.each(resources.map((r) => [r.name, r] as const))('%s: optimistic locking', (_n, resource: Resource) => {
    const title = resource.titleField;
    const url = (doc: Doc) => `${resource.basePath}/${doc.id}`;

    it('answers 304 to If-None-Match with the current ETag', async () => {
      const doc = await t.create(resource, token);
      const hit = await t.call('GET', url(doc), { headers: { 'if-none-match': '"1"' } });
      expect([hit.status, hit.raw, hit.headers.etag]).toEqual([304, '', '"1"']);
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': '"0", "1"' } })).status).toBe(304);
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': '"2"' } })).status).toBe(200);
      // If-None-Match compares weakly (RFC 9110 §13.1.2): a proxy may have weakened the tag.
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': 'W/"1"' } })).status).toBe(304);
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': 'W/"2"' } })).status).toBe(200);
      // Tags compare as opaque strings: "01" is not "1"; a tag of another server matches nothing.
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': '"01"' } })).status).toBe(200);
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': '"abc", "1",' } })).status).toBe(304);
      // `*` matches any current representation: the row exists, so 304 (RFC 9110 §13.1.2).
      expect((await t.call('GET', url(doc), { headers: { 'if-none-match': '*' } })).status).toBe(304);
    });

    it('HEAD: the 200 has the GET body length; a 304 has no Content-Length (RFC 9110 §8.6)', async () => {
      const doc = await t.create(resource, token);
      const get = await t.call('GET', url(doc));
      const head = await t.call('HEAD', url(doc));
      expect([head.status, head.raw, head.headers['content-length']]).toEqual([
        200,
        '',
        String(Buffer.byteLength(get.raw)),
      ]);
      for (const method of ['GET', 'HEAD'] as const) {
        const hit = await t.call(method, url(doc), { headers: { 'if-none-match': '"1"' } });
        expect([hit.status, hit.headers.etag, hit.headers['content-length']], method).toEqual([304, '"1"', undefined]);
      }
    });

    it('answers 412 to a GET whose If-Match names another version (RFC 9110 §13.1.1), before 304', async () => {
      const doc = await t.create(resource, token);
      const miss = await t.call('GET', url(doc), { headers: { 'if-match': '"9"', 'if-none-match': '"1"' } });
      expect([miss.status, miss.body.code, miss.body.current_version]).toEqual([412, 'precondition_failed', 1]);
      expect((await t.call('GET', url(doc), { headers: { 'if-match': '"1"' } })).status).toBe(200);
      expect((await t.call('GET', url(doc), { headers: { 'if-match': '*' } })).status).toBe(200);
      // 404 first, as for writes.
      const gone = await t.call('GET', `${resource.basePath}/${resource.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`, {
        headers: { 'if-match': '"9"' },
      });
      expect(gone.status).toBe(404);
    });

    it.each([
      ['PATCH', { [title]: 'x' }],
      ['DELETE', undefined],
    ] as const)('%s: If-None-Match naming the current version (or *) → 412, nothing written', async (method, body) => {
      const doc = await t.create(resource, token);
      const before = await storedRow(t, resource, doc.id as string);
      for (const inm of ['*', '"1"', 'W/"1"', '"0", "1"']) {
        const res = await t.call(method, url(doc), { body, headers: { 'if-none-match': inm } });
        expect([res.status, res.body.code, res.body.current_version], inm).toEqual([412, 'precondition_failed', 1]);
      }
      expect(await storedRow(t, resource, doc.id as string)).toEqual(before);
      const other = await t.call(method, url(doc), { body, headers: { 'if-none-match': '"2"' } });
      expect(other.status).toBe(200);
    });

    it.each([
      ['PATCH', { [title]: 'x' }],
      ['DELETE', undefined],
    ] as const)('%s: If-Match mismatch → 412 with the current version, match → 200', async (method, body) => {
      const doc = await t.create(resource, token);
      const before = await storedRow(t, resource, doc.id as string);
      const stale = await t.call(method, url(doc), { body, headers: { 'if-match': '"7"' } });
      expect([stale.status, stale.body.code, stale.body.current_version]).toEqual([412, 'precondition_failed', 1]);
      const weak = await t.call(method, url(doc), { body, headers: { 'if-match': 'W/"1"' } });
      expect(weak.status).toBe(412);
      const junk = await t.call(method, url(doc), { body, headers: { 'if-match': 'one' } });
      expect([junk.status, junk.body.code, (junk.body.errors as { path: string }[])[0].path]).toEqual([
        400,
        'invalid_header',
        'If-Match',
      ]);
      // Opaque strings: "01" is no version of ours, nor is "abc" (412, not applied, not 400).
      for (const other of ['"01"', '"abc"', '"-1"']) {
        const res = await t.call(method, url(doc), { body, headers: { 'if-match': other } });
        expect([res.status, res.body.code]).toEqual([412, 'precondition_failed']);
      }
      expect(await storedRow(t, resource, doc.id as string)).toEqual(before);
      const ok = await t.call(method, url(doc), { body, headers: { 'if-match': '"1"' } });
      expect([ok.status, ok.headers.etag]).toEqual([200, '"2"']);
    });

    it('a body version mismatch → 409 version_conflict carrying the current version', async () => {
      const doc = await t.create(resource, token);
      const res = await t.call('PATCH', url(doc), { body: { [title]: 'x', version: 5 } });
      expect([res.status, res.body.code, res.body.current_version]).toEqual([409, 'version_conflict', 1]);
      expect((await t.call('PATCH', url(doc), { body: { [title]: 'x', version: 1 } })).body.version).toBe(2);
    });

    it('reads a comma inside an entity tag as part of it: If-Match "1,2" is 412, not a malformed header', async () => {
      const doc = await t.create(resource, token);
      for (const ifMatch of ['"1,2"', '"2,1"', '"7", "1,2"', 'W/"1,1"']) {
        const res = await t.call('PATCH', url(doc), { body: { [title]: 'x' }, headers: { 'if-match': ifMatch } });
        expect([ifMatch, res.status, res.body.code]).toEqual([ifMatch, 412, 'precondition_failed']);
      }
      const matched = await t.call('PATCH', url(doc), {
        body: { [title]: 'x' },
        headers: { 'if-match': '"1,2", "1"' },
      });
      expect(matched.status).toBe(200);
      const broken = await t.call('PATCH', url(doc), { body: { [title]: 'y' }, headers: { 'if-match': '"2,' } });
      expect([broken.status, broken.body.code]).toEqual([400, 'invalid_header']);
    });

    it('follows the check order: 404 → 412 → 400 → 409', async () => {
      const missing = `${resource.basePath}/${resource.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      expect((await t.call('PATCH', missing, { body: { nope: 1 }, headers: { 'if-match': '"9"' } })).status).toBe(404);
      const doc = await t.create(resource, token);
      expect((await t.call('PATCH', url(doc), { body: { nope: 1 }, headers: { 'if-match': '"9"' } })).status).toBe(412);
      expect((await t.call('PATCH', url(doc), { body: { nope: 1, version: 9 } })).status).toBe(400);
      await t.call('DELETE', url(doc));
      expect((await t.call('PATCH', url(doc), { body: { [title]: 12 } })).status).toBe(400);
      expect((await t.call('PATCH', url(doc), { body: { [title]: 'ok' } })).body.code).toBe('resource_deleted');
    });

    it('answers a reference that holds U+0000 after 412, as a 400 naming the field, on both stores', async () => {
      const refs = Object.entries(resource.allFields).filter(([, f]) => f.ref && f.access === 'write');
      const doc = await t.create(resource, token);
      for (const [name] of refs) {
        const body = { [name]: 'obj\u0000' };
        const stale = await t.call('PATCH', url(doc), { body, headers: { 'if-match': '"9"' } });
        expect([name, stale.status, stale.body.code]).toEqual([name, 412, 'precondition_failed']);
        const res = await t.call('PATCH', url(doc), { body });
        expect([name, res.status, res.body.errors]).toEqual([
          name,
          400,
          [expect.objectContaining({ path: `/${name}` })],
        ]);
      }
      expect((await t.call('GET', url(doc))).body.version).toBe(1);
    });

    it('answers a body that is not JSON after 404 and 412, as any other body: 400 invalid_json', async () => {
      const json = { 'content-type': 'application/json' };
      const missing = `${resource.basePath}/${resource.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      const gone = await t.call('PATCH', missing, { payload: '{bad', headers: { ...json, 'if-match': '"9"' } });
      expect([gone.status, gone.body.code]).toEqual([404, 'not_found']);
      // A precondition header that is no list of tags is 400 too, but after 404.
      for (const headers of [{ 'if-match': 'abc' }, { 'if-none-match': 'abc' }] as Record<string, string>[]) {
        expect((await t.call('PATCH', missing, { body: { [title]: 'x' }, headers })).status).toBe(404);
        expect((await t.call('DELETE', missing, { headers })).status).toBe(404);
      }
      const doc = await t.create(resource, token);
      const before = await storedRow(t, resource, doc.id as string);
      const stale = await t.call('PATCH', url(doc), { payload: '{bad', headers: { ...json, 'if-match': '"9"' } });
      expect([stale.status, stale.body.code]).toEqual([412, 'precondition_failed']);
      const bad = await t.call('PATCH', url(doc), { payload: '{bad', headers: { ...json, 'if-match': '"1"' } });
      expect([bad.status, bad.body.code]).toEqual([400, 'invalid_json']);
      expect(await storedRow(t, resource, doc.id as string)).toEqual(before);
    });

    it.each([
      ['{"__proto__":{"x":1}}', '/__proto__'],
      ['{"tags":[{"__proto__":null}]}', '/tags/0/__proto__'],
      ['{"a/b":{"constructor":{"prototype":{}}}}', '/a~1b/constructor'],
    ])('names a member that could reach a prototype (%s) as an unknown field, after 412', async (payload, path) => {
      const json = { 'content-type': 'application/json' };
      const doc = await t.create(resource, token);
      const before = await storedRow(t, resource, doc.id as string);
      const stale = await t.call('PATCH', url(doc), { payload, headers: { ...json, 'if-match': '"9"' } });
      expect(stale.status).toBe(412);
      const res = await t.call('PATCH', url(doc), { payload, headers: json });
      expect([res.status, res.body.code, errorPaths(res)]).toEqual([400, 'unknown_field', [path]]);
      expect(await storedRow(t, resource, doc.id as string)).toEqual(before);
    });

    // JSON leaves which of two same-named members counts to the reader: a proxy in front may
    // have checked the first, where JSON.parse keeps the last. Neither is taken.
    it('refuses a body that names a member twice, naming it, after 412, storing nothing', async () => {
      const json = { 'content-type': 'application/json' };
      const doc = await t.create(resource, token);
      const before = await storedRow(t, resource, doc.id as string);
      const payload = `{"${title}":"checked","${title}":"stored"}`;
      const stale = await t.call('PATCH', url(doc), { payload, headers: { ...json, 'if-match': '"9"' } });
      expect(stale.status).toBe(412);
      const res = await t.call('PATCH', url(doc), { payload, headers: json });
      expect([res.status, res.body.code, res.body.errors]).toEqual([
        400,
        'invalid_json',
        [
          {
            path: `/${title}`,
            code: 'duplicate_member',
            message: `${title} is named twice in one object: send each member once`,
          },
        ],
      ]);
      expect(await storedRow(t, resource, doc.id as string)).toEqual(before);
      const rows = await countRows(t, resource);
      const created = await t.call('POST', resource.basePath, { payload, headers: json });
      expect([created.status, created.body.code]).toEqual([400, 'invalid_json']);
      expect(await countRows(t, resource)).toBe(rows);
    });

    it('of 20 concurrent PATCHes at one version exactly one wins (If-Match, then body version)', async () => {
      const doc = await t.create(resource, token);
      const byHeader = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          t.call('PATCH', url(doc), { body: { [title]: `writer ${i}` }, headers: { 'if-match': '"1"' } }),
        ),
      );
      expect(byHeader.filter((a) => a.status === 200)).toHaveLength(1);
      expect(byHeader.filter((a) => a.status === 412)).toHaveLength(19);
      const byBody = await Promise.all(
        Array.from({ length: 20 }, (_, i) => t.call('PATCH', url(doc), { body: { [title]: `v ${i}`, version: 2 } })),
      );
      expect(byBody.filter((a) => a.status === 200)).toHaveLength(1);
      expect(byBody.filter((a) => a.status === 409 && a.body.code === 'version_conflict')).toHaveLength(19);
      const final = await t.call('GET', url(doc));
      expect(final.body.version).toBe(3);
      expect(final.body[title]).toBe(byBody.find((a) => a.status === 200)?.body[title]);
    });
  });

  it('EDM_REQUIRE_IF_MATCH=1 makes writes without a precondition 428', async () => {
    const strict = await testApp(kind, { requireIfMatch: true });
    try {
      const tk = await strict.token();
      const doc = await strict.create(cycles, tk);
      const res = await strict.call('PATCH', `${cycles.basePath}/${doc.id}`, { token: tk, body: { name: 'x' } });
      expect([res.status, res.body.code]).toEqual([428, 'precondition_required']);
      expect((await strict.call('DELETE', `${cycles.basePath}/${doc.id}`, { token: tk })).status).toBe(428);
      // If-Match: * holds whatever the version: it names none read, so it is no such precondition.
      for (const [method, body] of [
        ['PATCH', { name: 'x' }],
        ['DELETE', undefined],
      ] as const) {
        const any = await strict.call(method, `${cycles.basePath}/${doc.id}`, {
          token: tk,
          body,
          headers: { 'if-match': '*' },
        });
        expect([method, any.status, any.body.detail]).toEqual([
          method,
          428,
          expect.stringContaining('If-Match: * names none'),
        ]);
      }
      // A body version that is no version is no precondition either: 428 comes before the body's 400.
      for (const version of [null, 'x', 0, 1.5]) {
        const res = await strict.call('PATCH', `${cycles.basePath}/${doc.id}`, {
          token: tk,
          body: { name: 'x', version },
        });
        expect([version, res.status]).toEqual([version, 428]);
      }
      const ok = await strict.call('PATCH', `${cycles.basePath}/${doc.id}`, {
        token: tk,
        body: { name: 'x', version: 1 },
      });
      expect(ok.status).toBe(200);
      const ok2 = await strict.call('PATCH', `${cycles.basePath}/${doc.id}`, {
        token: tk,
        body: { name: 'y' },
        headers: { 'if-match': '"2"' },
      });
      expect(ok2.status).toBe(200);
      // A check-in appends to its key result, as a create adds a row: no precondition required,
      // though a stale one is still refused.
      const o = await strict.create(objectives, tk);
      const k = await strict.create(kr, tk, { objective_id: o.id, title: 'k', target: 10 });
      const checkIns = `${kr.basePath}/${k.id}/check-ins`;
      const checkIn = await strict.call('POST', checkIns, { token: tk, body: { value: 3 } });
      expect([checkIn.status, checkIn.body.current]).toEqual([201, 3]);
      const stale = await strict.call('POST', checkIns, {
        token: tk,
        body: { value: 4 },
        headers: { 'if-match': '"1"' },
      });
      expect(stale.status).toBe(412);
      // A webhook connector's URL rotation replaces a credential the caller read: it needs one.
      const hook = await strict.create(connectors, tk, { name: 'feed', kind: 'webhook', config: {} });
      const rotate = `${connectors.basePath}/${hook.id}/rotate-webhook-url`;
      const bare = await strict.call('POST', rotate, { token: tk });
      expect([bare.status, bare.body.code]).toEqual([428, 'precondition_required']);
      expect((await strict.call('GET', `${connectors.basePath}/${hook.id}`, { token: tk })).body).toEqual(hook);
      const rotated = await strict.call('POST', rotate, { token: tk, headers: { 'if-match': '"1"' } });
      expect([rotated.status, rotated.body.version]).toEqual([200, 2]);
      expect(rotated.body.webhook_url).not.toBe(hook.webhook_url);
    } finally {
      await strict.close();
    }
  });

  describe('idempotency keys', () => {
    const key = (s: string) => ({ 'idempotency-key': `${kind}-${s}` });

    it('replays the first answer of a create: one resource, identical bodies', async () => {
      const before = await countRows(t, cycles);
      const body = { name: 'once', start_date: '2026-01-01', end_date: '2026-03-31' };
      const first = await t.call('POST', cycles.basePath, { body, headers: key('create') });
      const again = await t.call('POST', cycles.basePath, { body, headers: key('create') });
      expect([first.status, again.status]).toEqual([201, 201]);
      expect(again.raw).toBe(first.raw);
      expect(again.headers.location).toBe(first.headers.location);
      expect(again.headers.etag).toBe(first.headers.etag);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers['original-request-id']).toBe(first.headers['x-request-id']);
      // A body that is not JSON is a 4xx like another: stored and replayed; other text is another request.
      const json = { 'content-type': 'application/json', ...key('malformed') };
      const broken = await t.call('POST', cycles.basePath, { payload: '{"name": ', headers: json });
      const replay = await t.call('POST', cycles.basePath, { payload: '{"name": ', headers: json });
      expect([broken.status, broken.body.code, replay.status, replay.headers['idempotent-replayed']]).toEqual([
        400,
        'invalid_json',
        400,
        'true',
      ]);
      const other = await t.call('POST', cycles.basePath, { payload: '{"name": 1', headers: json });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
      // Nested past any shape: refused as such (not a 500 from fingerprinting it), and stored.
      const deep = { 'content-type': 'application/json', ...key('deep') };
      const nested = `{"name": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
      const tooDeep = await t.call('POST', cycles.basePath, { payload: nested, headers: deep });
      expect([tooDeep.status, tooDeep.body.code]).toEqual([400, 'invalid_json']);
      const lookalike = { malformed_body: '{"name": ' }; // JSON that no malformed text stands for
      const parsed = await t.call('POST', cycles.basePath, { body: lookalike, headers: key('malformed') });
      expect([parsed.status, parsed.body.code]).toEqual([422, 'idempotency_key_reused']);
      expect(again.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
      expect(first.headers['original-request-id']).toBeUndefined();
      expect(await countRows(t, cycles)).toBe(before + 1);
    });

    it('stores a 415 with its key as any 4xx: replayed, and the key with a JSON body is 422, not a write', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      const text = { 'content-type': 'text/plain', ...key('media') };
      const refused = await t.call('PATCH', url, { payload: 'name=x', headers: text });
      expect([refused.status, refused.body.code]).toEqual([415, 'unsupported_media_type']);
      // RFC 5789 §2.2: a PATCH's 415 names the types a patch may come in.
      expect(refused.headers['accept-patch']).toBe('application/merge-patch+json, application/json');
      const replay = await t.call('PATCH', url, { payload: 'name=x', headers: text });
      expect([replay.status, replay.headers['idempotent-replayed'], replay.headers['accept-patch']]).toEqual([
        415,
        'true',
        'application/merge-patch+json, application/json',
      ]);
      const json = await t.call('PATCH', url, { body: { name: 'other' }, headers: key('media') });
      expect([json.status, json.body.code]).toEqual([422, 'idempotency_key_reused']);
      // The same bytes as another type are another request.
      const csv = { ...text, 'content-type': 'text/csv' };
      const other = await t.call('PATCH', url, { payload: 'name=x', headers: csv });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
      expect((await t.call('GET', url)).body).toEqual(doc);
      // A body of another type is judged as a body: after the row's 404 and 412.
      const missing = `${cycles.basePath}/${cycles.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      const plain = { 'content-type': 'text/plain' };
      expect((await t.call('PATCH', missing, { payload: 'name=x', headers: plain })).status).toBe(404);
      const stale = await t.call('PATCH', url, { payload: 'name=x', headers: { ...plain, 'if-match': '"9"' } });
      expect(stale.status).toBe(412);
    });

    // A Content-Type that is no media type was refused 415 by the framework before any route:
    // before the row's 404 and 412, without Accept-Patch, unstored with its key, and for no body.
    it('judges a Content-Type that is no media type (json) as a body of another type', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      const missing = `${cycles.basePath}/${cycles.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      for (const type of ['json', 'application/json, text/plain', 'application/ json']) {
        const headers = { 'content-type': type };
        expect((await t.call('PATCH', missing, { payload: '{"name":"x"}', headers })).status, type).toBe(404);
        const stale = await t.call('PATCH', url, {
          payload: '{"name":"x"}',
          headers: { ...headers, 'if-match': '"9"' },
        });
        expect(stale.status, type).toBe(412);
      }
      const keyed = { 'content-type': 'json', ...key('no-media-type') };
      const refused = await t.call('PATCH', url, { payload: '{"name":"x"}', headers: keyed });
      expect([refused.status, refused.body.code, refused.body.detail, refused.headers['accept-patch']]).toEqual([
        415,
        'unsupported_media_type',
        'Content-Type json is no media type (type/subtype); send application/json',
        'application/merge-patch+json, application/json',
      ]);
      const replay = await t.call('PATCH', url, { payload: '{"name":"x"}', headers: keyed });
      expect([replay.status, replay.headers['idempotent-replayed']]).toEqual([415, 'true']);
      // An empty body is no body, whatever its Content-Type says.
      const gone = await t.call('DELETE', url, { payload: '', headers: { 'content-type': 'json' } });
      expect(gone.status, gone.raw).toBe(200);
      const back = await t.call('POST', `${url}/restore`, { payload: '', headers: { 'content-type': 'json' } });
      expect(back.status, back.raw).toBe(200);
    });

    it('answers 415 to a body in a content coding (gzip, br), and stores nothing; identity is no coding', async () => {
      const body = { name: 'coded', start_date: '2026-01-01', end_date: '2026-03-31' };
      const before = await countRows(t, cycles);
      for (const [coding, payload] of [
        ['gzip', gzipSync(JSON.stringify(body))],
        ['gzip', JSON.stringify(body)], // labelled so, though it is not: the label is what a server goes by
        ['br', JSON.stringify(body)],
      ] as const) {
        const res = await t.call('POST', cycles.basePath, {
          payload,
          headers: { 'content-type': 'application/json', 'content-encoding': coding },
        });
        expect([coding, res.status, res.body.code]).toEqual([coding, 415, 'unsupported_media_type']);
        expect(res.body.detail).toBe(`Content-Encoding ${coding} is not accepted: send the body uncompressed`);
        // RFC 9110 §12.5.3: no content coding is taken.
        expect([res.headers['accept-encoding'], res.headers['accept-patch']]).toEqual(['identity', undefined]);
      }
      expect(await countRows(t, cycles)).toBe(before);
      for (const identity of ['identity', 'Identity, identity']) {
        const plain = await t.call('POST', cycles.basePath, {
          payload: JSON.stringify(body),
          headers: { 'content-type': 'application/json', 'content-encoding': identity },
        });
        expect([identity, plain.status]).toEqual([identity, 201]);
      }
      const mixed = await t.call('POST', cycles.basePath, {
        payload: JSON.stringify(body),
        headers: { 'content-type': 'application/json', 'content-encoding': 'identity, gzip' },
      });
      expect(mixed.status).toBe(415);
    });

    it('answers 422 when the key comes back with another body, path or caller', async () => {
      const body = { name: 'a', start_date: '2026-01-01', end_date: '2026-03-31' };
      expect((await t.call('POST', cycles.basePath, { body, headers: key('fp') })).status).toBe(201);
      const other = await t.call('POST', cycles.basePath, { body: { ...body, name: 'b' }, headers: key('fp') });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
      expect((await t.call('POST', objectives.basePath, { body: { title: 'x' }, headers: key('fp') })).status).toBe(
        422,
      );
      const colleague = await t.token({ sub: USER_B });
      expect((await t.call('POST', cycles.basePath, { token: colleague, body, headers: key('fp') })).status).toBe(422);
      // another tenant has its own key space
      const stranger = await t.token({ tenant: 'initech' });
      expect((await t.call('POST', cycles.basePath, { token: stranger, body, headers: key('fp') })).status).toBe(201);
    });

    it('stores 4xx answers too, but not 5xx', async () => {
      const bad = { name: 'x', start_date: 'soon', end_date: '2026-03-31' };
      const first = await t.call('POST', cycles.basePath, { body: bad, headers: key('4xx') });
      const again = await t.call('POST', cycles.basePath, { body: bad, headers: key('4xx') });
      expect([first.status, again.status, again.headers['idempotent-replayed']]).toEqual([400, 400, 'true']);
      // The same problem; its request_id names this request, as x-request-id does, and the
      // first request is named by Original-Request-Id.
      expect(again.body).toEqual({ ...first.body, request_id: again.headers['x-request-id'] });
      expect(first.body.request_id).toBe(first.headers['x-request-id']);
      expect(again.headers['original-request-id']).toBe(first.headers['x-request-id']);

      const body = { name: 'flaky', start_date: '2026-01-01', end_date: '2026-03-31' };
      const failed = await whileFailing(t, 'okr_cycles', 'INSERT', () =>
        t.call('POST', cycles.basePath, { body, headers: key('5xx') }),
      );
      expect(failed.status).toBe(500);
      const retried = await t.call('POST', cycles.basePath, { body, headers: key('5xx') });
      expect([retried.status, retried.headers['idempotent-replayed']]).toEqual([201, undefined]);
      // A 503 (here a statement PostgreSQL cancelled, 57014) is not stored either: the retry runs.
      if (kind === 'postgres') {
        const unavailable = await whileFailing(
          t,
          'okr_cycles',
          'INSERT',
          () => t.call('POST', cycles.basePath, { body, headers: key('503') }),
          '57014',
        );
        expect(unavailable.status).toBe(503);
        const again = await t.call('POST', cycles.basePath, { body, headers: key('503') });
        expect([again.status, again.headers['idempotent-replayed']]).toEqual([201, undefined]);
      }
    });

    it("scopes a key by tenant and application: another app's or tenant's same key is a request of its own", async () => {
      const body = { name: 'shared', start_date: '2026-01-01', end_date: '2026-03-31' };
      const headers = key('shared');
      const answers = [];
      for (const caller of [
        { tenant: 'idem', app: 'app_one', sub: 'svc' },
        { tenant: 'idem', app: 'app_two', sub: 'svc' },
        { tenant: 'idem-other', app: 'app_one', sub: 'svc' },
      ]) {
        const res = await t.call('POST', cycles.basePath, { token: await t.token(caller), body, headers });
        answers.push([res.status, res.headers['idempotent-replayed'], res.body.app_id]);
      }
      expect(answers).toEqual([
        [201, undefined, 'app_one'],
        [201, undefined, 'app_two'],
        [201, undefined, 'app_one'],
      ]);
    });

    it('covers PATCH and DELETE, and answers 403 before replaying', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      const p1 = await t.call('PATCH', url, { body: { name: 'p' }, headers: key('patch') });
      const p2 = await t.call('PATCH', url, { body: { name: 'p' }, headers: key('patch') });
      expect([p1.body.version, p2.body.version, p2.raw === p1.raw]).toEqual([2, 2, true]);
      const d1 = await t.call('DELETE', url, { headers: key('delete') });
      const d2 = await t.call('DELETE', url, { headers: key('delete') });
      expect([d1.status, d2.status, d2.raw === d1.raw]).toEqual([200, 200, true]);
      const readOnly = await t.token({ scope: 'okr:read' });
      expect((await t.call('DELETE', url, { token: readOnly, headers: key('delete') })).status).toBe(403);
    });

    it('fingerprints a JSON body by its members, not their order', async () => {
      const body = { name: 'ordered', start_date: '2026-01-01', end_date: '2026-03-31', source: 'crm' };
      const first = await t.call('POST', cycles.basePath, { body, headers: key('order') });
      const reordered = { source: 'crm', end_date: '2026-03-31', start_date: '2026-01-01', name: 'ordered' };
      const again = await t.call('POST', cycles.basePath, { body: reordered, headers: key('order') });
      expect([first.status, again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([
        201,
        201,
        'true',
        first.raw,
      ]);
      const other = await t.call('POST', cycles.basePath, {
        body: { ...reordered, source: 'erp' },
        headers: key('order'),
      });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
    });

    // Builds before 83ac4a2 fingerprinted the members in the order they came: a retry of such a
    // key's request across an upgrade (within its 24 h) was 422, as if it were another request.
    it("replays a key an earlier build stored, fingerprinted by its members' order as sent", async () => {
      const body = { name: 'upgraded', start_date: '2026-01-01', end_date: '2026-03-31', source: 'crm' };
      const first = await t.call('POST', cycles.basePath, { body, headers: key('earlier') });
      expect(first.status).toBe(201);
      // As the earlier build stored it.
      const principal = { sub: USER_A, tenantId: 'acme', appId: null, scopes: null };
      const idem = new Idempotency(t.store, t.clock, REQUEST_KEY, 0);
      const earlier = idem.earlierFingerprints('POST', cycles.basePath, principal, body)[1] as string;
      expect(earlier).not.toBe(idem.fingerprint('POST', cycles.basePath, principal, body));
      await t.store.db
        .updateTable('edm_idempotency_keys')
        .set({ fingerprint: earlier })
        .where('key', '=', `${kind}-earlier`)
        .execute();
      const again = await t.call('POST', cycles.basePath, { body, headers: key('earlier') });
      expect([again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([201, 'true', first.raw]);
      // Another request under that key is still another request.
      const other = await t.call('POST', cycles.basePath, {
        body: { ...body, source: 'erp' },
        headers: key('earlier'),
      });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
    });

    // The URL a fingerprint hashes is the one routed: the same operation under another spelling of
    // its path (a trailing slash, an escape, an empty query) was 422, as if it were another request.
    it('replays a request sent again under another spelling of its URL', async () => {
      const body = { name: 'spelled', start_date: '2026-01-01', end_date: '2026-03-31' };
      const first = await t.call('POST', cycles.basePath, { body, headers: key('spelling') });
      expect(first.status).toBe(201);
      const escaped = cycles.basePath.replace(/c/, '%63');
      for (const url of [`${cycles.basePath}/`, escaped, `${cycles.basePath}?`]) {
        const again = await t.call('POST', url, { body, headers: key('spelling') });
        expect([url, again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([
          url,
          201,
          'true',
          first.raw,
        ]);
      }
      // A DELETE's parameters, in any order of spelling: one request.
      const doc = await t.create(cycles, token);
      const gone = await t.call('DELETE', `${cycles.basePath}/${doc.id}?cascade=true`, { headers: key('del') });
      const again = await t.call('DELETE', `${cycles.basePath}/${doc.id}/?cascade=true`, { headers: key('del') });
      expect([gone.status, again.status, again.headers['idempotent-replayed']]).toEqual([200, 200, 'true']);
      // An escaped `?` names another row (`x?cascade=true`), not a parameter: another request.
      const kept = await t.create(cycles, token);
      const escapedQuery = await t.call('DELETE', `${cycles.basePath}/${kept.id}%3Fcascade=true`, {
        headers: key('escaped-query'),
      });
      expect(escapedQuery.status).toBe(404);
      const real = await t.call('DELETE', `${cycles.basePath}/${kept.id}?cascade=true`, {
        headers: key('escaped-query'),
      });
      expect([real.status, real.body.code]).toEqual([422, 'idempotency_key_reused']);
      // A key an earlier build stored, by the URL as it was sent, still replays its request.
      const principal = { sub: USER_A, tenantId: 'acme', appId: null, scopes: null };
      const idem = new Idempotency(t.store, t.clock, REQUEST_KEY);
      const sent = `${cycles.basePath}/`;
      const created = await t.call('POST', sent, { body: { ...body, name: 'sent' }, headers: key('sent') });
      await t.store.db
        .updateTable('edm_idempotency_keys')
        .set({ fingerprint: idem.fingerprint('POST', sent, principal, { ...body, name: 'sent' }) })
        .where('key', '=', `${kind}-sent`)
        .execute();
      const retried = await t.call('POST', sent, { body: { ...body, name: 'sent' }, headers: key('sent') });
      expect([retried.status, retried.headers['idempotent-replayed'], retried.raw]).toEqual([201, 'true', created.raw]);
    });

    // The body a fingerprint hashes may hold a write-only secret (a connector's): kept 24 h beside
    // its key, a plain SHA-256 of a body otherwise known to the tenant lets whoever holds the
    // database, or a backup of it, guess the secret offline.
    it('keeps a fingerprint keyed by the server secret, not a plain hash of a body with a secret', async () => {
      const secret = 'postgres://report:summer2026@127.0.0.1:9/sales';
      const body = { name: 'sealed', kind: 'postgres', config: { query: 'select 1' }, secret };
      const first = await t.call('POST', connectors.basePath, { body, headers: key('secret-fp') });
      expect(first.status).toBe(201);
      const stored = async () =>
        (
          await t.store.db
            .selectFrom('edm_idempotency_keys')
            .select('fingerprint')
            .where('key', '=', `${kind}-secret-fp`)
            .executeTakeFirstOrThrow()
        ).fingerprint as string;
      const sorted = { config: body.config, kind: body.kind, name: body.name, secret };
      const text = `POST ${connectors.basePath}\n${USER_A}\n${JSON.stringify(sorted)}`;
      const plain = createHash('sha256').update(text).digest('base64url');
      expect(await stored()).not.toBe(plain);
      expect(await stored()).toBe(createHmac('sha256', REQUEST_KEY).update(text).digest('base64url'));
      // A key a build before stored, under the plain hash, still replays its request within its 24 h.
      await t.store.db
        .updateTable('edm_idempotency_keys')
        .set({ fingerprint: plain })
        .where('key', '=', `${kind}-secret-fp`)
        .execute();
      const again = await t.call('POST', connectors.basePath, { body, headers: key('secret-fp') });
      expect([again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([201, 'true', first.raw]);
      const other = await t.call('POST', connectors.basePath, {
        body: { ...body, secret: 'postgres://report:winter2026@127.0.0.1:9/sales' },
        headers: key('secret-fp'),
      });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
    });

    // Builds before the refusal of a member named twice took such a body (as its last): a retry
    // of its request across the upgrade is replayed, not refused as another request (422).
    it('replays a key an earlier build stored for a body naming a member twice, which is 400 now', async () => {
      const payload = '{"name":"first","start_date":"2026-01-01","end_date":"2026-03-31","name":"second"}';
      const json = { 'content-type': 'application/json', ...key('twice-earlier') };
      const read = JSON.parse(payload);
      const first = await t.call('POST', cycles.basePath, { body: read, headers: key('twice-earlier') });
      expect([first.status, first.body.name]).toEqual([201, 'second']);
      // As the earlier build stored it: the plain hash of the value it read.
      const principal = { sub: USER_A, tenantId: 'acme', appId: null, scopes: null };
      const idem = new Idempotency(t.store, t.clock, REQUEST_KEY);
      const [earlier] = idem.earlierFingerprints('POST', cycles.basePath, principal, read);
      await t.store.db
        .updateTable('edm_idempotency_keys')
        .set({ fingerprint: earlier })
        .where('key', '=', `${kind}-twice-earlier`)
        .execute();
      const again = await t.call('POST', cycles.basePath, { payload, headers: json });
      expect([again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([201, 'true', first.raw]);
      // Without a key stored so, it is refused.
      const fresh = await t.call('POST', cycles.basePath, { payload, headers: { ...json, ...key('twice-new') } });
      expect([fresh.status, fresh.body.code]).toEqual([400, 'invalid_json']);
    });

    it('tells a number beyond a double (1e400) from null in a fingerprint', async () => {
      const payload = (weight: string) =>
        `{"name":"huge","start_date":"2026-01-01","end_date":"2026-03-31","source":${weight}}`;
      const json = { 'content-type': 'application/json', ...key('huge') };
      const first = await t.call('POST', cycles.basePath, { payload: payload('null'), headers: json });
      expect(first.status).toBe(201);
      for (const huge of ['1e400', '-1e400']) {
        const again = await t.call('POST', cycles.basePath, { payload: payload(huge), headers: json });
        expect([again.status, again.body.code]).toEqual([422, 'idempotency_key_reused']);
      }
    });

    it('takes a DELETE or restore with {} or an empty body as the same request as with none', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      const json = { 'content-type': 'application/json' };
      const first = await t.call('DELETE', url, { headers: key('no-body') });
      const empty = await t.call('DELETE', url, { body: {}, headers: key('no-body') });
      const blank = await t.call('DELETE', url, { payload: '', headers: { ...json, ...key('no-body') } });
      expect([first.status, empty.status, empty.headers['idempotent-replayed'], empty.raw]).toEqual([
        200,
        200,
        'true',
        first.raw,
      ]);
      expect([blank.status, blank.headers['idempotent-replayed']]).toEqual([200, 'true']);
      // A member is another request (and would be refused): 422 for the key.
      const other = await t.call('DELETE', url, { body: { name: 'x' }, headers: key('no-body') });
      expect([other.status, other.body.code]).toEqual([422, 'idempotency_key_reused']);
      const restored = await t.call('POST', `${url}/restore`, { body: {}, headers: key('no-body-restore') });
      const again = await t.call('POST', `${url}/restore`, { headers: key('no-body-restore') });
      expect([restored.status, again.headers['idempotent-replayed'], again.raw]).toEqual([200, 'true', restored.raw]);
    });

    it('rejects malformed keys, naming the header', async () => {
      for (const key of ['x'.repeat(256), 'a b', 'é', '']) {
        const res = await t.call('POST', cycles.basePath, { body: {}, headers: { 'idempotency-key': key } });
        expect([res.status, res.body.code, res.body.errors]).toEqual([
          400,
          'invalid_header',
          [expect.objectContaining({ path: 'Idempotency-Key', code: 'invalid_header' })],
        ]);
      }
      // Two headers reach the server as one, joined by a comma and a space: no key either.
      const twice = await t.app.inject({
        method: 'POST',
        url: cycles.basePath,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'idempotency-key': ['a', 'b'],
        },
        payload: '{}',
      });
      expect([twice.statusCode, twice.json().errors[0].path]).toEqual([400, 'Idempotency-Key']);
    });

    it('20 concurrent POSTs with one key make one resource and identical answers (or 409 while running)', async () => {
      const before = await countRows(t, cycles);
      const body = { name: 'race', start_date: '2026-01-01', end_date: '2026-03-31' };
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => t.call('POST', cycles.basePath, { body, headers: key('race') })),
      );
      expect(await countRows(t, cycles)).toBe(before + 1);
      const created = answers.filter((a) => a.status === 201);
      expect(created.length).toBeGreaterThanOrEqual(1);
      expect(new Set(created.map((a) => a.raw)).size).toBe(1);
      for (const a of answers.filter((x) => x.status !== 201))
        expect([a.status, a.body.code]).toEqual([409, 'idempotency_in_flight']);
    });

    it('forgets keys after 24 h, before the sweep removes them too', async () => {
      const body = { name: 'old', start_date: '2026-01-01', end_date: '2026-03-31' };
      const first = await t.call('POST', cycles.basePath, { body, headers: key('expiry') });
      await t.call('POST', cycles.basePath, { body, headers: key('expiry-unswept') });
      t.clock.advance(24 * 3600 * 1000 + 1000);
      // Expired but not swept yet: another body is a request of its own, not a 422 for the old one.
      const unswept = await t.call('POST', cycles.basePath, {
        body: { ...body, name: 'new' },
        headers: key('expiry-unswept'),
      });
      expect([unswept.status, unswept.headers['idempotent-replayed']]).toEqual([201, undefined]);
      t.clock.advance(3600 * 1000);
      const removed = await new Idempotency(t.store, t.clock, REQUEST_KEY).sweep();
      expect(removed).toBeGreaterThanOrEqual(1);
      const fresh = await t.call('POST', cycles.basePath, { body, headers: key('expiry') });
      expect(fresh.status).toBe(201);
      expect(fresh.body.id).not.toBe(first.body.id);
    });

    /** A key claimed directly (as a write does before its work), for tenant `<name>-<kind>`. */
    const claimed = async (name: string) => {
      const principal = { sub: 'usr-1', tenantId: `${name}-${kind}`, appId: null, scopes: null };
      const claims = new Idempotency(t.store, t.clock, REQUEST_KEY);
      const fp = claims.fingerprint('POST', '/x', principal, {});
      const got = await claims.claim(principal, 'k', fp);
      if (!('claim' in got)) throw new Error('expected a claim');
      return {
        claims,
        claim: got.claim,
        again: () => claims.claim(principal, 'k', fp),
        /** The retry as another process on the store gets it (it knows nothing of this one's releases). */
        elsewhere: () => new Idempotency(t.store, t.clock, REQUEST_KEY).claim(principal, 'k', fp),
      };
    };
    // A claim whose process died (`kill -9`) holds until its lease ends: a minute for a write, a
    // connector timeout more for one that reads outside its transaction first (a sync). Past the
    // time its request may take (10 s more), Retry-After says the seconds its lease has left.
    it.each([
      ['a write', false, 0],
      ['a sync, which reads its feed first', true, 10_000],
    ])(
      "answers a retry of %s whose claim was orphaned 409 with the lease's seconds, then runs it",
      async (_n, outside, extraMs) => {
        const principal = { sub: 'usr-1', tenantId: `orphan-${extraMs}-${kind}`, appId: null, scopes: null };
        const claims = new Idempotency(t.store, t.clock, REQUEST_KEY, 10_000);
        const fp = claims.fingerprint('POST', '/x', principal, {});
        const start = t.clock.now();
        expect(await claims.claim(principal, 'k', fp, undefined, outside)).toHaveProperty('claim');
        const retryAt = async (ms: number) => {
          t.clock.set(start + ms);
          return claims.claim(principal, 'k', fp, undefined, outside).then(
            (got) => ('claim' in got ? 'runs' : 'replayed'),
            (err: ApiError) => `${err.code} ${err.headers?.['retry-after']}`,
          );
        };
        expect([
          await retryAt(extraMs + 9_000),
          await retryAt(extraMs + 11_000),
          await retryAt(extraMs + 59_000),
          await retryAt(extraMs + 60_000),
        ]).toEqual(['idempotency_in_flight 1', 'idempotency_in_flight 49', 'idempotency_in_flight 1', 'runs']);
      },
    );

    /** Releases a claim while the database refuses its delete (the outage behind a 5xx): its retries go on. */
    const releaseDuringOutage = (
      claims: Idempotency,
      claim: Parameters<Idempotency['release']>[0],
      meanwhile: () => Promise<void> = async () => {},
    ) =>
      whileFailing(t, 'edm_idempotency_keys', 'DELETE', async () => {
        const r = claims.release(claim);
        await r;
        // Still in the outage: once it ends, the release's next attempt (a second on) may land.
        await meanwhile();
        return { settled: r.settled };
      });

    // The connection can drop after COMMIT reached the database and before its reply came back:
    // the request fails (5xx), yet the work and its stored answer are in. A retry must replay it.
    it('keeps the stored answer of work that committed though its request failed, and replays it', async () => {
      const { claims, claim, again } = await claimed('lost');
      const answer = { status: 201, headers: { 'content-type': 'application/json' }, body: '{"done":true}' };
      await claims.completeAlone(claim, answer); // the work's transaction, committed
      await claims.release(claim); // then the 5xx path
      expect(await again()).toEqual({ replay: answer });
    });

    it("releases a 5xx's claim once the database takes the delete again, not a minute later", async () => {
      const { claims, claim, elsewhere } = await claimed('outage');
      // The outage that made the 5xx refuses the release too; it is tried again in the background.
      const { settled } = await releaseDuringOutage(claims, claim, async () => {
        await expect(elsewhere()).rejects.toMatchObject({ code: 'idempotency_in_flight' });
      });
      expect(await settled).toBe(true);
      expect('claim' in (await elsewhere())).toBe(true);
    });

    it('lets a retry that reaches the process still releasing the claim take it over at once, and stops the release', async () => {
      const { claims, claim, again, elsewhere } = await claimed('taken-over');
      const { settled } = await releaseDuringOutage(claims, claim);
      // Not at the release's next attempt, a second or more away: now (in the same millisecond as
      // the claim it takes over, whose release must never match it).
      const retried = await again();
      expect('claim' in retried).toBe(true);
      // The release stops without deleting the retry's claim, which holds as any running one does.
      expect(await settled).toBe(true);
      await expect(elsewhere()).rejects.toMatchObject({ code: 'idempotency_in_flight' });
      if (!('claim' in retried)) throw new Error('expected a claim');
      const answer = { status: 201, headers: {}, body: '{"ran":"once"}' };
      await claims.completeAlone(retried.claim, answer);
      expect(await elsewhere()).toEqual({ replay: answer });
    });

    // The COMMIT of the first attempt's work can land after its 503 was answered (a session cut at
    // its read deadline while the server was stalled): a retry that read its claim running just
    // before must replay that answer, not take the claim over and run the work a second time.
    it.runIf(kind === 'postgres')(
      'replays the work of a claim being released whose COMMIT lands while a retry takes it over',
      async () => {
        const principal = { sub: 'usr-1', tenantId: `late-commit-${kind}`, appId: null, scopes: null };
        let afterRead: (() => Promise<void>) | null = null;
        // Runs `afterRead` once, after the retry's read of the claim's row (its fingerprint column).
        const pause: KyselyPlugin = {
          transformQuery: (a) => a.node,
          async transformResult(a) {
            const rows = a.result.rows as Record<string, unknown>[];
            if (afterRead && rows.length === 1 && 'fingerprint' in (rows[0] ?? {})) {
              const run = afterRead;
              afterRead = null;
              await run();
            }
            return a.result;
          },
        };
        const paused = t.store.db.withPlugin(pause);
        const claims = new Idempotency(t.store, t.clock, REQUEST_KEY, 0, (fn) => fn(paused));
        const fp = claims.fingerprint('POST', '/x', principal, {});
        const got = await claims.claim(principal, 'k', fp);
        if (!('claim' in got)) throw new Error('expected a claim');
        await whileFailing(t, 'edm_idempotency_keys', 'DELETE', async () => {
          await claims.release(got.claim);
        });
        const late = new pg.Client({ connectionString: PG_URL });
        await late.connect();
        try {
          await late.query(`SET search_path TO ${t.store.schema}`);
          afterRead = async () => {
            await late.query('BEGIN');
            await late.query(
              `UPDATE edm_idempotency_keys SET state = 'done', status = 201, headers = '{}', body = '{"ran":"once"}'
               WHERE tenant_id = $1 AND key = 'k' AND claimed_at = $2`,
              [principal.tenantId, got.claim.claimedAt],
            );
            setTimeout(() => void late.query('COMMIT'), 300);
          };
          expect(await claims.claim(principal, 'k', fp)).toEqual({
            replay: { status: 201, headers: {}, body: '{"ran":"once"}' },
          });
        } finally {
          await late.end();
        }
      },
    );

    // A 503 for a pool with no connection to lend waited a second connect timeout for its key's
    // release (which needs a connection too) before it was answered: 10 s instead of 5.
    it('answers a 5xx without waiting past releaseWithin for a release the database does not take', async () => {
      const principal = { sub: 'usr-1', tenantId: `stalled-${kind}`, appId: null, scopes: null };
      let stall = false;
      const claims = new Idempotency(t.store, t.clock, REQUEST_KEY, 0, (fn) =>
        stall ? new Promise<never>(() => {}) : fn(t.store.db),
      );
      const fp = claims.fingerprint('POST', '/x', principal, {});
      const got = await claims.claim(principal, 'k', fp);
      if (!('claim' in got)) throw new Error('expected a claim');
      stall = true; // the release waits for a connection that never comes
      const answered = await Promise.race([
        claims.releaseWithin(got.claim, 20).then(() => 'answered'),
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 5_000)),
      ]);
      expect(answered).toBe('answered');
      claims.stop();
      // Where the database takes it, the key is free by the time the answer goes.
      stall = false;
      const next = await claims.claim(principal, 'k2', fp);
      if (!('claim' in next)) throw new Error('expected a claim');
      await claims.releaseWithin(next.claim, 5_000);
      expect('claim' in (await claims.claim(principal, 'k2', fp))).toBe(true);
    });

    it('stops trying to release once the server closes (its store may be closed)', async () => {
      const { claims, claim, again } = await claimed('closing');
      const { settled } = await releaseDuringOutage(claims, claim);
      claims.stop();
      expect(await settled).toBe(false);
      await expect(again()).rejects.toMatchObject({ code: 'idempotency_in_flight' });
    });

    // A request can outlive its statement timeout (answered 503, its key released) while its
    // transaction still reaches COMMIT: its answer then finds no claim, and the work must not stay.
    it('refuses to record an answer whose claim was released meanwhile, failing its transaction', async () => {
      const { claims, claim } = await claimed('late');
      expect(await claims.release(claim).settled).toBe(true);
      const answer = { status: 201, headers: {}, body: '{}' };
      await expect(claims.completeAlone(claim, answer)).rejects.toMatchObject({ code: 'service_unavailable' });
    });

    it('says how long a claim held past any request (its process died) still holds: its lease, not a second', async () => {
      const { again } = await claimed('orphan');
      t.clock.advance(5_000); // a request still running: retry in a second
      expect(await again().catch((e: unknown) => e)).toMatchObject({ headers: { 'retry-after': '1' } });
      t.clock.advance(15_000); // 20 s held: the lease (60 s) decides
      expect(await again().catch((e: unknown) => e)).toMatchObject({
        code: 'idempotency_in_flight',
        headers: { 'retry-after': '40' },
      });
      t.clock.advance(40_000);
      expect('claim' in (await again())).toBe(true);
    });
  });

  describe('soft delete and restore', () => {
    it('hides deleted rows from lists, restores them, refuses double restores', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      await t.call('DELETE', url);
      const listed = async (q = '') =>
        ((await t.call('GET', `${cycles.basePath}?limit=200${q}`)).body.data as Doc[]).map((d) => d.id);
      expect(await listed()).not.toContain(doc.id);
      expect(await listed('&include_deleted=true')).toContain(doc.id);
      const restored = await t.call('POST', `${url}/restore`);
      expect(restored.status).toBe(200);
      expect(restored.body).toMatchObject({ is_deleted: false, deleted_at: null, deleted_by: null, version: 3 });
      expect(await listed()).toContain(doc.id);
      const again = await t.call('POST', `${url}/restore`);
      expect([again.status, again.body.code]).toEqual([409, 'not_deleted']);
    });

    it('deletes a parent whose children are all deleted without cascade: deleted children hold nothing', async () => {
      const cycle = await t.create(cycles, token);
      const objective = await t.create(objectives, token, { cycle_id: cycle.id });
      expect((await t.call('DELETE', `${objectives.basePath}/${objective.id}`)).status).toBe(200);
      const removed = await t.call('DELETE', `${cycles.basePath}/${cycle.id}`);
      expect([removed.status, removed.body.is_deleted]).toEqual([200, true]);
    });

    it('refuses to delete a parent with live children unless cascade=true, which deletes them all at once', async () => {
      const cycle = await t.create(cycles, token);
      const objective = await t.create(objectives, token, { cycle_id: cycle.id });
      const k = await t.create(kr, token, { objective_id: objective.id });
      const blocked = await t.call('DELETE', `${cycles.basePath}/${cycle.id}`);
      expect([blocked.status, blocked.body.code, blocked.body.dependents]).toEqual([
        409,
        'has_dependents',
        { objectives: 1 },
      ]);
      const blockedObjective = await t.call('DELETE', `${objectives.basePath}/${objective.id}`);
      expect(blockedObjective.body.dependents).toEqual({ 'key-results': 1 });
      const cascaded = await t.call('DELETE', `${cycles.basePath}/${cycle.id}?cascade=true`);
      expect(cascaded.status).toBe(200);
      for (const [resource, id] of [
        [objectives, objective.id],
        [kr, k.id],
      ] as const) {
        const row = (await t.call('GET', `${resource.basePath}/${id}`)).body;
        expect([row.is_deleted, row.deleted_at]).toEqual([true, cascaded.body.deleted_at]);
      }
      // a child cannot come back while its parent is deleted
      const early = await t.call('POST', `${kr.basePath}/${k.id}/restore`);
      expect([early.status, early.body.code]).toEqual([409, 'parent_deleted']);
      expect((await t.call('POST', `${cycles.basePath}/${cycle.id}/restore`)).status).toBe(200);
      expect((await t.call('POST', `${objectives.basePath}/${objective.id}/restore`)).status).toBe(200);
      const back = await t.call('POST', `${kr.basePath}/${k.id}/restore`);
      expect(back.status).toBe(200);
      const o = (await t.call('GET', `${objectives.basePath}/${objective.id}`)).body;
      expect(o.key_result_count).toBe(1);
    });

    it('rejects unknown delete parameters, naming them', async () => {
      const doc = await t.create(cycles, token);
      const res = await t.call('DELETE', `${cycles.basePath}/${doc.id}?force=true`);
      expect([res.status, res.body.code, errorPaths(res)[0]]).toEqual([400, 'unknown_parameter', 'force']);
      const bad = await t.call('DELETE', `${cycles.basePath}/${doc.id}?cascade=yes`);
      expect([bad.status, bad.body.code, errorPaths(bad)[0]]).toEqual([400, 'invalid_parameter', 'cascade']);
      const twice = await t.call('DELETE', `${cycles.basePath}/${doc.id}?cascade=true&cascade=false`);
      expect([twice.status, twice.body.code, errorPaths(twice)[0]]).toEqual([400, 'invalid_parameter', 'cascade']);
      expect((await t.call('GET', `${cycles.basePath}/${doc.id}`)).body.is_deleted).toBe(false);
    });

    const missing = `${cycles.basePath}/cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
    it.each([
      ['GET', '', undefined],
      ['PATCH', '', { name: 'x' }],
      ['DELETE', '', undefined],
      ['POST', '/restore', undefined],
    ] as const)(
      '%s%s: a missing id is 404 before its query parameters are looked at, and a stale If-Match 412',
      async (method, suffix, body) => {
        const gone = await t.call(method, `${missing}${suffix}?bogus=1`, { body });
        expect([gone.status, gone.body.code]).toEqual([404, 'not_found']);
        if (method === 'GET') return;
        const doc = await t.create(cycles, token);
        if (suffix === '/restore') await t.call('DELETE', `${cycles.basePath}/${doc.id}`);
        const before = await storedRow(t, cycles, doc.id as string);
        const url = `${cycles.basePath}/${doc.id}${suffix}`;
        const stale = await t.call(method, `${url}?bogus=1`, { body, headers: { 'if-match': '"99"' } });
        expect([stale.status, stale.body.code]).toEqual([412, 'precondition_failed']);
        const unknown = await t.call(method, `${url}?bogus=1`, { body });
        expect([unknown.status, unknown.body.code, errorPaths(unknown)[0]]).toEqual([
          400,
          'unknown_parameter',
          'bogus',
        ]);
        expect(await storedRow(t, cycles, doc.id as string)).toEqual(before);
      },
    );

    it.each(['GET', 'PATCH', 'DELETE'] as const)(
      '%s: an id with U+0000 names no row: 404 on both stores',
      async (method) => {
        const res = await t.call(method, `${cycles.basePath}/cyc_%00`, {
          body: method === 'PATCH' ? { name: 'x' } : undefined,
        });
        expect([res.status, res.body.code]).toEqual([404, 'not_found']);
        const nested = await t.call('POST', `${kr.basePath}/kr_%00/check-ins`, { body: { value: 1 } });
        expect([nested.status, nested.body.code]).toEqual([404, 'not_found']);
      },
    );

    it('DELETE and restore take no body: a member is 400 naming it, after 404 and 412, and nothing changes', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      const json = { 'content-type': 'application/json' };
      expect((await t.call('DELETE', missing, { body: { name: 'x' } })).status).toBe(404);
      const stale = await t.call('DELETE', url, { body: { name: 'x' }, headers: { 'if-match': '"9"' } });
      expect(stale.status).toBe(412);
      const before = await storedRow(t, cycles, doc.id as string);
      const member = await t.call('DELETE', url, { body: { name: 'renamed', is_deleted: false } });
      expect([member.status, member.body.code, errorPaths(member)]).toEqual([
        400,
        'unknown_field',
        ['/name', '/is_deleted'],
      ]);
      const broken = await t.call('DELETE', url, { payload: '{not json', headers: json });
      expect([broken.status, broken.body.code]).toEqual([400, 'invalid_json']);
      expect(await storedRow(t, cycles, doc.id as string)).toEqual(before);
      // An empty body is no body, whatever its Content-Type; so is an empty object.
      expect((await t.call('DELETE', url, { payload: '', headers: json })).status).toBe(200);
      const restore = `${url}/restore`;
      const deleted = await storedRow(t, cycles, doc.id as string);
      const renamed = await t.call('POST', restore, { body: { name: 'renamed' } });
      expect([renamed.status, renamed.body.code]).toEqual([400, 'unknown_field']);
      expect((await t.call('POST', restore, { payload: '{not json', headers: json })).status).toBe(400);
      expect(await storedRow(t, cycles, doc.id as string)).toEqual(deleted);
      const back = await t.call('POST', restore, { body: {} });
      expect([back.status, back.body.is_deleted, back.body.name]).toEqual([200, false, doc.name]);
    });

    it('names an unknown member by its JSON Pointer (~0, ~1) and quotes its name, in any body', async () => {
      const doc = await t.create(cycles, token);
      const url = `${cycles.basePath}/${doc.id}`;
      const body = { 'a/b': 1, 'c~d': 2, '': 3 };
      const expected = (what: string) => [
        { path: '/a~1b', code: 'unknown_field', message: `"a/b" ${what}` },
        { path: '/c~0d', code: 'unknown_field', message: `"c~d" ${what}` },
        { path: '/', code: 'unknown_field', message: `"" ${what}` },
      ];
      for (const [method, path] of [
        ['POST', cycles.basePath],
        ['PATCH', url],
      ] as const) {
        const res = await t.call(method, path, { body: { name: 'x', ...body } });
        expect([method, res.status, res.body.code, res.body.errors]).toEqual([
          method,
          400,
          'unknown_field',
          expected('is not a field of Cycle'),
        ]);
      }
      for (const [method, path] of [
        ['DELETE', url],
        ['POST', `${url}/restore`],
      ] as const) {
        const res = await t.call(method, path, { body });
        expect([method, res.status, res.body.errors]).toEqual([method, 400, expected('is not accepted here')]);
      }
      const k = await t.create(kr, token);
      const checkIn = await t.call('POST', `${kr.basePath}/${k.id}/check-ins`, { body: { value: 1, ...body } });
      expect([checkIn.status, checkIn.body.errors]).toEqual([400, expected('is not accepted here')]);
    });
  });
});
