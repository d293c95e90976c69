import type { TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { errorRegistry } from '../core/errors.js';
import { exampleBody } from '../core/examples.js';
import {
  createSchema,
  type JsonSchema,
  listSchema,
  problemSchema,
  responseSchema,
  updateSchema,
} from '../core/json-schema.js';
import type { ManifestOperation, ManifestParameter } from '../core/manifest-types.js';
import {
  type CustomOperation,
  camel,
  type Doc,
  type HookContext,
  type ModuleDef,
  type Resource,
} from '../core/resource.js';
import { inputSchema } from '../core/validation.js';
import { DEV_TOKEN_FIELDS } from './dev-token.js';
import { PLATFORM_NAME, PLATFORM_VERSION, resourceOperations, serveDocument } from './manifest.js';
import { RATE_LIMIT_HEADERS } from './rate-limit.js';

export interface OpenApiOptions {
  /** Local mode serves the dev-token endpoint, so the document lists it. */
  localMode?: boolean;
  /** Whether the app serves a platform route; the document lists only those it does (default: all). */
  hasRoute?: (method: 'GET' | 'POST', path: string) => boolean;
}

type Json = Record<string, unknown>;

const ref = (kind: string, name: string) => ({ $ref: `#/components/${kind}/${name}` });
const schemaRef = (name: string) => ref('schemas', name);
const pascal = (s: string) => s.replace(/(^|[.\-_])([a-z])/g, (_, _sep: string, c: string) => c.toUpperCase());

/** A TypeBox schema as plain JSON Schema (drops TypeBox's symbol keys). */
const plain = (schema: TSchema): JsonSchema => JSON.parse(JSON.stringify(schema)) as JsonSchema;

const EXAMPLE_ULID = '01JBZ7Q3V5R4N8KX2M6T9WCH1D';
const EXAMPLE_TIME = '2026-11-01T12:00:00.000Z';
const EXAMPLE_USER = 'usr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b';

/**
 * A response document as the API would answer the example body's create: platform values,
 * defaults, the body, what the resource's `prepare` hook fills from it (a key result's current
 * and direction, an objective's empty roll-up), the examples computed fields declare, nulls.
 */
export function exampleDocument(resource: Resource): Doc {
  const doc: Doc = {};
  for (const [name, field] of Object.entries(resource.allFields)) {
    if (field.access === 'writeOnly') continue;
    doc[name] = field.default ?? (field.computed || field.access === 'read' ? (field.example ?? null) : null);
  }
  const body = exampleBody(resource);
  Object.assign(doc, body, {
    id: `${resource.idPrefix}_${EXAMPLE_ULID}`,
    tenant_id: 'acme',
    app_id: null,
    created_at: EXAMPLE_TIME,
    updated_at: EXAMPLE_TIME,
    created_by: EXAMPLE_USER,
    updated_by: EXAMPLE_USER,
    is_deleted: false,
    deleted_at: null,
    deleted_by: null,
    schema_version: resource.schemaVersion,
    version: 1,
  });
  const principal = { sub: EXAMPLE_USER, tenantId: 'acme', appId: null, scopes: null };
  const ctx = { principal, now: Date.parse(EXAMPLE_TIME), op: 'create', input: body, event: null } as const;
  // `prepare` reads the document and its body only (the keys are for derive's signed URLs).
  resource.hooks?.prepare?.(doc, null, ctx as unknown as HookContext);
  // What it sets beside the answer's fields (an objective's running sums) is not in the answer.
  for (const name of Object.keys(doc)) if (!Object.hasOwn(resource.allFields, name)) delete doc[name];
  return doc;
}

/** A value that fits a JSON Schema, for examples of custom operations' items and bodies. */
export function exampleFromSchema(schema: JsonSchema): unknown {
  if (schema.examples && Array.isArray(schema.examples)) return schema.examples[0];
  if (schema.default !== undefined) return schema.default;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  const anyOf = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  if (anyOf) return exampleFromSchema(anyOf.find((s) => s.type !== 'null') ?? anyOf[0]);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  switch (type) {
    case 'object': {
      const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
      return Object.fromEntries(Object.entries(props).map(([k, s]) => [k, exampleFromSchema(s)]));
    }
    case 'array':
      return schema.items ? [exampleFromSchema(schema.items as JsonSchema)] : [];
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' && schema.minimum > 1 ? schema.minimum : 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'string':
      if (schema.format === 'date-time') return EXAMPLE_TIME;
      if (schema.format === 'date') return '2026-11-01';
      return 'example';
    default:
      return null;
  }
}

/** The JSON Schema of a query parameter as the manifest describes it. */
function parameterSchema(p: ManifestParameter): JsonSchema {
  if (p.enum) return { type: 'string', enum: p.enum };
  switch (p.type) {
    case 'integer':
      return p.name === 'limit' ? { type: 'integer', minimum: 1, maximum: 200 } : { type: 'integer' };
    case 'number':
      return { type: 'number' };
    case 'boolean':
      return { type: 'boolean' };
    case 'date':
      return { type: 'string', format: 'date' };
    case 'date-time':
      return { type: 'string', format: 'date-time' };
    default:
      return { type: 'string' };
  }
}

function queryParameter(p: ManifestParameter, inList: boolean): Json {
  // Equality filters take comma-separated lists of values of their field's type, matching any
  // (`status=at_risk,off_track`): an array in form style, not exploded (OpenAPI 3.1 §4.8.12.4).
  const isFilter =
    inList && !['limit', 'cursor', 'sort', 'q', 'include_deleted'].includes(p.name) && !p.name.includes('[');
  return {
    name: p.name,
    in: 'query',
    required: p.required === true,
    description: p.description,
    ...(isFilter
      ? { style: 'form', explode: false, schema: { type: 'array', items: parameterSchema(p), minItems: 1 } }
      : { schema: parameterSchema(p) }),
  };
}

/** The media types a PATCH takes (a merge patch either way, RFC 7396): its `Accept-Patch`. */
export const ACCEPT_PATCH = 'application/merge-patch+json, application/json';

const PROBLEM_RESPONSES: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  408: 'RequestTimeout',
  409: 'Conflict',
  412: 'PreconditionFailed',
  413: 'PayloadTooLarge',
  415: 'UnsupportedMediaType',
  417: 'ExpectationFailed',
  422: 'UnprocessableEntity',
  428: 'PreconditionRequired',
  429: 'TooManyRequests',
  414: 'URITooLong',
  431: 'RequestHeaderFieldsTooLarge',
  500: 'InternalServerError',
  503: 'ServiceUnavailable',
};

