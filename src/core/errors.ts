/**
 * The one error registry: every problem the API can answer has a stable `code` here.
 * Code throws `ApiError`s by code; exactly one place (src/http/problem.ts) maps them to
 * RFC 9457 problem+json. docs/errors.md documents every code (a test checks it).
 */
export const errorRegistry = {
  // 400
  invalid_json: {
    status: 400,
    title: 'Malformed JSON body',
    when: 'The body is not valid JSON (or is empty while a JSON media type is declared, nests arrays and objects deeper than 64 levels, holds an object or array of more than 1,000 members, or names a member twice in one object).',
  },
  invalid_body: {
    status: 400,
    title: 'Request body must be a JSON object',
    when: 'The body is JSON but not an object.',
  },
  validation_failed: {
    status: 400,
    title: 'Validation failed',
    when: 'A field value breaks its declared type, bounds, pattern or enum, a required field is missing or null, a text holds U+0000 or a lone surrogate (`invalid_text`), a text that must not be empty (a title, a name, a tag) shows nothing but spaces or invisible characters (`blank`), or a cross-field rule fails. `errors[]` names each field.',
  },
  unknown_field: {
    status: 400,
    title: 'Unknown field',
    when: 'The body names a field the resource does not declare (no mass assignment), or a member named `__proto__` (or `constructor` holding `prototype`) anywhere: JSON, refused by name.',
  },
  read_only_field: {
    status: 400,
    title: 'Field is server-owned',
    when: 'The body sets a server-owned field (`id`, `tenant_id`, `*_at`, `*_by`, `version` on create, computed fields).',
  },
  invalid_parameter: {
    status: 400,
    title: 'Invalid query parameter',
    when: 'A query parameter has a bad value (limit out of 1–200, unknown sort field, malformed filter value) or is repeated.',
  },
  unknown_parameter: {
    status: 400,
    title: 'Unknown query parameter',
    when: 'A query parameter the operation does not take.',
  },
  invalid_cursor: {
    status: 400,
    title: 'Invalid cursor',
    when: 'A list cursor was altered or cut (however it was damaged), or is reused with other filters, sort, caller or `include_deleted`.',
  },
  invalid_header: {
    status: 400,
    title: 'Invalid header',
    when: 'A malformed or repeated header: `If-Match`/`If-None-Match`, `Idempotency-Key`, two `Authorization` lines, or a `QUERY` request without `Content-Type`. `errors[]` names the header.',
  },
  malformed_request: {
    status: 400,
    title: 'Malformed HTTP request',
    when: "The request is not valid HTTP/1.1 (request line, header syntax, framing: a `Content-Length` that is no length, a `Transfer-Encoding` on HTTP/1.0 or naming a coding besides `chunked`), or its `Host` is missing, repeated or no host. Answered on the connection, which is then closed; `request_id` names no route's request when no route's request began.",
  },
  // 401 / 403
  unauthenticated: {
    status: 401,
    title: 'Authentication required',
    when: 'No `Authorization: Bearer` token (`WWW-Authenticate: Bearer`).',
  },
  invalid_token: {
    status: 401,
    title: 'Invalid token',
    when: 'The token is malformed, expired, not yet valid, badly signed, signed with a refused algorithm, has the wrong issuer/audience, or lacks `sub`/`tenant_id`/`exp`. `WWW-Authenticate: Bearer error="invalid_token"`.',
  },
  insufficient_scope: {
    status: 403,
    title: 'Insufficient scope',
    when: 'The token has a `scope` claim without the module scope the call needs (`okr:read`, `okr:write`); `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` names it.',
  },
  forbidden: {
    status: 403,
    title: 'Forbidden',
    when: 'The caller may not use this endpoint (e.g. the dev-token endpoint from a non-loopback address).',
  },
  // 404 / 405
  not_found: {
    status: 404,
    title: 'Resource not found',
    when: 'No resource with that id is visible to the caller (missing, another tenant’s, another app’s, or deleted on DELETE).',
  },
  route_not_found: {
    status: 404,
    title: 'Route not found',
    when: 'No such route.',
  },
  method_not_allowed: {
    status: 405,
    title: 'Method not allowed',
    when: 'The route exists but not with this method.',
  },
  // 408
  request_timeout: {
    status: 408,
    title: 'Request timeout',
    when: 'The request (headers and body) did not arrive within `EDM_REQUEST_TIMEOUT_MS` (default 30 s). The connection is closed.',
  },
  // 409
  version_conflict: {
    status: 409,
    title: 'Version conflict',
    when: 'The body `version` is not the current version (the problem carries `current_version`), or a concurrent writer won.',
  },
  resource_deleted: {
    status: 409,
    title: 'Resource is deleted',
    when: 'PATCH on a soft-deleted resource; restore it first.',
  },
  not_deleted: {
    status: 409,
    title: 'Resource is not deleted',
    when: 'Restore of a resource that is not deleted.',
  },
  parent_deleted: {
    status: 409,
    title: 'Parent resource is deleted',
    when: "Restore of a resource whose parent (cycle, objective), or a row it must refer to live (a key result's connector), is deleted.",
  },
  has_dependents: {
    status: 409,
    title: 'Resource has live dependents',
    when: 'DELETE of a parent with live children without `?cascade=true`, or of a row live rows refer to (a connector feeding key results, cascade or not); the problem carries `dependents`.',
  },
  idempotency_in_flight: {
    status: 409,
    title: 'Request with this idempotency key is in flight',
    when: 'A request with the same Idempotency-Key is still running.',
  },
  not_manual: {
    status: 409,
    title: 'Key result is not manually updated',
    when: 'A PATCH of `current` to another value than the stored one, or a check-in, on a key result whose `data_source` is not `manual`.',
  },
  not_pulled: {
    status: 409,
    title: 'Connector is pushed to, not pulled',
    when: '`POST …/connectors/{id}/sync` on a `webhook` connector: its values arrive at its signed `webhook_url`.',
  },
  not_webhook: {
    status: 409,
    title: 'Connector has no webhook URL',
    when: '`POST …/connectors/{id}/rotate-webhook-url` on a connector that is not a `webhook` one: it has no URL to replace.',
  },
  // 412 / 413 / 415 / 422 / 428 / 429 / 431
  precondition_failed: {
    status: 412,
    title: 'Precondition failed',
    when: "`If-Match` does not name the current version, on a write or a GET by id, or a write's `If-None-Match` names it (or is `*`); the problem carries `current_version`.",
  },
  payload_too_large: {
    status: 413,
    title: 'Payload too large',
    when: 'The body is larger than 1 MiB.',
  },
  unsupported_media_type: {
    status: 415,
    title: 'Unsupported media type',
    when: 'A body that is not `application/json` (or `application/merge-patch+json` on PATCH), or one in a content coding (`Content-Encoding: gzip`): send it uncompressed.',
  },
  expectation_failed: {
    status: 417,
    title: 'Expectation failed',
    when: 'An `Expect` header other than `100-continue` (RFC 9110 §10.1.1): the request is not read. The connection is closed.',
  },
  idempotency_key_reused: {
    status: 422,
    title: 'Idempotency key reused with a different request',
    when: 'An Idempotency-Key reused with a different method, path, caller or body.',
  },
  invalid_reference: {
    status: 422,
    title: 'Invalid reference',
    when: 'A reference (`objective_id`, `cycle_id`, …) does not name a live resource of the tenant, or would pass a bound of what it names (field code `limit_reached`).',
  },
  precondition_required: {
    status: 428,
    title: 'Precondition required',
    when: '`EDM_REQUIRE_IF_MATCH=1` and an update, delete, restore or webhook URL rotation carries no `If-Match` (a PATCH may send a body `version` instead).',
  },
  rate_limited: {
    status: 429,
    title: 'Too many requests',
    when: "The caller (an application of the tenant, the tenant's people, or its webhook pushes) has spent its budget (`EDM_RATE_LIMIT`); retry after `Retry-After`. The problem carries `limit` and `retry_after_seconds`.",
  },
  uri_too_long: {
    status: 414,
    title: 'URI too long',
    when: "The request line (its method and URL) exceeds 16 KiB, the limit of the request's headers, and arrived in one piece (in pieces it is `headers_too_large`). The connection is closed.",
  },
  headers_too_large: {
    status: 431,
    title: 'Request headers too large',
    when: "The request's headers exceed 16 KiB. The connection is closed.",
  },
  // 5xx
  internal_error: {
    status: 500,
    title: 'Internal server error',
    when: 'An unexpected failure; the body carries no internals, `request_id` finds the log line.',
  },
  service_unavailable: {
    status: 503,
    title: 'Service unavailable',
    when: 'The database is unreachable, or the JWKS that verifies tokens cannot be fetched (`Retry-After: 1` or `5`; the process recovers without a restart); storage cannot take writes: a full disk, an I/O error, a read-only file (`Retry-After: 5`, logged as an error: an operator must act); the schema is not migrated yet (`Retry-After: 5`); or the server is shutting down (`Retry-After: 1`, `Connection: close`: retry elsewhere or once it is back).',
  },
} as const satisfies Record<string, { status: number; title: string; when: string }>;

