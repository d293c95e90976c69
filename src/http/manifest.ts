import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { exampleBody } from '../core/examples.js';
import type { AnyField } from '../core/fields.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../core/list-query.js';
import type {
  FieldLimits,
  Manifest,
  ManifestField,
  ManifestHeader,
  ManifestOperation,
  ManifestParameter,
  ManifestResource,
} from '../core/manifest-types.js';
import { type CustomOperation, camel, type Doc, type ModuleDef, type Resource } from '../core/resource.js';

export const PLATFORM_NAME = 'EDM';

/** The package version, read once (the same relative path works from src/ and from dist/). */
export const PLATFORM_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** `KeyResult` → `key result`, for summaries. */
const words = (pascal: string) => pascal.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
const article = (noun: string) => (/^[aeiou]/.test(noun) ? `an ${noun}` : `a ${noun}`);

const RANGE_TYPES = new Set(['real', 'integer', 'date', 'datetime']);
export const RANGE_OPS = ['gte', 'gt', 'lte', 'lt'] as const;
const RANGE_WORDS = { gte: '≥', gt: '>', lte: '≤', lt: '<' } as const;

/** The resources whose `parent` reference points at this one (what `?cascade=true` deletes too). */
export function dependentsOf(resource: Resource, modules: readonly ModuleDef[]): Resource[] {
  return modules
    .flatMap((m) => m.resources)
    .filter((r) => Object.values(r.allFields).some((f) => f.parent && f.ref === resource.idPrefix));
}

/** The resources with a `restrict` reference to this one: while one is live, it is not deleted. */
function holdersOf(resource: Resource, modules: readonly ModuleDef[]): Resource[] {
  return modules
    .flatMap((m) => m.resources)
    .filter((r) => Object.values(r.allFields).some((f) => f.restrict && f.ref === resource.idPrefix));
}

/** The query parameters of a resource's list operation, from its sortable and filterable fields. */
export function listParameters(resource: Resource): ManifestParameter[] {
  const sorts = resource.sortable.flatMap((f) => [f, `-${f}`]);
  const params: ManifestParameter[] = [
    { name: 'limit', type: 'integer', description: `Page size, 1–${MAX_LIMIT} (default ${DEFAULT_LIMIT}).` },
    { name: 'cursor', type: 'string', description: 'Opaque cursor: the next_cursor of the previous page.' },
    {
      name: 'sort',
      type: 'string',
      description: 'Sort field, prefixed with - for descending (default -created_at); id breaks ties, nulls last.',
      enum: sorts,
    },
    {
      name: 'q',
      type: 'string',
      description: `Case-insensitive search: ${resource.titleField} contains this text.`,
    },
    { name: 'include_deleted', type: 'boolean', description: 'Include soft-deleted rows (default false).' },
  ];
  for (const name of resource.filterable) {
    const field = resource.allFields[name];
    if (name === 'tags') {
      params.push({
        name: 'tag',
        type: 'string',
        description: 'Has any of these tags (comma-separated).',
        multiple: true,
      });
      continue;
    }
    params.push({
      name,
      type: field.type,
      description: `Equals this value; a comma-separated list matches any of them. ${field.notes}`,
      ...(field.enum ? { enum: [...field.enum] } : {}),
      multiple: true,
    });
  }
  for (const name of resource.filterable) {
    const field = resource.allFields[name];
    if (!RANGE_TYPES.has(field.column ?? '')) continue;
    for (const op of RANGE_OPS) {
      params.push({ name: `${name}[${op}]`, type: field.type, description: `${name} ${RANGE_WORDS[op]} this value.` });
    }
  }
  return params;
}

const PAGE_PARAMETERS: ManifestParameter[] = [
  { name: 'limit', type: 'integer', description: `Page size, 1–${MAX_LIMIT} (default ${DEFAULT_LIMIT}).` },
  { name: 'cursor', type: 'string', description: 'Opaque cursor: the next_cursor of the previous page.' },
];

/**
 * The update example: a small merge patch, the title alone. The create example without its
 * references, sent as it was to a row from the Playground, rewrote that row (a webhook
 * connector's kind, settings and URL with it).
 */
function updateExample(resource: Resource): Doc {
  const title = resource.titleField;
  return { [title]: exampleBody(resource)[title] };
}

/**
 * The headers an operation honours: every write takes an Idempotency-Key; a write to one row
 * (update, delete, restore, and a custom operation on `{id}` that answers the row, such as a
 * check-in or a webhook push) also takes If-Match. The OpenAPI document lists them from here,
 * and adds the conditional headers RFC 9110 has every GET by id and write to a row evaluate
 * (If-Match on a GET, If-None-Match on a write), which the console does not offer.
 */