/** Problem responses, one per status, each listing the codes of the registry it can carry. */
function problemResponses(): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [status, name] of Object.entries(PROBLEM_RESPONSES)) {
    const codes = Object.entries(errorRegistry)
      .filter(([, e]) => e.status === Number(status))
      .map(([code, e]) => `\`${code}\` (${e.title})`);
    // A replayed write's stored 4xx says so; a counted call, whatever its answer, has its budget.
    const headers: Json = { 'x-request-id': ref('headers', 'RequestId'), ...REPLAY_HEADERS, ...RATE_HEADERS };
    // 409: a request with the same Idempotency-Key still running (idempotency_in_flight).
    if (status === '409' || status === '429' || status === '503') headers['Retry-After'] = ref('headers', 'RetryAfter');
    if (status === '405') headers.Allow = { description: 'The methods the path takes.', schema: { type: 'string' } };
    // RFC 5789: a path that takes PATCH names the media types its patches come in.
    if (status === '405' || status === '415') headers['Accept-Patch'] = ref('headers', 'AcceptPatch');
    // RFC 9110 §12.5.3: a body sent in a content coding is refused; none is taken.
    if (status === '415') {
      headers['Accept-Encoding'] = {
        description: 'When the body came in a content coding (gzip, br): none is taken.',
        schema: { const: 'identity' },
      };
    }
    // RFC 6750 §3: the bare challenge without credentials; the error (and the scope needed) else.
    if (status === '401') {
      headers['WWW-Authenticate'] = { schema: { enum: ['Bearer', 'Bearer error="invalid_token"'] } };
    }
    if (status === '403') {
      headers['WWW-Authenticate'] = {
        description: 'On insufficient_scope: the scope the call needs.',
        schema: { type: 'string', pattern: '^Bearer error="insufficient_scope", scope="[a-z]+:(read|write)"$' },
      };
    }
    out[name] = {
      description: `Problem details (RFC 9457). Codes: ${codes.join(', ') || 'none yet'}.`,
      headers,
      content: { 'application/problem+json': { schema: schemaRef('Problem') } },
    };
  }
  return out;
}