export type ErrorCode = keyof typeof errorRegistry;

/**
 * The codes of a problem's `errors[]` entries, each naming what is wrong with one field, header or
 * parameter: stable like the problem codes (docs/errors.md lists them from here, and the
 * OpenAPI document's `errors[].code` enum), and the only ones a FieldError may carry.
 */
export const fieldErrorRegistry = {
  required: 'A required field is missing or null (or a setting its kind needs, such as `config.url`).',
  invalid_type: "The value is not of the field's type (a string for a number, an object for a list, …).",
  invalid_enum: "The value is not one of the field's values, or one only the platform writes (`source_type: system`).",
  invalid_format: "Text does not match the field's form: a date, a date-time, an id, `usr-<uuid>`, a pattern.",
  invalid_text: 'Text holds U+0000 or a lone UTF-16 surrogate, which neither store holds as sent.',
  blank: 'Text that must show something (a title, a name, a tag) shows only spaces or invisible characters.',
  too_long: 'Text is longer than the field allows, in characters.',
  too_short: 'Text is shorter than the field allows.',
  too_many_items: 'A list holds more items than the field allows (or an object more members: `config.headers`).',
  not_unique: 'A list that holds each value once (tags) holds one twice.',
  out_of_range:
    'A number or a time outside its bounds: values within ±1e15, `weight` 0 or at least 0.000001, `confidence` 0–10, an `end_date` before `start_date`, a check-in `at` in the future.',
  inconsistent: 'Fields that must agree do not: a `direction` that contradicts `baseline` and `target`.',
  invalid: 'The value breaks another rule of its field.',
  unknown_field:
    'The body names a field the resource does not declare, a member an object field (`config`) does not take, or a member named `__proto__`.',
  read_only: 'The body sets a field only the server writes.',
  not_allowed:
    'A value or setting this row does not take: `current` of a key result a query or a connector feeds (on create, or on a PATCH that turns a manual one into a fed one), `query` or `connector_id` where `data_source` does not use it, a setting or a secret of another connector kind.',
  invalid_reference: 'A reference (`objective_id`, `cycle_id`, `kr("…")` in a query) names no live row of the tenant.',
  parent_deleted: 'A restore would bring a row back under a parent that is deleted.',
  limit_reached:
    'A reference would pass a bound of what it names, so that one write cannot cost the others much: 50 queries downstream of a key result or of the key results a connector feeds (directly or through other queries), a query reading 100 key results through others (checked when a write adds reads), a connector feeding 100 key results already, an alignment 32 levels deep already.',
  alignment_cycle: 'An objective would be aligned under itself, directly or through others.',
  query_cycle: 'A metric query would read itself, directly or through other queries.',
  invalid_query: 'A metric query does not parse, or uses what the language does not have.',
  invalid_url: 'A URL is none the field takes: not http(s), not parseable, or holding a user or password.',
  invalid_pointer: 'A JSON Pointer (`config.pointer`) is none (RFC 6901).',
  invalid_header: 'A request header is malformed or repeated (named by its header name).',
  duplicate_member:
    'The body names a member twice in one object (`{"title":"a","title":"b"}`): JSON leaves which one counts to the reader, so neither is taken.',
  credential_in_config:
    "A header of a connector's `config.headers` carries a credential, by its name (`Authorization`, `Cookie`, `X-Api-Key`, a name with token, secret, password or session in it) or its value (`Bearer …`, `Basic …`), which every reader of the connector would see: its value goes in the write-only `secret`, sent as `config.auth` says.",
  invalid_parameter: "A query parameter's value is none the parameter takes (named by the parameter).",
  unknown_parameter: 'A query parameter the operation does not take.',
  invalid_cursor: 'A list cursor was altered, or made for another list (its filters, sort, caller or resource).',
} as const satisfies Record<string, string>;

