import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitsText, type Manifest, type ManifestResource, requiredUnlessText } from '../src/core/manifest-types.js';
import type { CustomOperation, Doc } from '../src/core/resource.js';
import { renderApiMd } from '../src/http/api-md.js';
import { buildManifest } from '../src/http/manifest.js';
import { modules } from '../src/modules/index.js';
import {
  byName,
  resources,
  SEED_COPY_TSV,
  SEED_SHARED_TSV,
  SEED_TSV,
  storeKinds,
  type TestApp,
  testApp,
} from './helpers.js';

interface SeedField {
  field: string;
  type: string;
  starred: boolean;
  enum: string[] | null;
  notes: string;
}

function seedFields(): SeedField[] {
  const [header, ...rows] = readFileSync(SEED_TSV, 'utf8').trimEnd().split('\n');
  expect(header.split('\t')).toEqual(['field', 'type', 'always_present(*)', 'enum', 'notes']);
  return rows.map((row) => {
    const [field, type, starred, values, notes] = row.split('\t');
    return {
      field,
      type,
      starred: starred === 'yes',
      enum: values ? values.split(' | ') : null,
      notes,
    };
  });
}

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

describe.each(storeKinds)('GET /api/v1/manifest on %s', (kind) => {
  let t: TestApp;
  let manifest: Manifest;
  const resourceOf = (name: string) =>
    manifest.modules.flatMap((m) => m.resources).find((r) => r.name === name) as ManifestResource;

  beforeAll(async () => {
    t = await testApp(kind, {}, { contract: true });
    const res = await t.call('GET', '/api/v1/manifest', { token: null });
    expect(res.status).toBe(200);
    manifest = res.body as unknown as Manifest;
  });
  afterAll(() => t.close());

  it('is public JSON, open to browsers, built once and revalidated by ETag', async () => {
    const res = await t.call('GET', '/api/v1/manifest', { token: null, headers: { origin: 'https://example.com' } });
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.body).toEqual(manifest);
    // A server with a configured secret mints no dev tokens: the Playground asks for none.
    expect(manifest.platform).toEqual({ name: 'EDM', version: PACKAGE_VERSION, dev_token: false });
    const etag = res.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]+"$/);
    // Kept, but asked for again each time (a new build's manifest is seen at once), as OpenAPI's.
    expect(res.headers['cache-control']).toBe('no-cache');
    expect((await t.call('GET', '/api/v1/openapi.json', { token: null })).headers['cache-control']).toBe('no-cache');
    const again = await t.call('GET', '/api/v1/manifest', { token: null, headers: { 'if-none-match': etag } });
    expect([again.status, again.raw, again.headers.etag]).toEqual([304, '', etag]);
    // Compared as a GET by id compares (RFC 9110 §13.1.2): weakly, in a list, or `*`.
    for (const inm of [`W/${etag}`, `"other", ${etag}`, '*']) {
      const hit = await t.call('GET', '/api/v1/manifest', { token: null, headers: { 'if-none-match': inm } });
      expect(hit.status, inm).toBe(304);
      const openapi = await t.call('GET', '/api/v1/openapi.json', { token: null, headers: { 'if-none-match': inm } });
      expect(openapi.status, inm).toBe(inm === '*' ? 304 : 200);
    }
    expect(
      (await t.call('GET', '/api/v1/manifest', { token: null, headers: { 'if-none-match': '"other"' } })).status,
    ).toBe(200);
    // A bad token does not matter on a public route, nor a trailing slash the router ignores.
    expect((await t.call('GET', '/api/v1/manifest', { token: 'junk' })).status).toBe(200);
    for (const path of ['/api/v1/manifest/', '/api/v1/openapi.json/']) {
      expect((await t.call('GET', path, { token: null })).status, path).toBe(200);
    }
    expect((await t.call('GET', '/api/v1/okr/cycles/', { token: null })).status).toBe(401);
  });

  it('keeps a copy of the seed table that is the seed’s, byte for byte (the copy serves a clone without ../shared)', () => {
    if (!existsSync(SEED_SHARED_TSV)) {
      // A clone on its own: the copy is all there is to read, and nothing to compare it with.
      expect(SEED_TSV).toBe(SEED_COPY_TSV);
      return;
    }
    expect(readFileSync(SEED_COPY_TSV, 'utf8')).toBe(readFileSync(SEED_SHARED_TSV, 'utf8'));
  });

  it("lists every field of the seed page, in the seed's order, with its type, star and notes word for word", () => {
    const seed = seedFields();
    expect(seed).toHaveLength(31);
    const kr = resourceOf('KeyResult');
    const byField = new Map(kr.fields.map((f) => [f.name, f]));
    for (const s of seed) {
      const f = byField.get(s.field);
      expect(f, s.field).toBeDefined();
      expect({ field: s.field, type: f?.type, starred: f?.always_present, notes: f?.notes }).toEqual({
        field: s.field,
        type: s.type,
        starred: s.starred,
        notes: s.notes,
      });
      if (s.enum) expect(f?.enum, s.field).toEqual(s.enum);
    }
    const seedNames = seed.map((s) => s.field);
    expect(kr.fields.map((f) => f.name).filter((n) => seedNames.includes(n))).toEqual(seedNames);
    // PRODUCT.md adds weight and confidence to the seed's fields.
    expect(kr.fields.map((f) => f.name).filter((n) => !seedNames.includes(n))).toEqual(['weight', 'confidence']);
  });

  it('describes a key result as the seed page does: name, path, description, namespace', () => {
    const kr = resourceOf('KeyResult');
    expect(kr).toMatchObject({
      name: 'KeyResult',
      module: 'okr',
      path: '/api/v1/okr/key-results',
      description: 'A measurable result rolling up to an Objective.',
      id_prefix: 'kr',
      client_namespace: 'client.okr.keyResults',
      title_field: 'title',
    });
    expect(manifest.modules.map((m) => [m.name, m.client_namespace])).toEqual([['okr', 'client.okr']]);
  });

  it('gives each field its flags: required, read-only, computed, enum, default, pattern, reference', () => {
    const fields = Object.fromEntries(resourceOf('KeyResult').fields.map((f) => [f.name, f]));
    expect(fields.id).toMatchObject({
      read_only: true,
      always_present: true,
      platform: true,
      pattern: '^kr_[0-9A-HJKMNP-TV-Z]{26}$',
    });
    expect(fields.objective_id).toMatchObject({ required: true, read_only: false, ref: 'obj', platform: false });
    expect(fields.target).toMatchObject({ required: true, type: 'number', default: null });
    expect(fields.progress_pct).toMatchObject({ read_only: true, computed: true, write_only: false });
    expect(fields.metric_type).toMatchObject({
      enum: ['number', 'percentage', 'currency', 'milestone', 'threshold'],
      default: 'number',
    });
    expect(fields.source).toMatchObject({ default: 'edm', read_only: false });
    expect(fields.source_type).toMatchObject({ default: 'api', type: 'enum' });
    expect(fields.baseline.default).toBe(0);
    expect(fields.data_source.default).toBe('manual');
    expect(fields.owner_id.pattern).toMatch(/^\^usr-/);
    expect(fields.confidence).toMatchObject({ read_only: true, computed: false });
    // A create may leave a milestone's target out; current and direction are derived.
    expect(fields.target).toMatchObject({ required_unless: { metric_type: 'milestone' } });
    expect(fields.target.default_rule).toMatch(/^1 for a milestone/);
    expect([fields.current.default_rule, fields.title.required_unless]).toEqual(['baseline', null]);
    expect(fields.direction.default_rule).toMatch(/decrease when target < baseline/);
    // The bounds the validator holds values to, from the same schema.
    expect(fields.title.limits).toEqual({ min_length: 1, max_length: 200 });
    expect(fields.tags.limits).toEqual({ max_items: 32, unique_items: true, item_min_length: 1, item_max_length: 64 });
    expect(fields.progress_pct.limits).toEqual({ minimum: 0, maximum: 100 });
    expect(fields.weight.limits).toEqual({ minimum: 0, maximum: 1e15 });
    expect([fields.status.limits, fields.created_at.limits]).toEqual([null, null]);
  });

  it('words the bounds and conditions as the schema table shows them', () => {
    const fields = Object.fromEntries(resourceOf('KeyResult').fields.map((f) => [f.name, f]));
    expect(limitsText(fields.title)).toBe('1–200 characters');
    expect(limitsText(fields.unit)).toBe('at most 64 characters');
    expect(limitsText(fields.tags)).toBe('at most 32 items, each 1–64 characters, no repeats');
    expect([limitsText(fields.progress_pct), limitsText(fields.weight), limitsText(fields.confidence)]).toEqual([
      '0–100',
      '≥ 0',
      '0–10',
    ]);
    // Every number's ±1e15 goes without saying.
    expect([limitsText(fields.target), limitsText(fields.status)]).toEqual([null, null]);
    expect(limitsText({ limits: { maximum: 5 } })).toBe('≤ 5');
    expect(limitsText({ limits: { min_length: 3 } })).toBe('at least 3 characters');
    expect(requiredUnlessText(fields.target)).toBe('unless metric_type is milestone');
    expect(requiredUnlessText({ required_unless: { a: 'x', b: 'y' } })).toBe('unless a is x and b is y');
  });

  it('lists every resource with its fields in declaration order and its list parameters', () => {
    const listed = manifest.modules.flatMap((m) => m.resources);
    expect(listed.map((r) => r.name)).toEqual(resources.map((r) => r.name));
    for (const resource of resources) {
      const r = resourceOf(resource.name);
      expect(r.fields.map((f) => f.name)).toEqual(Object.keys(resource.allFields));
      expect(r.list).toEqual({
        sortable: [...resource.sortable],
        filterable: [...resource.filterable],
        default_sort: '-created_at',
        default_limit: 50,
        max_limit: 200,
      });
      const list = r.operations.find((o) => o.name === 'list');
      const names = list?.query.map((p) => p.name) ?? [];
      expect(names).toEqual(expect.arrayContaining(['limit', 'cursor', 'sort', 'q', 'include_deleted']));
      for (const f of resource.filterable) expect(names).toContain(f === 'tags' ? 'tag' : f);
      expect(list?.query.find((p) => p.name === 'sort')?.enum).toEqual(resource.sortable.flatMap((s) => [s, `-${s}`]));
      // Equality filters take several values (any of them); sort, paging and ranges one.
      const several = list?.query.filter((p) => p.multiple).map((p) => p.name);
      expect(several).toEqual(resource.filterable.map((f) => (f === 'tags' ? 'tag' : f)));
    }
  });

  it('names no SDK method for a signed operation, in the manifest and in OpenAPI alike', async () => {
    const connector = resourceOf('Connector');
    expect(connector.operations.find((o) => o.name === 'webhook')).toMatchObject({
      auth: 'signed_url',
      client_method: null,
      query: [
        { name: 'tenant_id', required: true },
        { name: 'signature', required: true },
      ],
    });
    const openapi = (await t.call('GET', '/api/v1/openapi.json', { token: null })).body as {
      paths: Record<
        string,
        Record<
          string,
          { operationId: string; 'x-client-method'?: string; parameters: { name: string; required: boolean }[] }
        >
      >;
    };
    const webhook = openapi.paths[`${connector.path}/{id}/webhook`].post;
    expect(webhook.operationId).toBe('okr.connectors.webhook');
    // Without them the push is 401: required, as the document says (a list's parameters are not).
    const query = webhook.parameters.filter((p) => ['tenant_id', 'signature'].includes(p.name));
    expect(query.map((p) => [p.name, p.required])).toEqual([
      ['tenant_id', true],
      ['signature', true],
    ]);
    expect(webhook).not.toHaveProperty('x-client-method');
    for (const r of manifest.modules.flatMap((m) => m.resources)) {
      for (const op of r.operations) {
        const doc = openapi.paths[op.path][op.method.toLowerCase()];
        expect(doc.operationId).toBe(`${r.client_namespace.replace(/^client\./, '')}.${op.name}`);
        expect(doc['x-client-method']).toBe(op.client_method ?? undefined);
      }
    }
  });

  it('lists the six operations of every resource, then its custom ones, with client methods', () => {
    for (const resource of resources) {
      const r = resourceOf(resource.name);
      const base = resource.basePath;
      const ns = `client.okr.${resource.clientName}`;
      expect(r.operations.map((o) => [o.name, o.method, o.path, o.success_status, o.response])).toEqual([
        ['list', 'GET', base, 200, 'list'],
        ['get', 'GET', `${base}/{id}`, 200, 'resource'],
        ['create', 'POST', base, 201, 'resource'],
        ['update', 'PATCH', `${base}/{id}`, 200, 'resource'],
        ['delete', 'DELETE', `${base}/{id}`, 200, 'resource'],
        ['restore', 'POST', `${base}/{id}/restore`, 200, 'resource'],
        ...(resource.operations ?? []).map((op) => [
          op.name,
          op.method,
          `${base}${op.path}`,
          op.response.kind === 'list' ? 200 : op.response.status,
          op.response.kind === 'list' ? 'item_list' : 'resource',
        ]),
      ]);
      // A signed operation is another system's call at a signed URL: no SDK method claims it.
      for (const op of r.operations) {
        expect(op.client_method).toBe(op.auth === 'signed_url' ? null : `${ns}.${op.name}`);
      }
      // The headers the console offers: an Idempotency-Key on every write, If-Match on writes to
      // a row that answer it (a check-in, a sync, a webhook push: the server evaluates it).
      const customHeaders = (op: CustomOperation) => (op.method === 'GET' ? [] : ['If-Match', 'Idempotency-Key']);
      expect(Object.fromEntries(r.operations.map((o) => [o.name, o.headers]))).toEqual({
        list: [],
        get: [],
        create: ['Idempotency-Key'],
        update: ['If-Match', 'Idempotency-Key'],
        delete: ['If-Match', 'Idempotency-Key'],
        restore: ['If-Match', 'Idempotency-Key'],
        ...Object.fromEntries((resource.operations ?? []).map((op) => [op.name, customHeaders(op)])),
      });
      expect(r.operations.find((o) => o.name === 'delete')?.query.map((p) => p.name)).toEqual(['cascade']);
    }
    const kr = resourceOf('KeyResult');
    expect(kr.operations.find((o) => o.name === 'checkIns.create')).toMatchObject({
      method: 'POST',
      path: '/api/v1/okr/key-results/{id}/check-ins',
      client_method: 'client.okr.keyResults.checkIns.create',
      has_body: true,
      success_status: 201,
      response: 'resource',
    });
    // Its body's fields, as the schema table shows a resource's: what a check-in takes, and how.
    const body = kr.operations.find((o) => o.name === 'checkIns.create')?.body_fields ?? [];
    expect(body.map((f) => [f.name, f.type, f.required])).toEqual([
      ['value', 'number', true],
      ['note', 'string', false],
      ['confidence', 'integer', false],
      ['at', 'date-time', false],
    ]);
    expect(body.find((f) => f.name === 'at')?.notes).toMatch(/never in the future/);
    for (const o of kr.operations.filter((o) => !o.name.startsWith('checkIns.'))) expect(o.body_fields).toBeNull();
    expect(kr.operations.find((o) => o.name === 'checkIns.list')).toMatchObject({
      method: 'GET',
      path: '/api/v1/okr/key-results/{id}/check-ins',
      response: 'item_list',
      has_body: false,
    });
  });

  it('offers example bodies the API accepts, for every operation that takes a body', async () => {
    const token = await t.token();
    for (const resource of resources) {
      const r = resourceOf(resource.name);
      // Swap example reference ids for live ones.
      const live: Record<string, string> = {};
      const withRefs = async (example: Doc) => {
        const body = { ...example };
        for (const [name, field] of Object.entries(resource.allFields)) {
          if (!field.ref || !(name in body)) continue;
          live[field.ref] ??= (await t.create(resources.find((x) => x.idPrefix === field.ref) as never, token))
            .id as string;
          body[name] = live[field.ref];
        }
        return body;
      };
      const create = r.operations.find((o) => o.name === 'create');
      expect(create?.example, resource.name).not.toBeNull();
      const created = await t.call('POST', resource.basePath, { token, body: await withRefs(create?.example as Doc) });
      expect([resource.name, created.status]).toEqual([resource.name, 201]);
      // Signed operations are called at a signed URL, not with a token (connectors.test.ts).
      const signed = (o: (typeof r.operations)[number]) => o.query.some((q) => q.name === 'signature');
      for (const op of r.operations.filter((o) => o.has_body && o.name !== 'create' && !signed(o))) {
        expect(op.example, `${resource.name}.${op.name}`).not.toBeNull();
        const url = op.path.replace('{id}', created.body.id as string);
        const res = await t.call(op.method, url, { token, body: await withRefs(op.example as Doc) });
        expect([`${resource.name}.${op.name}`, res.status]).toEqual([`${resource.name}.${op.name}`, op.success_status]);
      }
    }
  });

  it('offers as the update example a small merge patch: sent to any row, it changes the title alone', async () => {
    const token = await t.token();
    for (const resource of resources) {
      const update = resourceOf(resource.name).operations.find((o) => o.name === 'update');
      expect([resource.name, update?.example]).toEqual([resource.name, { [resource.titleField]: expect.any(String) }]);
    }
    // A webhook connector keeps its kind, settings and URL (the create example of a connector,
    // sent as the update example once was, turned it into an http_json feed and dropped its URL).
    const hook = await t.create(byName('Connector'), token, { name: 'desk', kind: 'webhook', config: {} });
    const update = resourceOf('Connector').operations.find((o) => o.name === 'update');
    const res = await t.call('PATCH', `/api/v1/okr/connectors/${hook.id}`, { token, body: update?.example as Doc });
    expect(res.status).toBe(200);
    const { name: _name, version: _version, updated_at: _at, ...kept } = hook;
    expect(res.body).toMatchObject({ ...kept, name: update?.example?.name, version: 2 });
  });

  it('is what buildManifest derives from the declarations', () => {
    expect(buildManifest(modules)).toEqual(manifest);
  });

  it('says a local-mode server mints dev tokens', async () => {
    const local = await testApp(kind, { localMode: true });
    try {
      const res = await local.call('GET', '/api/v1/manifest', { token: null });
      expect((res.body as unknown as Manifest).platform.dev_token).toBe(true);
    } finally {
      await local.close();
    }
  });
});

describe('docs/api.md', () => {
  it('is up to date with the declarations (regenerate with `npm run docs:api`)', () => {
    const committed = readFileSync(new URL('../docs/api.md', import.meta.url), 'utf8');
    const manifest = buildManifest(modules);
    expect(committed, 'docs/api.md is stale: run `npm run docs:api`').toBe(renderApiMd(manifest));
    for (const r of manifest.modules.flatMap((m) => m.resources)) {
      for (const op of r.operations) {
        if (op.client_method !== null) expect(committed).toContain(`\`${op.client_method}(`);
        // A signed operation is not an SDK method: the reference must not offer one.
        else expect(committed).not.toContain(`${r.client_namespace}.${op.name}(`);
      }
    }
  });
});