/** What the connection answers before a request reaches any route (see `problems`). */
const CONNECTION_STATUSES = [408, 414, 417, 431] as const;

/**
 * An operation's problem responses: those of any call (a request the connection refuses before
 * it reaches a route, 408, 414, 417 and 431, included) and `statuses`.
 */
function problems(...statuses: number[]): Record<string, Json> {
  const all = [...new Set([400, 401, 403, ...CONNECTION_STATUSES, ...statuses, 429, 500, 503])].sort((a, b) => a - b);
  return Object.fromEntries(all.map((s) => [String(s), ref('responses', PROBLEM_RESPONSES[s])]));
}

/** The budget headers every call the rate limit counts answers with (when `EDM_RATE_LIMIT` is set). */
const RATE_HEADERS: Json = Object.fromEntries(
  RATE_LIMIT_HEADERS.map((name) => [name, ref('headers', name.replaceAll('-', ''))]),
);
/** On a write's answer replayed for its Idempotency-Key. */
const REPLAY_HEADERS: Json = {
  'Idempotent-Replayed': ref('headers', 'IdempotentReplayed'),
  'Original-Request-Id': ref('headers', 'OriginalRequestId'),
};

const DOC_HEADERS = { 'x-request-id': ref('headers', 'RequestId'), ETag: ref('headers', 'ETag'), ...RATE_HEADERS };

function docResponse(description: string, schema: string, example: unknown, extraHeaders: Json = {}): Json {
  return {
    description,
    headers: { ...DOC_HEADERS, ...extraHeaders },
    content: { 'application/json': { schema: schemaRef(schema), example } },
  };
}

function listResponse(description: string, schema: string, item: unknown): Json {
  return {
    description,
    headers: { 'x-request-id': ref('headers', 'RequestId'), ...RATE_HEADERS },
    content: {
      'application/json': {
        schema: schemaRef(schema),
        example: { object: 'list', data: [item], has_more: false, next_cursor: null },
      },
    },
  };
}

function bodyContent(schema: string, example: unknown, mergePatch: boolean): Json {
  const media = { schema: schemaRef(schema), example };
  return {
    required: true,
    content: mergePatch
      ? { 'application/json': media, 'application/merge-patch+json': media }
      : { 'application/json': media },
  };
}