export type FieldErrorCode = keyof typeof fieldErrorRegistry;

/** One problem with one field of a request: `path` is a JSON Pointer into the body or a parameter name. */
export interface FieldError {
  path: string;
  code: FieldErrorCode;
  message: string;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldError[] | undefined;
  /** Extra members for the problem document (e.g. `current_version`). */
  readonly extra: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: {
      errors?: FieldError[];
      extra?: Record<string, unknown>;
      headers?: Record<string, string>;
      /** What failed underneath (logged with a 503, never answered). */
      cause?: unknown;
    } = {},
  ) {
    const { status } = errorRegistry[code];
    // A client error (4xx) is answered, never logged with its stack: not capturing one saves
    // ~7% of the CPU of a refused request. Server errors keep theirs for the log.
    const limit = Error.stackTraceLimit;
    if (status < 500) Error.stackTraceLimit = 0;
    try {
      super(detail ?? errorRegistry[code].title, options.cause === undefined ? undefined : { cause: options.cause });
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.code = code;
    this.status = status;
    this.errors = options.errors;
    this.extra = options.extra;
    this.headers = options.headers;
  }
}

/** A 400 about body fields; the first field names the detail. */
export function fieldError(code: ErrorCode, errors: FieldError[]): ApiError {
  const first = errors[0];
  const detail = first ? `${first.path || 'body'}: ${first.message}` : undefined;
  return new ApiError(code, detail, { errors });
}