function requestHeaders(op: Pick<ManifestOperation, 'method' | 'path'>, custom?: CustomOperation): ManifestHeader[] {
  if (op.method === 'GET') return [];
  const onRow = op.path.includes('{id}') && (!custom || custom.response.kind === 'resource');
  return onRow ? ['If-Match', 'Idempotency-Key'] : ['Idempotency-Key'];
}

/** The six operations every resource has, then its declared custom ones, in that order. */
export function resourceOperations(resource: Resource, modules: readonly ModuleDef[]): ManifestOperation[] {
  const base = resource.basePath;
  const noun = words(resource.name);
  const client = `client.${camel(resource.module)}.${resource.clientName}`;
  const dependents = dependentsOf(resource, modules).map((r) => words(r.name));
  const holders = holdersOf(resource, modules).map((r) => `${words(r.name)}s`);
  const held = holders.length
    ? ` Live ${holders.join(' and ')} referring to it are not deleted with it: while one is, 409 has_dependents.`
    : '';
  const op = (
    o: Omit<ManifestOperation, 'client_method' | 'headers' | 'auth'> & { auth?: ManifestOperation['auth'] },
    custom?: CustomOperation,
  ): ManifestOperation => ({
    auth: 'bearer',
    ...o,
    // A signed operation is another system's call at a signed URL: the SDK has no method for it.
    client_method: o.auth === 'signed_url' ? null : `${client}.${o.name}`,
    headers: requestHeaders(o, custom),
  });
  const ops: ManifestOperation[] = [
    op({
      name: 'list',
      method: 'GET',
      path: base,
      summary: `List ${noun}s`,
      query: listParameters(resource),
      has_body: false,
      body_fields: null,
      example: null,
      response: 'list',
      success_status: 200,
    }),
    op({
      name: 'get',
      method: 'GET',
      path: `${base}/{id}`,
      summary: `Retrieve ${article(noun)}`,
      query: [],
      has_body: false,
      body_fields: null,
      example: null,
      response: 'resource',
      success_status: 200,
    }),
    op({
      name: 'create',
      method: 'POST',
      path: base,
      summary: `Create ${article(noun)}`,
      query: [],
      has_body: true,
      body_fields: null,
      example: exampleBody(resource),
      response: 'resource',
      success_status: 201,
    }),
    op({
      name: 'update',
      method: 'PATCH',
      path: `${base}/{id}`,
      summary: `Update ${article(noun)} (JSON Merge Patch)`,
      query: [],
      has_body: true,
      body_fields: null,
      example: updateExample(resource),
      response: 'resource',
      success_status: 200,
    }),
    op({
      name: 'delete',
      method: 'DELETE',
      path: `${base}/{id}`,
      summary: `Soft-delete ${article(noun)}`,
      query: [
        {
          name: 'cascade',
          type: 'boolean',
          description:
            (dependents.length > 0
              ? `Also soft-delete its live ${dependents.map((d) => `${d}s`).join(' and ')} in the same transaction; without it, live dependents answer 409 has_dependents.`
              : 'Also soft-delete live dependents in the same transaction (this resource has none).') + held,
        },
      ],
      has_body: false,
      body_fields: null,
      example: null,
      response: 'resource',
      success_status: 200,
    }),
    op({
      name: 'restore',
      method: 'POST',
      path: `${base}/{id}/restore`,
      summary: `Restore a soft-deleted ${noun}`,
      query: [],
      has_body: false,
      body_fields: null,
      example: null,
      response: 'resource',
      success_status: 200,
    }),
  ];
  for (const custom of resource.operations ?? []) ops.push(op(customOperation(resource, custom), custom));
  return ops;
}

/** What a signed operation's URL carries instead of a token (CustomOperation.auth). */
const SIGNED_PARAMETERS = (): ManifestParameter[] => [
  {
    name: 'tenant_id',
    type: 'string',
    required: true,
    description: 'The tenant the signed URL is for (copy it from the URL).',
  },
  {
    name: 'signature',
    type: 'string',
    required: true,
    description: 'The URL’s signature (copy it from the URL): no token needed.',
  },
];

function customOperation(
  resource: Resource,
  custom: CustomOperation,
): Omit<ManifestOperation, 'client_method' | 'headers'> {
  const list = custom.response.kind === 'list';
  return {
    name: custom.name,
    method: custom.method,
    path: `${resource.basePath}${custom.path}`,
    summary: custom.summary,
    query: list ? PAGE_PARAMETERS.map((p) => ({ ...p })) : custom.auth === 'signed' ? SIGNED_PARAMETERS() : [],
    has_body: custom.body !== undefined,
    body_fields: custom.bodyFields
      ? Object.entries(custom.bodyFields).map(([name, field]) => fieldEntry(name, field, field.pattern ?? null))
      : null,
    example: custom.example ?? null,
    response: custom.response.kind === 'list' ? 'item_list' : 'resource',
    success_status: custom.response.kind === 'list' ? 200 : custom.response.status,
    auth: custom.auth === 'signed' ? 'signed_url' : 'bearer',
  };
}

