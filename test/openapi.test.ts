import { compileErrors, validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc } from '../src/core/resource.js';
import { buildOpenApi } from '../src/http/openapi.js';
import { modules } from '../src/modules/index.js';
import { ContractChecker } from './contract.js';
import { byName, resources, storeKinds, type TestApp, testApp } from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: the test walks an untyped JSON document.
type Json = Record<string, any>;

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv2020,
) => Ajv2020;

const METHODS = ['get', 'post', 'patch', 'delete'] as const;

function operations(doc: Json): { path: string; method: string; op: Json }[] {
  return Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((method) => ({ path, method, op: item[method] as Json })),
  );
}

function deref(doc: Json, value: Json): Json {
  let v = value;
  while (v?.$ref)
    v = (v.$ref as string)
      .slice(2)
      .split('/')
      .reduce((n: Json, k: string) => n[k.replaceAll('~1', '/')], doc);
  return v;
}

describe('the OpenAPI document', () => {
  const doc = buildOpenApi(modules, { localMode: true }) as Json;

  it('is a valid OpenAPI 3.1 document (@readme/openapi-parser)', async () => {
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
    expect(result.warnings).toEqual([]);
    expect(doc.openapi).toBe('3.1.0');
  });

  it('and the validator catches a broken one', async () => {
    const broken = structuredClone(doc);
    delete broken.paths['/api/v1/okr/cycles'].get.responses['200'].description;
    expect((await validate(broken as never)).valid).toBe(false);
  });

  it('documents every route of every resource, custom operations included', () => {
    const have = new Set(operations(doc).map((o) => `${o.method.toUpperCase()} ${o.path}`));
    for (const r of resources) {
      const base = r.basePath;
      for (const route of [
        `GET ${base}`,
        `POST ${base}`,
        `GET ${base}/{id}`,
        `PATCH ${base}/{id}`,
        `DELETE ${base}/{id}`,
        `POST ${base}/{id}/restore`,
        ...(r.operations ?? []).map((op) => `${op.method} ${base}${op.path}`),
      ]) {
        expect(have, route).toContain(route);
      }
    }
    for (const route of [
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
      'GET /api/v1/manifest',
      'GET /api/v1/openapi.json',
      'POST /api/v1/dev/token',
      'GET /problems',
      'GET /problems/{code}',
    ]) {
      expect(have).toContain(route);
    }
    expect((buildOpenApi(modules) as Json).paths['/api/v1/dev/token']).toBeUndefined();
    expect(have).toContain('POST /api/v1/okr/key-results/{id}/check-ins');
    expect(have).toContain('GET /api/v1/okr/key-results/{id}/check-ins');
  });

  it('secures resource routes with the bearer scheme and the module scope; self-description is public', () => {
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'JWT',
    });
    for (const { path, method, op } of operations(doc)) {
      const signed = (op.parameters ?? []).some((p: { name?: string }) => p.name === 'signature');
      if (path.startsWith('/api/v1/okr/') && !signed) {
        expect(op.security, `${method} ${path}`).toEqual([
          { bearerAuth: [method === 'get' ? 'okr:read' : 'okr:write'] },
        ]);
      } else {
        expect(op.security, `${method} ${path}`).toEqual([]);
      }
    }
  });

  it('marks read-only and write-only fields and gives ids their prefix pattern', () => {
    for (const r of resources) {
      const schema = doc.components.schemas[r.name];
      expect(schema.properties.id).toMatchObject({
        type: 'string',
        pattern: `^${r.idPrefix}_[0-9A-HJKMNP-TV-Z]{26}$`,
        readOnly: true,
      });
      for (const [name, field] of Object.entries(r.allFields)) {
        if (field.access === 'writeOnly') {
          expect(schema.properties[name]).toBeUndefined();
          expect(doc.components.schemas[`${r.name}Create`].properties[name].writeOnly).toBe(true);
        } else {
          expect(Boolean(schema.properties[name].readOnly), `${r.name}.${name}`).toBe(field.access === 'read');
        }
      }
      const path = doc.paths[`${r.basePath}/{id}`];
      expect(path.parameters[0]).toMatchObject({ name: 'id', in: 'path', schema: { pattern: r.idPattern } });
    }
    const kr = doc.components.schemas.KeyResult;
    expect(kr.properties.progress_pct).toMatchObject({ readOnly: true, minimum: 0, maximum: 100 });
    // `system` provenance is the platform's own: an answer may carry it, a body may not.
    expect(kr.properties.source_type.enum).toContain('system');
    for (const body of ['KeyResultCreate', 'KeyResultUpdate', 'CycleCreate', 'ObjectiveUpdate']) {
      expect(doc.components.schemas[body].properties.source_type.enum, body).toEqual([
        'frontend',
        'backend',
        'server',
        'api',
        null,
      ]);
    }
    expect(kr.properties.objective_id.pattern).toBe('^obj_[0-9A-HJKMNP-TV-Z]{26}$');
    // target is required but for a milestone, whose target defaults to 1 (optionalOnCreate): the server refuses others without one.
    expect(doc.components.schemas.KeyResultCreate.required).toEqual(['objective_id', 'title']);
    expect(doc.components.schemas.KeyResultCreate.properties.progress_pct).toBeUndefined();
    expect(doc.components.schemas.KeyResultUpdate.properties.version).toMatchObject({ type: 'integer' });
    // Null only where an answer may hold null: not a required field, nor one the server always sets.
    const types = Object.fromEntries(
      ['version', 'is_deleted', 'title', 'objective_id', 'status', 'history', 'current', 'deleted_at'].map((k) => [
        k,
        kr.properties[k].type,
      ]),
    );
    expect(types).toEqual({
      version: 'integer',
      is_deleted: 'boolean',
      title: 'string',
      objective_id: 'string',
      status: 'string',
      history: 'array',
      current: ['number', 'null'],
      deleted_at: ['string', 'null'],
    });
    // A field with a default is never null in an answer (null in a write takes the default).
    for (const name of ['metric_type', 'baseline', 'direction', 'data_source', 'weight', 'source', 'source_type']) {
      expect(kr.properties[name].type, name).not.toContain('null');
    }
    expect(doc.components.schemas.Cycle.properties.state.type).toBe('string');
    // A PATCH may not clear current (the server answers 400 required): the schema says so too.
    expect(doc.components.schemas.KeyResultUpdate.properties.current.type).toBe('number');
    expect(doc.components.schemas.KeyResultCreate.properties.current.type).toEqual(['number', 'null']);
    // A milestone's target is filled in by the server when left out or sent as null, on create and PATCH.
    expect(doc.components.schemas.KeyResultCreate.properties.target.type).toEqual(['number', 'null']);
    expect(doc.components.schemas.KeyResultUpdate.properties.target.type).toEqual(['number', 'null']);
    expect(doc.components.schemas.KeyResultUpdate.properties.title.type).toBe('string');
    // Defaults are the create's: a patch leaves out what it does not change, so an update schema
    // names none (a generated model filling one in would reset the field on every update).
    for (const [name, schema] of Object.entries(doc.components.schemas as Record<string, Json>)) {
      if (!name.endsWith('Update')) continue;
      for (const [field, property] of Object.entries(schema.properties as Record<string, Json>)) {
        expect(property.default, `${name}.${field}`).toBeUndefined();
      }
    }
    expect(doc.components.schemas.KeyResultCreate.properties.weight.default).toBe(1);
    // A default derived from other fields is said in words where a client sends the field.
    expect(doc.components.schemas.KeyResultCreate.properties.current.description).toBe(
      'Latest observed value of the metric. Default: baseline.',
    );
    expect(doc.components.schemas.KeyResultCreate.properties.direction.description).toContain('Default: from baseline');
    expect(kr.properties.current.description).toBe('Latest observed value of the metric.');
    expect(doc.components.schemas.KeyResultUpdate.properties.current.description).toBe(
      'Latest observed value of the metric.',
    );
  });

  it('documents the locking and idempotency headers, Location and ETag, and the list parameters', () => {
    for (const r of resources) {
      const base = r.basePath;
      const params = (path: string, method: string) =>
        (doc.paths[path][method].parameters as Json[]).map((p) => deref(doc, p).name as string);
      expect(params(`${base}/{id}`, 'get')).toContain('If-None-Match');
      expect(params(`${base}/{id}`, 'get')).toContain('If-Match');
      expect(doc.paths[`${base}/{id}`].get.responses['304']).toBeDefined();
      expect(doc.paths[`${base}/{id}`].get.responses['412']).toBeDefined();
      expect(params(`${base}/{id}`, 'patch')).toContain('If-None-Match');
      expect(params(`${base}/{id}`, 'delete')).toContain('If-None-Match');
      for (const [path, method] of [
        [`${base}/{id}`, 'patch'],
        [`${base}/{id}`, 'delete'],
        [`${base}/{id}/restore`, 'post'],
      ]) {
        expect(params(path, method)).toEqual(expect.arrayContaining(['If-Match', 'Idempotency-Key']));
        expect(Object.keys(doc.paths[path][method].responses)).toEqual(expect.arrayContaining(['412', '428']));
      }
      expect(params(base, 'post')).toContain('Idempotency-Key');
      const created = doc.paths[base].post.responses['201'];
      expect(Object.keys(created.headers)).toEqual(expect.arrayContaining(['ETag', 'Location']));
      expect(deref(doc, created.headers.ETag).required).toBe(true);
      expect(params(`${base}/{id}`, 'delete')).toContain('cascade');
      const list = params(base, 'get');
      expect(list).toEqual(expect.arrayContaining(['limit', 'cursor', 'sort', 'q', 'include_deleted']));
      for (const f of r.filterable) expect(list).toContain(f === 'tags' ? 'tag' : f);
      // A page is 1–200 rows: the server refuses a limit outside it (400).
      const limit = (doc.paths[base].get.parameters as Json[])
        .map((p) => deref(doc, p))
        .find((p) => p.name === 'limit');
      expect(limit?.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 200 });
      expect(limit?.description).toContain('default 50');
      const listSchema = deref(doc, doc.paths[base].get.responses['200'].content['application/json'].schema);
      expect(listSchema.required).toEqual(['object', 'data', 'has_more', 'next_cursor']);
      expect(listSchema.properties.data.items).toEqual({ $ref: `#/components/schemas/${r.name}` });
    }
    expect(doc.paths['/api/v1/okr/key-results'].get.parameters.map((p: Json) => p.name)).toContain('progress_pct[gte]');
    // An equality filter is a comma-separated list of its field's values (any of them), typed as
    // the server checks them: enums, numbers, times. They were bare strings.
    const filter = (name: string) =>
      (doc.paths['/api/v1/okr/key-results'].get.parameters as Json[])
        .map((p) => deref(doc, p))
        .find((p) => p.name === name);
    expect(filter('status')).toMatchObject({
      style: 'form',
      explode: false,
      schema: { type: 'array', minItems: 1, items: { type: 'string', enum: expect.arrayContaining(['on_track']) } },
    });
    expect(filter('current')?.schema.items).toEqual({ type: 'number' });
    expect(filter('created_at')?.schema.items).toEqual({ type: 'string', format: 'date-time' });
    expect(filter('progress_pct[gte]')?.schema).toEqual({ type: 'number' });
  });

  it('gives the headers every answer may carry: budgets, replays, the documents’ ETags, the connection’s refusals', () => {
    const headers = (response: Json) => Object.keys(deref(doc, response).headers ?? {});
    const budget = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'];
    for (const { path, method, op } of operations(doc)) {
      const where = `${method} ${path}`;
      // A request the connection refuses before any route (a slow one, an Expect, huge headers),
      // on every path, the platform's too.
      expect([where, ...Object.keys(op.responses)]).toEqual(expect.arrayContaining([where, '408', '417', '431']));
      if (!path.startsWith('/api/v1/okr/')) continue;
      for (const [status, response] of Object.entries(op.responses as Json)) {
        if (status === '304') continue;
        expect([where, status, ...headers(response)]).toEqual(expect.arrayContaining([where, status, ...budget]));
        if (Number(status) >= 400 && method !== 'get') {
          expect(headers(response)).toEqual(expect.arrayContaining(['Idempotent-Replayed', 'Original-Request-Id']));
        }
      }
    }
    for (const path of ['/api/v1/manifest', '/api/v1/openapi.json']) {
      for (const status of ['200', '304']) expect(headers(doc.paths[path].get.responses[status])).toContain('ETag');
    }
    expect(Object.keys(doc.paths['/api/v1/dev/token'].post.responses)).toEqual(expect.arrayContaining(['413', '415']));
    expect(headers(doc.components.responses.MethodNotAllowed)).toContain('Allow');
  });

  it('says a key result’s create needs a target unless it is a milestone (if/else), as the server does', () => {
    const ajv = addFormats(new Ajv2020({ strict: false }));
    ajv.addSchema({ ...doc, $id: 'https://edm.invalid/openapi.json' });
    const valid = ajv.compile({ $ref: 'https://edm.invalid/openapi.json#/components/schemas/KeyResultCreate' });
    const base = { objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', title: 'Ship it' };
    const cases: [Doc, boolean][] = [
      [base, false],
      [{ ...base, target: null }, false],
      [{ ...base, metric_type: 'number' }, false],
      [{ ...base, target: 10 }, true],
      [{ ...base, metric_type: 'milestone' }, true],
      [{ ...base, metric_type: 'milestone', target: null }, true],
    ];
    for (const [body, ok] of cases) expect([body, valid(body)]).toEqual([body, ok]);
  });

  it('answers problems as application/problem+json, with the codes of the registry', () => {
    for (const { path, method, op } of operations(doc)) {
      for (const [status, response] of Object.entries(op.responses as Json)) {
        if (Number(status) < 400 || path === '/readyz') continue;
        expect(Object.keys(deref(doc, response).content), `${method} ${path} ${status}`).toEqual([
          'application/problem+json',
        ]);
      }
    }
    expect(doc.components.responses.Conflict.description).toContain('version_conflict');
    expect(doc.components.schemas.Problem.properties.code.enum).toContain('has_dependents');
    // Every problem has a detail, and the members some codes add are given.
    const problem = doc.components.schemas.Problem;
    expect(problem.required).toContain('detail');
    expect(Object.keys(problem.properties)).toEqual(
      expect.arrayContaining(['current_version', 'dependents', 'limit', 'retry_after_seconds']),
    );
  });

  it('has an example for every operation, each valid against its schema', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ ...doc, $id: 'https://edm.invalid/openapi.json' });
    const check = (where: string, schema: Json, example: unknown) => {
      const validate = ajv.compile(schema.$ref ? { $ref: `https://edm.invalid/openapi.json${schema.$ref}` } : schema);
      expect(validate(example) ? [] : validate.errors, where).toEqual([]);
    };
    for (const { path, method, op } of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      const success = Object.entries(op.responses as Json).find(([s]) => s.startsWith('2'));
      expect(success, where).toBeDefined();
      const [, response] = success as [string, Json];
      const content = Object.values(deref(doc, response).content ?? {})[0] as Json | undefined;
      if (content?.example !== undefined) check(`${where} response`, content.schema, content.example);
      else expect(path, `${where} has no response example`).toMatch(/manifest|openapi/);
      if (op.requestBody) {
        for (const media of Object.values(op.requestBody.content as Json) as Json[]) {
          expect(media.example, `${where} request example`).toBeDefined();
          check(`${where} request`, media.schema, media.example);
        }
      }
    }
  });
});