/** One OpenAPI operation per manifest operation, so the two documents cannot disagree. */
function operationObject(
  resource: Resource,
  op: ManifestOperation,
  custom: CustomOperation | undefined,
  schemas: Record<string, JsonSchema>,
): Json {
  const name = resource.name;
  const scope = `${resource.module}:${op.method === 'GET' ? 'read' : 'write'}`;
  const example = exampleDocument(resource);
  const parameters: Json[] = op.query.map((p) => queryParameter(p, op.name === 'list'));
  if (op.headers.includes('Idempotency-Key')) parameters.push(ref('parameters', 'IdempotencyKey'));
  if (op.headers.includes('If-Match')) {
    parameters.push(ref('parameters', 'IfMatch'), ref('parameters', 'IfNoneMatchWrite'));
  }
  if (op.name === 'get') parameters.push(ref('parameters', 'IfNoneMatch'), ref('parameters', 'IfMatchRead'));

  const operation: Json = {
    // Stable whether or not the SDK has a method for it: `okr.connectors.webhook` too.
    operationId: `${camel(resource.module)}.${resource.clientName}.${op.name}`,
    summary: op.summary,
    tags: [name],
    // A signed operation's URL authenticates it (its tenant_id and signature parameters).
    security: custom?.auth === 'signed' ? [] : [{ bearerAuth: [scope] }],
    // A signed operation has no SDK method (another system calls its signed URL).
    ...(op.client_method === null ? {} : { 'x-client-method': op.client_method }),
    parameters,
  };
  const responses: Json = {};
  // What If-Match can answer: a stale version (412), or none sent where one is required (428).
  // A custom operation that appends to the row (a check-in, a sync): EDM_REQUIRE_IF_MATCH does not cover it.
  const locking = op.headers.includes('If-Match') ? (custom && !custom.overwrites ? [412] : [412, 428]) : [];
  switch (op.name) {
    case 'list':
      responses['200'] = listResponse(`A page of ${name} documents`, `${name}List`, example);
      Object.assign(responses, problems());
      break;
    case 'get':
      responses['200'] = docResponse(`The ${name}`, name, example);
      responses['304'] = { description: 'Not modified: If-None-Match names the current ETag', headers: DOC_HEADERS };
      Object.assign(responses, problems(404, 412));
      break;
    case 'create':
      operation.requestBody = bodyContent(`${name}Create`, op.example, false);
      responses['201'] = docResponse(`The created ${name}`, name, example, {
        Location: ref('headers', 'Location'),
        ...REPLAY_HEADERS,
      });
      Object.assign(responses, problems(409, 413, 415, 422));
      break;
    case 'update':
      operation.requestBody = bodyContent(`${name}Update`, op.example, true);
      responses['200'] = docResponse(
        `The updated ${name}`,
        name,
        { ...example, ...op.example, version: 2 },
        REPLAY_HEADERS,
      );
      Object.assign(responses, problems(404, 409, 413, 415, 422, ...locking));
      break;
    case 'delete':
    case 'restore': {
      const deleted = op.name === 'delete';
      responses['200'] = docResponse(
        deleted ? `The ${name}, soft-deleted` : `The ${name}, restored`,
        name,
        deleted
          ? { ...example, is_deleted: true, deleted_at: EXAMPLE_TIME, deleted_by: EXAMPLE_USER, version: 2 }
          : { ...example, version: 3 },
        REPLAY_HEADERS,
      );
      // It takes no body: one sent is 400 (JSON) or 415 (another media type), or 413 past the limit.
      Object.assign(responses, problems(404, 409, 413, 415, 422, ...locking));
      break;
    }
    default: {
      if (!custom) break;
      const base = `${name}${pascal(custom.name)}`;
      if (custom.body) {
        schemas[`${base}Body`] = { title: `${base}Body`, ...plain(custom.body) };
        operation.requestBody = bodyContent(
          `${base}Body`,
          op.example ?? exampleFromSchema(schemas[`${base}Body`]),
          false,
        );
      }
      if (custom.response.kind === 'list') {
        const item = { title: `${base}Item`, ...plain(custom.response.item) };
        schemas[`${base}Item`] = item;
        schemas[`${base}Page`] = pageSchema(`${base}Page`, `${base}Item`);
        responses['200'] = listResponse(
          custom.summary,
          `${base}Page`,
          custom.responseExample ?? exampleFromSchema(item),
        );
        Object.assign(responses, problems(404));
      } else {
        responses[String(custom.response.status)] = docResponse(
          `The ${name}`,
          name,
          { ...example, ...custom.responseExample, version: 2 },
          {
            ...(custom.response.status === 201 ? { Location: ref('headers', 'Location') } : {}),
            ...REPLAY_HEADERS,
          },
        );
        Object.assign(responses, problems(404, 409, 413, 415, 422, ...locking));
      }
    }
  }
  operation.responses = responses;
  return operation;
}