function manifestField(name: string, resource: Resource): ManifestField {
  const f = resource.allFields[name];
  return fieldEntry(name, f, name === 'id' ? resource.idPattern : (f.pattern ?? null));
}

/** A field as the schema table shows it (a resource's, or a custom operation's body's). */
function fieldEntry(name: string, f: AnyField, pattern: string | null): ManifestField {
  return {
    name,
    type: f.type,
    required: f.required,
    always_present: f.alwaysPresent,
    notes: f.notes,
    enum: f.enum ? [...f.enum] : null,
    read_only: f.access === 'read',
    write_only: f.access === 'writeOnly',
    computed: f.computed,
    default: f.default ?? null,
    pattern,
    ref: f.ref ?? null,
    platform: f.platform,
    required_unless: f.optionalOnCreate && f.requiredUnless ? { ...f.requiredUnless } : null,
    default_rule: f.defaultRule ?? null,
    limits: fieldLimits(f.schema as Record<string, unknown>),
  };
}

/** The bounds a field's JSON Schema sets (the validator enforces the same schema). */
function fieldLimits(schema: Record<string, unknown>): FieldLimits | null {
  const items = (schema.items ?? {}) as Record<string, unknown>;
  const limits: FieldLimits = {};
  const keep = (name: keyof FieldLimits, value: unknown) => {
    if (typeof value === 'number' || value === true) (limits as Record<string, unknown>)[name] = value;
  };
  keep('min_length', schema.minLength);
  keep('max_length', schema.maxLength);
  keep('minimum', schema.minimum);
  keep('maximum', schema.maximum);
  keep('max_items', schema.maxItems);
  keep('unique_items', schema.uniqueItems);
  keep('item_min_length', items.minLength);
  keep('item_max_length', items.maxLength);
  return Object.keys(limits).length > 0 ? limits : null;
}

export function manifestResource(resource: Resource, modules: readonly ModuleDef[]): ManifestResource {
  return {
    name: resource.name,
    module: resource.module,
    path: resource.basePath,
    description: resource.description,
    id_prefix: resource.idPrefix,
    schema_version: resource.schemaVersion,
    client_namespace: `client.${camel(resource.module)}.${resource.clientName}`,
    title_field: resource.titleField,
    operations: resourceOperations(resource, modules),
    fields: Object.keys(resource.allFields).map((name) => manifestField(name, resource)),
    list: {
      sortable: [...resource.sortable],
      filterable: [...resource.filterable],
      default_sort: '-created_at',
      default_limit: DEFAULT_LIMIT,
      max_limit: MAX_LIMIT,
    },
  };
}

/** How the platform describes itself to the Playground and to tools, derived from the declarations. */
export function buildManifest(modules: readonly ModuleDef[], o: { devToken?: boolean } = {}): Manifest {
  return {
    platform: { name: PLATFORM_NAME, version: PLATFORM_VERSION, dev_token: o.devToken ?? false },
    modules: modules.map((m) => ({
      name: m.name,
      description: m.description,
      client_namespace: `client.${camel(m.name)}`,
      resources: m.resources.map((r) => manifestResource(r, modules)),
    })),
  };
}

/** Whether an If-None-Match names `etag`: `*`, or a list of tags compared weakly (RFC 9110 §13.1.2). */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/**
 * Serves a JSON document built on first request and kept for the life of the app, with a
 * strong ETag so the Playground can revalidate cheaply.
 */
export function serveDocument(app: FastifyInstance, path: string, build: () => unknown): void {
  let cached: { body: string; etag: string } | undefined;
  app.get(path, async (request, reply) => {
    if (!cached) {
      const body = JSON.stringify(build());
      cached = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
    }
    reply.header('etag', cached.etag).header('cache-control', 'no-cache');
    if (noneMatch(request.headers['if-none-match'], cached.etag)) return reply.code(304).send();
    return reply.type('application/json; charset=utf-8').send(cached.body);
  });
}

/** `GET /api/v1/manifest` (public); `devToken`: whether this server is in local mode. */
export function registerManifestRoute(app: FastifyInstance, modules: readonly ModuleDef[], devToken: boolean): void {
  serveDocument(app, '/api/v1/manifest', () => buildManifest(modules, { devToken }));
}