describe.each(storeKinds)('GET /api/v1/openapi.json on %s, and responses against it', (kind) => {
  let t: TestApp;
  let served: Json;
  beforeAll(async () => {
    t = await testApp(kind, {}, { contract: true });
    const res = await t.call('GET', '/api/v1/openapi.json', {
      token: null,
      headers: { origin: 'https://example.com' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    served = res.body as Json;
  });
  afterAll(() => t.close());

  it('is public and is the document built from the declarations, cached per app', async () => {
    const hasRoute = (method: 'GET' | 'POST', url: string) =>
      t.app.hasRoute({ method, url: url.replace(/\{(\w+)\}/g, ':$1') });
    expect(served).toEqual(buildOpenApi(modules, { hasRoute }));
    // Platform routes are listed when the app serves them (the dev token only in local mode);
    // one with a parameter too (`/problems/{code}` was left out: the router reads `:code`).
    for (const path of ['/healthz', '/readyz', '/api/v1/manifest', '/api/v1/openapi.json', '/problems/{code}']) {
      expect(served.paths[path], path).toBeDefined();
    }
    expect(served.paths['/api/v1/dev/token']).toBeUndefined();
    expect(served.paths['/metrics'] !== undefined).toBe(t.app.hasRoute({ method: 'GET', url: '/metrics' }));
    const first = await t.call('GET', '/api/v1/openapi.json', { token: null });
    const again = await t.call('GET', '/api/v1/openapi.json', {
      token: null,
      headers: { 'if-none-match': first.headers.etag as string },
    });
    expect(again.status).toBe(304);
    const preflight = await t.app.inject({
      method: 'OPTIONS',
      url: '/api/v1/okr/key-results',
      headers: {
        origin: 'https://example.com',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization, if-match, idempotency-key',
      },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-expose-headers']).toMatch(/ETag.*Location.*x-request-id.*Retry-After/);
  });

  it("documents as a create's answer what a create of its example body answers", async () => {
    const token = await t.token();
    // The platform's own values (ids, times, writers) differ by run; what the body and the
    // domain make of it (defaults, derived and computed fields) must not.
    const varying = new Set(['id', 'created_at', 'updated_at', 'created_by', 'updated_by', 'last_update_at']);
    const parents: Record<string, string> = {};
    for (const r of [byName('Cycle'), byName('Objective'), byName('KeyResult')]) {
      const op = served.paths[r.basePath].post;
      const body = { ...(op.requestBody.content['application/json'].example as Doc) };
      for (const [name, field] of Object.entries(r.allFields)) {
        if (field.ref && name in body) body[name] = parents[field.ref];
      }
      const res = await t.call('POST', r.basePath, { token, body });
      expect(res.status, res.raw).toBe(201);
      parents[r.idPrefix] = res.body.id as string;
      const documented = deref(served, op.responses['201']).content['application/json'].example as Doc;
      const same = (d: Doc) =>
        Object.fromEntries(
          Object.entries(d)
            .filter(([k]) => !varying.has(k) && !r.allFields[k].ref)
            .map(([k, v]) => [k, k === 'history' ? (v as Doc[]).map(({ at: _at, by: _by, ...e }) => e) : v]),
        );
      expect(same(res.body), r.name).toEqual(same(documented));
    }
  });

  it("documents as a check-in's answer what a check-in of its example body answers", async () => {
    const token = await t.token();
    const kr = byName('KeyResult');
    const created = await t.create(kr, token, { baseline: 80000, target: 120000, current: 80000 });
    const op = served.paths[`${kr.basePath}/{id}/check-ins`].post;
    const body = op.requestBody.content['application/json'].example as Doc;
    const res = await t.call('POST', `${kr.basePath}/${created.id}/check-ins`, { token, body });
    expect(res.status, res.raw).toBe(201);
    const documented = deref(served, op.responses['201']).content['application/json'].example as Doc;
    const domain = (d: Doc) => ({
      current: d.current,
      confidence: d.confidence,
      progress_pct: d.progress_pct,
      status: d.status,
      history: (d.history as Doc[]).map(({ at: _at, by: _by, ...e }) => e),
    });
    expect(domain(res.body)).toEqual(domain(documented));
    // The list's item is that check-in, as the list answers it.
    const listed = await t.call('GET', `${kr.basePath}/${created.id}/check-ins`, { token });
    const item = deref(served, served.paths[`${kr.basePath}/{id}/check-ins`].get.responses['200']).content[
      'application/json'
    ].example.data[0] as Doc;
    const { id: _i, tenant_id: _t, key_result_id: _k, at: _a, by: _b, recorded_at: _r, ...rest } = item;
    expect((listed.body.data as Doc[])[0]).toMatchObject(rest);
  });

  it('every answer of every operation, success and failure, matches the schema given for its status', async () => {
    const token = await t.token();
    const readOnly = await t.token({ scope: 'okr:read' });
    for (const r of resources) {
      const base = r.basePath;
      const title = r.titleField;
      const doc = await t.create(r, token);
      const url = `${base}/${doc.id}`;
      const missing = `${base}/${r.idPrefix}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      const calls: [string, string, Parameters<TestApp['call']>[2]?][] = [
        ['GET', `${base}?limit=2&sort=-created_at`],
        ['GET', `${base}?limit=0`],
        ['GET', `${base}?bogus=1`],
        ['GET', base, { token: null }],
        ['GET', url],
        ['GET', url, { headers: { 'if-none-match': '"1"' } }],
        ['GET', missing],
        ['PATCH', url, { body: { [title]: 'Renamed' }, headers: { 'if-match': '"1"' } }],
        ['PATCH', url, { body: { [title]: 'x' }, headers: { 'if-match': '"9"' } }],
        ['PATCH', url, { body: { [title]: 'x', version: 9 } }],
        ['PATCH', url, { body: { nope: 1 } }],
        ['PATCH', url, { payload: 'x=1', headers: { 'content-type': 'text/plain' } }],
        ['POST', base, { body: {}, token: readOnly }],
        ['POST', base, { body: { [title]: 'x'.repeat(300) }, headers: { 'idempotency-key': `k-${r.name}` } }],
        ['POST', base, { body: { [title]: 'y' }, headers: { 'idempotency-key': `k-${r.name}` } }],
        ['DELETE', url, { headers: { 'idempotency-key': `d-${r.name}` } }],
        ['DELETE', url, { headers: { 'idempotency-key': `d-${r.name}` } }],
        ['DELETE', url],
        ['PATCH', url, { body: { [title]: 'z' } }],
        ['POST', `${url}/restore`],
        ['POST', `${url}/restore`],
        ['DELETE', missing],
      ];
      for (const [method, u, o] of calls) await t.call(method, u, { token, ...o });
    }
    const kr = byName('KeyResult');
    const doc = await t.create(kr, token);
    for (const [method, u, o] of [
      ['POST', `${kr.basePath}/${doc.id}/check-ins`, { body: { value: 5, note: 'x', confidence: 3 } }],
      ['POST', `${kr.basePath}/${doc.id}/check-ins`, { body: { value: 'high' } }],
      ['GET', `${kr.basePath}/${doc.id}/check-ins?limit=1`, {}],
      ['GET', `${kr.basePath}/kr_01ARZ3NDEKTSV4RRFFQ69G5FAV/check-ins`, {}],
      ['POST', kr.basePath, { body: { objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', title: 'x', target: 1 } }],
    ] as [string, string, Doc][]) {
      await t.call(method, u, { token, ...o });
    }
    for (const u of ['/healthz', '/readyz', '/metrics', '/api/v1/manifest', '/api/v1/nothing'])
      await t.call('GET', u, { token });
  });

  it('the contract check fails on a body, status or header the document does not give', () => {
    const checker = new ContractChecker(served);
    const ok = {
      method: 'GET',
      url: '/api/v1/okr/cycles?limit=1',
      status: 200,
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ object: 'list', data: [], has_more: false, next_cursor: null }),
    };
    expect(checker.problems(ok)).toEqual([]);
    expect(
      checker.problems({
        ...ok,
        body: JSON.stringify({ object: 'list', data: [], has_more: 'no', next_cursor: null }),
      }),
    ).toEqual([expect.stringContaining('/has_more must be boolean')]);
    expect(checker.problems({ ...ok, status: 418 })).toEqual([expect.stringContaining('status not documented')]);
    expect(checker.problems({ ...ok, headers: { 'content-type': 'text/html' } })).toEqual([
      expect.stringContaining('content-type text/html'),
    ]);
    const created = {
      method: 'POST',
      url: '/api/v1/okr/objectives',
      status: 201,
      headers: { 'content-type': 'application/json' },
      body: '{}',
    };
    expect(checker.problems(created)).toEqual(
      expect.arrayContaining([
        expect.stringContaining('required header ETag missing'),
        expect.stringContaining('required header Location missing'),
        expect.stringContaining("must have required property 'id'"),
      ]),
    );
  });
});