function pageSchema(title: string, item: string): JsonSchema {
  return {
    type: 'object',
    title,
    properties: {
      object: { type: 'string', const: 'list' },
      data: { type: 'array', items: schemaRef(item) },
      has_more: { type: 'boolean' },
      next_cursor: { type: ['string', 'null'], description: 'Pass as cursor to get the next page; null on the last.' },
    },
    required: ['object', 'data', 'has_more', 'next_cursor'],
    additionalProperties: false,
  };
}

/** OpenAPI path templates use `{id}`; the id parameter carries the resource's prefix pattern. */
function idParameter(resource: Resource): Json {
  return {
    name: 'id',
    in: 'path',
    required: true,
    description: `${resource.name} id: \`${resource.idPrefix}_\` + a ULID.`,
    schema: { type: 'string', pattern: resource.idPattern },
    example: `${resource.idPrefix}_${EXAMPLE_ULID}`,
  };
}

const MANIFEST_SCHEMA: JsonSchema = {
  type: 'object',
  title: 'Manifest',
  description: 'How the platform describes itself: modules, resources, operations and fields.',
  required: ['platform', 'modules'],
  properties: {
    platform: {
      type: 'object',
      required: ['name', 'version', 'dev_token'],
      properties: {
        name: { type: 'string' },
        version: { type: 'string' },
        dev_token: {
          type: 'boolean',
          description: 'Whether this server mints development tokens at POST /api/v1/dev/token (local mode).',
        },
      },
    },
    modules: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'description', 'client_namespace', 'resources'],
        properties: {
          name: { type: 'string' },
          description: { type: 'string' },
          client_namespace: { type: 'string' },
          resources: {
            type: 'array',
            items: {
              type: 'object',
              required: [
                'name',
                'module',
                'path',
                'description',
                'id_prefix',
                'schema_version',
                'client_namespace',
                'title_field',
                'operations',
                'fields',
                'list',
              ],
              properties: {
                name: { type: 'string' },
                path: { type: 'string' },
                client_namespace: { type: 'string' },
                operations: {
                  type: 'array',
                  items: {
                    type: 'object',
                    required: [
                      'name',
                      'method',
                      'path',
                      'summary',
                      'client_method',
                      'query',
                      'has_body',
                      'body_fields',
                      'example',
                      'response',
                      'success_status',
                      'auth',
                    ],
                    properties: {
                      client_method: {
                        type: ['string', 'null'],
                        description: 'The SDK method; null for a signed operation, which the SDK does not call.',
                      },
                      method: { enum: ['GET', 'POST', 'PATCH', 'DELETE'] },
                      response: { enum: ['resource', 'list', 'item_list'] },
                      success_status: { type: 'integer' },
                      auth: { enum: ['bearer', 'signed_url'] },
                      body_fields: {
                        type: ['array', 'null'],
                        description:
                          "A custom operation's body fields, as the schema table shows fields; null where the resource's fields are the body, or none is sent.",
                        items: { type: 'object', required: ['name', 'type', 'required', 'notes'] },
                      },
                    },
                  },
                },
                fields: {
                  type: 'array',
                  items: {
                    type: 'object',
                    required: [
                      'name',
                      'type',
                      'required',
                      'always_present',
                      'notes',
                      'enum',
                      'read_only',
                      'write_only',
                      'computed',
                      'default',
                      'pattern',
                      'ref',
                      'platform',
                      'required_unless',
                      'default_rule',
                      'limits',
                    ],
                    properties: {
                      name: { type: 'string' },
                      type: { type: 'string' },
                      notes: { type: 'string' },
                      enum: { type: ['array', 'null'], items: { type: 'string' } },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};

function platformPaths(options: OpenApiOptions): Record<string, Json> {
  const requestId = { 'x-request-id': ref('headers', 'RequestId') };
  const documentHeaders = { ...requestId, ETag: ref('headers', 'DocumentETag') };
  const json = (schema: JsonSchema, example?: unknown) => ({
    'application/json': { schema, ...(example !== undefined ? { example } : {}) },
  });
  const paths: Record<string, Json> = {
    '/healthz': {
      get: {
        operationId: 'platform.health',
        summary: 'Liveness: the process answers',
        tags: ['Platform'],
        security: [],
        responses: {
          '200': {
            description: 'Alive',
            headers: requestId,
            content: json(
              { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } },
              { status: 'ok' },
            ),
          },
        },
      },
    },
    '/readyz': {
      get: {
        operationId: 'platform.ready',
        summary: 'Readiness: the store answers',
        tags: ['Platform'],
        security: [],
        responses: Object.fromEntries(
          (['200', '503'] as const).map((s) => [
            s,
            {
              description: s === '200' ? 'Ready' : 'The store is unreachable; retry shortly',
              headers: s === '503' ? { ...requestId, 'Retry-After': ref('headers', 'RetryAfter') } : requestId,
              content: json(
                {
                  type: 'object',
                  required: ['status', 'store'],
                  properties: {
                    status: { enum: ['ready', 'unavailable'] },
                    store: { enum: ['sqlite', 'postgres'] },
                  },
                },
                { status: s === '200' ? 'ready' : 'unavailable', store: 'sqlite' },
              ),
            },
          ]),
        ),
      },
    },
    '/metrics': {
      get: {
        operationId: 'platform.metrics',
        summary: 'Prometheus metrics (text exposition format)',
        tags: ['Platform'],
        security: [],
        responses: {
          '200': {
            description: 'Metrics',
            headers: requestId,
            content: { 'text/plain': { schema: { type: 'string' }, example: '# TYPE http_requests_total counter\n' } },
          },
        },
      },
    },
    '/api/v1/manifest': {
      get: {
        operationId: 'platform.manifest',
        summary: 'The manifest the Playground loads: modules, resources, operations and fields',
        tags: ['Platform'],
        security: [],
        responses: {
          '200': { description: 'The manifest', headers: documentHeaders, content: json(schemaRef('Manifest')) },
          '304': { description: 'Not modified: If-None-Match names the current ETag', headers: documentHeaders },
        },
      },
    },
    '/api/v1/openapi.json': {
      get: {
        operationId: 'platform.openapi',
        summary: 'This OpenAPI 3.1 document',
        tags: ['Platform'],
        security: [],
        responses: {
          '200': { description: 'The document', headers: documentHeaders, content: json({ type: 'object' }) },
          '304': { description: 'Not modified: If-None-Match names the current ETag', headers: documentHeaders },
        },
      },
    },
  };
  const html = (example: string) => ({ 'text/html': { schema: { type: 'string' }, example } });
  const pageHeaders = {
    ...requestId,
    'Content-Security-Policy': { description: 'Fixed text: no script, nothing framed.', schema: { type: 'string' } },
  };
  paths['/problems'] = {
    get: {
      operationId: 'platform.problems',
      summary: 'A page listing every error code',
      tags: ['Platform'],
      security: [],
      responses: { '200': { description: 'The page', headers: pageHeaders, content: html('<!doctype html>…') } },
    },
  };
  paths['/problems/{code}'] = {
    get: {
      operationId: 'platform.problem',
      summary: "A problem's `type`: a page about its code",
      tags: ['Platform'],
      security: [],
      parameters: [{ name: 'code', in: 'path', required: true, schema: { type: 'string' }, example: 'not_found' }],
      responses: {
        '200': { description: 'The page', headers: pageHeaders, content: html('<!doctype html>…') },
        ...problems(404),
      },
    },
  };
  if (options.localMode) {
    paths['/api/v1/dev/token'] = {
      post: {
        operationId: 'platform.devToken',
        summary: 'Local mode only: mint a 12-hour dev token (loopback callers only)',
        tags: ['Platform'],
        security: [],
        requestBody: {
          required: false,
          content: json(plain(inputSchema(DEV_TOKEN_FIELDS)), { tenant_id: 'dev' }),
        },
        responses: {
          '200': {
            description: 'A token',
            headers: requestId,
            content: json(
              {
                type: 'object',
                required: ['token', 'tenant_id', 'sub', 'expires_at'],
                properties: {
                  token: { type: 'string' },
                  tenant_id: { type: 'string' },
                  sub: { type: 'string' },
                  expires_at: { type: 'string', format: 'date-time' },
                },
                additionalProperties: false,
              },
              {
                token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3ItMDAwIn0.c2ln',
                tenant_id: 'dev',
                sub: 'usr-00000000-0000-4000-8000-000000000001',
                expires_at: EXAMPLE_TIME,
              },
            ),
          },
          ...problems(413, 415),
        },
      },
    };
  }
  // The connection answers these before any route (a request too slow to arrive, an Expect it
  // cannot meet, headers over 16 KiB), on these paths as on every other.
  for (const item of Object.values(paths) as Record<string, { responses: Record<string, Json> }>[]) {
    for (const op of Object.values(item)) {
      for (const status of CONNECTION_STATUSES) op.responses[status] ??= ref('responses', PROBLEM_RESPONSES[status]);
    }
  }
  const served = options.hasRoute;
  if (!served) return paths;
  return Object.fromEntries(
    Object.entries(paths).filter(([path, item]) =>
      Object.keys(item).every((method) => served(method.toUpperCase() as 'GET' | 'POST', path)),
    ),
  );
}

/** The OpenAPI 3.1 document of every route, derived from the same declarations as the manifest. */
export function buildOpenApi(modules: readonly ModuleDef[], options: OpenApiOptions = {}): Json {
  const schemas: Record<string, JsonSchema> = {};
  const paths: Record<string, Json> = platformPaths(options);
  const tags: Json[] = [];
  for (const module of modules) {
    for (const resource of module.resources) {
      const name = resource.name;
      tags.push({ name, description: `${resource.description} (\`${resource.basePath}\`)` });
      schemas[name] = responseSchema(resource);
      schemas[`${name}Create`] = createSchema(resource);
      schemas[`${name}Update`] = updateSchema(resource);
      const list = listSchema(resource) as { properties: Record<string, JsonSchema> } & JsonSchema;
      schemas[`${name}List`] = {
        ...list,
        properties: { ...list.properties, data: { type: 'array', items: schemaRef(name) } },
      };
      for (const op of resourceOperations(resource, modules)) {
        const custom = resource.operations?.find((c) => c.name === op.name);
        paths[op.path] ??= {};
        const item = paths[op.path];
        if (op.path.includes('{id}')) item.parameters = [idParameter(resource)];
        item[op.method.toLowerCase()] = operationObject(resource, op, custom, schemas);
      }
    }
  }
  tags.push({ name: 'Platform', description: 'Health, readiness and self-description.' });
  schemas.Problem = {
    ...problemSchema,
    properties: {
      ...(problemSchema.properties as Json),
      code: { type: 'string', enum: Object.keys(errorRegistry) },
    },
  };
  schemas.Manifest = MANIFEST_SCHEMA;

  return {
    openapi: '3.1.0',
    info: {
      title: `${PLATFORM_NAME} API`,
      version: PLATFORM_VERSION,
      description:
        'A multi-tenant OKR API. Every resource answers list, get, create, update (JSON Merge Patch), ' +
        'soft delete and restore; errors are RFC 9457 problem+json with a stable `code`. Bearer JWTs ' +
        'carry `sub` and `tenant_id`; a `scope` claim (e.g. `okr:read okr:write`) restricts a token, ' +
        'and tokens without one are human sessions with full access inside their tenant. Where the ' +
        "server sets a rate limit, each caller (an application of a tenant, or the tenant's people) " +
        'has a budget: every answer carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`, and a ' +
        'call over it is 429 `rate_limited` with `Retry-After`.',
    },
    security: [{ bearerAuth: [] }],
    tags,
    paths,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A JWT with `sub`, `tenant_id` and `exp`; optional `app_id` and `scope`.',
        },
      },
      schemas,
      parameters: {
        IfMatch: {
          name: 'If-Match',
          in: 'header',
          required: false,
          description: 'Write only if the current ETag is one of these (e.g. `"3"`, or `*`); otherwise 412.',
          schema: { type: 'string' },
          example: '"3"',
        },
        IfNoneMatch: {
          name: 'If-None-Match',
          in: 'header',
          required: false,
          description: 'Answer 304 without a body when the current ETag is one of these.',
          schema: { type: 'string' },
          example: '"3"',
        },
        IfMatchRead: {
          name: 'If-Match',
          in: 'header',
          required: false,
          description: 'Answer only if the current ETag is one of these (or `*`); otherwise 412.',
          schema: { type: 'string' },
          example: '"3"',
        },
        IfNoneMatchWrite: {
          name: 'If-None-Match',
          in: 'header',
          required: false,
          description: 'Refuse the write with 412 if the current ETag is one of these (weak comparison), or with `*`.',
          schema: { type: 'string' },
          example: '"3"',
        },
        IdempotencyKey: {
          name: 'Idempotency-Key',
          in: 'header',
          required: false,
          description:
            'Makes the write safe to retry: the first 2xx/4xx answer is kept 24 h and replayed; the same key with another request is 422, and 409 while the first is still running.',
          schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
          example: '5f0c8a4e-2d7b-4c1e-9a3f-6b8d2e1c0f47',
        },
      },
      headers: {
        ETag: {
          description: 'The strong entity tag: the resource version in quotes.',
          required: true,
          schema: { type: 'string', pattern: '^"\\d+"$' },
        },
        Location: {
          description: 'The URL of the created resource.',
          required: true,
          schema: { type: 'string' },
        },
        RequestId: { description: 'The id of this request (also request_id in problems).', schema: { type: 'string' } },
        RetryAfter: { description: 'Seconds to wait before retrying.', schema: { type: 'string' } },
        XRateLimitLimit: {
          description:
            "Calls this caller may make per window (when the server sets `EDM_RATE_LIMIT`; every limited answer carries it). A caller is one application of a tenant, or the tenant's people.",
          schema: { type: 'string' },
        },
        XRateLimitRemaining: { description: 'Calls the caller may make right now.', schema: { type: 'string' } },
        XRateLimitReset: {
          description: "Seconds until the caller's budget is full again.",
          schema: { type: 'string' },
        },
        DocumentETag: {
          description:
            "The entity tag of this document's bytes: send it as If-None-Match to have 304 while it is unchanged.",
          required: true,
          schema: { type: 'string' },
        },
        AcceptPatch: {
          description:
            'On a path that takes PATCH: the media types a patch may come in (a JSON merge patch, RFC 7396).',
          schema: { type: 'string', const: ACCEPT_PATCH },
        },
        IdempotentReplayed: {
          description: '`true` when this answer is the replay of an earlier request with the same Idempotency-Key.',
          schema: { type: 'string', const: 'true' },
        },
        OriginalRequestId: {
          description:
            "On a replay: the `x-request-id` of the request that did the work and whose answer this is (a replayed problem's `request_id` names this request).",
          schema: { type: 'string' },
        },
      },
      responses: problemResponses(),
    },
  };
}

/** `GET /api/v1/openapi.json` (public). */
export function registerOpenApiRoute(
  app: FastifyInstance,
  modules: readonly ModuleDef[],
  options: OpenApiOptions = {},
): void {
  // The router's own syntax: `/problems/{code}` is served as `/problems/:code`.
  const hasRoute = (method: 'GET' | 'POST', url: string) =>
    app.hasRoute({ method, url: url.replace(/\{(\w+)\}/g, ':$1') });
  serveDocument(app, '/api/v1/openapi.json', () => buildOpenApi(modules, { hasRoute, ...options }));
}
