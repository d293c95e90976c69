import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc, Resource } from '../src/core/resource.js';
import { byName, countRows, resources, storedRow, storeKinds, type TestApp, testApp, USER_B } from './helpers.js';

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe.each(storeKinds)('CRUD on %s', (kind) => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await testApp(kind);
    token = await t.token();
  });
  afterAll(() => t.close());

  describe.each(resources.map((r) => [r.name, r] as const))('%s', (_name, resource: Resource) => {
    const titleField = resource.titleField;

    it('creates with 201, Location, ETag and every field present, stamped from the token', async () => {
      t.clock.advance(1000);
      const doc = await t.create(resource, token);
      const res = await t.call('GET', `${resource.basePath}/${doc.id}`, { token });
      expect(res.status).toBe(200);
      expect(res.headers.etag).toBe('"1"');
      const visible = Object.entries(resource.allFields).filter(([, f]) => f.access !== 'writeOnly');
      expect(Object.keys(res.body).sort()).toEqual(visible.map(([n]) => n).sort());
      expect(res.body.id).toMatch(new RegExp(resource.idPattern));
      expect(res.body).toMatchObject({
        tenant_id: 'acme',
        app_id: null,
        created_by: doc.created_by,
        updated_by: doc.created_by,
        source: 'edm',
        source_type: 'api',
        is_deleted: false,
        deleted_at: null,
        deleted_by: null,
        schema_version: resource.schemaVersion,
        version: 1,
      });
      expect(res.body.created_at).toMatch(ISO_MS);
      expect(res.body.created_at).toBe(new Date(t.clock.now()).toISOString());
      expect(res.body.updated_at).toBe(res.body.created_at);
      const created = await t.call('POST', resource.basePath, { token, body: { ...stripServerFields(resource, doc) } });
      expect(created.status).toBe(201);
      expect(created.headers.location).toBe(`${resource.basePath}/${created.body.id}`);
      expect(created.headers.etag).toBe('"1"');
    });

    it('updates by JSON Merge Patch: absent unchanged, null clears (to the default where there is one), version and updated_at bumped', async () => {
      const doc = await t.create(resource, token, { source: 'crm-sync', source_type: 'backend' });
      t.clock.advance(5000);
      const other = await t.token({ sub: USER_B });
      const res = await t.call('PATCH', `${resource.basePath}/${doc.id}`, {
        token: other,
        body: { [titleField]: 'Renamed', source: null },
        headers: { 'content-type': 'application/merge-patch+json' },
      });
      expect(res.status).toBe(200);
      expect(res.headers.etag).toBe('"2"');
      expect(res.body).toMatchObject({
        [titleField]: 'Renamed',
        source: 'edm', // as a create without one: null is no provenance a row can have
        source_type: 'backend',
        version: 2,
        updated_by: USER_B,
        created_by: doc.created_by,
        created_at: doc.created_at,
      });
      expect(res.body.updated_at).toBe(new Date(t.clock.now()).toISOString());
      const again = await t.call('GET', `${resource.basePath}/${doc.id}`, { token });
      expect(again.body).toEqual(res.body);
    });

    it('soft-deletes: GET still answers, PATCH is 409, DELETE again is 404', async () => {
      const doc = await t.create(resource, token);
      const del = await t.call('DELETE', `${resource.basePath}/${doc.id}`, { token });
      expect(del.status).toBe(200);
      expect(del.body).toMatchObject({ is_deleted: true, deleted_by: doc.created_by, version: 2 });
      expect(del.body.deleted_at).toMatch(ISO_MS);
      expect((await t.call('GET', `${resource.basePath}/${doc.id}`, { token })).body.is_deleted).toBe(true);
      const patch = await t.call('PATCH', `${resource.basePath}/${doc.id}`, { token, body: { [titleField]: 'x' } });
      expect([patch.status, patch.body.code]).toEqual([409, 'resource_deleted']);
      const again = await t.call('DELETE', `${resource.basePath}/${doc.id}`, { token });
      expect([again.status, again.body.code]).toEqual([404, 'not_found']);
    });

    // Every rejected write answers a problem naming the field and leaves stored data as it was.
    const rejected: {
      name: string;
      method: 'POST' | 'PATCH';
      body: unknown;
      status: number;
      code: string;
      path?: string;
      /** What the problem's detail says (where the code alone does not tell the case apart). */
      detail?: RegExp;
      contentType?: string;
    }[] = [
      {
        name: 'unknown field on create',
        method: 'POST',
        body: { bogus: 1 },
        status: 400,
        code: 'unknown_field',
        path: '/bogus',
      },
      {
        name: 'server-owned id',
        method: 'POST',
        body: { id: `${resource.idPrefix}_x` },
        status: 400,
        code: 'read_only_field',
        path: '/id',
      },
      {
        name: 'server-owned tenant_id',
        method: 'POST',
        body: { tenant_id: 'evil' },
        status: 400,
        code: 'read_only_field',
        path: '/tenant_id',
      },
      {
        name: 'server-owned created_by',
        method: 'PATCH',
        body: { created_by: 'usr-x' },
        status: 400,
        code: 'read_only_field',
        path: '/created_by',
      },
      // A PATCH's body version is the lock token, a positive integer: 0 or 1.5 is no version
      // (400), not a version that does not match (409).
      {
        name: 'a body version of 0',
        method: 'PATCH',
        body: { version: 0 },
        status: 400,
        code: 'validation_failed',
        path: '/version',
      },
      {
        name: 'a body version of 1.5',
        method: 'PATCH',
        body: { version: 1.5 },
        status: 400,
        code: 'validation_failed',
        path: '/version',
      },
      {
        name: 'version on create',
        method: 'POST',
        body: { version: 3 },
        status: 400,
        code: 'read_only_field',
        path: '/version',
      },
      {
        name: 'claiming system provenance',
        method: 'POST',
        body: { source_type: 'system' },
        status: 400,
        code: 'validation_failed',
        path: '/source_type',
      },
      {
        name: 'unknown source_type',
        method: 'PATCH',
        body: { source_type: 'robot' },
        status: 400,
        code: 'validation_failed',
        path: '/source_type',
        // Only the values a client may send: not `system`, which only the platform writes.
        detail: /^\/source_type: source_type must be one of: frontend, backend, server, api$/,
      },
      {
        name: 'wrong type for the title',
        method: 'PATCH',
        body: { [titleField]: 42 },
        status: 400,
        code: 'validation_failed',
        path: `/${titleField}`,
      },
      {
        name: 'null on a required field',
        method: 'PATCH',
        body: { [titleField]: null },
        status: 400,
        code: 'validation_failed',
        path: `/${titleField}`,
      },
      // Required text that shows nothing: spaces, or invisible characters (a zero-width space, a BOM).
      {
        name: 'a title of spaces, on create',
        method: 'POST',
        body: { [titleField]: ' \t\u00a0\u3000 ' },
        status: 400,
        code: 'validation_failed',
        path: `/${titleField}`,
      },
      {
        name: 'a title of invisible characters, on patch',
        method: 'PATCH',
        body: { [titleField]: '\u200b\ufeff\u0001' },
        status: 400,
        code: 'validation_failed',
        path: `/${titleField}`,
      },
      {
        name: 'too long a title',
        method: 'PATCH',
        body: { [titleField]: 'x'.repeat(201) },
        status: 400,
        code: 'validation_failed',
        path: `/${titleField}`,
      },
      {
        name: 'a name every object inherits, on create',
        method: 'POST',
        body: { constructor: 'x' },
        status: 400,
        code: 'unknown_field',
        path: '/constructor',
      },
      {
        name: 'a name every object inherits, on patch',
        method: 'PATCH',
        body: { toString: 1 },
        status: 400,
        code: 'unknown_field',
        path: '/toString',
      },
      {
        // Every refused member in one answer: the server-owned one beside the unknown one.
        name: 'an unknown and a server-owned field at once (both named)',
        method: 'PATCH',
        body: { colour: 'red', created_by: 'usr-x' },
        status: 400,
        code: 'unknown_field',
        path: '/created_by',
      },
      {
        name: 'unknown field on patch',
        method: 'PATCH',
        body: { [titleField]: 'ok', nope: true },
        status: 400,
        code: 'unknown_field',
        path: '/nope',
      },
      { name: 'an array body', method: 'POST', body: [1, 2], status: 400, code: 'invalid_body' },
      { name: 'a non-object patch', method: 'PATCH', body: 'text', status: 400, code: 'invalid_body' },
      {
        name: 'malformed JSON',
        method: 'POST',
        body: '{"title": ',
        status: 400,
        code: 'invalid_json',
        contentType: 'raw',
      },
      {
        // Deeper than any field's shape: walked recursively, it would overflow the stack (500).
        name: 'arrays nested 5,000 deep',
        method: 'POST',
        body: `{"tags": ${'['.repeat(5000)}${']'.repeat(5000)}}`,
        status: 400,
        code: 'invalid_json',
        contentType: 'raw',
      },
      {
        name: 'a merge patch nested 10,000 deep',
        method: 'PATCH',
        body: `{"tags": ${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`,
        status: 400,
        code: 'invalid_json',
        contentType: 'raw',
      },
      {
        // Wider than any field's shape: parsing and refusing 90,000 members took ~0.1 s a request.
        name: 'an object of 1,001 members',
        method: 'POST',
        body: JSON.stringify(Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`m${i}`, 1]))),
        status: 400,
        code: 'invalid_json',
        detail: /an object or array of more than 1000 members/,
        contentType: 'raw',
      },
      {
        name: 'a merge patch with an array of 1,001 members',
        method: 'PATCH',
        body: JSON.stringify({ tags: Array.from({ length: 1001 }, () => 'x') }),
        status: 400,
        code: 'invalid_json',
        detail: /an object or array of more than 1000 members/,
        contentType: 'raw',
      },
      {
        name: 'a body that is not UTF-8 (not stored with U+FFFD in its place)',
        method: 'POST',
        body: Buffer.concat([
          Buffer.from(`{"${titleField}":"bad `),
          Buffer.from([0xff, 0xfe, 0xc3]),
          Buffer.from('"}'),
        ]),
        status: 400,
        code: 'invalid_json',
        contentType: 'raw',
      },
      {
        // Valid UTF-8, every other byte NUL: said as such, not as a syntax error at position 1.
        name: 'a body in UTF-16 (its charset said or not)',
        method: 'POST',
        body: Buffer.from(`{"${titleField}":"sixteen"}`, 'utf16le'),
        status: 400,
        code: 'invalid_json',
        detail: /^The body is not UTF-8 text: it holds NUL bytes \(UTF-16\?\); send JSON as UTF-8$/,
        contentType: 'raw',
      },
      {
        // Its detail was Fastify's, naming application/json whatever the type sent.
        name: 'an empty merge patch',
        method: 'PATCH',
        body: '',
        status: 400,
        code: 'invalid_json',
        detail: /^The body is empty: send a JSON object$/,
        contentType: 'application/merge-patch+json',
      },
      {
        name: 'another media type',
        method: 'POST',
        body: 'title=x',
        status: 415,
        code: 'unsupported_media_type',
        contentType: 'text/plain',
      },
      {
        // Fastify's words named application/json whatever was sent, and no position.
        name: 'a malformed merge patch',
        method: 'PATCH',
        body: '{"name":',
        status: 400,
        code: 'invalid_json',
        detail: /^The body is not valid JSON: Unexpected end of JSON input$/,
        contentType: 'application/merge-patch+json',
      },
      {
        name: 'JSON broken after a member',
        method: 'POST',
        body: '{"a":1 "b":2}',
        status: 400,
        code: 'invalid_json',
        detail: /^The body is not valid JSON: .* at position 7/,
        contentType: 'application/json',
      },
      {
        name: 'a body with no Content-Type',
        method: 'POST',
        body: '{"a":1}',
        status: 415,
        code: 'unsupported_media_type',
        detail: /^The body has no Content-Type: send it as application\/json$/,
        contentType: 'none',
      },
      {
        name: 'merge-patch on POST',
        method: 'POST',
        body: {},
        status: 415,
        code: 'unsupported_media_type',
        contentType: 'application/merge-patch+json',
      },
      {
        name: 'a body over 1 MiB',
        method: 'POST',
        body: { [titleField]: 'x'.repeat(1024 * 1024) },
        status: 413,
        code: 'payload_too_large',
      },
    ];

    it.each(rejected)('rejects $name with $status $code and changes nothing', async (c) => {
      const existing = await t.create(resource, token);
      const before = await storedRow(t, resource, existing.id as string);
      const count = await countRows(t, resource);
      const url = c.method === 'POST' ? resource.basePath : `${resource.basePath}/${existing.id}`;
      const headers: Record<string, string> = {};
      let res: Awaited<ReturnType<TestApp['call']>>;
      if (c.contentType === 'raw') {
        res = await t.call(c.method, url, {
          token,
          payload: c.body as string | Buffer,
          headers: { 'content-type': 'application/json' },
        });
      } else if (c.contentType === 'none') {
        res = await t.call(c.method, url, { token, payload: c.body as string });
      } else if (c.contentType) {
        headers['content-type'] = c.contentType;
        res = await t.call(c.method, url, {
          token,
          payload: typeof c.body === 'string' ? c.body : JSON.stringify(c.body),
          headers,
        });
      } else {
        res = await t.call(c.method, url, { token, body: c.body });
      }
      expect(res.status).toBe(c.status);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ status: c.status, code: c.code, type: `/problems/${c.code}` });
      expect(res.body.request_id).toBe(res.headers['x-request-id']);
      expect(res.raw).not.toMatch(/at .*\.(ts|js):\d+/);
      if (c.path) expect((res.body.errors as { path: string }[]).map((e) => e.path)).toContain(c.path);
      if (c.detail) expect(res.body.detail).toMatch(c.detail);
      expect(await storedRow(t, resource, existing.id as string)).toEqual(before);
      expect(await countRows(t, resource)).toBe(count);
    });

    it('takes an empty DELETE or restore whatever its Content-Type says: 404 for an unknown id, else done', async () => {
      const id = `${resource.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      const labelled = { token, payload: '', headers: { 'content-type': 'text/plain' } };
      expect((await t.call('DELETE', `${resource.basePath}/${id}`, labelled)).status).toBe(404);
      const doc = await t.create(resource, token);
      const gone = await t.call('DELETE', `${resource.basePath}/${doc.id}`, labelled);
      expect([gone.status, gone.body.is_deleted]).toEqual([200, true]);
      const back = await t.call('POST', `${resource.basePath}/${doc.id}/restore`, {
        ...labelled,
        headers: { 'content-type': 'application/octet-stream' },
      });
      expect([back.status, back.body.is_deleted]).toEqual([200, false]);
      const patchType = { ...labelled, headers: { 'content-type': 'application/merge-patch+json' } };
      expect((await t.call('DELETE', `${resource.basePath}/${doc.id}`, patchType)).status).toBe(200);
      expect((await t.call('POST', `${resource.basePath}/${doc.id}/restore`, patchType)).status).toBe(200);
      const sent = await t.call('DELETE', `${resource.basePath}/${doc.id}`, { ...labelled, payload: 'x' });
      expect([sent.status, sent.body.code]).toEqual([415, 'unsupported_media_type']);
      // Spaces are a body too, of that type: 415, and the row stays as it was.
      for (const [method, path] of [
        ['DELETE', ''],
        ['POST', '/restore'],
      ]) {
        const spaces = await t.call(method, `${resource.basePath}/${doc.id}${path}`, { ...labelled, payload: '  ' });
        expect([method, spaces.status]).toEqual([method, 415]);
      }
      expect((await t.call('GET', `${resource.basePath}/${doc.id}`)).body.is_deleted).toBe(false);
    });

    it('answers 404 for an unknown id on every operation', async () => {
      const id = `${resource.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      for (const [method, suffix, body] of [
        ['GET', '', undefined],
        ['PATCH', '', { [titleField]: 'x' }],
        ['DELETE', '', undefined],
        ['POST', '/restore', undefined],
      ] as const) {
        const res = await t.call(method, `${resource.basePath}/${id}${suffix}`, { token, body });
        expect([method, res.status, res.body.code]).toEqual([method, 404, 'not_found']);
      }
    });
  });

  it('keeps numbers finite and within ±1e15', async () => {
    const kr = byName('KeyResult');
    const doc = await t.create(kr, token);
    for (const [payload, path] of [
      ['{"target": 1e16}', '/target'],
      ['{"baseline": -1e400}', '/baseline'],
      ['{"weight": -1}', '/weight'],
    ] as const) {
      const res = await t.call('PATCH', `${kr.basePath}/${doc.id}`, {
        token,
        payload,
        headers: { 'content-type': 'application/json' },
      });
      expect([res.status, res.body.code]).toEqual([400, 'validation_failed']);
      expect((res.body.errors as { path: string }[])[0].path).toBe(path);
    }
    const ok = await t.call('PATCH', `${kr.basePath}/${doc.id}`, { token, body: { target: 1e15 } });
    expect(ok.status).toBe(200);
    // Beyond a double, JSON.parse reads Infinity: a number out of range, as 1.0000001e15 is.
    for (const payload of ['{"target": 1e400}', '{"target": 1.0000001e15}']) {
      const res = await t.call('PATCH', `${kr.basePath}/${doc.id}`, {
        token,
        payload,
        headers: { 'content-type': 'application/json' },
      });
      expect([payload, res.status, (res.body.errors as { code: string }[])[0].code]).toEqual([
        payload,
        400,
        'out_of_range',
      ]);
    }
  });

  // A key result's current has no default a PATCH's null could give it: clearing it is 400.
  it("refuses a PATCH that clears a key result's current, and keeps the row", async () => {
    const kr = byName('KeyResult');
    const doc = await t.create(kr, token);
    const res = await t.call('PATCH', `${kr.basePath}/${doc.id}`, { token, body: { current: null } });
    expect([res.status, res.body.code, res.body.errors]).toEqual([
      400,
      'validation_failed',
      [expect.objectContaining({ path: '/current', code: 'required' })],
    ]);
    expect((await storedRow(t, kr, doc.id as string))?.version).toBe(doc.version);
  });

  // A pattern matches the whole value: an owner or an id with more after it is 400 naming the
  // field, not a reference to look up.
  it.each([
    ['owner_id', 'usr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b0'],
    ['owner_id', 'xusr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b'],
    ['objective_id', 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAVX'],
    ['objective_id', 'xobj_01ARZ3NDEKTSV4RRFFQ69G5FAV'],
  ])('refuses a key result whose %s is %j', async (field, value) => {
    const kr = byName('KeyResult');
    const doc = await t.create(kr, token);
    const res = await t.call('PATCH', `${kr.basePath}/${doc.id}`, { token, body: { [field]: value } });
    expect([res.status, res.body.code, res.body.errors]).toEqual([
      400,
      'validation_failed',
      [expect.objectContaining({ path: `/${field}`, code: 'invalid_format' })],
    ]);
  });

  // A text field holds its declared length: the maximum is taken, one character more is 400 naming it.
  it.each([
    ['KeyResult', 'unit', 64, {}],
    ['KeyResult', 'query', 4000, { data_source: 'query' }],
    ['Objective', 'description', 10_000, {}],
  ] as const)('takes a %s %s of %i characters, and refuses one more', async (name, field, max, others) => {
    const resource = byName(name);
    const doc = await t.create(resource, token);
    // A query of that length: the number 7 and spaces.
    const patch = (n: number) =>
      t.call('PATCH', `${resource.basePath}/${doc.id}`, { token, body: { ...others, [field]: '7'.padEnd(n) } });
    const ok = await patch(max);
    expect([ok.status, (ok.body[field] as string).length]).toEqual([200, max]);
    const over = await patch(max + 1);
    expect([over.status, over.body.code, (over.body.errors as { path: string }[])[0].path]).toEqual([
      400,
      'validation_failed',
      `/${field}`,
    ]);
  });

  it("names the date a cycle's PATCH sent when its dates cross: start_date alone, end_date alone, both", async () => {
    const cycles = byName('Cycle');
    const post = await t.call('POST', cycles.basePath, {
      token,
      body: { name: 'c', start_date: '2027-01-01', end_date: '2026-12-31' },
    });
    expect([post.status, post.body.errors]).toEqual([
      400,
      [{ path: '/end_date', code: 'out_of_range', message: 'end_date must not be before start_date' }],
    ]);
    const doc = await t.create(cycles, token, { start_date: '2026-10-01', end_date: '2026-12-31' });
    const patch = (body: Doc) => t.call('PATCH', `${cycles.basePath}/${doc.id}`, { token, body });
    const start = await patch({ start_date: '2027-01-01' });
    expect([start.status, start.body.errors]).toEqual([
      400,
      [{ path: '/start_date', code: 'out_of_range', message: 'start_date must not be after end_date (2026-12-31)' }],
    ]);
    for (const body of [{ end_date: '2026-09-30' }, { start_date: '2027-01-01', end_date: '2026-12-31' }]) {
      const res = await patch(body);
      expect([res.status, (res.body.errors as { path: string }[]).map((e) => e.path)]).toEqual([400, ['/end_date']]);
    }
    expect((await storedRow(t, cycles, doc.id as string))?.version).toBe(doc.version);
    // end_date is inclusive: a cycle of one day, start_date = end_date, is taken.
    const oneDay = await t.call('POST', cycles.basePath, {
      token,
      body: { name: 'day', start_date: '2027-05-01', end_date: '2027-05-01' },
    });
    expect([oneDay.status, (await patch({ start_date: '2026-12-31' })).status]).toEqual([201, 200]);
  });

  it('merges a nested object by RFC 7396: a member sent null is removed, the others kept', async () => {
    const connectors = byName('Connector');
    const created = await t.call('POST', connectors.basePath, {
      token,
      body: {
        name: 'merge',
        kind: 'http_json',
        config: { url: 'http://127.0.0.1:9/m', pointer: '/v', headers: { 'X-A': '1', 'X-B': '2' } },
      },
    });
    expect(created.status, created.raw).toBe(201);
    const patched = await t.call('PATCH', `${connectors.basePath}/${created.body.id}`, {
      token,
      body: { config: { headers: { 'X-A': null } } },
    });
    expect([patched.status, patched.body.config]).toEqual([
      200,
      { url: 'http://127.0.0.1:9/m', pointer: '/v', headers: { 'X-B': '2' } },
    ]);
  });

  it('answers a read with the stored JSON byte for byte, whatever characters it holds', async () => {
    // SQLite hands the stored form over as bytes, PostgreSQL as a string: both must answer the
    // bytes the write stored and answered, multi-byte characters and escapes included.
    const kr = byName('KeyResult');
    const doc = await t.create(kr, token);
    const title = 'Ventes — Q4 ✓ 日本語 🚀 "quoted" \\ back\u2028slash';
    const patched = await t.call('PATCH', `${kr.basePath}/${doc.id}`, { token, body: { title } });
    expect(patched.status).toBe(200);
    const res = await t.call('GET', `${kr.basePath}/${doc.id}`, { token });
    const stored = (await storedRow(t, kr, doc.id as string))?._doc as string;
    expect(res.status).toBe(200);
    expect(res.body.title).toBe(title);
    expect(res.raw).toBe(stored);
    expect(res.raw).toBe(patched.raw);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(stored));
  });

  it('checks references across the tenant: missing, other tenant and deleted → 422, nothing stored', async () => {
    const kr = byName('KeyResult');
    const objectives = byName('Objective');
    const otherTenant = await t.token({ tenant: 'globex' });
    const foreign = await t.create(objectives, otherTenant);
    const deleted = await t.create(objectives, token);
    await t.call('DELETE', `${objectives.basePath}/${deleted.id}`, { token });
    const count = await countRows(t, kr);
    for (const objectiveId of ['obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', foreign.id, deleted.id]) {
      const res = await t.call('POST', kr.basePath, {
        token,
        body: { objective_id: objectiveId, title: 'x', target: 10 },
      });
      expect([res.status, res.body.code]).toEqual([422, 'invalid_reference']);
      expect((res.body.errors as { path: string }[])[0].path).toBe('/objective_id');
    }
    const malformed = await t.call('POST', kr.basePath, {
      token,
      body: { objective_id: 'nope', title: 'x', target: 10 },
    });
    expect([malformed.status, malformed.body.code]).toEqual([400, 'validation_failed']);
    expect(await countRows(t, kr)).toBe(count);
  });

  it('puts x-request-id on every response and never leaks internals', async () => {
    for (const [method, url] of [
      ['GET', '/healthz'],
      ['GET', '/nope'],
      ['GET', '/api/v1/okr/cycles'],
    ] as const) {
      const res = await t.call(method, url, { token });
      expect(res.headers['x-request-id']).toMatch(/^req_[0-9A-Z]{26}$/);
    }
    const missing = await t.call('GET', '/api/v1/okr/nothing', { token });
    expect([missing.status, missing.body.code]).toEqual([404, 'route_not_found']);
    // An empty segment, which the router reads as an id, names no row's path (it was "No Cycle
    // with id " and a blank).
    for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
      const empty = await t.call(method, '/api/v1/okr/cycles//', { token, body: method === 'PATCH' ? {} : undefined });
      expect([method, empty.status, empty.body.code]).toEqual([method, 404, 'route_not_found']);
    }
  });

  it.each([
    ['PUT', '/api/v1/okr/cycles', 'GET,HEAD,OPTIONS,POST'],
    ['DELETE', '/api/v1/okr/objectives', 'GET,HEAD,OPTIONS,POST'],
    ['PUT', `/api/v1/okr/objectives/obj_01ARZ3NDEKTSV4RRFFQ69G5FAV`, 'DELETE,GET,HEAD,OPTIONS,PATCH'],
    ['GET', `/api/v1/okr/key-results/kr_01ARZ3NDEKTSV4RRFFQ69G5FAV/restore`, 'OPTIONS,POST'],
    ['POST', '/api/v1/manifest', 'GET,HEAD,OPTIONS'],
    // Escaped as the router reads it (`%63` is `c`): it was 404 route_not_found with no Allow.
    ['PUT', '/api/v1/okr/%63ycles', 'GET,HEAD,OPTIONS,POST'],
    ['GET', '/api/v1/okr/cycles/cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV/%72estore', 'OPTIONS,POST'],
  ])('%s %s: 405 method_not_allowed with Allow: %s', async (method, url, allow) => {
    const res = await t.call(method, url, { token, body: method === 'GET' ? undefined : {} });
    expect([res.status, res.body.code, res.headers['content-type']]).toEqual([
      405,
      'method_not_allowed',
      'application/problem+json; charset=utf-8',
    ]);
    expect(String(res.headers.allow).split(', ').sort().join(',')).toBe(allow);
    // RFC 5789 §3.1: a path that takes PATCH says in what forms.
    expect(res.headers['accept-patch']).toBe(
      allow.includes('PATCH') ? 'application/merge-patch+json, application/json' : undefined,
    );
    // An unknown /api/v1 route still asks for a token first.
    expect((await t.call(method, url, { token: null, body: method === 'GET' ? undefined : {} })).status).toBe(
      url.endsWith('manifest') ? 405 : 401,
    );
  });

  it('answers OPTIONS with the methods a path takes (204 and Allow), 404 where no route is; QUERY needs a Content-Type', async () => {
    const known = await t.app.inject({ method: 'OPTIONS', url: '/api/v1/okr/cycles' });
    expect([known.statusCode, String(known.headers.allow).split(', ').sort().join(',')]).toEqual([
      204,
      'GET,HEAD,OPTIONS,POST',
    ]);
    expect(known.headers['accept-patch']).toBeUndefined();
    const one = await t.app.inject({ method: 'OPTIONS', url: '/api/v1/okr/cycles/cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV' });
    expect([one.statusCode, one.headers['accept-patch']]).toEqual([
      204,
      'application/merge-patch+json, application/json',
    ]);
    // The Playground answers every path under /playground (a deep link is the app): other
    // methods there are 405, not 404.
    for (const url of ['/playground', '/playground/okr/key-results', '/playground/assets/x.js']) {
      const put = await t.app.inject({ method: 'PUT', url });
      expect([url, put.statusCode, put.json().code, put.headers.allow]).toEqual([
        url,
        405,
        'method_not_allowed',
        'GET, HEAD, OPTIONS',
      ]);
      expect((await t.app.inject({ method: 'OPTIONS', url })).statusCode).toBe(204);
    }
    const unknown = await t.app.inject({ method: 'OPTIONS', url: '/nowhere' });
    expect([unknown.statusCode, unknown.json().code]).toEqual([404, 'route_not_found']);
    const query = await t.app.inject({ method: 'QUERY', url: '/healthz' });
    expect([query.statusCode, query.json().code]).toEqual([400, 'invalid_header']);
    const typed = await t.app.inject({
      method: 'QUERY',
      url: '/healthz',
      headers: { 'content-type': 'application/json' },
    });
    expect([typed.statusCode, typed.json().code]).toEqual([405, 'method_not_allowed']);
  });

  it.each([
    ['a percent sign that escapes nothing', '/api/v1/okr/objectives/%zz'],
    ['an id longer than any id', `/api/v1/okr/objectives/${'a'.repeat(101)}`],
    ['the same under a custom operation', `/api/v1/okr/key-results/${'a'.repeat(101)}/check-ins`],
  ])('answers a URL the router cannot take (%s) as a problem: 404, request id, CORS', async (_name, url) => {
    const res = await t.call('GET', url, { token, headers: { origin: 'https://app.example' } });
    expect([res.status, res.headers['content-type'], res.body.code]).toEqual([
      404,
      'application/problem+json; charset=utf-8',
      'route_not_found',
    ]);
    expect(res.body.request_id).toBe(res.headers['x-request-id']);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    // In any method: OPTIONS and PUT were 204 and 405 with an Allow, as for a path a route answers.
    for (const method of ['OPTIONS', 'PUT'] as const) {
      const other = await t.call(method, url, { token });
      expect([method, other.status, other.body.code, other.headers.allow]).toEqual([
        method,
        404,
        'route_not_found',
        undefined,
      ]);
    }
  });
});

function stripServerFields(resource: Resource, doc: Doc): Doc {
  return Object.fromEntries(Object.entries(doc).filter(([k]) => resource.allFields[k]?.access === 'write'));
}
